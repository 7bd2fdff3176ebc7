"""mloop loop set / show / status / trigger / history / run / enable / disable / delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli
from loop_helpers import LOGREG, concept
from mloop.workspace import Workspace

POLICY = """
triggers:
  - {type: schedule, cron: "0 3 * * *"}
recipe: retrain
cooldown: 1h
"""


@pytest.fixture
def lws(sqlite_ws: Workspace) -> Workspace:
    ws = sqlite_ws
    ws.datasets.ingest(concept(500, seed=1), name="loans")
    ws.training.train(
        "loans", "label", model=LOGREG, register="loans", alias="champion", plots=False
    )
    return ws


def test_set_status_trigger_history_from_the_cli(lws: Workspace, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    code, out, _ = run_cli(lws, "loop", "status")
    assert (code, "no loop policies yet" in out) == (0, True)
    code, out, err = run_cli(lws, "loop", "set", "loans", "-f", str(policy))
    assert code == 0, err
    assert "triggers schedule" in out
    assert "no canary" in out
    code, out, _ = run_cli(lws, "loop", "show", "loans")
    assert json.loads(out)["recipe"] == {"name": "retrain", "params": {}}

    code, out, err = run_cli(lws, "loop", "trigger", "loans", "--reason", "new quarter")
    assert code == 0, err
    assert "promoted" in out
    assert lws.registry.get_model("loans").aliases["champion"] == 2
    code, out, _ = run_cli(lws, "loop", "history", "loans", "--json")
    runs = json.loads(out)
    assert [(r["state"], r["trigger"], r["reason"]) for r in runs] == [
        ("promoted", "manual", "new quarter")
    ]
    code, out, _ = run_cli(lws, "loop", "status", "--json")
    (status,) = json.loads(out)
    assert (status["state"], status["champion"], status["last"]["state"]) == ("idle", 2, "promoted")

    assert run_cli(lws, "loop", "disable", "loans")[0] == 0
    assert lws.loop.policies()[0][2] is False
    code, out, _ = run_cli(lws, "loop", "run", "--once")
    assert code == 0
    assert "1 round done" in out
    assert len(lws.loop.runs("loans")) == 1  # disabled: the round did nothing
    assert run_cli(lws, "loop", "enable", "loans")[0] == 0
    assert run_cli(lws, "loop", "delete", "loans")[0] == 0
    code, _, err = run_cli(lws, "loop", "show", "loans")
    assert code == 2
    assert "has no loop policy" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "triggers: [{type: schedule, cron: '0 3 * * *'}]\nrecipe: missing-recipe\n",
            "no training recipe named 'missing-recipe'",
        ),
        ("triggers: [{type: labels, min_new: 0}]\nrecipe: retrain\n", "min_new"),
        ("triggers: [\n", "is not valid YAML"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_a_bad_policy_file_is_one_error_line_and_exit_2(
    lws: Workspace, tmp_path: Path, text: str, message: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    code, _, err = run_cli(lws, "loop", "set", "loans", "-f", str(policy))
    assert code == 2
    assert message in err
    assert lws.loop.policies() == []


def test_missing_files_models_and_intervals_are_errors(lws: Workspace, tmp_path: Path) -> None:
    code, _, err = run_cli(lws, "loop", "set", "loans", "-f", str(tmp_path / "none.yaml"))
    assert (code, "no such file" in err) == (2, True)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    code, _, err = run_cli(lws, "loop", "set", "ghost", "-f", str(policy))
    assert code == 2
    assert "ghost" in err
    code, _, err = run_cli(lws, "loop", "run", "--interval", "often")
    assert code == 2
    assert "--interval must be a duration" in err
    code, _, err = run_cli(lws, "loop", "trigger", "loans")
    assert code == 2
    assert "has no loop policy" in err
