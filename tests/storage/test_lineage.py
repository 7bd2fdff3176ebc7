"""Lineage edges on both backends: idempotent adds, multi-hop walks that stop at cycles."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from mloop.storage import Database, Edge, LineageStore, Node, tables


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.ensure_schema()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def lineage(db: Database) -> LineageStore:
    return LineageStore(db)


def _add(db: Database, *edges: tuple[tuple[str, str], tuple[str, str], str]) -> None:
    with db.write() as conn:
        for src, dst, relation in edges:
            LineageStore.add(conn, src, dst, relation)


def _edge_count(db: Database) -> int:
    with db.read() as conn:
        query = sa.select(sa.func.count()).select_from(tables.lineage_edges)
        return int(conn.execute(query).scalar_one())


def _pairs(edges: list[Edge]) -> list[tuple[str, str]]:
    return [(e.src.id, e.dst.id) for e in edges]


SOURCE = ("source", "file:///data/iris.csv")
DV = ("dataset_version", "dv1")
RUN = ("run", "run1")
MV = ("model_version", "mv1")
CHAIN = [(SOURCE, DV, "ingested_from"), (DV, RUN, "trained_on"), (RUN, MV, "logged_by")]


def test_add_is_idempotent(db: Database) -> None:
    _add(db, (DV, RUN, "trained_on"), (DV, RUN, "trained_on"))
    _add(db, (DV, RUN, "trained_on"))
    assert _edge_count(db) == 1
    _add(db, (DV, RUN, "validated_by"))  # another relation is another edge
    _add(db, (RUN, DV, "trained_on"))  # and so is the other direction
    assert _edge_count(db) == 3


def test_add_joins_the_callers_transaction(db: Database, lineage: LineageStore) -> None:
    def change() -> None:
        with db.write() as conn:
            LineageStore.add(conn, DV, RUN, "trained_on")
            raise RuntimeError("the change it belongs to failed")

    with pytest.raises(RuntimeError, match="failed"):
        change()
    assert _edge_count(db) == 0
    assert lineage.downstream(*DV) == []


def test_upstream_walks_a_multi_hop_chain_back_to_the_source(
    db: Database, lineage: LineageStore
) -> None:
    _add(db, *CHAIN)
    edges = lineage.upstream(*MV)
    assert _pairs(edges) == [("run1", "mv1"), ("dv1", "run1"), (SOURCE[1], "dv1")]
    assert edges[0] == Edge(
        src=Node(type="run", id="run1"), dst=Node(type=MV[0], id="mv1"), relation="logged_by"
    )
    assert [e.relation for e in edges] == ["logged_by", "trained_on", "ingested_from"]
    assert lineage.upstream(*SOURCE) == []


def test_downstream_walks_a_multi_hop_chain_to_the_model(
    db: Database, lineage: LineageStore
) -> None:
    _add(db, *CHAIN)
    assert _pairs(lineage.downstream(*SOURCE)) == [
        (SOURCE[1], "dv1"),
        ("dv1", "run1"),
        ("run1", "mv1"),
    ]
    assert _pairs(lineage.downstream(*RUN)) == [("run1", "mv1")]
    assert lineage.downstream(*MV) == []


def test_walks_respect_depth(db: Database, lineage: LineageStore) -> None:
    _add(db, *CHAIN)
    assert _pairs(lineage.upstream(*MV, depth=1)) == [("run1", "mv1")]
    assert len(lineage.upstream(*MV, depth=2)) == 2
    assert lineage.upstream(*MV, depth=0) == []


def test_node_types_are_part_of_identity(db: Database, lineage: LineageStore) -> None:
    _add(db, (("dataset_version", "x"), ("run", "r"), "trained_on"))
    assert lineage.downstream("dataset_version", "x") != []
    assert lineage.downstream("model_version", "x") == []


@pytest.mark.parametrize("direction", ["upstream", "downstream"])
def test_walks_stop_at_cycles(db: Database, lineage: LineageStore, direction: str) -> None:
    a, b, c = ("run", "a"), ("run", "b"), ("run", "c")
    _add(db, (a, b, "r"), (b, c, "r"), (c, a, "r"), (c, c, "self"))
    edges = getattr(lineage, direction)(*a)
    assert sorted(_pairs(edges)) == [("a", "b"), ("b", "c"), ("c", "a"), ("c", "c")]
    assert len(edges) == len(set(edges))  # each edge once


def test_a_diamond_reports_each_edge_once(db: Database, lineage: LineageStore) -> None:
    top, left, right, bottom, tail = (("dataset_version", n) for n in "tlrbx")
    _add(
        db,
        (top, left, "r"),
        (top, right, "r"),
        (left, bottom, "r"),
        (right, bottom, "r"),
        (bottom, tail, "r"),
    )
    down = lineage.downstream(*top)
    assert sorted(_pairs(down)) == [("b", "x"), ("l", "b"), ("r", "b"), ("t", "l"), ("t", "r")]
    up = lineage.upstream(*tail)
    assert sorted(_pairs(up)) == sorted(_pairs(down))
    assert _pairs(up)[0] == ("b", "x")  # nearest hop first


@pytest.mark.postgres
def test_two_transactions_adding_the_same_edge_both_succeed(pg_url: str) -> None:
    """On PostgreSQL the second writer cannot see the first one's uncommitted edge; it must
    wait for it and then add nothing, not fail on the unique constraint."""
    db = Database(pg_url)
    errors: list[BaseException] = []
    first_added = threading.Event()

    def second_writer() -> None:
        try:
            first_added.wait()
            _add(db, (DV, RUN, "trained_on"))
        except BaseException as exc:
            errors.append(exc)

    second = threading.Thread(target=second_writer)
    second.start()
    with db.write() as conn:
        LineageStore.add(conn, DV, RUN, "trained_on")
        first_added.set()
        # commit only once the second writer waits on our row
        while second.is_alive() and not _someone_waits_for_a_lock(db):
            time.sleep(0.005)
    second.join()
    assert errors == []
    assert _edge_count(db) == 1
    db.close()


def _someone_waits_for_a_lock(db: Database) -> bool:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with db.read() as conn:  # a new transaction each time: activity is snapshotted per one
        return bool(conn.execute(query).scalar())
