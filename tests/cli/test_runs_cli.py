"""mloop runs list / show."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli
from mloop.core.ids import new_id
from mloop.tracking import Run
from mloop.workspace import Workspace


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    return ws


@pytest.fixture
def two_runs(cli: Workspace) -> list[Run]:
    a = cli.tracking.start_run("exp-a", name="alpha", tags={"mloop.dataset": "tx@1"})
    cli.tracking.log_params(a.id, {"lr": 0.1})
    cli.tracking.log_metrics(a.id, {"roc_auc": 0.91, "f1": 0.5})
    cli.tracking.log_artifact_bytes(a.id, "model/model.joblib", b"weights")
    cli.tracking.end_run(a.id)
    b = cli.tracking.start_run("exp-b", name="beta")
    return [cli.tracking.get_run(a.id), cli.tracking.get_run(b.id)]


def test_runs_list_shows_full_ids_newest_first(cli: Workspace, two_runs: list[Run]) -> None:
    a, b = two_runs
    code, out, _ = run_cli(cli, "runs", "list")
    assert code == 0
    assert a.id in out
    assert b.id in out
    assert out.index(b.id) < out.index(a.id)
    assert "FINISHED" in out
    assert "RUNNING" in out


def test_runs_list_json_and_filters(cli: Workspace, two_runs: list[Run]) -> None:
    a, b = two_runs
    code, out, _ = run_cli(cli, "runs", "list", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == [b.id, a.id]
    _, out, _ = run_cli(cli, "runs", "list", "--json", "--experiment", "exp-a")
    assert [r["id"] for r in json.loads(out)] == [a.id]
    _, out, _ = run_cli(cli, "runs", "list", "--json", "--status", "running")
    assert [r["id"] for r in json.loads(out)] == [b.id]
    _, out, _ = run_cli(cli, "runs", "list", "--json", "--limit", "1")
    assert [r["id"] for r in json.loads(out)] == [b.id]


def test_runs_show(cli: Workspace, two_runs: list[Run]) -> None:
    a, _ = two_runs
    code, out, _ = run_cli(cli, "runs", "show", a.id)
    assert code == 0
    assert f"run {a.id}" in out
    assert "exp-a" in out
    assert "FINISHED" in out
    for text in ("roc_auc", "0.91", "lr", "0.1", "model/model.joblib", a.artifacts[0].digest[:12]):
        assert text in out

    code, out, _ = run_cli(cli, "runs", "show", a.id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert Run.model_validate(shown) == a


def test_runs_errors_exit_2(cli: Workspace, two_runs: list[Run]) -> None:
    unknown = new_id()
    for args, message in (
        (["runs", "show", unknown], f"run {unknown} does not exist"),
        (["runs", "show", "abc"], "'abc' is not a run id"),
        (["runs", "list", "--experiment", "nope"], "experiment 'nope' does not exist"),
        (["runs", "list", "--status", "DONE"], "unknown run status 'DONE'"),
    ):
        code, out, err = run_cli(cli, *args)
        assert code == 2, args
        assert err.startswith("error: "), (args, err)
        assert message in err, (args, err)
        assert out == ""
