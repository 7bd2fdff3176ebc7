"""Autologging of scikit-learn: one run per outermost fit, with what a person would log by hand."""

from __future__ import annotations

import json
import logging
import math
import warnings
from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import mloop
from autologging.support import all_runs, binary_frame, only_run, regression_frame
from mloop import fluent
from mloop.autologging import ArrayInputModel, session
from mloop.models import META_FILE, MODEL_FILE
from mloop.workspace import Workspace


def artifact_paths(run_id: str) -> set[str]:
    return {a.path for a in mloop.get_run(run_id).artifacts}


def model_meta(ws: Workspace, run_id: str) -> dict[str, Any]:
    data = ws.tracking.read_artifact(run_id, f"model/{META_FILE}")
    return dict(json.loads(data))


def weighted(y: Any, y_pred: Any) -> dict[str, float]:
    kw: dict[str, Any] = {"average": "weighted", "zero_division": 0}
    return {
        "accuracy": skm.accuracy_score(y, y_pred),
        "precision": skm.precision_score(y, y_pred, **kw),
        "recall": skm.recall_score(y, y_pred, **kw),
        "f1": skm.f1_score(y, y_pred, **kw),
    }


# -- one run per fit ---------------------------------------------------------------------------


def test_a_fit_with_no_run_active_logs_one_finished_run(ws: Workspace) -> None:
    X, y = binary_frame()
    model = LogisticRegression(C=0.5, max_iter=500)
    assert model.fit(X, y) is model  # fit's result is the caller's, unchanged
    assert mloop.active_run() is None  # the run autologging started has ended

    run = only_run()
    assert run.status == "FINISHED"
    assert run.name == "LogisticRegression"
    assert run.tags["mloop.autolog.estimator"] == "sklearn.linear_model.LogisticRegression"
    assert run.tags["mloop.autolog.flavor"] == "sklearn"
    assert run.tags["mloop.task"] == "classification"
    assert run.tags["mloop.package.scikit-learn"]
    assert run.tags["mloop.python"]
    assert run.params["C"] == "0.5"
    assert run.params["max_iter"] == "500"
    assert run.params["class_weight"] == "None"
    assert set(run.params) == set(model.get_params(deep=True))

    proba = model.predict_proba(X)
    expected = weighted(y, model.predict(X))
    expected["log_loss"] = skm.log_loss(y, proba)
    expected["roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
    for name, value in expected.items():
        assert run.metrics[f"training_{name}"] == pytest.approx(value), name
    assert run.metrics["fit_seconds"] > 0


def test_each_fit_is_a_run_of_its_own(ws: Workspace) -> None:
    X, y = binary_frame()
    LogisticRegression().fit(X, y)
    LogisticRegression(C=2.0).fit(X, y)
    runs = all_runs()
    assert len(runs) == 2
    assert [r.params["C"] for r in runs] == ["1.0", "2.0"]


def test_a_regressor_logs_mse_rmse_mae_r2(ws: Workspace) -> None:
    X, y = regression_frame()
    model = Ridge(alpha=0.3).fit(X, y)
    run = only_run()
    y_pred = model.predict(X)
    mse = skm.mean_squared_error(y, y_pred)
    assert run.tags["mloop.task"] == "regression"
    assert run.metrics["training_mse"] == pytest.approx(mse)
    assert run.metrics["training_rmse"] == pytest.approx(math.sqrt(mse))
    assert run.metrics["training_mae"] == pytest.approx(skm.mean_absolute_error(y, y_pred))
    assert run.metrics["training_r2"] == pytest.approx(skm.r2_score(y, y_pred))
    assert not any(k.startswith("training_acc") for k in run.metrics)


def test_multiclass_metrics_are_weighted(ws: Workspace) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    run = only_run()
    proba = model.predict_proba(X)
    expected = weighted(y, model.predict(X))
    expected["log_loss"] = skm.log_loss(y, proba)
    expected["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted")
    for name, value in expected.items():
        assert run.metrics[f"training_{name}"] == pytest.approx(value), name


def test_sample_weight_weighs_the_training_metrics(ws: Workspace) -> None:
    X, y = binary_frame()
    w = np.where(y == 1, 3.0, 1.0)
    model = LogisticRegression().fit(X, y, sample_weight=w)
    run = only_run()
    assert run.metrics["training_accuracy"] == pytest.approx(
        skm.accuracy_score(y, model.predict(X), sample_weight=w)
    )


def test_an_unsupervised_fit_logs_params_and_no_model(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    X, _ = binary_frame()
    with caplog.at_level(logging.WARNING, logger="mloop.autolog"):
        KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)
    run = only_run()
    assert run.params["n_clusters"] == "3"
    assert set(run.metrics) == {"fit_seconds"}
    assert not any(p.startswith("model/") for p in artifact_paths(run.id))
    assert "mloop.task" not in run.tags
    assert not caplog.records  # no model is expected of a clusterer: nothing to warn about


# -- the model ---------------------------------------------------------------------------------


def test_the_model_registers_and_predicts_like_the_estimator(ws: Workspace) -> None:
    X, y = binary_frame()
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    run = only_run()
    assert {f"model/{MODEL_FILE}", f"model/{META_FILE}"} <= artifact_paths(run.id)

    version = ws.registry.register(run.id, "fraud")
    assert version.signature.input_names == ["amount", "age", "score"]
    assert [c.type for c in version.signature.inputs] == ["float", "integer", "float"]
    assert version.signature.target == "is_fraud"
    assert version.signature.task == "classification"
    assert version.signature.classes == [0, 1]
    assert version.info["run_id"] == run.id
    assert version.info["input"] == "columns"

    rows = X.head(10).to_dict(orient="records")
    result = ws.predict("fraud", rows)
    assert result.predictions == model.predict(X.head(10)).tolist()
    assert result.probabilities is not None
    expected = model.predict_proba(X.head(10))[:, 1]
    assert [p["1"] for p in result.probabilities] == pytest.approx(expected)


def test_a_numpy_fit_names_its_columns_f0_to_fn(ws: Workspace) -> None:
    X, y = binary_frame()
    array, labels = X.to_numpy(), y.to_numpy()
    model = LogisticRegression(max_iter=500).fit(array, labels)
    run = only_run()
    version = ws.registry.register(run.id, "arr")
    assert version.signature.input_names == ["f0", "f1", "f2"]
    assert version.signature.target == "target"
    assert version.info["input"] == "array"
    assert isinstance(ws.registry.load("arr").estimator, ArrayInputModel)

    rows = [{f"f{i}": float(v) for i, v in enumerate(row)} for row in array[:8]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "X has feature names" complaint from scikit-learn
        result = ws.predict("arr", rows)
    assert result.predictions == model.predict(array[:8]).tolist()


def test_polars_frames_are_taken(ws: Workspace) -> None:
    X, y = binary_frame()
    model = LogisticRegression(max_iter=500).fit(pl.from_pandas(X), pl.from_pandas(y))
    run = only_run()
    assert run.metrics["training_accuracy"] == pytest.approx(
        skm.accuracy_score(y, model.predict(pl.from_pandas(X)))
    )
    version = ws.registry.register(run.id, "pl")
    assert version.signature.input_names == ["amount", "age", "score"]
    assert version.signature.target == "is_fraud"
    rows = X.head(5).to_dict(orient="records")
    assert ws.predict("pl", rows).predictions == model.predict(X.head(5)).tolist()


def test_string_labels(ws: Workspace) -> None:
    X, y = binary_frame()
    labels = y.map({0: "ok", 1: "fraud"})
    model = LogisticRegression().fit(X, labels)
    run = only_run()
    proba = model.predict_proba(X)
    positive = (labels == model.classes_[1]).to_numpy()
    assert run.metrics["training_roc_auc"] == pytest.approx(
        skm.roc_auc_score(positive, proba[:, 1])
    )
    version = ws.registry.register(run.id, "labels")
    assert version.signature.classes == ["fraud", "ok"]
    assert version.signature.target_type == "string"
    rows = X.head(4).to_dict(orient="records")
    assert ws.predict("labels", rows).predictions == model.predict(X.head(4)).tolist()


def test_a_text_pipeline_fitted_on_a_list_serves_one_string_column(ws: Workspace) -> None:
    from sklearn.feature_extraction.text import CountVectorizer

    texts = ["good movie", "bad movie", "great film", "awful film", "good fun", "bad acting"] * 5
    labels = [1, 0, 1, 0, 1, 0] * 5
    pipe = Pipeline([("bag", CountVectorizer()), ("clf", LogisticRegression())]).fit(texts, labels)
    run = only_run()
    version = ws.registry.register(run.id, "text")
    assert [(c.name, c.type) for c in version.signature.inputs] == [("f0", "string")]
    rows = [{"f0": "good film"}, {"f0": "bad movie"}]
    assert ws.predict("text", rows).predictions == pipe.predict(["good film", "bad movie"]).tolist()


# -- validation metrics from score() ------------------------------------------------------------


def test_score_on_other_data_logs_validation_metrics(ws: Workspace) -> None:
    X, y = binary_frame(300)
    X_train, y_train, X_test, y_test = X[:200], y[:200], X[200:], y[200:]
    model = LogisticRegression().fit(X_train, y_train)
    before = only_run()

    score = model.score(X_test, y_test)
    assert score == skm.accuracy_score(y_test, model.predict(X_test))  # unchanged
    run = only_run()
    proba = model.predict_proba(X_test)
    expected = weighted(y_test, model.predict(X_test))
    expected["log_loss"] = skm.log_loss(y_test, proba)
    expected["roc_auc"] = skm.roc_auc_score(y_test, proba[:, 1])
    expected["score"] = score
    for name, value in expected.items():
        assert run.metrics[f"val_{name}"] == pytest.approx(value), name
    # the ended run was written to, not resumed: same status, same end
    assert run.status == "FINISHED"
    assert run.end_time == before.end_time
    validation = [i for i in run.inputs if i.context == "validation"]
    assert [i.name for i in validation] == ["val"]

    # a second data set gets the next prefix; the same one again keeps its own
    model.score(X[:100], y[:100].to_numpy())  # rows of the training data, but not all of it
    model.score(X_test, y_test)
    run = only_run()
    assert "val2_accuracy" in run.metrics
    assert not any(k.startswith("val3_") for k in run.metrics)
    assert len(ws.tracking.metric_history(run.id, "val_accuracy")) == 2


def test_score_on_the_training_data_logs_nothing_new(ws: Workspace) -> None:
    X, y = binary_frame()
    model = LogisticRegression().fit(X, y)
    before = only_run().metrics
    model.score(X, y)
    assert only_run().metrics == before


def test_score_of_an_estimator_fitted_before_autolog_logs_nothing(ws: Workspace) -> None:
    X, y = binary_frame()
    mloop.autolog(disable=True)
    model = LogisticRegression().fit(X, y)
    mloop.autolog()
    model.score(X[:50], y[:50])
    assert all_runs() == []


def test_a_regressor_score_logs_regression_metrics(ws: Workspace) -> None:
    X, y = regression_frame(300)
    model = Ridge().fit(X[:200], y[:200])
    r2 = model.score(X[200:], y[200:])
    run = only_run()
    assert run.metrics["val_r2"] == pytest.approx(r2)
    assert run.metrics["val_score"] == pytest.approx(r2)
    assert run.metrics["val_mse"] == pytest.approx(
        skm.mean_squared_error(y[200:], model.predict(X[200:]))
    )


# -- meta-estimators log once ------------------------------------------------------------------


def test_a_pipeline_logs_one_run(ws: Workspace) -> None:
    X, y = binary_frame()
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.7))])
    pipe.fit(X, y)
    run = only_run()
    assert run.tags["mloop.autolog.estimator"] == "sklearn.pipeline.Pipeline"
    assert run.params["clf__C"] == "0.7"
    assert run.params["scale"] == "StandardScaler"
    assert run.params["steps"] == "[('scale', StandardScaler), ('clf', LogisticRegression)]"
    assert run.metrics["training_accuracy"] == pytest.approx(skm.accuracy_score(y, pipe.predict(X)))
    ws.registry.register(run.id, "pipe")
    rows = X.head(5).to_dict(orient="records")
    assert ws.predict("pipe", rows).predictions == pipe.predict(X.head(5)).tolist()

    pipe.score(X.tail(50) * 1.01, y.tail(50))  # the pipeline's score, not its last step's
    assert "val_accuracy" in only_run().metrics


def test_a_grid_search_logs_one_run_with_a_child_per_candidate(ws: Workspace) -> None:
    X, y = binary_frame()
    search = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0, 100.0]}, cv=3)
    search.fit(X, y)

    runs = all_runs()
    parents = [r for r in runs if r.parent_run_id is None]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.parent_run_id == parent.id]
    assert len(children) == 3 == len(runs) - 1
    assert sorted(c.params["C"] for c in children) == ["0.01", "1.0", "100.0"]
    for child in children:
        assert child.status == "FINISHED"
        assert child.tags["mlflow.parentRunId"] == parent.id
        assert child.tags["mloop.autolog.estimator"] == "sklearn.linear_model.LogisticRegression"
        index = int(child.tags["mloop.autolog.candidate"])
        assert child.metrics["mean_test_score"] == pytest.approx(
            search.cv_results_["mean_test_score"][index]
        )
        assert "split2_test_score" in child.metrics

    assert parent.tags["mloop.autolog.estimator"] == "sklearn.model_selection.GridSearchCV"
    assert parent.params["estimator"] == "LogisticRegression"
    assert parent.params["param_grid"] == "{'C': [0.01, 1.0, 100.0]}"
    assert parent.params["best_C"] == str(search.best_params_["C"])
    assert parent.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert parent.metrics["training_accuracy"] == pytest.approx(
        skm.accuracy_score(y, search.predict(X))
    )
    assert "cv_results.csv" in artifact_paths(parent.id)
    ws.registry.register(parent.id, "searched")
    rows = X.head(5).to_dict(orient="records")
    assert ws.predict("searched", rows).predictions == search.predict(X.head(5)).tolist()


def test_work_handed_to_threads_is_part_of_the_fit(ws: Workspace) -> None:
    import joblib
    from sklearn.ensemble import IsolationForest

    X, y = binary_frame()
    IsolationForest(n_estimators=8, n_jobs=2, random_state=0).fit(X)  # trees fit on threads
    with joblib.parallel_backend("threading"):
        GridSearchCV(LogisticRegression(), {"C": [1.0, 2.0]}, cv=2, n_jobs=2).fit(X, y)
    names = sorted(r.name for r in all_runs() if r.parent_run_id is None)
    assert names == ["GridSearchCV", "IsolationForest"]


def test_preprocessing_alone_is_not_logged(ws: Workspace) -> None:
    X, y = binary_frame()
    StandardScaler().fit(X)
    skm.f1_score(y, y)  # fits a LabelEncoder inside scikit-learn
    assert all_runs() == []


def test_a_search_without_refit_logs_its_candidates_and_no_model(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = binary_frame()
    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2, refit=False)
    with caplog.at_level(logging.WARNING, logger="mloop.autolog"):
        search.fit(X, y)
    assert not caplog.records
    parent = next(r for r in all_runs() if r.parent_run_id is None)
    assert parent.params["best_C"] in ("0.1", "1.0")
    assert not any(p.startswith("model/") for p in artifact_paths(parent.id))
    assert len(all_runs()) == 3


# -- the active run ----------------------------------------------------------------------------


def test_a_fit_inside_an_active_run_logs_into_it(ws: Workspace) -> None:
    X, y = binary_frame()
    with mloop.start_run(run_name="mine") as active:
        mloop.log_param("note", "by hand")
        model = LogisticRegression().fit(X, y)
        assert mloop.active_run() is active  # still the user's, still running
        model.score(X[:40] + 1, y[:40])
    run = only_run()
    assert run.id == active.run_id
    assert run.name == "mine"
    assert run.status == "FINISHED"
    assert run.params["note"] == "by hand"
    assert run.params["C"] == "1.0"
    assert "training_accuracy" in run.metrics
    assert "val_accuracy" in run.metrics
    assert f"model/{META_FILE}" in artifact_paths(run.id)


def test_a_second_fit_in_the_same_run_keeps_the_first_params(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = binary_frame()
    with caplog.at_level(logging.WARNING, logger="mloop.autolog"), mloop.start_run():
        LogisticRegression(C=1.0).fit(X, y)
        LogisticRegression(C=5.0, tol=0.01).fit(X, y)
    run = only_run()
    assert run.params["C"] == "1.0"
    assert "already has other values for params C, tol" in caplog.text


# -- data --------------------------------------------------------------------------------------


def test_the_training_data_is_recorded_by_its_content_hash(ws: Workspace) -> None:
    from mloop.data import content_hash, to_arrow

    X, y = binary_frame()
    LogisticRegression().fit(X, y)
    run = only_run()
    (item,) = run.inputs
    assert item.context == "training"
    assert item.source_type == "frame"
    assert item.digest == content_hash(to_arrow(X.assign(is_fraud=y)))
    assert json.loads(item.profile or "{}") == {"rows": 200}


def test_training_on_a_dataset_version_links_to_it(ws: Workspace) -> None:
    X, y = binary_frame()
    version = ws.datasets.ingest(X.assign(is_fraud=y), name="fraud-data")
    table = ws.datasets.load(version).to_pandas()
    LogisticRegression().fit(table.drop(columns="is_fraud"), table["is_fraud"])
    run = only_run()
    (item,) = run.inputs
    assert item.source_type == "mloop"
    assert item.source == version.id
    assert item.name == "fraud-data@1"
    assert run.tags["mloop.autolog.dataset"] == "fraud-data@1"
    edges = ws.lineage.downstream("dataset_version", version.id)
    assert any(e.dst.type == "run" and e.dst.id == run.id for e in edges)


def test_x_alone_matches_a_dataset_version_of_the_features(ws: Workspace) -> None:
    X, y = binary_frame()
    version = ws.datasets.ingest(X[["score", "amount", "age"]], name="features")
    LogisticRegression().fit(X, y)  # other column order, same content
    assert only_run().inputs[0].source == version.id


def test_options_leave_out_models_and_datasets(ws: Workspace) -> None:
    X, y = binary_frame()
    mloop.autolog(log_models=False, log_datasets=False)
    model = LogisticRegression().fit(X, y)
    model.score(X[:30] * 2, y[:30])
    run = only_run()
    assert not any(p.startswith("model/") for p in artifact_paths(run.id))
    assert run.inputs == []
    assert "training_accuracy" in run.metrics
    assert "val_accuracy" in run.metrics


# -- params ------------------------------------------------------------------------------------


def double(values: Any) -> Any:
    return values * 2


def test_params_are_plain_text_within_the_limit(ws: Workspace) -> None:
    X, y = binary_frame()
    pipe = Pipeline(
        [
            ("f", FunctionTransformer(double, kw_args=None, inv_kw_args={"x": "a" * 10_000})),
            ("clf", LogisticRegression()),
        ]
    )
    pipe.fit(X, y)
    params = only_run().params
    assert len(params["f__inv_kw_args"]) == 6000
    assert params["f__func"] == f"{__name__}.double"
    assert params["f"] == "FunctionTransformer"


# -- autologging never breaks the user's code --------------------------------------------------


class ParamsFail(LogisticRegression):
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        if deep:
            raise RuntimeError("no params today")
        return super().get_params(deep=False)


def test_a_failing_get_params_never_breaks_fit(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = binary_frame()
    with caplog.at_level(logging.WARNING, logger="mloop.autolog"):
        model = ParamsFail().fit(X, y)
    assert isinstance(model, ParamsFail)
    assert model.predict(X[:3]).shape == (3,)
    assert "could not log params: RuntimeError: no params today" in caplog.text
    run = only_run()
    assert run.status == "FINISHED"
    assert "training_accuracy" in run.metrics  # the other steps still ran


def test_a_failing_step_never_breaks_fit(
    ws: Workspace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(session, "write_sklearn_package", broken)
    monkeypatch.setattr(session, "metric_family", broken)
    X, y = binary_frame()
    with caplog.at_level(logging.WARNING, logger="mloop.autolog"):
        model = LogisticRegression().fit(X, y)
        assert model.score(X[:20] * 3, y[:20]) == skm.accuracy_score(
            y[:20], model.predict(X[:20] * 3)
        )
    assert "could not log the model: OSError: disk full" in caplog.text
    assert "could not log training metrics" in caplog.text
    assert "could not log validation metrics" in caplog.text
    run = only_run()
    assert run.status == "FINISHED"
    assert run.params["C"] == "1.0"


def test_a_run_that_cannot_start_leaves_fit_alone(
    ws: Workspace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> Any:
        raise mloop.Conflict("no runs today")

    monkeypatch.setattr(fluent, "start_run", refuse)
    X, y = binary_frame()
    with caplog.at_level(logging.WARNING, logger="mloop.autolog"):
        model = LogisticRegression().fit(X, y)
    assert hasattr(model, "coef_")
    assert "not logging this fit: Conflict: no runs today" in caplog.text
    monkeypatch.undo()
    assert all_runs() == []


def test_a_fit_that_raises_ends_its_run_failed(ws: Workspace) -> None:
    X, y = binary_frame()
    X.loc[3, "amount"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LogisticRegression().fit(X, y)
    run = only_run()
    assert run.status == "FAILED"
    assert run.tags["mloop.error"].startswith("ValueError")
    assert mloop.active_run() is None


def test_silent_says_nothing(ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    mloop.autolog(silent=True)
    X, y = binary_frame()
    with caplog.at_level(logging.WARNING, logger="mloop.autolog"):
        ParamsFail().fit(X, y)
    assert not caplog.records
    assert "training_accuracy" in only_run().metrics


def test_unhashable_or_odd_inputs_still_fit(ws: Workspace) -> None:
    from scipy import sparse

    X, y = binary_frame()
    model = LogisticRegression().fit(sparse.csr_matrix(X.to_numpy()), y)
    run = only_run()
    assert "training_accuracy" in run.metrics
    assert run.inputs == []  # a sparse matrix has no table form here
    assert not any(p.startswith("model/") for p in artifact_paths(run.id))
    assert model.score(sparse.csr_matrix(X.to_numpy()[:10]), y[:10]) >= 0


# -- patching ----------------------------------------------------------------------------------


def test_disable_puts_the_original_methods_back(tmp_path: Any) -> None:
    import inspect

    from autologging.support import reset_fluent

    originals = {
        "fit": LogisticRegression.__dict__["fit"],
        "score": Pipeline.__dict__["score"],
        "search": GridSearchCV.__mro__[1].__dict__["fit"],
    }
    signature = inspect.signature(LogisticRegression.fit)
    mloop.init(tmp_path / "ws")
    try:
        mloop.autolog()
        assert LogisticRegression.__dict__["fit"] is not originals["fit"]
        assert getattr(LogisticRegression.fit, "__mloop_autolog__", False)
        assert inspect.signature(LogisticRegression.fit) == signature
        # available_if keeps its condition: a pipeline of transformers has no score
        assert not hasattr(Pipeline([("s", StandardScaler())]), "score")
        assert hasattr(Pipeline([("c", LogisticRegression())]), "score")
        assert mloop.autologging.is_enabled()
    finally:
        mloop.autolog(disable=True)
    assert LogisticRegression.__dict__["fit"] is originals["fit"]
    assert Pipeline.__dict__["score"] is originals["score"]
    assert GridSearchCV.__mro__[1].__dict__["fit"] is originals["search"]
    assert not mloop.autologging.is_enabled()
    try:
        X, y = binary_frame()
        LogisticRegression().fit(X, y)
        assert all_runs() == []
    finally:
        reset_fluent()


def test_mloop_autolog_is_the_function() -> None:
    import mloop.autologging

    assert callable(mloop.autolog)
    assert mloop.autolog is mloop.autologging.autolog
