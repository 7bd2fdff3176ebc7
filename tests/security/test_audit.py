"""The audit log on both backends: written inside the change's transaction, listed with filters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mloop.core.clock import from_ms, now_ms
from mloop.core.ids import is_id, new_id
from mloop.security import AuditLog, AuditRecord, local_actor
from mloop.storage import Database, tables


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.ensure_schema()
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db)


def test_a_record_reads_back_whole(
    db: Database, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOOP_USER", "alice")
    before = now_ms()
    with db.write() as conn:
        AuditLog.record(
            conn, "model.alias.set", "model", "churn", {"alias": "prod", "version": 3, "ok": True}
        )
    after = now_ms()
    [record] = audit.list()
    assert isinstance(record, AuditRecord)
    assert is_id(record.id)
    assert record.actor == "alice"
    assert (record.action, record.object_type, record.object_id) == (
        "model.alias.set",
        "model",
        "churn",
    )
    assert record.detail == {"alias": "prod", "version": 3, "ok": True}
    assert record.time.utcoffset() == timedelta(0)
    assert from_ms(before) <= record.time <= from_ms(after)


def test_an_explicit_actor_and_an_empty_detail(db: Database, audit: AuditLog) -> None:
    with db.write() as conn:
        AuditLog.record(conn, "dataset.delete", "dataset", "iris", actor="token:ci")
    [record] = audit.list()
    assert record.actor == "token:ci"
    assert record.detail == {}


def test_records_roll_back_with_the_change(db: Database, audit: AuditLog) -> None:
    def change() -> None:
        with db.write() as conn:
            conn.execute(tables.datasets.insert().values(id=new_id(), name="iris", created_at=1))
            AuditLog.record(conn, "dataset.create", "dataset", "iris")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="failed"):
        change()
    assert audit.list() == []
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.datasets)).scalar() == 0


def test_records_commit_with_the_change(db: Database, audit: AuditLog) -> None:
    with db.write() as conn:
        conn.execute(tables.datasets.insert().values(id=new_id(), name="iris", created_at=now_ms()))
        AuditLog.record(conn, "dataset.create", "dataset", "iris")
    assert [r.action for r in audit.list()] == ["dataset.create"]


@pytest.fixture
def several(db: Database) -> list[tuple[str, str, str]]:
    made = [
        ("dataset.create", "dataset", "iris"),
        ("dataset.create", "dataset", "wine"),
        ("run.start", "run", "iris"),  # same object id, another type
        ("dataset.version", "dataset", "iris"),
        ("model.register", "model", "churn"),
    ]
    for action, object_type, object_id in made:
        with db.write() as conn:
            AuditLog.record(conn, action, object_type, object_id, actor="bob")
    return made


def test_list_is_newest_first(audit: AuditLog, several: list[tuple[str, str, str]]) -> None:
    assert [r.action for r in audit.list()] == [a for a, _, _ in reversed(several)]


def test_list_filters_by_object_type_and_id(
    audit: AuditLog, several: list[tuple[str, str, str]]
) -> None:
    by_type = audit.list(object_type="dataset")
    assert [(r.action, r.object_id) for r in by_type] == [
        ("dataset.version", "iris"),
        ("dataset.create", "wine"),
        ("dataset.create", "iris"),
    ]
    by_id = audit.list(object_id="iris")
    assert [r.action for r in by_id] == ["dataset.version", "run.start", "dataset.create"]
    both = audit.list(object_type="dataset", object_id="iris")
    assert [r.action for r in both] == ["dataset.version", "dataset.create"]
    assert audit.list(object_type="model", object_id="iris") == []


def test_list_limit(audit: AuditLog, several: list[tuple[str, str, str]]) -> None:
    assert [r.action for r in audit.list(limit=2)] == ["model.register", "dataset.version"]
    assert len(audit.list(limit=100)) == len(several)


def test_local_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_USER", "carol")
    assert local_actor() == "carol"
    monkeypatch.delenv("MLOOP_USER")
    actor = local_actor()
    assert isinstance(actor, str)
    assert actor
