"""Lineage edges between any two things mloop knows: sources, dataset versions, runs, model
versions. ``src --relation--> dst`` reads "dst was made from src"."""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from mloop.core.clock import now_ms
from mloop.storage import tables
from mloop.storage.db import Database

NodeType = Literal["source", "dataset_version", "suite", "run", "model_version"]


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

    def _walk(self, start: Node, upstream: bool, depth: int) -> list[Edge]:
        t = tables.lineage_edges
        seen: set[tuple[str, str]] = {(start.type, start.id)}
        frontier = [start]
        edges: list[Edge] = []
        with self._db.read() as conn:
            for _ in range(depth):
                next_frontier: list[Node] = []
                for node in frontier:
                    if upstream:
                        cond = sa.and_(t.c.dst_type == node.type, t.c.dst_id == node.id)
                    else:
                        cond = sa.and_(t.c.src_type == node.type, t.c.src_id == node.id)
                    for row in conn.execute(sa.select(t).where(cond).order_by(t.c.id)).mappings():
                        edge = Edge(
                            src=Node(type=row["src_type"], id=row["src_id"]),
                            dst=Node(type=row["dst_type"], id=row["dst_id"]),
                            relation=row["relation"],
                        )
                        edges.append(edge)
                        other = edge.src if upstream else edge.dst
                        if (other.type, other.id) not in seen:
                            seen.add((other.type, other.id))
                            next_frontier.append(other)
                if not next_frontier:
                    break
                frontier = next_frontier
        return edges

    def upstream(self, node_type: str, node_id: str, depth: int = 20) -> list[Edge]:
        """Every edge on the way back from a node to its raw sources."""
        return self._walk(Node(type=node_type, id=node_id), True, depth)

    def downstream(self, node_type: str, node_id: str, depth: int = 20) -> list[Edge]:
        """Every edge from a node to what was made from it."""
        return self._walk(Node(type=node_type, id=node_id), False, depth)
