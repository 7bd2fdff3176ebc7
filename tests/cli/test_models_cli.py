"""mloop models register / list / show / alias, and mloop serve --help."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from helpers import run_cli
from mloop.cli import app
from mloop.core.ids import new_id
from mloop.demo.data import transactions
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    return ws


@pytest.fixture
def run_ids(cli: Workspace) -> list[str]:
    """Two finished runs with a model each, not registered."""
    cli.datasets.ingest(transactions(300, seed=61), name="tx")
    return [
        cli.training.train(
            "tx", "is_fraud", model=LOGREG, params={"C": c}, exclude=["transaction_id"]
        ).run.id
        for c in (1.0, 0.1)
    ]


def test_register_list_show_alias(cli: Workspace, run_ids: list[str]) -> None:
    first, second = run_ids
    code, out, _ = run_cli(cli, "models", "register", first, "fraud")
    assert code == 0
    assert f"registered fraud@1 from run {first}" in out
    code, out, _ = run_cli(cli, "models", "register", second, "fraud", "--json")
    assert code == 0
    assert (json.loads(out)["version"], json.loads(out)["run_id"]) == (2, second)
    assert cli.registry.get_model("fraud").aliases == {"champion": 1}

    code, out, _ = run_cli(cli, "models", "list")
    assert code == 0
    assert "fraud" in out
    assert "champion→1" in out
    code, out, _ = run_cli(cli, "models", "list", "--json")
    assert [(m["name"], m["latest_version"], m["aliases"]) for m in json.loads(out)] == [
        ("fraud", 2, {"champion": 1})
    ]

    code, out, _ = run_cli(cli, "models", "show", "fraud")
    assert code == 0
    assert first in out
    assert second in out
    assert "tx@1" in out
    assert "signature (v2): classification, target 'is_fraud'" in out
    code, out, _ = run_cli(cli, "models", "show", "fraud", "--json")
    shown = json.loads(out)
    assert [(v["version"], v["run_id"], v["aliases"]) for v in shown] == [
        (1, first, ["champion"]),
        (2, second, []),
    ]

    code, out, _ = run_cli(cli, "models", "alias", "fraud", "champion", "2", "--reason", "better")
    assert code == 0
    assert "fraud@champion → version 2" in out
    code, out, _ = run_cli(cli, "models", "alias", "fraud", "challenger", "1")
    assert cli.registry.get_model("fraud").aliases == {"champion": 2, "challenger": 1}
    code, out, _ = run_cli(cli, "models", "alias", "fraud", "challenger", "--delete")
    assert code == 0
    assert "removed alias 'challenger'" in out
    assert cli.registry.get_model("fraud").aliases == {"champion": 2}
    moves = [
        r.detail
        for r in cli.audit.list(object_type="model", object_id="fraud")
        if r.action == "model.alias.set" and r.detail["alias"] == "champion"
    ]
    assert moves[0] == {"alias": "champion", "version": 2, "previous": 1, "reason": "better"}


def test_models_errors_exit_2(cli: Workspace, run_ids: list[str]) -> None:
    bare = cli.tracking.start_run().id
    unknown = new_id()
    run_cli(cli, "models", "register", run_ids[0], "fraud")
    for args, message in (
        (["models", "register", bare, "fraud"], f"run {bare} has no model under 'model'"),
        (["models", "register", unknown, "fraud"], f"run {unknown} does not exist"),
        (["models", "register", run_ids[1], "bad name"], "model name 'bad name' is not allowed"),
        (["models", "show", "nope"], "model 'nope' is not registered"),
        (["models", "alias", "fraud", "latest", "1"], "alias 'latest' is reserved"),
        (["models", "alias", "fraud", "v1", "1"], "alias 'v1' is reserved"),
        (["models", "alias", "fraud", "9lives", "1"], "start with a letter"),
        (["models", "alias", "fraud", "champion", "5"], "model 'fraud' has no version 5"),
        (["models", "alias", "fraud", "champion"], "give the VERSION"),
        (["models", "alias", "fraud", "gold", "--delete"], "model 'fraud' has no alias 'gold'"),
        (["models", "alias", "nope", "champion", "1"], "model 'nope' is not registered"),
    ):
        code, out, err = run_cli(cli, *args)
        assert code == 2, (args, out, err)
        assert err.startswith("error: "), (args, err)
        assert message in err, (args, err)
    assert [v.version for v in cli.registry.versions("fraud")] == [1]
    assert cli.registry.get_model("fraud").aliases == {"champion": 1}


def test_serve_help() -> None:
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "Serve the REST API" in result.stdout
    for option in ("--host", "--port", "--log-predictions", "--log-level"):
        assert option in result.stdout
