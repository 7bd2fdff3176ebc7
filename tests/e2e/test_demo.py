"""``mloop demo`` as a user runs it: a real process, with its defaults, then the CLI to look around.

The demo itself starts ``python -m mloop serve`` as a third process and talks HTTP to it; this
file checks what it reports against what the workspace holds afterwards.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mloop.demo import DRIFTED_FEATURES
from mloop.demo.data import MERCHANTS
from mloop.workspace import Workspace

pytestmark = pytest.mark.slow

HANG_GUARD = 400  # seconds; the demo takes about 20 s on two cores


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}


def mloop(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mloop", "--workspace", str(home), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=home.parent,
        timeout=HANG_GUARD,
        check=False,
    )


def run_demo(home: Path) -> dict[str, Any]:
    done = mloop(home, "demo", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "9/12 measure drift" in done.stderr  # the progress goes to stderr with --json ...
    assert "11/12 labels; alert; retrain; canary" in done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)  # ... so stdout is the JSON alone
    return summary


@dataclass
class FirstRun:
    home: Path
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    home = tmp_path_factory.mktemp("demo") / "ws"
    return FirstRun(home, run_demo(home))


def logged(home: Path, version: int, since_ms: int = 0) -> tuple[int, int]:
    """(rows, requests) the workspace logged for fraud-detector@version (since ``since_ms``)."""
    with sqlite3.connect(home / "mloop.db") as conn:
        rows, requests = conn.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM predictions "
            "WHERE model_name = 'fraud-detector' AND model_version = ? AND ts >= ?",
            (version, since_ms),
        ).fetchone()
    return int(rows), int(requests)


def loop_requests(summary: dict[str, Any]) -> int:
    """Requests the demo sent while its canary ran (each to the champion or the challenger)."""
    return int(summary["loop"]["canary_requests"])


def test_the_demo_finds_the_drift_it_made(first_run: FirstRun) -> None:
    s = first_run.summary
    assert s["drifted_features_second_half"] == sorted(DRIFTED_FEATURES)
    assert s["expected_drifted_features"] == sorted(DRIFTED_FEATURES)
    assert s["drifted_features_first_half"] == []
    assert "prediction_score" in s["drifted_outputs_second_half"]


def test_the_demo_serves_merchant_features_online(first_run: FirstRun) -> None:
    s = first_run.summary
    assert s["feature_view"] == "merchant_stats@1"
    assert s["merchants_online"] == len(MERCHANTS)  # every category materialized and read
    done = mloop(first_run.home, "features", "list", "--json")
    assert done.returncode == 0, done.stderr
    assert [v["ref"] for v in json.loads(done.stdout)["views"]] == ["merchant_stats@1"]


def test_every_request_answered_and_every_prediction_logged(first_run: FirstRun) -> None:
    s = first_run.summary
    assert s["failed_requests"] == 0
    assert (s["requests"], s["predictions"]) == (300, 6000)  # 6000 rows of traffic, 20 a request
    assert s["logged_predictions"] == s["predictions"]
    # every request of the traffic and of the canary was logged, by one version or the other
    v1, v2 = logged(first_run.home, 1)[1], logged(first_run.home, 2)[1]
    assert v1 + v2 == 300 + loop_requests(s)
    assert v2 >= s["loop"]["canary_progress"]["challenger"]["requests"] >= 40
    for name in ("server.log", "server-loop.log"):
        server_log = (first_run.home / "demo" / name).read_text()
        assert "Traceback" not in server_log, name


def test_the_demo_closes_the_loop(first_run: FirstRun) -> None:
    loop = first_run.summary["loop"]
    assert (loop["trigger"], loop["state"]) == ("alert", "promoted")
    assert loop["reason"] == "alert: rule 'fraud-drift' is firing"
    assert (loop["champion_before"], loop["challenger"], loop["champion_after"]) == (1, 2, 2)
    assert loop["labels_sent"] >= 6000  # the traffic's labels, then the canary's
    progress = loop["canary_progress"]
    assert progress["challenger"]["errors"] == 0
    assert progress["metric"]["name"] == "accuracy"
    with Workspace.open(first_run.home) as ws:
        run = ws.loop.get_run(loop["run_id"])
        assert [step["state"] for step in run.detail["steps"]] == ["gating", "canary", "promoted"]
        spec = ws.deployments.get("fraud")
        assert [(v.name, v.model) for v in spec.served()] == [
            ("primary", "fraud-detector@champion")
        ]
        assert [e.kind for e in ws.alerts.history("fraud-drift")][-2:] == ["notified", "firing"]
        live = ws.performance.by_version("fraud-detector")
        assert live[1].labeled >= 6000
        assert live[2].labeled >= 200
    done = mloop(first_run.home, "loop", "status", "--json")
    assert done.returncode == 0, done.stderr
    (status,) = json.loads(done.stdout)
    assert (status["state"], status["champion"]) == ("idle", 2)


def test_the_dirty_batch_was_quarantined(first_run: FirstRun) -> None:
    s = first_run.summary
    assert (s["dataset"], s["batch"]) == ("transactions@1", "transactions@2")
    assert s["quarantined"] == "transactions.quarantine@1"
    assert s["quarantined_rows"] == 40  # what mloop.demo.corrupt broke
    with Workspace.open(first_run.home) as ws:
        assert s["clean"] is not None
        assert ws.datasets.get(s["clean"]).row_count == 4000 - 40
        assert ws.datasets.get(s["quarantined"]).row_count == 40


def test_the_model_is_tracked_registered_and_good(first_run: FirstRun) -> None:
    s = first_run.summary
    assert (s["model"], s["alias"]) == ("fraud-detector@1", "champion")
    assert s["metrics"]["roc_auc"] > 0.75
    with Workspace.open(first_run.home) as ws:
        run = ws.tracking.get_run(s["run_id"])
        assert run.status == "FINISHED"
        assert ws.registry.resolve("fraud-detector@1").run_id == s["run_id"]


def test_the_workspace_can_be_explored_with_the_cli(first_run: FirstRun) -> None:
    home, s = first_run.home, first_run.summary
    for args in (
        ["runs", "list"],
        ["models", "show", "fraud-detector"],
        ["data", "versions", "transactions"],
    ):
        done = mloop(home, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stdout.strip(), args
    done = mloop(
        home, "monitor", "drift", "--model", "fraud-detector@1", "--since",
        s["drift_started_at"], "--until", s["traffic_ended_at"], "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["drifted_features"]) == sorted(DRIFTED_FEATURES)
    assert report["current_rows"] == 3000
    failing = mloop(
        home, "monitor", "drift", "-m", "fraud-detector@1", "--since", s["drift_started_at"],
        "--fail-on-drift",
    )  # fmt: skip
    assert failing.returncode == 1
    assert "amount" in failing.stdout


def test_a_second_run_in_the_same_workspace(first_run: FirstRun) -> None:
    """The same files again are new versions (the latest had moved on) holding the same
    content in the same segments; training again makes version 2 the champion, and the
    second run's drift counts version 2's predictions only."""
    first, second = first_run.summary, run_demo(first_run.home)
    assert first["dataset"] == "transactions@1"
    for key in ("dataset", "batch"):
        assert second[key] != first[key]
        before, after = (
            json.loads(mloop(first_run.home, "data", "show", ref, "--json").stdout)
            for ref in (first[key], second[key])
        )
        assert after["content_hash"] == before["content_hash"]
        assert after["data_digest"] == before["data_digest"]  # no new blob
    assert second["quarantined_rows"] == first["quarantined_rows"] > 0
    assert second["model"] == "fraud-detector@3"  # version 2 came from the first run's loop
    assert second["alias"] == "champion"
    assert second["run_id"] != first["run_id"]
    assert second["failed_requests"] == 0
    assert second["logged_predictions"] == second["predictions"] == 6000
    assert second["drifted_features_second_half"] == sorted(DRIFTED_FEATURES)
    assert second["drifted_features_first_half"] == []
    assert (second["loop"]["champion_before"], second["loop"]["state"]) == (3, "promoted")
    v3, v4 = logged(first_run.home, 3)[1], logged(first_run.home, 4)[1]
    assert v3 + v4 == 300 + loop_requests(second)
    shown = mloop(first_run.home, "models", "show", "fraud-detector", "--json")
    assert shown.returncode == 0, shown.stderr
    aliases = {v["version"]: v["aliases"] for v in json.loads(shown.stdout)}
    assert aliases == {1: [], 2: [], 3: [], 4: ["champion"]}
