"""``mloop lineage show`` and ``mloop lineage export``, as a user types them."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from helpers import run_cli
from lineage.support import Chain, build_chain, check_run_event
from mloop.workspace import Workspace


@pytest.fixture
def chain(
    ws: Workspace, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Chain:
    """The CLI opens the same workspace (folder and database) as ``ws``."""
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    return build_chain(ws, tmp_path)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_show_draws_the_upstream_tree_of_a_model(chain: Chain) -> None:
    code, out, err = run_cli(chain.ws, "lineage", "show", "model:churn@champion", "--upstream")
    assert (code, err) == (0, "")
    lines = [line for line in out.splitlines() if line.strip()]
    assert "model churn@1" in lines[0]
    assert "@champion" in lines[0]
    text = flat(out)
    assert f"registered run lr churn, finished, {chain.run.id}" in text
    assert "trained_on dataset features@1 transform, 300 rows" in text
    assert "transformed dataset raw@1 ingest, 300 rows" in text
    assert "produced transform features@1 python" in text
    compact = re.sub(r"[\s│├└─]", "", out)  # a long URI wraps onto the tree's next line
    assert "ingestedsourcefile:///" in compact
    assert "customers.csv" in compact
    # a tree: each hop indented further than the one before
    indents = [
        len(line) - len(line.lstrip("│ ├└─"))
        for line in lines
        if any(k in line for k in ("registered", "trained_on", "transformed", "ingested"))
    ]
    assert indents == sorted(indents)
    assert len(set(indents)) == 4
    assert "used by" not in text


def test_show_both_ways_by_default_and_downstream_only(chain: Chain) -> None:
    code, out, _ = run_cli(chain.ws, "lineage", "show", "features@1")
    assert code == 0
    text = flat(out)
    assert "made from" in text
    assert "used by" in text
    assert "model churn@1" in text
    assert "dataset raw@1" in text

    code, out, _ = run_cli(chain.ws, "lineage", "show", "dataset:features@1", "--downstream")
    text = flat(out)
    assert code == 0
    assert "model churn@1" in text
    assert "raw@1" not in text


def test_show_json_and_depth(chain: Chain) -> None:
    code, out, _ = run_cli(
        chain.ws, "lineage", "show", "model:churn@1", "--upstream", "--depth", "1", "--json"
    )
    assert code == 0
    body = json.loads(out)
    assert body["direction"] == "upstream"
    assert body["depth"] == 1
    assert [n["ref"] for n in body["nodes"]] == ["model:churn@1", f"run:{chain.run.id}"]
    assert body["edges"] == [
        {
            "src": f"run:{chain.run.id}",
            "dst": f"model_version:{chain.model.id}",
            "relation": "registered",
        }
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "dataset:nope@1"], "error: dataset 'nope' does not exist"),
        (["show", "model:churn@staging"], "error: model 'churn' has no alias 'staging'"),
        (["show", "run:" + "f" * 32], f"error: run '{'f' * 32}' does not exist"),
        (["show", "raw@1", "--depth", "500"], "error: depth must be a whole number from 0"),
        (["export", "--format", "dot"], "error: unknown export format 'dot'"),
        (["export", "transform:nope"], "error: transform 'nope' does not exist"),
    ],
)
def test_bad_nodes_fail_with_one_error_line(chain: Chain, args: list[str], message: str) -> None:
    code, out, err = run_cli(chain.ws, "lineage", *args)
    assert code == 2
    assert out == ""
    assert err.startswith(message)


def test_export_prints_openlineage_events(chain: Chain, tmp_path: Path) -> None:
    code, out, _ = run_cli(chain.ws, "lineage", "export", "--format", "openlineage")
    assert code == 0
    events = json.loads(out)
    for event in events:
        check_run_event(event)
    assert sorted(e["job"]["name"] for e in events) == [
        "ingest.raw",
        "ingest.unrelated",
        "train.churn",
        "transform.features",
    ]

    target = tmp_path / "events.json"
    code, out, _ = run_cli(
        chain.ws, "lineage", "export", f"run:{chain.run.id}", "-o", str(target), "--namespace", "ns"
    )
    assert code == 0
    assert "wrote 3 OpenLineage events" in flat(out)
    written = json.loads(target.read_text())
    assert {e["job"]["namespace"] for e in written} == {"ns"}
    assert str(uuid.UUID(hex=chain.run.id)) in {e["run"]["runId"] for e in written}
