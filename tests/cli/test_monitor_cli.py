"""``mloop monitor drift``: JSON for scripts, a table for people, exit codes for CI."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from helpers import drift_frame
from mloop.api import create_app
from mloop.cli import app
from mloop.core.clock import now
from mloop.workspace import Workspace

MODEL = "scorer"
ROWS = 1200


@dataclass
class Served:
    home: Path
    t_shift: datetime  # unshifted traffic before, shifted traffic (x, cat) after


@pytest.fixture
def served(sqlite_ws: Workspace) -> Served:
    ws = sqlite_ws
    ws.datasets.ingest(drift_frame(3000, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL
    )
    with TestClient(create_app(ws)) as client:
        for seed, shifted in ((10, False), (11, True)):
            if shifted:
                time.sleep(0.01)
                t_shift = now()
                time.sleep(0.01)
            rows = drift_frame(ROWS, seed, shifted=shifted, labelled=False).to_dicts()
            for i in range(0, ROWS, 400):
                response = client.post(
                    f"/v1/models/{MODEL}/predict", json={"rows": rows[i : i + 400]}
                )
                assert response.status_code == 200, response.text
    return Served(ws.home, t_shift)


def mloop(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--workspace", str(home), *args])


def words(text: str) -> str:
    return " ".join(text.split())


def test_json_report(served: Served) -> None:
    result = mloop(served.home, "monitor", "drift", "--model", MODEL, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["model"], report["version"], report["reference"]) == (MODEL, 1, "ref@1")
    assert report["current_rows"] == 2 * ROWS
    assert report["since"] is None
    assert [f["column"] for f in report["features"]] == ["x", "y", "cat"]
    assert report["thresholds"]["p_value"] == 0.05


def test_since_and_until_split_the_traffic(served: Served) -> None:
    since = mloop(
        served.home,
        "monitor",
        "drift",
        "-m",
        MODEL,
        "--since",
        served.t_shift.isoformat(),
        "--json",
    )
    until = mloop(
        served.home, "monitor", "drift", "-m", f"{MODEL}@champion", "--until",
        served.t_shift.isoformat().replace("+00:00", "Z"), "--json",
    )  # fmt: skip
    assert since.exit_code == 0, since.output
    assert until.exit_code == 0, until.output
    after, before = json.loads(since.stdout), json.loads(until.stdout)
    assert (after["current_rows"], before["current_rows"]) == (ROWS, ROWS)
    assert sorted(after["drifted_features"]) == ["cat", "x"]
    assert before["drifted_features"] == []


def test_relative_since(served: Served) -> None:
    result = mloop(served.home, "monitor", "drift", "-m", MODEL, "--since", "30m", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["current_rows"] == 2 * ROWS
    assert datetime.fromisoformat(report["since"]) < served.t_shift


def test_fail_on_drift_exit_codes(served: Served) -> None:
    t = served.t_shift.isoformat()
    drifted = mloop(served.home, "monitor", "drift", "-m", MODEL, "--since", t, "--fail-on-drift")
    calm = mloop(served.home, "monitor", "drift", "-m", MODEL, "--until", t, "--fail-on-drift")
    unflagged = mloop(served.home, "monitor", "drift", "-m", MODEL, "--since", t)
    assert drifted.exit_code == 1, drifted.output
    assert calm.exit_code == 0, calm.output
    assert unflagged.exit_code == 0, unflagged.output  # drift alone is not a failure
    as_json = mloop(
        served.home, "monitor", "drift", "-m", MODEL, "--since", t, "--fail-on-drift", "--json"
    )
    assert as_json.exit_code == 1
    assert sorted(json.loads(as_json.stdout)["drifted_features"]) == ["cat", "x"]


def test_table_output(served: Served) -> None:
    t = served.t_shift.isoformat()
    result = mloop(served.home, "monitor", "drift", "-m", MODEL, "--since", t)
    assert result.exit_code == 0, result.output
    text = words(result.stdout)
    assert "drifted features: x, cat" in text
    assert f"{ROWS:,} rows vs 3,000 training rows" in text
    assert "DRIFT" in text
    assert "ok" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "nope"], "model 'nope' is not registered"),
        (["-m", f"{MODEL}@nope"], "has no alias 'nope'"),
        (["-m", MODEL, "--since", "yesterday"], "cannot read time 'yesterday'"),
        (["-m", MODEL, "--until", "12 o'clock"], "cannot read time"),
        (
            [
                "-m",
                MODEL,
                "--since",
                (now() + timedelta(days=1)).isoformat(),
                "--until",
                (now() + timedelta(days=2)).isoformat(),
            ],
            "no predictions",
        ),
        (["-m", MODEL, "--since", (now() + timedelta(days=1)).isoformat()], "window is empty"),
    ],
)
def test_errors_exit_2_with_one_line(served: Served, args: list[str], message: str) -> None:
    result = mloop(served.home, "monitor", "drift", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "error:" in result.stderr
    assert message in words(result.stderr)
    assert "Traceback" not in result.output
