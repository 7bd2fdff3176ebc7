"""mloop runs list / show."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers import run_cli
from mloop.core.ids import new_id
from mloop.tracking import Run, RunInput
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


# -- search: filter, order, columns, pages, views ----------------------------------------------


@pytest.fixture
def trials(cli: Workspace) -> list[Run]:
    """Six runs of experiment "tune", oldest first: model alternates, auc grows."""
    made = []
    for n in range(6):
        run = cli.tracking.start_run("tune", name=f"trial-{n}", tags={"team": "risk"})
        cli.tracking.log_params(run.id, {"model": "xgb" if n % 2 else "rf", "depth": n})
        cli.tracking.log_metrics(run.id, {"auc": 0.8 + n / 100, "loss": 1.0 / (n + 1)})
        made.append(cli.tracking.end_run(run.id))
    return made


def _ids(out: str) -> list[str]:
    return [r["id"] for r in json.loads(out)]


def test_runs_list_filter_and_order_by(cli: Workspace, trials: list[Run]) -> None:
    code, out, _ = run_cli(
        cli,
        "runs",
        "list",
        "--json",
        "--filter",
        "metrics.auc > 0.805 and params.model = 'xgb'",
        "--order-by",
        "metrics.auc ASC",
    )
    assert code == 0
    assert _ids(out) == [trials[1].id, trials[3].id, trials[5].id]
    _, out, _ = run_cli(cli, "runs", "list", "--json", "-o", "params.model", "-o", "metrics.loss")
    assert _ids(out) == [trials[n].id for n in (4, 2, 0, 5, 3, 1)]
    # the table shows the metrics the search was about first
    code, out, _ = run_cli(cli, "runs", "list", "--filter", "metrics.loss < 0.3")
    assert code == 0
    assert trials[5].id in out
    assert trials[0].id not in out
    assert "loss=0.1667" in out


def test_runs_list_columns(cli: Workspace, trials: list[Run]) -> None:
    cli.tracking.log_inputs(trials[5].id, [RunInput(name="train", digest="abc")])
    code, out, _ = run_cli(
        cli,
        "runs",
        "list",
        "--max",
        "2",
        "--columns",
        "metrics.auc,params.model",
        "-c",
        "tags.team,run_name,datasets.name",
    )
    assert code == 0
    header = out[: out.index(trials[5].id)]
    for title in ("auc", "model", "team", "run_name", "dataset"):
        assert title in header, header
    row = next(line for line in out.splitlines() if trials[5].id in line)
    for value in ("0.85", "xgb", "risk", "trial-5", "train"):
        assert value in row, row
    assert "trial-4" in out
    assert "trial-3" not in out
    # the same key as a param and a metric: the full names tell them apart
    code, out, _ = run_cli(cli, "runs", "list", "--max", "1", "-c", "params.depth,metrics.depth")
    assert code == 0
    assert "params.depth" in out
    assert "metrics.depth" in out


def test_runs_list_many_columns_on_a_narrow_terminal_keep_the_id_whole(
    cli: Workspace, trials: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.cli._common import console

    monkeypatch.setattr(console, "_width", 60)
    columns = ",".join(["metrics.auc", "metrics.loss", "params.model", "params.depth", "tags.team"])
    code, out, _ = run_cli(cli, "runs", "list", "--columns", columns)
    assert code == 0
    for run in trials:
        assert run.id in out
    assert max(len(line) for line in out.splitlines()) <= 60


def test_runs_list_pages(cli: Workspace, trials: list[Run]) -> None:
    seen: list[str] = []
    token: list[str] = []
    for _ in range(4):
        code, out, err = run_cli(cli, "runs", "list", "--json", "--max", "4", *token)
        assert code == 0
        seen += _ids(out)
        if "--page-token" not in err:
            break
        token = ["--page-token", err.split("--page-token ")[1].split()[0]]
    assert seen == [r.id for r in reversed(trials)]
    # in a table, the token is printed under it
    code, out, _ = run_cli(cli, "runs", "list", "--max", "5")
    assert code == 0
    assert "more runs: --page-token " in out
    code, _, err = run_cli(cli, "runs", "list", "--page-token", "nonsense")
    assert code == 2
    assert "invalid page token 'nonsense'" in err


def test_runs_list_several_experiments_by_name_or_id(
    cli: Workspace, trials: list[Run], two_runs: list[Run]
) -> None:
    a, b = two_runs
    _, out, _ = run_cli(cli, "runs", "list", "--json", "-e", "exp-a", "-e", b.experiment_id)
    assert _ids(out) == [b.id, a.id]
    _, out, _ = run_cli(cli, "runs", "list", "--json", "-e", "tune", "--max", "1")
    assert _ids(out) == [trials[-1].id]


def test_runs_list_status_combines_with_the_filter(cli: Workspace, two_runs: list[Run]) -> None:
    a, _ = two_runs
    _, out, _ = run_cli(
        cli, "runs", "list", "--json", "--status", "finished", "-f", "tags.x IS NULL"
    )
    assert _ids(out) == [a.id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--filter", "metrics.auc > 0.9 or params.model = 'xgb'"],
            "invalid filter \"metrics.auc > 0.9 or params.model = 'xgb'\": OR is not supported",
        ),
        (["--filter", "metrics.auc > high"], "metrics.auc compares with a number, found 'high'"),
        (["--filter", "metrics.auc >"], "it ends too early"),
        (["--filter", "bogus = 'x'"], "unknown attribute 'bogus'"),
        (["--filter", "metrics.auc ~ 1"], "unexpected '~' at position 12"),
        (["--order-by", "metrics.auc UP"], "expected ASC or DESC, found 'UP'"),
        (["--columns", "metrics.auc DESC"], "--columns takes names, not an order"),
        (["--columns", "nope"], "unknown attribute 'nope'"),
        (["--columns", "datasets.size"], "unknown dataset field 'size'"),
        (["--view", "gone"], "view must be active, deleted or all"),
        (["--max", "0"], "max_results must be a positive integer"),
        (["--max", "50001"], "max_results is at most 50000"),
        (["--experiment", "nope"], "experiment 'nope' does not exist"),
    ],
)
def test_runs_list_bad_input_exits_2(
    cli: Workspace, trials: list[Run], args: list[str], message: str
) -> None:
    code, out, err = run_cli(cli, "runs", "list", *args)
    assert code == 2, (args, out, err)
    assert err.startswith("error: "), err
    assert message in err, err
    assert out == ""


def test_delete_then_restore_runs(cli: Workspace, trials: list[Run]) -> None:
    gone = [trials[0].id, trials[2].id]
    code, out, _ = run_cli(cli, "runs", "delete", *gone)
    assert code == 0
    assert f"deleted run {gone[0]} (trial-0)" in out
    _, out, _ = run_cli(cli, "runs", "list", "--json")
    assert set(_ids(out)) == {r.id for r in trials} - set(gone)
    _, out, _ = run_cli(cli, "runs", "list", "--json", "--view", "deleted")
    assert _ids(out) == gone[::-1]
    _, out, _ = run_cli(cli, "runs", "list", "--view", "all")
    assert "FINISHED (deleted)" in out
    _, out, _ = run_cli(cli, "runs", "show", gone[0])
    assert "(deleted)" in out

    code, out, _ = run_cli(cli, "runs", "restore", gone[0], "--json")
    assert code == 0
    assert [r["lifecycle_stage"] for r in json.loads(out)] == ["active"]
    _, out, _ = run_cli(cli, "runs", "list", "--json", "--view", "deleted")
    assert _ids(out) == [gone[1]]


def test_delete_with_an_unknown_id_changes_nothing(cli: Workspace, trials: list[Run]) -> None:
    unknown = new_id()
    code, _, err = run_cli(cli, "runs", "delete", trials[0].id, unknown)
    assert code == 2
    assert f"run {unknown} does not exist" in err
    assert cli.tracking.get_run(trials[0].id).lifecycle_stage == "active"
    code, _, err = run_cli(cli, "runs", "restore", "not-an-id")
    assert code == 2
    assert "'not-an-id' is not a run id" in err


def test_show_lists_the_inputs(cli: Workspace, trials: list[Run]) -> None:
    cli.tracking.log_inputs(
        trials[0].id, [RunInput(name="transactions", digest="f" * 64, context="eval")]
    )
    code, out, _ = run_cli(cli, "runs", "show", trials[0].id)
    assert code == 0
    assert "transactions" in out
    assert "ffffffffffff" in out
    assert "eval" in out


# -- compare -----------------------------------------------------------------------------------


def _row(out: str, key: str) -> str:
    return next(line for line in out.splitlines() if f" {key} " in line)


def test_compare_highlights_the_params_that_differ(cli: Workspace, trials: list[Run]) -> None:
    same = cli.tracking.start_run("tune", name="same")
    cli.tracking.log_params(same.id, {"model": "rf", "depth": 0})
    cli.tracking.log_metrics(same.id, {"auc": 0.8})
    code, out, _ = run_cli(cli, "runs", "compare", trials[0].id, trials[1].id, same.id)
    assert code == 0
    for n, run in enumerate((trials[0], trials[1], same), 1):
        assert run.id in out  # the legend carries the full ids
        assert f"#{n} {run.name}" in out
    assert _row(out, "params.model").lstrip("│ ").startswith("≠ params.model")
    assert "rf" in _row(out, "params.model")
    assert "xgb" in _row(out, "params.model")
    assert _row(out, "params.depth").lstrip("│ ").startswith("≠")
    assert _row(out, "metrics.auc").lstrip("│ ").startswith("≠")
    assert "-" in _row(out, "metrics.loss")  # "same" has no loss
    assert "keys differ (≠)" in out

    code, out, _ = run_cli(cli, "runs", "compare", trials[0].id, same.id)
    assert code == 0
    assert not _row(out, "params.model").lstrip("│ ").startswith("≠")
    assert not _row(out, "metrics.auc").lstrip("│ ").startswith("≠")
    assert _row(out, "metrics.loss").lstrip("│ ").startswith("≠")


def test_compare_only_diff_and_json(cli: Workspace, trials: list[Run]) -> None:
    a, b = trials[0], trials[2]  # both rf; depth, auc and loss differ
    code, out, _ = run_cli(cli, "runs", "compare", a.id, b.id, "--only-diff")
    assert code == 0
    assert "params.depth" in out
    assert "params.model" not in out
    assert "metrics.auc" in out

    code, out, _ = run_cli(cli, "runs", "compare", a.id, b.id, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["runs"] == [a.id, b.id]
    assert data["names"] == ["trial-0", "trial-2"]
    assert data["params"]["model"] == ["rf", "rf"]
    assert data["differing_params"] == ["depth"]
    assert data["differing"] == ["metrics.auc", "metrics.loss", "params.depth"]
    _, out, _ = run_cli(cli, "runs", "compare", a.id, b.id, "--json", "--only-diff")
    assert set(json.loads(out)["params"]) == {"depth"}


def test_compare_many_runs_splits_into_tables_that_fit(
    cli: Workspace, trials: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.cli._common import console

    monkeypatch.setattr(console, "_width", 80)
    code, out, _ = run_cli(cli, "runs", "compare", *[r.id for r in trials])
    assert code == 0
    assert "runs #1–#" in out
    assert "of 6" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    for n in range(1, 7):
        assert f"#{n} trial-" in out


def test_compare_nan_and_errors(cli: Workspace, trials: list[Run]) -> None:
    nan = cli.tracking.start_run("tune", name="nan")
    cli.tracking.log_metrics(nan.id, {"auc": float("nan")})
    code, out, _ = run_cli(cli, "runs", "compare", nan.id, trials[0].id)
    assert code == 0
    assert "nan" in _row(out, "metrics.auc")
    code, out, _ = run_cli(cli, "runs", "compare", nan.id, "--json")
    assert _strict_json(out)["metrics"]["auc"] == ["NaN"]
    code, out, _ = run_cli(cli, "runs", "list", "--json", "-f", f"run_id = '{nan.id}'")
    assert _strict_json(out)[0]["metrics"]["auc"] == "NaN"

    unknown = new_id()
    code, out, err = run_cli(cli, "runs", "compare", trials[0].id, unknown)
    assert code == 2
    assert f"run {unknown} does not exist" in err
    assert out == ""
    code, _, err = run_cli(cli, "runs", "compare")
    assert code == 2
    assert "Missing argument" in err


def _strict_json(text: str) -> Any:
    """JSON as any parser reads it: a bare NaN or Infinity is an error."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)
