"""Drift per window of the prediction log: summaries folded in incrementally, tumbling and
sliding windows, against the training data or the previous window; bad input refused."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from helpers import drift_frame
from mloop.api import create_app
from mloop.cli import app
from mloop.core.errors import InvalidInput, NotFound
from mloop.storage import tables
from mloop.workspace import Workspace

MODEL = "scorer"
SECOND = timedelta(seconds=1)


def _serve(ws: Workspace, batches: list[tuple[int, bool, int]]) -> None:
    """POST each (seed, shifted, rows) batch, each in a later 1-s window than the one before."""
    with TestClient(create_app(ws)) as client:
        for seed, shifted, rows in batches:
            time.sleep(1.05 - time.time() % 1)  # the start of the next second
            data = drift_frame(rows, seed, shifted=shifted, labelled=False).to_dicts()
            for i in range(0, rows, 500):
                response = client.post(
                    f"/v1/models/{MODEL}/predict", json={"rows": data[i : i + 500]}
                )
                assert response.status_code == 200, response.text
            assert time.time() % 1 < 0.95, "a batch spilled into the next window"


@pytest.fixture
def ws(sqlite_ws: Workspace) -> Workspace:
    sqlite_ws.datasets.ingest(drift_frame(4000, 1), name="ref")
    sqlite_ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL
    )
    return sqlite_ws


def test_each_window_against_the_training_data_and_the_previous_one(ws: Workspace) -> None:
    _serve(ws, [(10, False, 1500), (11, False, 1500), (12, True, 1500)])
    windows = ws.monitoring.window_drift(MODEL, width=SECOND)
    assert [w.rows for w in windows] == [1500, 1500, 1500]
    assert [sorted(w.drifted_columns) for w in windows] == [[], [], ["cat", "x"]]
    assert all(w.end - w.start == SECOND for w in windows)
    assert windows[0].against == "training data"
    # the model's outputs against its hold-out predictions: they move with x and cat
    assert [[o.column for o in w.outputs] for w in windows] == [
        ["prediction", "prediction_score"]
    ] * 3
    assert [w.drifted_outputs for w in windows] == [[], [], ["prediction", "prediction_score"]]
    assert all(w.share_drifted == len(w.drifted_columns) / 3 for w in windows)  # inputs only
    previous = ws.monitoring.window_drift(MODEL, width=SECOND, against="previous")
    assert [sorted(w.drifted_columns) for w in previous] == [[], ["cat", "x"]]
    assert [w.drifted_outputs for w in previous] == [[], ["prediction", "prediction_score"]]
    # two windows merged: the last one's drift diluted by a calm one, still seen
    sliding = ws.monitoring.window_drift(MODEL, width=SECOND, sliding=2, last=1)
    assert sliding[0].rows == 3000
    assert sliding[0].end - sliding[0].start == 2 * SECOND
    assert "x" in sliding[0].drifted_columns


def test_updates_fold_in_only_what_is_new(ws: Workspace) -> None:
    _serve(ws, [(20, False, 1200)])
    first = ws.monitoring.update_windows(MODEL, width=SECOND, batch_rows=500)
    assert (first.folded, first.windows) == (1200, 1)
    again = ws.monitoring.update_windows(MODEL, width=SECOND)
    assert again.folded == 0
    _serve(ws, [(21, True, 700)])
    later = ws.monitoring.update_windows(MODEL, width=SECOND)
    assert (later.folded, later.windows) == (700, 1)
    w = tables.monitor_windows
    with ws.db.read() as conn:
        rows = conn.execute(w.select().order_by(w.c.start_ms)).all()
    assert [r.rows for r in rows] == [1200, 700]
    summary = json.loads(rows[0].summary)
    # the inputs, and the model's outputs
    assert set(summary["columns"]) == {"x", "y", "cat", "prediction", "prediction_score"}
    # a second width keeps windows of its own
    assert ws.monitoring.update_windows(MODEL, width=timedelta(hours=1)).folded == 1900


def test_windows_folded_before_outputs_and_quality_counters_still_load(ws: Workspace) -> None:
    _serve(ws, [(42, False, 800)])
    ws.monitoring.update_windows(MODEL, width=SECOND)
    w = tables.monitor_windows
    with ws.db.write() as conn:  # as an older mloop stored it: inputs only, no counters
        row = conn.execute(w.select()).one()
        summary = json.loads(row.summary)
        for name in ("prediction", "prediction_score"):
            del summary["columns"][name]
        for column in summary["columns"].values():
            for key in ("low", "high", "below", "above"):
                column.pop(key, None)
        conn.execute(w.update().values(summary=json.dumps(summary)))
    _serve(ws, [(41, True, 600)])  # a later window, folded with everything
    windows = ws.monitoring.window_drift(MODEL, width=SECOND)
    assert [w.rows for w in windows] == [800, 600]
    old, new = windows
    assert old.drifted_columns == []
    assert old.drifted_outputs == []
    assert [o.method for o in old.outputs] == ["none", "none"]  # nothing to judge
    assert new.drifted_outputs == ["prediction", "prediction_score"]
    quality = ws.monitoring.window_quality(MODEL, width=SECOND, update=False)
    x_old = next(c for c in quality[0].columns if c.column == "x")
    x_new = next(c for c in quality[1].columns if c.column == "x")
    assert x_old.estimated
    assert x_old.out_of_range_rate is not None
    assert not x_new.estimated
    # folding more into the old window keeps it readable
    _serve_at(ws, int(old.start.timestamp() * 1000), 50)
    again = ws.monitoring.window_drift(MODEL, width=SECOND)
    assert again[0].rows == 850


def _serve_at(ws: Workspace, ts_ms: int, rows: int) -> None:
    """Log ``rows`` predictions at ``ts_ms`` directly (copies of the newest logged row)."""
    p = tables.predictions
    with ws.db.write() as conn:
        newest = conn.execute(p.select().order_by(p.c.id.desc())).first()
        assert newest is not None
        values = dict(newest._mapping)
        del values["id"]
        conn.execute(p.insert(), [{**values, "ts": ts_ms, "row_index": i} for i in range(rows)])


def test_bad_input_is_refused(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="no predictions"):
        ws.monitoring.window_drift(MODEL, width=SECOND)
    with pytest.raises(InvalidInput, match="against"):
        ws.monitoring.window_drift(MODEL, against="yesterday")
    with pytest.raises(InvalidInput, match="sliding"):
        ws.monitoring.window_drift(MODEL, sliding=0)
    with pytest.raises(InvalidInput, match="at least 1 second"):
        ws.monitoring.update_windows(MODEL, width=timedelta(milliseconds=10))


def test_the_cli_lists_windows_and_fails_on_drift(ws: Workspace) -> None:
    _serve(ws, [(30, False, 1000), (31, True, 1000)])
    runner = CliRunner()
    base = ["--workspace", str(ws.home), "monitor", "windows", "-m", MODEL, "-w", "1s"]
    result = runner.invoke(app, [*base, "--json"])
    assert result.exit_code == 0, result.output
    windows = json.loads(result.stdout)
    assert [sorted(w["drifted_columns"]) for w in windows] == [[], ["cat", "x"]]
    table = runner.invoke(app, [*base, "--fail-on-drift"])
    assert table.exit_code == 1, table.output  # the newest window drifted
    assert "cat, x" in table.stdout or "x, cat" in table.stdout
    assert "drifted outputs" in table.stdout
    assert "prediction_score" in table.stdout
    assert [w["drifted_outputs"] for w in windows] == [[], ["prediction", "prediction_score"]]
    bad = runner.invoke(app, [*base[:-2], "-w", "soon"])
    assert bad.exit_code == 2
    assert "is not a duration" in bad.stderr
