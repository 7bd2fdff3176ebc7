"""``mloop predict batch``, as a user types it."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli
from mloop.demo.data import transactions
from mloop.workspace import Workspace


@pytest.fixture
def cli(sqlite_ws: Workspace) -> Workspace:
    ws = sqlite_ws
    ws.datasets.ingest(transactions(300, seed=21), name="tx")
    ws.training.train(
        "tx",
        "is_fraud",
        model="sklearn.linear_model.LogisticRegression",
        exclude=["transaction_id"],
        register="fraud",
        plots=False,
    )
    ws.datasets.ingest(transactions(120, seed=5, labelled=False), name="new")
    ws.deployments.create("d", {"variants": [{"name": "primary", "model": "fraud@1"}]})
    return ws


def flat(text: str) -> str:
    return " ".join(text.split())


def test_predict_batch_writes_a_version(cli: Workspace) -> None:
    code, out, err = run_cli(
        cli, "predict", "batch", "--deployment", "d", "--input", "new", "--output", "scored"
    )
    assert (code, err) == (0, "")
    assert "120 rows in" in flat(out)
    assert "rows/s" in out
    assert "fraud@1 (native, in this process) → scored@1" in flat(out)
    table = cli.datasets.load("scored")
    assert table.column_names == ["transaction_id", "prediction", "proba_0", "proba_1"]

    code, out, _ = run_cli(
        cli, "predict", "batch", "-d", "d", "-i", "new@1", "-o", "scored", "--chunk-rows", "50"
    )
    assert code == 0
    assert "scored@" in out

    code, out, _ = run_cli(
        cli,
        "predict",
        "batch",
        "-d",
        "d",
        "-i",
        "new",
        "-o",
        "some",
        "--keep",
        "amount",
        "--keep",
        "transaction_id",
        "--json",
    )
    assert code == 0
    body = json.loads(out)
    assert (body["model"], body["rows"], body["output"]["dataset"]) == ("fraud@1", 120, "some")
    assert cli.datasets.load("some").column_names[:2] == ["amount", "transaction_id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-d", "nope", "-i", "new", "-o", "out"], "error: no deployment named 'nope'"),
        (["-d", "d", "-i", "missing", "-o", "out"], "error: dataset 'missing' does not exist"),
        (["-d", "d", "-i", "tx", "-o", "out", "--keep", "nope"], "has no column 'nope'"),
        (["-d", "d", "-i", "new", "-o", "out", "--workers", "0"], "--workers is at least 1"),
        (["-d", "d", "-i", "new", "-o", "out", "--chunk-rows", "0"], "--chunk-rows is at least"),
        (["-d", "d", "-i", "new", "-o", "out", "--variant", "x"], "no variant 'x'"),
    ],
)
def test_bad_input_is_one_red_line(cli: Workspace, args: list[str], message: str) -> None:
    code, out, err = run_cli(cli, "predict", "batch", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert "out" not in {d.name for d in cli.datasets.list()}


def test_an_input_without_the_model_columns(cli: Workspace) -> None:
    cli.datasets.ingest(transactions(20, seed=3, labelled=False).drop("hour"), name="short")
    code, _, err = run_cli(cli, "predict", "batch", "-d", "d", "-i", "short", "-o", "out")
    assert code == 2
    assert "error: short@1 has no column 'hour', which fraud@1 takes" in err
