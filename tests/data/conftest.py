"""Fixtures of the data-layer tests: what the store holds, and a small typed sales table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import pytest
import sqlalchemy as sa

from mloop.storage import tables
from mloop.workspace import Workspace


@dataclass(frozen=True)
class StoreState:
    """Every file under the artifact store and the row counts of the data tables."""

    files: frozenset[str]
    datasets: int
    versions: int
    suites: int
    lineage: int
    audit: int


def store_state(ws: Workspace) -> StoreState:
    root = ws.artifacts.root
    files = frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    def count(table: sa.Table) -> int:
        with ws.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    return StoreState(
        files=files,
        datasets=count(tables.datasets),
        versions=count(tables.dataset_versions),
        suites=count(tables.expectation_suites),
        lineage=count(tables.lineage_edges),
        audit=count(tables.audit_log),
    )


@pytest.fixture
def state() -> Callable[[Workspace], StoreState]:
    return store_state


def sales(n: int = 120) -> pl.DataFrame:
    """``n`` clean rows: a unique id, an amount in [1, 50], a city out of three, a quantity."""
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "amount": [float(i % 50) + 1.0 for i in range(n)],
            "city": [("NY", "LA", "SF")[i % 3] for i in range(n)],
            "qty": [i % 7 + 1 for i in range(n)],
        }
    )


@pytest.fixture
def sales_frame() -> pl.DataFrame:
    return sales()


@pytest.fixture
def make_sales() -> Callable[[int], pl.DataFrame]:
    return sales
