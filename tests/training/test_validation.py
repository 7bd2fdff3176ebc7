"""Hold-out and cross-validation (K-fold, stratified, grouped, time series), the plots a run
logs, and the ONNX export a run adds to its package."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from mloop.core.errors import InvalidInput
from mloop.training.splits import Validation, check_validation, folds, holdout
from mloop.workspace import Workspace

PNG = b"\x89PNG\r\n\x1a\n"
LOGISTIC = "sklearn.linear_model.LogisticRegression"


def _table(rows: int = 240, seed: int = 4) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    start = datetime(2024, 1, 1)
    return pa.table(
        {
            "x": x,
            "z": rng.normal(size=rows),
            "store": rng.integers(0, 12, rows),
            "at": [start + timedelta(hours=int(h)) for h in rng.permutation(rows)],
            "amount": 3 * x + rng.normal(scale=0.3, size=rows),
            "label": np.where(x + rng.normal(scale=0.5, size=rows) > 0, "yes", "no"),
        }
    )


def test_kfold_logs_each_fold_and_the_mean(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("d", _table())
    result = ws.training.train(
        "d", "label", model=LOGISTIC, cv="stratified", folds=4, exclude=["at", "store"]
    )
    metrics = result.metrics
    assert 0.5 < metrics["cv_roc_auc_mean"] <= 1
    assert metrics["cv_roc_auc_std"] >= 0
    history = ws.tracking.metric_history(result.run.id, "cv_roc_auc")
    assert sorted(p.step for p in history) == [0, 1, 2, 3]
    assert metrics["cv_roc_auc_mean"] == pytest.approx(np.mean([p.value for p in history]))
    params = ws.tracking.get_run(result.run.id).params
    assert (params["validation"], params["folds"]) == ("stratified", "4")


def test_grouped_cv_keeps_each_group_on_one_side_and_out_of_the_inputs(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("d", _table())
    result = ws.training.train(
        "d",
        "amount",
        model="sklearn.linear_model.Ridge",
        cv="group",
        group_column="store",
        folds=3,
        exclude=["label", "at"],
        register="m",
    )
    assert result.model_version is not None
    signature = result.model_version.require_signature()
    assert "store" not in signature.input_names
    assert result.metrics["cv_rmse_mean"] > 0
    groups = np.repeat(np.arange(6), 10)
    for train, test in folds(
        Validation("group", 3, group_column="g"), groups, seed=1, groups=groups
    ):
        assert not set(groups[train]) & set(groups[test])


def test_time_series_tests_on_later_rows(sqlite_ws: Workspace) -> None:
    order = np.random.default_rng(0).permutation(100).astype(float)
    validation = Validation("timeseries", 4, time_column="at")
    train, test = holdout(
        np.zeros(100), test_size=0.2, seed=0, validation=validation, order=order, stratify=False
    )
    assert len(test) == 20
    assert order[train].max() < order[test].min()  # the hold-out is the latest fifth
    seen = 0
    for fit_rows, test_rows in folds(validation, np.zeros(100), seed=0, order=order):
        assert order[fit_rows].max() < order[test_rows].min()
        seen += 1
    assert seen == 4
    ws = sqlite_ws
    ws.datasets.write_version("d", _table())
    result = ws.training.train(
        "d",
        "label",
        model=LOGISTIC,
        cv="timeseries",
        time_column="at",
        exclude=["store"],
        register="m",
    )
    assert result.model_version is not None
    assert "at" not in result.model_version.require_signature().input_names
    assert "cv_accuracy_mean" in result.metrics


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"cv": "loo"}, "unknown validation 'loo'"),
        ({"cv": "kfold", "folds": 1}, "folds must be between 2"),
        ({"cv": "group"}, "needs the group column"),
        ({"cv": "group", "group_column": "shop"}, "no group column 'shop'"),
        ({"cv": "timeseries"}, "needs the time column"),
        ({"cv": "timeseries", "time_column": "label"}, "must order rows in time"),
        ({"cv": "kfold", "time_column": "at"}, "read only by time-series"),
        (
            {"cv": "stratified", "target": "amount", "model": "sklearn.linear_model.Ridge"},
            "needs classes",
        ),
        (
            {"cv": "group", "group_column": "store", "features": ["x", "store"]},
            "cannot be a feature",
        ),
    ],
)
def test_bad_validation_is_refused_before_any_run(
    sqlite_ws: Workspace, options: dict[str, object], why: str
) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("d", _table())
    target = str(options.pop("target", "label"))
    model = str(options.pop("model", LOGISTIC))
    with pytest.raises(InvalidInput, match=why):
        ws.training.train("d", target, model=model, **options)  # type: ignore[arg-type]
    assert ws.tracking.search_runs().items == []  # nothing started


def test_check_validation_alone() -> None:
    columns = {"at": "datetime", "g": "integer"}
    assert check_validation(
        "group", folds=3, group_column="g", time_column=None, columns=columns
    ).columns == ["g"]
    with pytest.raises(InvalidInput, match="fewer than the 5 folds"):
        list(folds(Validation("group", 5, "g"), np.zeros(6), seed=0, groups=np.arange(6) % 3))


def test_runs_log_plots_as_png(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("d", _table())
    classified = ws.training.train("d", "label", model=LOGISTIC, exclude=["at"])
    names = {a.path for a in ws.tracking.list_artifacts(classified.run.id, "plots")}
    assert names == {
        "plots/roc_curve.png",
        "plots/pr_curve.png",
        "plots/calibration_curve.png",
        "plots/confusion_matrix.png",
    }
    for name in names:
        assert ws.tracking.read_artifact(classified.run.id, name).startswith(PNG)
    regressed = ws.training.train(
        "d", "amount", model="sklearn.linear_model.Ridge", exclude=["at", "label"]
    )
    names = {a.path for a in ws.tracking.list_artifacts(regressed.run.id, "plots")}
    assert names == {"plots/predicted_vs_actual.png", "plots/residuals.png"}
    quiet = ws.training.train("d", "label", model=LOGISTIC, exclude=["at"], plots=False)
    assert ws.tracking.list_artifacts(quiet.run.id, "plots") == []


def test_onnx_export_joins_the_package_verified(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("d", _table())
    result = ws.training.train(
        "d",
        "label",
        model="sklearn.ensemble.HistGradientBoostingClassifier",
        params={"max_iter": 30},
        exclude=["at"],
        onnx=True,
        register="m",
    )
    assert result.model_version is not None
    files = ws.registry.files(result.model_version)
    assert {"model.onnx", "model.quant.onnx"} <= set(files)
    onnx_metrics = {k: v for k, v in result.metrics.items() if k.startswith("onnx")}
    assert onnx_metrics
    assert result.metrics["onnx_ok"] == 1.0
    assert result.metrics["onnx_label_agreement"] == 1.0
