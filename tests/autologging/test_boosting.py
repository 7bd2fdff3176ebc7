"""Autologging of LightGBM and XGBoost through their scikit-learn classes."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn import metrics as skm
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mloop
from autologging.support import all_runs, binary_frame, only_run, regression_frame
from mloop.workspace import Workspace

lightgbm = pytest.importorskip("lightgbm")
# eval_set is the argument both libraries share; LightGBM 4.7 also takes eval_X / eval_y
pytestmark = pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")


def history(ws: Workspace, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(p.step, p.value) for p in ws.tracking.metric_history(run_id, key)]


def test_lightgbm_logs_one_run_with_per_iteration_eval_metrics(ws: Workspace) -> None:
    X, y = binary_frame(400)
    X_train, y_train, X_val, y_val = X[:300], y[:300], X[300:], y[300:]
    model = lightgbm.LGBMClassifier(n_estimators=15, learning_rate=0.1, verbose=-1)
    assert model.fit(X_train, y_train, eval_set=[(X_val, y_val)]) is model

    run = only_run()  # LGBMClassifier.fit calls LGBMModel.fit: still one run
    assert run.tags["mloop.autolog.estimator"] == "lightgbm.LGBMClassifier"
    assert run.tags["mloop.autolog.flavor"] == "lightgbm"
    assert run.tags["mloop.package.lightgbm"] == lightgbm.__version__
    assert run.params["n_estimators"] == "15"
    assert run.params["learning_rate"] == "0.1"

    expected = model.evals_result_["valid_0"]["binary_logloss"]
    points = history(ws, run.id, "valid_0-binary_logloss")
    assert [step for step, _ in points] == list(range(15))
    assert [value for _, value in points] == pytest.approx(expected)

    assert run.metrics["training_accuracy"] == pytest.approx(
        skm.accuracy_score(y_train, model.predict(X_train))
    )
    assert run.metrics["training_roc_auc"] == pytest.approx(
        skm.roc_auc_score(y_train, model.predict_proba(X_train)[:, 1])
    )

    version = ws.registry.register(run.id, "gbm")
    assert version.info["flavor"] == "lightgbm"
    rows = X_val.head(6).to_dict(orient="records")
    result = ws.predict("gbm", rows)
    assert result.predictions == model.predict(X_val.head(6)).tolist()


def test_lightgbm_names_its_eval_sets_and_early_stopping(ws: Workspace) -> None:
    X, y = regression_frame(400)
    model = lightgbm.LGBMRegressor(n_estimators=200, learning_rate=0.3, verbose=-1)
    model.fit(
        X[:300],
        y[:300],
        eval_set=[(X[:300], y[:300]), (X[300:], y[300:])],
        eval_names=["train", "holdout"],
        eval_metric=["l1"],
        callbacks=[lightgbm.early_stopping(5, verbose=False)],
    )
    run = only_run()
    steps = len(model.evals_result_["holdout"]["l2"])
    assert steps < 200  # it stopped early
    for key in ("train-l2", "train-l1", "holdout-l2", "holdout-l1"):
        points = history(ws, run.id, key)
        assert len(points) == steps, key
        assert points[-1][0] == steps - 1
    assert run.metrics["best_iteration"] == model.best_iteration_
    assert run.metrics["training_r2"] == pytest.approx(
        skm.r2_score(y[:300], model.predict(X[:300]))
    )


def test_lightgbm_inside_a_pipeline_and_a_search(ws: Workspace) -> None:
    X, y = binary_frame(300)
    pipe = Pipeline([("s", StandardScaler()), ("gbm", lightgbm.LGBMClassifier(verbose=-1))])
    search = GridSearchCV(pipe, {"gbm__n_estimators": [5, 10]}, cv=2)
    search.fit(X, y)
    runs = all_runs()
    parents = [r for r in runs if r.parent_run_id is None]
    assert len(parents) == 1
    assert len(runs) == 3  # the search and its two candidates
    assert parents[0].params["best_gbm__n_estimators"] == str(
        search.best_params_["gbm__n_estimators"]
    )


def test_lightgbm_score_logs_validation_metrics(ws: Workspace) -> None:
    X, y = binary_frame(300)
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X[:200], y[:200])
    accuracy = model.score(X[200:], y[200:])
    assert only_run().metrics["val_accuracy"] == pytest.approx(accuracy)


def test_xgboost_logs_per_iteration_eval_metrics(ws: Workspace) -> None:
    xgboost: Any = pytest.importorskip("xgboost")
    X, y = binary_frame(400)
    model = xgboost.XGBClassifier(n_estimators=12, max_depth=3, eval_metric="logloss")
    model.fit(X[:300], y[:300], eval_set=[(X[300:], y[300:])], verbose=False)

    run = only_run()
    assert run.tags["mloop.autolog.estimator"] == "xgboost.XGBClassifier"
    assert run.tags["mloop.autolog.flavor"] == "xgboost"
    assert run.params["max_depth"] == "3"
    expected = model.evals_result()["validation_0"]["logloss"]
    points = history(ws, run.id, "validation_0-logloss")
    assert [step for step, _ in points] == list(range(12))
    assert [value for _, value in points] == pytest.approx(expected)
    assert run.metrics["training_accuracy"] == pytest.approx(
        skm.accuracy_score(y[:300], model.predict(X[:300]))
    )

    ws.registry.register(run.id, "xgb")
    rows = X.tail(5).to_dict(orient="records")
    assert ws.predict("xgb", rows).predictions == model.predict(X.tail(5)).tolist()


def test_xgboost_regressor_on_arrays(ws: Workspace) -> None:
    xgboost: Any = pytest.importorskip("xgboost")
    X, y = regression_frame(200)
    model = xgboost.XGBRegressor(n_estimators=8).fit(X.to_numpy(), y.to_numpy())
    run = only_run()
    assert run.metrics["training_rmse"] == pytest.approx(
        skm.root_mean_squared_error(y, model.predict(X.to_numpy())), rel=1e-5
    )
    ws.registry.register(run.id, "xgbr")
    rows = [{"f0": a, "f1": b} for a, b in X.head(3).itertuples(index=False)]
    assert ws.predict("xgbr", rows).predictions == pytest.approx(
        model.predict(X.head(3).to_numpy()).tolist()
    )


def test_autolog_patches_the_boosting_classes_and_disable_restores_them() -> None:
    mloop.autolog()
    try:
        assert getattr(lightgbm.LGBMModel.fit, "__mloop_autolog__", False)
        assert getattr(lightgbm.LGBMClassifier.fit, "__mloop_autolog__", False)
    finally:
        mloop.autolog(disable=True)
    assert not hasattr(lightgbm.LGBMModel.fit, "__mloop_autolog__")
    assert not hasattr(lightgbm.LGBMClassifier.fit, "__mloop_autolog__")
