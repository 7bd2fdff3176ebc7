"""What promotion keeps in the registry: a policy per registered model (its gates, the dataset
they are computed on, the alias they guard), the history of every alias move (what rollback
walks back through), and stored evaluations of versions on dataset versions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import InvalidInput
from mloop.core.ids import new_id
from mloop.registry.gates import parse_gates
from mloop.security import local_actor
from mloop.storage import tables

ACTIONS = ("set", "promote", "rollback", "delete")
DEFAULT_LATENCY_ROWS = 200


class PromotionPolicy(BaseModel):
    """The gates a version must pass to take ``alias``, computed on ``dataset``."""

    model_config = ConfigDict(frozen=True)

    model: str
    gates: list[str]
    dataset: str  # NAME or NAME@VERSION: the evaluation dataset
    alias: str = "champion"
    sensitive: list[str] = Field(default_factory=list)  # columns of the fairness report
    slices: list[str] = Field(default_factory=list)  # columns to slice metrics by
    latency_rows: int = DEFAULT_LATENCY_ROWS  # single-row predictions timed for latency_*
    updated_at: datetime | None = None
    updated_by: str | None = None

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"model", "updated_at", "updated_by"})


def check_policy(
    model: str,
    *,
    gates: Sequence[str],
    dataset: str,
    alias: str,
    sensitive: Sequence[str],
    slices: Sequence[str],
    latency_rows: int,
) -> PromotionPolicy:
    """A policy, every part checked (InvalidInput names the first bad one)."""
    parse_gates(gates)
    if not isinstance(dataset, str) or not dataset.strip():
        raise InvalidInput("a promotion policy needs the evaluation dataset (NAME or NAME@V)")
    if not 1 <= latency_rows <= 100_000:
        raise InvalidInput(f"latency_rows must be between 1 and 100000, not {latency_rows}")
    for kind, columns in (("sensitive", sensitive), ("slice", slices)):
        if isinstance(columns, str):
            raise InvalidInput(f"give the {kind} columns as a list")
        if len(set(columns)) != len(list(columns)):
            raise InvalidInput(f"a {kind} column is given twice")
    return PromotionPolicy(
        model=model,
        gates=list(gates),
        dataset=dataset.strip(),
        alias=alias,
        sensitive=list(sensitive),
        slices=list(slices),
        latency_rows=latency_rows,
    )


class AliasChange(BaseModel):
    """One move of an alias: to ``version`` (None: removed) from ``previous``."""

    model_config = ConfigDict(frozen=True)

    id: int
    model: str
    alias: str
    version: int | None
    previous: int | None
    action: str
    reason: str | None
    detail: dict[str, Any]
    created_at: datetime
    created_by: str | None


def record_alias_change(
    conn: Connection,
    model_id: str,
    alias: str,
    version: int | None,
    previous: int | None,
    action: str,
    reason: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    assert action in ACTIONS
    conn.execute(
        tables.model_alias_history.insert().values(
            model_id=model_id,
            alias=alias,
            version=version,
            previous=previous,
            action=action,
            reason=reason,
            detail=detail or {},
            created_at=now_ms(),
            created_by=local_actor(),
        )
    )


def alias_changes(
    conn: Connection, model_id: str, name: str, alias: str | None = None
) -> list[AliasChange]:
    """The model's alias moves, oldest first (one alias, or all)."""
    h = tables.model_alias_history
    query = sa.select(h).where(h.c.model_id == model_id).order_by(h.c.id)
    if alias is not None:
        query = query.where(h.c.alias == alias)
    return [
        AliasChange(
            id=row["id"],
            model=name,
            alias=row["alias"],
            version=row["version"],
            previous=row["previous"],
            action=row["action"],
            reason=row["reason"],
            detail=dict(row["detail"] or {}),
            created_at=from_ms(row["created_at"]),
            created_by=row["created_by"],
        )
        for row in conn.execute(query).mappings()
    ]


def alias_stack(changes: Sequence[AliasChange]) -> list[int]:
    """The versions an alias has held that a rollback can return to, the current one last:
    each move pushes its version, a rollback pops the version it left, a removal empties it."""
    stack: list[int] = []
    for change in changes:
        if change.action == "delete" or change.version is None:
            stack.clear()
        elif change.action == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != change.version:
                stack.append(change.version)
        elif not stack or stack[-1] != change.version:
            stack.append(change.version)
    return stack


class StoredEvaluation(BaseModel):
    """A model version's results on a dataset version: flat ``metrics`` (what gates read) and
    ``details`` (slices, fairness groups, calibration, explanations)."""

    model_config = ConfigDict(frozen=True)

    id: str
    model_version_id: str
    dataset_version_id: str
    spec: dict[str, Any]
    metrics: dict[str, float]
    details: dict[str, Any]
    created_at: datetime


def save_evaluation(
    conn: Connection,
    model_version_id: str,
    dataset_version_id: str,
    spec_hash: str,
    spec: dict[str, Any],
    metrics: dict[str, float],
    details: dict[str, Any],
) -> StoredEvaluation:
    evaluation_id = new_id()
    now = now_ms()
    conn.execute(
        tables.model_evaluations.insert().values(
            id=evaluation_id,
            model_version_id=model_version_id,
            dataset_version_id=dataset_version_id,
            spec_hash=spec_hash,
            spec=spec,
            metrics=metrics,
            details=details,
            created_at=now,
            created_by=local_actor(),
        )
    )
    return StoredEvaluation(
        id=evaluation_id,
        model_version_id=model_version_id,
        dataset_version_id=dataset_version_id,
        spec=spec,
        metrics=metrics,
        details=details,
        created_at=from_ms(now),
    )


def find_evaluation(
    conn: Connection, model_version_id: str, dataset_version_id: str, spec_hash: str
) -> StoredEvaluation | None:
    e = tables.model_evaluations
    row = (
        conn.execute(
            sa.select(e)
            .where(
                e.c.model_version_id == model_version_id,
                e.c.dataset_version_id == dataset_version_id,
                e.c.spec_hash == spec_hash,
            )
            .order_by(e.c.created_at.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return StoredEvaluation(
        id=row["id"],
        model_version_id=row["model_version_id"],
        dataset_version_id=row["dataset_version_id"],
        spec=dict(row["spec"]),
        metrics=dict(row["metrics"]),
        details=dict(row["details"]),
        created_at=from_ms(row["created_at"]),
    )
