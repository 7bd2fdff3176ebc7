"""``mloop monitor feedback / performance / decay``: labels from a file or a stream, a table
per window and version, JSON for scripts, exit codes for CI, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from helpers import drift_frame
from mloop.api import create_app
from mloop.cli import app
from mloop.workspace import Workspace

MODEL = "scorer"


def mloop(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--workspace", str(home), *args])


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def served(sqlite_ws: Workspace) -> tuple[Workspace, pl.DataFrame]:
    """200 rows served through the app; their request id and true labels, as a frame."""
    ws = sqlite_ws
    ws.datasets.ingest(drift_frame(2000, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL
    )
    frame = drift_frame(200, 5)
    with TestClient(create_app(ws)) as client:
        response = client.post(
            f"/v1/models/{MODEL}/predict", json={"rows": frame.drop("label").to_dicts()}
        )
        assert response.status_code == 200, response.text
    labels = pl.DataFrame(
        {
            "request_id": [response.json()["request_id"]] * 200,
            "row_index": list(range(200)),
            "label": frame["label"].to_list(),
        }
    )
    return ws, labels


def test_feedback_from_a_file_then_performance_and_decay(
    served: tuple[Workspace, pl.DataFrame], tmp_path: Path
) -> None:
    ws, labels = served
    labels.write_csv(tmp_path / "labels.csv")
    recorded = mloop(ws.home, "monitor", "feedback", str(tmp_path / "labels.csv"))
    assert recorded.exit_code == 0, recorded.output
    assert "recorded 200 label(s)" in words(recorded.stdout)

    as_json = mloop(ws.home, "monitor", "performance", "-m", MODEL, "--json")
    assert as_json.exit_code == 0, as_json.output
    (window,) = json.loads(as_json.stdout)
    assert (window["version"], window["predictions"], window["labeled"]) == (1, 200, 200)
    table = mloop(ws.home, "monitor", "performance", "-m", MODEL, "-w", "1d", "--last", "3")
    assert table.exit_code == 0, table.output
    assert f"{window['metrics']['accuracy']:.4g}" in table.stdout
    assert "accuracy" in table.stdout

    ok = mloop(ws.home, "monitor", "decay", "-m", MODEL, "--tolerance", "0.5", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["decayed"] is False

    flipped = labels.with_columns(label=1 - pl.col("label"))
    flipped.write_parquet(tmp_path / "flipped.parquet")
    assert mloop(ws.home, "monitor", "feedback", str(tmp_path / "flipped.parquet")).exit_code == 0
    decayed = mloop(ws.home, "monitor", "decay", "-m", MODEL, "--fail-on-decay")
    assert decayed.exit_code == 1, decayed.output
    assert "DECAYED" in decayed.stdout
    assert mloop(ws.home, "monitor", "decay", "-m", MODEL).exit_code == 0  # without the flag


def test_feedback_from_a_stream(served: tuple[Workspace, pl.DataFrame]) -> None:
    ws, labels = served
    events = [json.dumps(row).encode() for row in labels.head(50).to_dicts()]
    ws.streams.produce("log://labels", events)
    result = mloop(
        ws.home, "monitor", "feedback", "--stream", "log://labels", "--max-events", "50", "--json"
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["events"], stats["accepted"], stats["rejected"]) == (50, 50, 0)
    assert stats["stopped"] == "max_events"


def test_bad_input_is_one_line_and_exit_2(
    served: tuple[Workspace, pl.DataFrame], tmp_path: Path
) -> None:
    ws, labels = served
    labels.with_columns(request_id=pl.lit("ghost")).write_csv(tmp_path / "ghost.csv")
    labels.with_columns(label=pl.lit("cat")).write_csv(tmp_path / "cats.csv")
    for args, message in [
        (["feedback", str(tmp_path / "ghost.csv")], "unknown request id(s) ghost"),
        (["feedback", str(tmp_path / "cats.csv")], "is not a class of scorer@1"),
        (["feedback", str(tmp_path / "none.csv")], "no labels file"),
        (["feedback"], "give a labels FILE or --stream URI"),
        (["performance", "-m", MODEL, "-w", "soon"], "is not a duration"),
        (["performance", "-m", "nobody"], "nobody"),
        (["decay", "-m", MODEL, "--metric", "vibes"], "unknown metric 'vibes'"),
    ]:
        result = mloop(ws.home, "monitor", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in words(result.stderr), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    rows = mloop(ws.home, "monitor", "performance", "-m", MODEL, "--json")
    assert [w["labeled"] for w in json.loads(rows.stdout)] == [0]
