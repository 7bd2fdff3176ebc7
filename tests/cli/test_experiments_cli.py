"""mloop experiments list / create / rename / delete / restore / show."""

from __future__ import annotations

import json

import pytest

from helpers import run_cli
from mloop.core.ids import new_id
from mloop.tracking import Experiment
from mloop.workspace import Workspace


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    return ws


def _names(out: str) -> list[str]:
    return [e["name"] for e in json.loads(out)]


def test_create_with_tags_and_list(cli: Workspace) -> None:
    code, out, _ = run_cli(cli, "experiments", "create", "fraud", "--tag", "team=risk", "-t", "x=")
    assert code == 0
    exp = cli.tracking.get_experiment_by_name("fraud")
    assert exp.tags == {"team": "risk", "x": ""}
    assert f"created experiment fraud (id {exp.id})" in out

    code, out, _ = run_cli(cli, "experiments", "create", "churn", "--json")
    assert code == 0
    churn = Experiment.model_validate(json.loads(out))
    assert churn == cli.tracking.get_experiment(churn.id)

    code, out, _ = run_cli(cli, "experiments", "list")
    assert code == 0
    assert exp.id in out
    assert churn.id in out
    assert "team=risk" in out
    assert out.index("churn") < out.index("fraud")  # newest first
    _, out, _ = run_cli(cli, "experiments", "list", "--json")
    assert _names(out)[:2] == ["churn", "fraud"]


def test_list_filter_order_view_and_pages(cli: Workspace) -> None:
    for name in ("fraud-a", "fraud-b", "churn"):
        cli.tracking.create_experiment(name, {"team": "risk" if "fraud" in name else "growth"})
    _, out, _ = run_cli(cli, "experiments", "list", "--json", "--filter", "name LIKE 'fraud%'")
    assert sorted(_names(out)) == ["fraud-a", "fraud-b"]
    _, out, _ = run_cli(cli, "experiments", "list", "--json", "-f", "tags.team = 'growth'")
    assert _names(out) == ["churn"]
    _, out, _ = run_cli(cli, "experiments", "list", "--json", "--order-by", "name")
    assert _names(out) == ["Default", "churn", "fraud-a", "fraud-b"]

    code, out, err = run_cli(cli, "experiments", "list", "--json", "-o", "name", "--max", "3")
    assert code == 0
    assert _names(out) == ["Default", "churn", "fraud-a"]
    token = err.split("--page-token ")[1].split()[0]
    _, out, err = run_cli(
        cli, "experiments", "list", "--json", "-o", "name", "--max", "3", "--page-token", token
    )
    assert _names(out) == ["fraud-b"]
    assert "page-token" not in err

    cli.tracking.delete_experiment(cli.tracking.get_experiment_by_name("churn").id)
    _, out, _ = run_cli(cli, "experiments", "list", "--json", "--view", "deleted")
    assert _names(out) == ["churn"]
    _, out, _ = run_cli(cli, "experiments", "list", "--view", "all")
    assert "(deleted)" in out


def test_rename_by_name_or_id(cli: Workspace) -> None:
    exp = cli.tracking.create_experiment("old")
    run = cli.tracking.start_run("old")
    code, out, _ = run_cli(cli, "experiments", "rename", "old", "new")
    assert code == 0
    assert "renamed experiment old → new" in out
    code, out, _ = run_cli(cli, "experiments", "rename", exp.id, "newer", "--json")
    assert code == 0
    assert json.loads(out)["name"] == "newer"
    assert cli.tracking.get_run(run.id).experiment == "newer"  # runs follow by id


def test_delete_then_restore(cli: Workspace) -> None:
    exp = cli.tracking.create_experiment("gone")
    code, out, _ = run_cli(cli, "experiments", "delete", "gone")
    assert code == 0
    assert f"mloop experiments restore {exp.id}" in out
    _, out, _ = run_cli(cli, "experiments", "list", "--json")
    assert "gone" not in _names(out)
    _, out, _ = run_cli(cli, "experiments", "show", "gone")
    assert "(deleted)" in out

    code, out, _ = run_cli(cli, "experiments", "restore", exp.id, "--json")
    assert code == 0
    assert json.loads(out)["lifecycle_stage"] == "active"
    _, out, _ = run_cli(cli, "experiments", "list", "--json")
    assert "gone" in _names(out)
    # and by name, after deleting by id
    run_cli(cli, "experiments", "delete", exp.id)
    code, out, _ = run_cli(cli, "experiments", "restore", "gone")
    assert code == 0
    assert "restored experiment gone" in out


def test_show_by_name_or_id(cli: Workspace) -> None:
    exp = cli.tracking.create_experiment("fraud", {"team": "risk"})
    runs = [cli.tracking.start_run("fraud", name=f"r{n}") for n in range(3)]
    cli.tracking.delete_run(runs[0].id)
    code, out, _ = run_cli(cli, "experiments", "show", "fraud")
    assert code == 0
    assert f"experiment fraud  id {exp.id}" in out
    assert "team" in out
    assert "risk" in out
    for run in runs:
        assert run.id in out
    assert "RUNNING (deleted)" in out
    assert out.index(runs[2].id) < out.index(runs[1].id)
    assert f"mloop runs list --experiment {exp.id}" in out

    code, out, _ = run_cli(cli, "experiments", "show", exp.id, "--json")
    assert code == 0
    assert Experiment.model_validate(json.loads(out)) == cli.tracking.get_experiment(exp.id)
    code, out, _ = run_cli(cli, "experiments", "show", "0", "--json")
    assert json.loads(out)["name"] == "Default"


def test_show_says_when_only_the_newest_runs_are_listed(cli: Workspace) -> None:
    for n in range(12):
        cli.tracking.start_run("busy", name=f"r{n}")
    _, out, _ = run_cli(cli, "experiments", "show", "busy")
    assert "the 10 newest" in out
    assert "r11" in out
    assert " r1 " not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "taken"], "experiment 'taken' already exists"),
        (["create", "x", "--tag", "novalue"], "--tag takes KEY=VALUE, not 'novalue'"),
        (["create", "x", "--tag", "=v"], "--tag takes KEY=VALUE"),
        (["create", "x", "--tag", "bad;key=v"], "experiment tag key 'bad;key' is not allowed"),
        (["create", " "], "experiment name must be 1-255 characters"),
        (["rename", "nope", "x"], "experiment 'nope' does not exist"),
        (["rename", "taken", "Default"], "experiment 'Default' already exists"),
        (["delete", "nope"], "experiment 'nope' does not exist"),
        (["delete", "Default"], "the Default experiment (id 0) cannot be deleted"),
        (["delete", "0"], "the Default experiment (id 0) cannot be deleted"),
        (["restore", "nope"], "experiment 'nope' does not exist"),
        (["show", "nope"], "experiment 'nope' does not exist"),
        (["list", "--view", "gone"], "view must be active, deleted or all"),
        (["list", "--filter", "name = 'a' or name = 'b'"], "invalid experiment filter"),
        (["list", "--filter", "owner = 'x'"], "unknown field 'owner'"),
        (["list", "--filter", "name ~ 'x'"], "unexpected '~' at position 5"),
        (["list", "--order-by", "owner"], "invalid order_by 'owner'"),
        (["list", "--page-token", "junk"], "invalid page token 'junk'"),
        (["list", "--max", "0"], "max_results must be a positive integer"),
    ],
)
def test_bad_input_exits_2(cli: Workspace, args: list[str], message: str) -> None:
    cli.tracking.create_experiment("taken")
    code, out, err = run_cli(cli, "experiments", *args)
    assert code == 2, (args, out, err)
    assert err.startswith("error: "), err
    assert message in err, err
    assert out == ""


def test_an_unknown_id_is_not_found(cli: Workspace) -> None:
    unknown = new_id()
    code, _, err = run_cli(cli, "experiments", "show", unknown)
    assert code == 2
    assert f"experiment '{unknown}' does not exist" in err
