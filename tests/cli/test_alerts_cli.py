"""``mloop alerts``: add, list, show, evaluate, history, enable/disable, delete, Prometheus
rules, series; bad input is one error line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from helpers import run_cli
from mloop.workspace import Workspace


def test_the_life_of_a_rule(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    code, out, err = run_cli(
        ws, "alerts", "add", "slow", "-m", "scorer", "--series", "latency_p99", "--op", ">",
        "--threshold", "250", "--window", "5m", "--for", "10m", "--cooldown", "1h",
        "--dest", "log", "--dest", "webhook:http://127.0.0.1:9/hook", "--severity", "critical",
    )  # fmt: skip
    assert code == 0, err
    assert "added alert slow" in out
    code, out, _ = run_cli(ws, "alerts", "list", "--json")
    assert code == 0
    [rule] = json.loads(out)
    assert (rule["name"], rule["for"], rule["severity"], rule["state"]) == (
        "slow",
        "10m",
        "critical",
        "ok",
    )
    assert rule["destinations"] == ["log", "webhook:http://127.0.0.1:9/hook"]
    code, out, _ = run_cli(ws, "alerts", "list")
    assert code == 0
    assert "latency_p99" in out.replace("│", "").replace(" ", "").replace("\n", "")
    # one pass: the model is not registered, which is an event, not a failure
    code, out, _ = run_cli(ws, "alerts", "evaluate", "--json")
    assert code == 0
    [event] = json.loads(out)
    assert event["kind"] == "error"
    assert "scorer" in event["message"]
    code, out, _ = run_cli(ws, "alerts", "watch", "--interval", "1s", "--max-passes", "2")
    assert code == 0
    assert "no change" in out
    code, out, _ = run_cli(ws, "alerts", "history", "slow", "--json")
    assert code == 0
    assert [e["kind"] for e in json.loads(out)] == ["error"]
    code, out, _ = run_cli(ws, "alerts", "show", "slow")
    assert code == 0
    assert "latest events" in out
    code, out, _ = run_cli(ws, "alerts", "disable", "slow")
    assert code == 0
    assert "disabled alert slow" in out
    assert json.loads(run_cli(ws, "alerts", "show", "slow", "--json")[1])["enabled"] is False
    assert run_cli(ws, "alerts", "enable", "slow")[0] == 0
    target = tmp_path / "rules.yml"
    code, out, _ = run_cli(ws, "alerts", "prometheus-rules", "-o", str(target))
    assert code == 0
    [entry] = yaml.safe_load(target.read_text())["groups"][0]["rules"]
    assert entry["alert"] == "slow"
    assert entry["for"] == "10m"
    code, out, _ = run_cli(ws, "alerts", "prometheus-rules")
    assert code == 0
    assert yaml.safe_load(out) == yaml.safe_load(target.read_text())
    code, out, _ = run_cli(ws, "alerts", "delete", "slow")
    assert code == 0
    assert "deleted alert slow" in out
    code, out, _ = run_cli(ws, "alerts", "history", "--json")
    assert code == 0
    assert len(json.loads(out)) == 1


def test_bad_input_is_one_clear_line(sqlite_ws: Workspace) -> None:
    base = ["alerts", "add", "r", "-m", "scorer", "--threshold", "1"]
    cases = [
        ([*base, "--series", "latency_p95", "--op", ">"], "unknown series 'latency_p95'"),
        ([*base, "--series", "volume", "--op", "=>"], "op must be one of >, >=, <, <="),
        ([*base, "--series", "volume", "--op", "<", "--for", "-5m"], "for '-5m' is not a dura"),
        ([*base, "--series", "volume", "--op", "<", "--dest", "smtp:x"], "destination 'smtp:x'"),
        (["alerts", "show", "nope"], "no alert rule named 'nope'"),
        (["alerts", "delete", "nope"], "no alert rule named 'nope'"),
        (["alerts", "history", "nope"], "no alert rule named 'nope'"),
        (["alerts", "watch", "--interval", "soon"], "interval 'soon' is not a duration"),
        (["alerts", "series", "-m", "scorer", "-s", "volume", "--window", "x"], "window 'x'"),
    ]
    for args, message in cases:
        code, out, err = run_cli(sqlite_ws, *args)
        assert code == 2, (args, out)
        assert err.startswith("error: "), err
        assert message in err, err
    assert run_cli(sqlite_ws, *base, "--series", "volume", "--op", "<")[0] == 0
    code, _, err = run_cli(sqlite_ws, *base, "--series", "volume", "--op", "<")
    assert code == 2
    assert "alert rule 'r' exists already" in err
