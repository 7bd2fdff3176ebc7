"""The audit log: who changed what, when, and why. Written in the same transaction as the change."""

from __future__ import annotations

import functools
import getpass
import os
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection

from mloop.core.clock import from_ms, now_ms
from mloop.core.ids import new_id
from mloop.storage import Database, tables


def local_actor() -> str:
    """In local single-user mode the actor is ``$MLOOP_USER`` or the operating-system user."""
    return os.environ.get("MLOOP_USER") or _os_user()


@functools.cache
def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid:{os.getuid()}"


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    time: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any]


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def record(
        conn: Connection,
        action: str,
        object_type: str,
        object_id: str,
        detail: dict[str, Any] | None = None,
        *,
        actor: str | None = None,
    ) -> None:
        """Add one record inside the caller's transaction."""
        conn.execute(
            tables.audit_log.insert().values(
                id=new_id(),
                ts=now_ms(),
                actor=actor or local_actor(),
                action=action,
                object_type=object_type,
                object_id=object_id,
                detail=detail or {},
            )
        )

    def list(
        self, *, object_type: str | None = None, object_id: str | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        t = tables.audit_log
        query = sa.select(t).order_by(t.c.ts.desc(), t.c.id.desc()).limit(limit)
        if object_type:
            query = query.where(t.c.object_type == object_type)
        if object_id:
            query = query.where(t.c.object_id == object_id)
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            AuditRecord(
                id=r["id"],
                time=from_ms(r["ts"]),
                actor=r["actor"],
                action=r["action"],
                object_type=r["object_type"],
                object_id=r["object_id"],
                detail=r["detail"],
            )
            for r in rows
        ]
