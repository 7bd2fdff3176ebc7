"""mloop train: the CLI face of training, on both metadata backends."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from helpers import run_cli
from mloop.cli import app
from mloop.demo.data import transactions
from mloop.workspace import Workspace

HGB = "sklearn.ensemble.HistGradientBoostingClassifier"


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The CLI opens the same workspace (folder and database) as ``ws``."""
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    ws.datasets.ingest(transactions(1000, seed=51), name="tx")
    return ws


def test_train_tracks_and_registers(cli: Workspace) -> None:
    code, out, err = run_cli(
        cli,
        "train",
        "--dataset",
        "tx@1",
        "--target",
        "is_fraud",
        "--model",
        HGB,
        "--param",
        "max_iter=50",
        "--param",
        "learning_rate=0.2",
        "--exclude",
        "transaction_id",
        "--register",
        "fraud",
    )
    assert (code, err) == (0, "")
    (run,) = cli.tracking.list_runs()
    assert f"run {run.id} FINISHED on tx@1" in out
    assert "registered fraud@1 (alias champion)" in out
    assert "roc_auc" in out
    assert run.status == "FINISHED"
    assert run.params["estimator"] == HGB
    assert (run.params["model.max_iter"], run.params["model.learning_rate"]) == ("50", "0.2")
    assert "transaction_id" not in cli.registry.resolve("fraud").signature.input_names
    assert cli.registry.resolve("fraud").run_id == run.id


def test_train_json_output(cli: Workspace) -> None:
    code, out, _ = run_cli(
        cli,
        "train",
        "-d",
        "tx",
        "-t",
        "is_fraud",
        "-m",
        "sklearn.linear_model.LogisticRegression",
        "-x",
        "transaction_id",
        "--experiment",
        "cli",
        "--run-name",
        "lr",
        "--json",
    )
    assert code == 0
    body = json.loads(out)
    assert body["run"]["status"] == "FINISHED"
    assert (body["run"]["experiment"], body["run"]["name"]) == ("cli", "lr")
    assert body["model_version"] is None
    assert body["metrics"]["roc_auc"] == cli.tracking.get_run(body["run"]["id"]).metrics["roc_auc"]


def test_train_a_regressor(cli: Workspace) -> None:
    code, out, _ = run_cli(
        cli,
        "train",
        "-d",
        "tx",
        "-t",
        "amount",
        "-m",
        "sklearn.linear_model.Ridge",
        "-p",
        "alpha=2.0",
        "-x",
        "transaction_id",
        "-x",
        "is_fraud",
        "--json",
    )
    assert code == 0
    metrics = json.loads(out)["metrics"]
    assert {"rmse", "mae", "r2"} <= set(metrics)
    assert "accuracy" not in metrics


BAD = [
    (["-d", "nope", "-t", "is_fraud"], "dataset 'nope' does not exist"),
    (["-d", "tx@3", "-t", "is_fraud"], "dataset 'tx' has no version 3 (latest is 1)"),
    (
        ["-d", "tx", "-t", "fraud"],
        "target column 'fraud' is not in dataset tx@1 (its columns: "
        "transaction_id, amount, merchant_category",
    ),
    (
        ["-d", "tx", "-t", "is_fraud", "-m", "sklearn.ensemble.Nope"],
        "unknown estimator 'sklearn.ensemble.Nope'",
    ),
    (["-d", "tx", "-t", "is_fraud", "-m", HGB, "-p", "max_itr=5"], "max_itr"),
    (
        ["-d", "tx", "-t", "is_fraud", "-m", HGB, "-p", "max_iter=-1"],
        "The 'max_iter' parameter of HistGradientBoostingClassifier must be an int",
    ),
    (["-d", "tx", "-t", "is_fraud", "-p", "max_iter"], "--param 'max_iter' is not of the form"),
    (["-d", "one-class", "-t", "y"], "target 'y' has one class only"),
    (
        ["-d", "tx", "-t", "country", "-m", "sklearn.linear_model.Ridge"],
        "target 'country' is string; a regressor needs numbers",
    ),
    (["-d", "tiny", "-t", "y"], "too few to hold out"),
    (["-d", "tx", "-t", "is_fraud", "--register", "no spaces please"], "model name"),
    (["-d", "tx", "-t", "is_fraud", "--register", "m", "--alias", "latest"], "reserved"),
]


def test_bad_input_exits_2_with_one_error_line_and_leaves_nothing(cli: Workspace) -> None:
    cli.datasets.ingest(pl.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), name="tiny")
    cli.datasets.ingest(
        pl.DataFrame({"x": [float(i) for i in range(10)], "y": [1] * 10}), name="one-class"
    )
    for args, message in BAD:
        code, out, err = run_cli(cli, "train", *args)
        assert code == 2, (args, out, err)
        assert err.startswith("error: "), (args, err)
        assert err.count("error:") == 1, (args, err)
        assert message in err, (args, err)
        assert "Traceback" not in out + err
    assert cli.tracking.list_runs() == []
    assert cli.registry.list_models() == []


def test_train_needs_dataset_and_target(cli: Workspace) -> None:
    code, _, err = run_cli(cli, "train", "--dataset", "tx")
    assert code == 2
    assert "--target" in err


def test_the_workspace_option_is_honoured(tmp_path: Path) -> None:
    # a fresh folder becomes a workspace; nothing is written to the working directory
    home = tmp_path / "elsewhere"
    result = CliRunner().invoke(app, ["--workspace", str(home), "runs", "list", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert (home / "mloop.db").exists()
    assert not (tmp_path / ".mloop").exists()


def test_train_cross_validates_with_onnx_and_refuses_bad_validation(cli: Workspace) -> None:
    code, out, err = run_cli(
        cli,
        "train",
        "-d",
        "tx",
        "-t",
        "is_fraud",
        "-m",
        HGB,
        "-p",
        "max_iter=20",
        "-x",
        "transaction_id",
        "--cv",
        "stratified",
        "--folds",
        "3",
        "--onnx",
        "--no-plots",
        "--json",
    )
    assert (code, err) == (0, "")
    metrics = json.loads(out)["metrics"]
    assert "cv_roc_auc_mean" in metrics
    assert metrics["onnx_ok"] == 1.0
    (run,) = cli.tracking.list_runs()
    assert cli.tracking.list_artifacts(run.id, "plots") == []
    code, _, err = run_cli(cli, "train", "-d", "tx", "-t", "is_fraud", "--cv", "group")
    assert code == 2
    assert "needs the group column" in err
    assert len(cli.tracking.list_runs()) == 1  # the refused one started nothing
