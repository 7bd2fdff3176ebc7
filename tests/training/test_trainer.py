"""Training through the SDK: what a run records, and bad input refused before any compute."""

from __future__ import annotations

import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import sklearn
from sklearn import metrics as skm
from sklearn.model_selection import train_test_split

from mloop import InvalidInput, MloopError, NotFound
from mloop.demo.data import FEATURES as DEMO_FEATURES
from mloop.demo.data import transactions
from mloop.models import frame_from_table
from mloop.training import REFERENCE_PREDICTIONS
from mloop.workspace import Workspace

HGB = "sklearn.ensemble.HistGradientBoostingClassifier"
LOGREG = "sklearn.linear_model.LogisticRegression"
RIDGE = "sklearn.linear_model.Ridge"
FEATURES = list(DEMO_FEATURES)


@pytest.fixture
def tx(ws: Workspace) -> Workspace:
    ws.datasets.ingest(transactions(2000, seed=7), name="tx")
    return ws


def _split(ws: Workspace, ref: str, target: str, signature: Any, stratify: bool) -> Any:
    """The hold-out split the trainer made, rebuilt from the same rows and seed."""
    table = ws.datasets.load(ref)
    X = frame_from_table(table, signature)
    y = table.column(target).to_numpy(zero_copy_only=False)
    return train_test_split(X, y, test_size=0.2, random_state=42, stratify=y if stratify else None)


def test_a_classifier_run_records_everything(tx: Workspace) -> None:
    ws = tx
    result = ws.training.train(
        "tx",
        "is_fraud",
        model=HGB,
        params={"max_iter": 20},
        exclude=["transaction_id"],
        experiment="fraud",
        run_name="hgb-50",
    )
    run = ws.tracking.get_run(result.run.id)
    assert run == result.run
    assert (run.status, run.experiment, run.name) == ("FINISHED", "fraud", "hgb-50")
    assert run.end_time is not None
    assert run.start_time <= run.end_time
    assert result.model_version is None
    assert result.alias is None

    # params: the estimator, the user's params, everything else needed to repeat the run
    assert run.params["estimator"] == HGB
    assert run.params["model.max_iter"] == "20"
    assert run.params["model.learning_rate"] == "0.1"  # the estimator's defaults, as fitted
    assert run.params["dataset"] == "tx@1"
    assert run.params["target"] == "is_fraud"
    assert run.params["n_features"] == str(len(FEATURES))
    assert (run.params["train_rows"], run.params["test_rows"]) == ("1600", "400")
    assert run.params["stratified"] == "True"

    # tags: dataset, estimator, python and package versions; no git outside a checkout
    assert run.tags["mloop.dataset"] == "tx@1"
    assert run.tags["mloop.estimator"] == HGB
    assert run.tags["mloop.task"] == "classification"
    assert run.tags["mloop.python"] == platform.python_version()
    assert run.tags["mloop.package.scikit-learn"] == sklearn.__version__
    assert run.tags["mloop.package.numpy"] == np.__version__
    assert "mloop.git.commit" not in run.tags

    # the model and the reference predictions are artifacts of the run
    paths = {a.path for a in run.artifacts}
    assert {"model/model.joblib", "model/mloop-model.json", REFERENCE_PREDICTIONS} <= paths

    # lineage: the run was trained on the dataset version
    version = ws.datasets.get("tx@1")
    edges = ws.lineage.upstream("run", run.id)
    assert ("dataset_version", version.id, "trained_on") in [
        (e.src.type, e.src.id, e.relation) for e in edges
    ]


def test_classification_metrics_equal_sklearn_on_the_same_split(tx: Workspace) -> None:
    ws = tx
    result = ws.training.train(
        "tx",
        "is_fraud",
        model=LOGREG,
        params={"C": 0.5},
        exclude=["transaction_id"],
        register="fraud",
    )
    assert result.model_version is not None
    model = ws.registry.load(result.model_version)
    assert model.signature.input_names == FEATURES  # transaction_id excluded, target not a feature
    _, X_test, _, y_test = _split(ws, "tx@1", "is_fraud", model.signature, stratify=True)
    pipeline = model.estimator
    predicted = pipeline.predict(X_test)
    score = pipeline.predict_proba(X_test)[:, 1]

    expected = {
        "accuracy": skm.accuracy_score(y_test, predicted),
        "precision": skm.precision_score(y_test, predicted, zero_division=0),
        "recall": skm.recall_score(y_test, predicted, zero_division=0),
        "f1": skm.f1_score(y_test, predicted, zero_division=0),
        "roc_auc": skm.roc_auc_score(y_test, score),
    }
    run = ws.tracking.get_run(result.run.id)
    for key, value in expected.items():
        assert run.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
        assert result.metrics[key] == run.metrics[key]
    assert 0.5 < run.metrics["roc_auc"] <= 1.0  # the model learned something
    assert run.metrics["fit_seconds"] > 0


def test_regression_metrics_equal_sklearn_on_the_same_split(tx: Workspace) -> None:
    ws = tx
    result = ws.training.train(
        "tx",
        "amount",
        model=RIDGE,
        params={"alpha": 0.5},
        exclude=["transaction_id", "is_fraud"],
        register="amount",
    )
    assert result.model_version is not None
    run = ws.tracking.get_run(result.run.id)
    assert run.tags["mloop.task"] == "regression"
    assert run.params["model.alpha"] == "0.5"
    assert run.params["stratified"] == "False"
    assert not {"accuracy", "roc_auc"} & set(run.metrics)

    model = ws.registry.load(result.model_version)
    _, X_test, _, y_test = _split(ws, "tx@1", "amount", model.signature, stratify=False)
    predicted = model.estimator.predict(X_test)
    expected = {
        "rmse": math.sqrt(skm.mean_squared_error(y_test, predicted)),
        "mae": skm.mean_absolute_error(y_test, predicted),
        "r2": skm.r2_score(y_test, predicted),
    }
    for key, value in expected.items():
        assert run.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_rows_with_a_null_target_are_dropped_and_counted(ws: Workspace) -> None:
    frame = transactions(600, seed=3).with_columns(
        pl.when(pl.col("transaction_id") % 10 == 0)
        .then(None)
        .otherwise(pl.col("is_fraud"))
        .alias("is_fraud")
    )
    ws.datasets.ingest(frame, name="holes")
    result = ws.training.train(
        "holes",
        "is_fraud",
        model=LOGREG,
        exclude=["transaction_id"],
    )
    params = result.run.params
    assert params["rows_dropped_null_target"] == "60"
    assert int(params["train_rows"]) + int(params["test_rows"]) == 540


def test_features_selects_columns(tx: Workspace) -> None:
    result = tx.training.train(
        "tx",
        "is_fraud",
        model=LOGREG,
        features=["amount", "merchant_category", "is_fraud"],
        register="two",
    )
    assert result.model_version is not None
    assert result.model_version.signature.input_names == ["amount", "merchant_category"]


def test_preprocessing_travels_with_the_model(tx: Workspace) -> None:
    ws = tx
    ws.training.train(
        "tx",
        "is_fraud",
        model=HGB,
        params={"max_iter": 20},
        exclude=["transaction_id"],
        register="fraud",
    )
    row = transactions(1, seed=99).drop("transaction_id", "is_fraud").to_dicts()[0]
    rows = [
        row,
        {**row, "merchant_category": "space_tourism", "country": "ZZ"},  # unseen categories
        dict.fromkeys(FEATURES),  # nothing known at all
    ]
    result = ws.predict("fraud", rows)
    assert len(result.predictions) == 3
    assert set(result.predictions) <= {0, 1}
    assert result.probabilities is not None
    for probs in result.probabilities:
        assert set(probs) == {"0", "1"}
        assert sum(probs.values()) == pytest.approx(1.0)
    assert (result.model, result.version) == ("fraud", 1)


def test_register_makes_version_one_champion_and_later_ones_plain(tx: Workspace) -> None:
    ws = tx
    lr = LOGREG
    first = ws.training.train(
        "tx", "is_fraud", model=lr, exclude=["transaction_id"], register="fraud"
    )
    second = ws.training.train(
        "tx", "is_fraud", model=lr, exclude=["transaction_id"], register="fraud", params={"C": 0.5}
    )
    third = ws.training.train(
        "tx",
        "is_fraud",
        model=lr,
        exclude=["transaction_id"],
        register="fraud",
        alias="challenger",
        params={"C": 0.25},
    )
    assert first.model_version is not None
    assert second.model_version is not None
    assert third.model_version is not None
    assert (first.model_version.version, first.alias) == (1, "champion")
    assert first.model_version.aliases == ["champion"]
    assert (second.model_version.version, second.alias, second.model_version.aliases) == (
        2,
        None,
        [],
    )
    assert (third.model_version.version, third.alias) == (3, "challenger")
    assert ws.registry.get_model("fraud").aliases == {"champion": 1, "challenger": 3}
    assert first.model_version.run_id == first.run.id
    assert ws.registry.resolve("fraud").run_id == first.run.id


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_run_inside_a_git_checkout_records_the_commit(
    tx: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('train')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)

    lr = LOGREG
    clean = tx.training.train("tx", "is_fraud", model=lr, exclude=["transaction_id"])
    assert clean.run.tags["mloop.git.commit"] == head
    assert clean.run.tags["mloop.git.dirty"] == "false"

    (repo / "train.py").write_text("print('changed')\n")
    dirty = tx.training.train("tx", "is_fraud", model=lr, exclude=["transaction_id"])
    assert dirty.run.tags["mloop.git.commit"] == head
    assert dirty.run.tags["mloop.git.dirty"] == "true"


# -- bad input: refused before any run starts, nothing half-written -----------------------


SMALL_DATASETS: dict[str, pl.DataFrame] = {
    "tiny": pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 0, 1, 1]}),
    "three": pl.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}),
    "one-class": pl.DataFrame({"x": [float(i) for i in range(20)], "y": [1] * 20}),
    "no-target": pl.DataFrame(
        {"x": [float(i) for i in range(20)], "y": [None] * 20},
        schema={"x": pl.Float64, "y": pl.Int64},
    ),
    "constant": pl.DataFrame({"x": [float(i) for i in range(20)], "y": [2.5] * 20}),
}


BAD_INPUT: list[tuple[str, dict[str, Any], type[MloopError], str]] = [
    ("nope", {"target": "is_fraud"}, NotFound, "dataset 'nope' does not exist"),
    ("tx@9", {"target": "is_fraud"}, NotFound, "no version 9 (latest is 1)"),
    ("tx", {"target": "fraud"}, InvalidInput, "its columns: transaction_id, amount"),
    ("tx", {"target": "is_fraud", "exclude": ["nope"]}, InvalidInput, "column 'nope'"),
    ("tx", {"target": "is_fraud", "features": ["nope"]}, InvalidInput, "column 'nope'"),
    (
        "tx",
        {"target": "is_fraud", "model": "sklearn.ensemble.NoSuchForest"},
        InvalidInput,
        "unknown estimator 'sklearn.ensemble.NoSuchForest'",
    ),
    ("tx", {"target": "is_fraud", "model": "nomodule.Thing"}, InvalidInput, "unknown estimator"),
    ("tx", {"target": "is_fraud", "model": "RandomForest"}, InvalidInput, "dotted path"),
    (
        "tx",
        {"target": "is_fraud", "model": "sklearn.preprocessing.StandardScaler"},
        InvalidInput,
        "not an estimator class",
    ),
    (
        "tx",
        {"target": "is_fraud", "model": "sklearn.decomposition.PCA"},
        InvalidInput,
        "not an estimator class",
    ),
    (
        "tx",
        {"target": "is_fraud", "model": "sklearn.cluster.KMeans"},
        InvalidInput,
        "neither a classifier nor a regressor",
    ),
    ("tx", {"target": "is_fraud", "model": HGB, "params": {"max_itr": 5}}, InvalidInput, "max_itr"),
    (
        "tx",
        {"target": "is_fraud", "model": HGB, "params": {"max_iter": -1}},
        InvalidInput,
        "'max_iter' parameter",
    ),
    (
        "tx",
        {"target": "is_fraud", "model": HGB, "params": {"loss": "hinge"}},
        InvalidInput,
        "'loss' parameter",
    ),
    ("one-class", {"target": "y"}, InvalidInput, "one class only"),
    ("no-target", {"target": "y"}, InvalidInput, "has no values"),
    ("constant", {"target": "y", "model": RIDGE}, InvalidInput, "constant"),
    (
        "tx",
        {"target": "merchant_category", "model": RIDGE},
        InvalidInput,
        "is string; a regressor needs numbers",
    ),
    ("tx", {"target": "amount", "model": HGB}, InvalidInput, "looks continuous"),
    ("tiny", {"target": "y"}, InvalidInput, "4 usable rows: too few"),
    ("three", {"target": "y", "test_size": 0.4}, InvalidInput, "3 usable rows: too few"),
    ("tx", {"target": "is_fraud", "test_size": 1.5}, InvalidInput, "test_size"),
    ("tx", {"target": "is_fraud", "register": "bad name!"}, InvalidInput, "model name"),
    ("tx", {"target": "is_fraud", "register": "ok", "alias": "latest"}, InvalidInput, "reserved"),
    ("tx", {"target": "is_fraud", "register": "ok", "alias": "v2"}, InvalidInput, "reserved"),
]


def test_bad_input_is_refused_before_any_run(ws: Workspace) -> None:
    """Each case raises the right error with a clear message, and no run or model appears."""
    ws.datasets.ingest(transactions(200, seed=5), name="tx")
    for name, frame in SMALL_DATASETS.items():
        ws.datasets.ingest(frame, name=name)
    wrong: list[str] = []
    for dataset, kwargs, error, message in BAD_INPUT:
        call = {"exclude": ["transaction_id"], **kwargs} if dataset == "tx" else dict(kwargs)
        target = call.pop("target")
        try:
            ws.training.train(dataset, target, **call)
        except MloopError as exc:
            if type(exc) is not error or message not in exc.message:
                wrong.append(f"{dataset} {kwargs}: {type(exc).__name__}: {exc.message}")
        else:
            wrong.append(f"{dataset} {kwargs}: no error")
        if ws.tracking.list_runs() or ws.registry.list_models():
            wrong.append(f"{dataset} {kwargs}: left a run or a model behind")
            break
    assert wrong == []


def test_a_failure_during_fit_leaves_a_failed_run_and_no_model(tx: Workspace) -> None:
    # every check passes; the estimator itself refuses the scaled (negative) features in fit
    ws = tx
    with pytest.raises(InvalidInput, match="training failed: Negative values"):
        ws.training.train(
            "tx",
            "is_fraud",
            model="sklearn.naive_bayes.MultinomialNB",
            exclude=["transaction_id"],
            register="m",
        )
    (run,) = ws.tracking.list_runs()
    assert run.status == "FAILED"
    assert run.end_time is not None
    assert run.tags["mloop.error"].startswith("ValueError: Negative values")
    assert "model/model.joblib" not in {a.path for a in run.artifacts}
    assert ws.registry.list_models() == []
