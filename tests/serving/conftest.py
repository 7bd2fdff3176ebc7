"""A workspace with a registered fraud model (version 1, champion) on each backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from mloop.demo.data import transactions
from mloop.storage import tables
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


@pytest.fixture
def served(ws: Workspace) -> Workspace:
    ws.datasets.ingest(transactions(400, seed=21), name="tx")
    ws.training.train("tx", "is_fraud", model=LOGREG, exclude=["transaction_id"], register="fraud")
    return ws


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    """Raw rows as a client sends them, with some missing values."""
    return transactions(25, seed=22).drop("transaction_id", "is_fraud").to_dicts()


def _logged(ws: Workspace) -> list[dict[str, Any]]:
    t = tables.predictions
    with ws.db.read() as conn:
        found = conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()
    return [dict(r) for r in found]


@pytest.fixture
def logged() -> Callable[[Workspace], list[dict[str, Any]]]:
    """Every row of a workspace's prediction log, oldest first."""
    return _logged
