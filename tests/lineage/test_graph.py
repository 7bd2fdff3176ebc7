"""The lineage graph by human reference: source → dataset → transform output → run → model,
walked both ways on both backends; references resolved or refused; walks batched and bounded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from lineage.support import Chain
from mloop import InvalidInput, NotFound
from mloop.lineage import LineageGraph
from mloop.storage import Edge, LineageStore
from mloop.workspace import Workspace

embedded = pytest.mark.parametrize("backend", ["sqlite"])


def test_upstream_of_a_model_reaches_the_raw_source(chain: Chain) -> None:
    ws = chain.ws
    graph = ws.lineage.upstream("model:churn@1")
    assert isinstance(graph, LineageGraph)
    assert graph.direction == "upstream"
    assert graph.refs == [
        "model:churn@1",
        f"run:{chain.run.id}",
        "dataset:features@1",
        "dataset:raw@1",
        "transform:features@1",
        f"source:{chain.csv.resolve().as_uri()}",
    ]
    assert graph.root == f"model_version:{chain.model.id}"
    assert graph.parents("model:churn@1") == [("registered", graph.node(f"run:{chain.run.id}"))]
    assert {(rel, n.ref) for rel, n in graph.parents("dataset:features@1")} == {
        ("transformed", "dataset:raw@1"),
        ("produced", "transform:features@1"),
    }
    assert graph.parents("dataset:raw@1") == [
        ("ingested", graph.node(f"source:{chain.csv.resolve().as_uri()}"))
    ]
    assert len(graph.edges) == 5
    # nothing downstream of the model, nothing beside the chain
    assert "dataset:unrelated@1" not in graph.refs


def test_nodes_carry_human_labels_and_details(chain: Chain) -> None:
    graph = chain.ws.lineage.graph("model:churn@1", "upstream")
    model = graph.node("model:churn@1")
    assert (model.type, model.id, model.label) == ("model_version", chain.model.id, "churn@1")
    assert model.details["aliases"] == ["champion"]
    run = graph.node(f"run:{chain.run.id}")
    assert (run.label, run.details["experiment"], run.details["status"]) == (
        "lr",
        "churn",
        "FINISHED",
    )
    features = graph.node("dataset:features@1")
    assert (features.label, features.details["kind"], features.details["rows"]) == (
        "features@1",
        "transform",
        300,
    )
    step = graph.node("transform:features@1")
    assert (step.id, step.details["kind"]) == (chain.transform.id, "python")
    source = graph.node(f"source:{chain.csv.resolve().as_uri()}")
    assert source.label == chain.csv.resolve().as_uri()
    assert not any(node.missing for node in graph.nodes)


def test_downstream_of_the_source_reaches_the_model(chain: Chain) -> None:
    graph = chain.ws.lineage.downstream(f"source:{chain.csv.resolve().as_uri()}")
    assert graph.refs == [
        f"source:{chain.csv.resolve().as_uri()}",
        "dataset:raw@1",
        "dataset:features@1",
        f"run:{chain.run.id}",
        "model:churn@1",
    ]
    assert [e.relation for e in graph.edges] == [
        "ingested",
        "transformed",
        "trained_on",
        "registered",
    ]


def test_both_directions_and_depth(chain: Chain) -> None:
    ws = chain.ws
    both = ws.lineage.graph("features@1")  # a bare NAME@V is a dataset version
    assert set(both.refs) == {
        "dataset:features@1",
        "dataset:raw@1",
        "transform:features@1",
        f"source:{chain.csv.resolve().as_uri()}",
        f"run:{chain.run.id}",
        "model:churn@1",
    }
    near = ws.lineage.graph("dataset:features@1", "both", depth=1)
    assert set(near.refs) == {
        "dataset:features@1",
        "dataset:raw@1",
        "transform:features@1",
        f"run:{chain.run.id}",
    }
    alone = ws.lineage.graph("dataset:features@1", "upstream", depth=0)
    assert (alone.refs, alone.edges) == (["dataset:features@1"], [])


def test_every_kind_of_reference_resolves(chain: Chain) -> None:
    ws = chain.ws
    model_id = f"model_version:{chain.model.id}"
    for ref in ("model:churn@1", "model:churn@champion", "model:churn", "model:churn@latest"):
        assert ws.lineage.resolve(ref).key == model_id
    assert ws.lineage.resolve(f"model_version:{chain.model.id}").ref == "model:churn@1"
    raw = ws.datasets.get("raw@1")
    for ref in ("raw@1", "raw", "dataset:raw@1", "dataset:raw@latest", f"dataset_version:{raw.id}"):
        assert ws.lineage.resolve(ref).ref == "dataset:raw@1"
    dashed = str(uuid.UUID(hex=chain.run.id))  # as OpenLineage writes it
    for ref in (f"run:{chain.run.id}", f"run:{dashed}"):
        assert ws.lineage.resolve(ref).id == chain.run.id
    for ref in ("transform:features", "transform:features@1"):
        assert ws.lineage.resolve(ref).id == chain.transform.id
    uri = chain.csv.resolve().as_uri()
    assert ws.lineage.resolve(f"source:{uri}").id == uri
    assert ws.lineage.resolve(f"source:{chain.csv}").id == uri  # the path it was ingested from


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("dataset:nope@1", "dataset 'nope' does not exist"),
        ("raw@7", "dataset 'raw' has no version 7"),
        ("nope", "dataset 'nope' does not exist"),
        ("run:" + "0" * 32, "run '0000"),
        ("run:not-a-run", "run 'not-a-run' does not exist"),
        ("model:nope@1", "model 'nope'"),
        ("model:churn@staging", "model 'churn' has no alias 'staging'"),
        ("model:churn@4", "churn"),
        ("source:file:///no/such.csv", "source 'file:///no/such.csv' is not in the lineage"),
        ("transform:nope", "transform 'nope' does not exist"),
        ("transform:features@3", "transform 'features' has no version 3"),
        ("suite:nope", "suite 'nope' does not exist"),
    ],
)
def test_unknown_nodes_are_not_found(chain: Chain, ref: str, message: str) -> None:
    with pytest.raises(NotFound, match=message):
        chain.ws.lineage.graph(ref)


@embedded
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ws: ws.lineage.graph(""), "empty node reference"),
        (lambda ws: ws.lineage.graph("run:"), "names nothing after 'run'"),
        (lambda ws: ws.lineage.graph("raw@1", depth=-1), "depth must be a whole number"),
        (lambda ws: ws.lineage.graph("raw@1", depth=101), "from 0 to 100"),
        (lambda ws: ws.lineage.graph("raw@1", "sideways"), "upstream, downstream or both"),
    ],
)
def test_bad_requests_are_invalid(chain: Chain, call: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(chain.ws)  # type: ignore[operator]


def test_the_store_s_raw_form_still_answers_with_edges(chain: Chain) -> None:
    ws = chain.ws
    edges = ws.lineage.upstream("run", chain.run.id)
    assert isinstance(edges, list)
    assert all(isinstance(e, Edge) for e in edges)
    features = ws.datasets.get("features@1")
    assert (edges[0].src.id, edges[0].relation) == (features.id, "trained_on")
    assert [e.dst.id for e in ws.lineage.downstream("run", chain.run.id)] == [chain.model.id]
    assert isinstance(ws.lineage, LineageStore)


@pytest.fixture
def statements(ws: Workspace) -> Iterator[list[str]]:
    """Every SQL statement the workspace's engine runs while the test runs."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    sa.event.listen(ws.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(ws.db.engine, "before_cursor_execute", record)


def test_a_wide_graph_is_walked_and_labelled_in_a_few_queries(
    ws: Workspace, statements: list[str]
) -> None:
    """120 versions fed from 120 sources into one run: the walk reads one hop per query and
    labels all of a type in one query, never a query per edge or per node."""
    versions = [ws.datasets.ingest([{"i": i}], name=f"part{i}") for i in range(3)]
    with ws.db.write() as conn:
        for i in range(120):
            src = ("source", f"mem://part/{i}")
            LineageStore.add(conn, src, ("dataset_version", versions[i % 3].id), "ingested")
            LineageStore.add(conn, ("dataset_version", f"v{i:03d}"), ("run", "r" * 32), "read")
            LineageStore.add(conn, src, ("dataset_version", f"v{i:03d}"), "ingested")
    statements.clear()
    up = ws.lineage.walk([("run", "r" * 32)], True, 5)
    assert len(up) == 240
    walk_queries = [s for s in statements if "lineage_edges" in s]
    assert len(walk_queries) <= 3  # hop 1, hop 2, and the empty hop 3

    statements.clear()
    graph = ws.lineage.graph("dataset:part0@1", "upstream")
    assert len(graph.nodes) == 1 + 40
    assert len(statements) <= 12


def test_cycles_end_the_walk_and_each_edge_appears_once(ws: Workspace) -> None:
    a, b, c = (("dataset_version", n) for n in ("a", "b", "c"))
    with ws.db.write() as conn:
        LineageStore.add(conn, a, b, "r")
        LineageStore.add(conn, b, c, "r")
        LineageStore.add(conn, c, a, "r")
    version = ws.datasets.ingest([{"x": 1}], name="real")
    with ws.db.write() as conn:
        LineageStore.add(conn, ("dataset_version", version.id), a, "r")
        LineageStore.add(conn, c, ("dataset_version", version.id), "r")
    graph = ws.lineage.graph("real@1", "downstream", depth=100)
    assert len(graph.edges) == 5  # real→a→b→c, c→a and c→real: each once, then the walk ends
    assert len({(e.src, e.dst, e.relation) for e in graph.edges}) == 5
    missing = [n for n in graph.nodes if n.missing]
    assert sorted(n.id for n in missing) == ["a", "b", "c"]  # edges to versions that are gone
    assert all(n.label.endswith("(no longer exists)") for n in missing)
