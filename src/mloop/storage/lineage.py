"""Lineage edges between any two things mloop knows: sources, dataset versions, transforms, runs,
model versions. ``src --relation--> dst`` reads "dst was made from src"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from mloop.core.clock import now_ms
from mloop.storage import tables
from mloop.storage.db import Database

NodeType = Literal["source", "dataset_version", "suite", "run", "model_version", "transform"]

# ids per IN (...) list: far below the bind-parameter limits of SQLite and PostgreSQL
CHUNK = 500


class Node(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    id: str


class Edge(BaseModel):
    model_config = ConfigDict(frozen=True)

    src: Node
    dst: Node
    relation: str


class LineageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def add(conn: Connection, src: tuple[str, str], dst: tuple[str, str], relation: str) -> None:
        """Record ``src --relation--> dst`` in the caller's transaction (idempotent, also when
        two transactions add the same edge at once)."""
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(tables.lineage_edges)
            .values(
                src_type=src[0],
                src_id=src[1],
                dst_type=dst[0],
                dst_id=dst[1],
                relation=relation,
                created_at=now_ms(),
            )
            .on_conflict_do_nothing()
        )

    def walk(self, starts: Sequence[tuple[str, str]], upstream: bool, depth: int) -> list[Edge]:
        """Breadth-first from ``starts``, at most ``depth`` hops, each edge once: nearest hops
        first, a hop's edges in the order of the nodes they leave, then of their creation.

        One query per node type per hop (chunks of ``CHUNK`` ids), never one per node; a node
        already reached is not walked again, so a cycle ends the walk instead of looping."""
        t = tables.lineage_edges
        near_type, near_id = (t.c.dst_type, t.c.dst_id) if upstream else (t.c.src_type, t.c.src_id)
        seen: set[tuple[str, str]] = set()
        frontier: list[tuple[str, str]] = []
        for node in starts:
            if node not in seen:
                seen.add(node)
                frontier.append(node)
        edges: list[Edge] = []
        with self._db.read() as conn:
            for _ in range(max(depth, 0)):
                if not frontier:
                    break
                order = {node: i for i, node in enumerate(frontier)}
                by_type: dict[str, list[str]] = {}
                for node_type, node_id in frontier:
                    by_type.setdefault(node_type, []).append(node_id)
                rows: list[Any] = []
                for node_type, ids in by_type.items():
                    for i in range(0, len(ids), CHUNK):
                        rows += (
                            conn.execute(
                                sa.select(t).where(
                                    near_type == node_type, near_id.in_(ids[i : i + CHUNK])
                                )
                            )
                            .mappings()
                            .all()
                        )
                near = ("dst_type", "dst_id") if upstream else ("src_type", "src_id")
                rows.sort(key=lambda r: (order[(r[near[0]], r[near[1]])], r["id"]))
                frontier = []
                for row in rows:
                    edge = Edge(
                        src=Node(type=row["src_type"], id=row["src_id"]),
                        dst=Node(type=row["dst_type"], id=row["dst_id"]),
                        relation=row["relation"],
                    )
                    edges.append(edge)
                    other = edge.src if upstream else edge.dst
                    key = (other.type, other.id)
                    if key not in seen:
                        seen.add(key)
                        frontier.append(key)
        return edges

    def upstream(self, node_type: str, node_id: str, depth: int = 20) -> list[Edge]:
        """Every edge on the way back from a node to its raw sources."""
        return self.walk([(node_type, node_id)], True, depth)

    def downstream(self, node_type: str, node_id: str, depth: int = 20) -> list[Edge]:
        """Every edge from a node to what was made from it."""
        return self.walk([(node_type, node_id)], False, depth)
