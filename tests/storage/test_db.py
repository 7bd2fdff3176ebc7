"""The metadata database on both backends: migrations, transactions, SQLite's locking, errors."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mloop.core.errors import InvalidInput, StorageError
from mloop.core.ids import new_id
from mloop.storage import HEAD_REVISION, Database, tables
from mloop.storage.db import MIGRATION_LOCK_ID
from mloop.workspace import Workspace


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database (no tables, no revision) on the parametrized backend."""
    if backend == "postgres":
        return str(request.getfixturevalue("empty_pg_url"))
    return f"sqlite:///{tmp_path / 'ws' / 'mloop.db'}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.ensure_schema()
    try:
        yield database
    finally:
        database.close()


def _with_lock_timeout(pg_url: str) -> str:
    """The same PostgreSQL URL, whose sessions give up waiting for a lock after 200 ms: a
    migrator that wrongly waits for the migration lock fails at once instead of hanging."""
    url = sa.make_url(pg_url).update_query_dict({"options": "-c lock_timeout=200"})
    return url.render_as_string(hide_password=False)


def _insert_dataset(conn: sa.Connection, name: str) -> str:
    dataset_id = new_id()
    conn.execute(
        tables.datasets.insert().values(id=dataset_id, name=name, description=None, created_at=1)
    )
    return dataset_id


def _count(db: Database, table: sa.Table) -> int:
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# -- migrations ----------------------------------------------------------------------------


def test_a_fresh_database_migrates_to_head(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        assert db.current_revision() is None
        db.ensure_schema()
        assert db.current_revision() == HEAD_REVISION
        names = set(sa.inspect(db.engine).get_table_names())
        assert set(tables.metadata.tables) <= names
    finally:
        db.close()


def test_ensure_schema_is_a_noop_at_head(backend: str, database_url: str) -> None:
    """At head, ensure_schema does not even take the migration lock; upgrade() would."""
    Database(database_url).ensure_schema()
    if backend == "sqlite":
        # put a folder where the migrator's lock file goes: any migration attempt now fails
        db_file = Path(sa.make_url(database_url).database or "")
        lock = db_file.with_name(db_file.name + ".migrate-lock")
        lock.unlink(missing_ok=True)
        lock.mkdir()
        db = Database(database_url)
        db.ensure_schema()
        assert db.current_revision() == HEAD_REVISION
        with pytest.raises(OSError, match="Is a directory"):  # the trap is real
            db.upgrade()
        db.close()
        return
    holder = sa.create_engine(database_url)
    try:
        with holder.connect() as held:
            held.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
            db = Database(_with_lock_timeout(database_url))
            db.ensure_schema()
            assert db.current_revision() == HEAD_REVISION
            with pytest.raises(StorageError, match="lock"):  # the trap is real
                db.upgrade()
            db.close()
            held.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
    finally:
        holder.dispose()


def test_many_first_openers_at_once_all_succeed(fresh_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        db = Database(fresh_url)
        try:
            start.wait()
            db.ensure_schema()
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    workers = [threading.Thread(target=open_it) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    db = Database(fresh_url)
    assert db.current_revision() == HEAD_REVISION
    db.close()


def test_a_database_newer_than_the_code_is_refused(db: Database, tmp_path: Path) -> None:
    with db.write() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    newer = Database(db.url)
    with pytest.raises(StorageError, match=r"revision 0099, newer than .*upgrade mloop"):
        newer.ensure_schema()
    newer.close()
    with pytest.raises(StorageError, match="0099"):
        Workspace.open(tmp_path / "ws", database_url=db.url)
    assert db.current_revision() == "0099"  # left as it was


def test_a_failed_migration_reports_its_cause_and_changes_nothing(
    backend: str, fresh_url: str
) -> None:
    db = Database(fresh_url)
    db.upgrade("0001")
    with db.write() as conn:  # squat on a table that revision 0002 creates second
        conn.exec_driver_sql("CREATE TABLE predictions (x INTEGER)")
    with pytest.raises(StorageError, match="predictions"):
        db.upgrade()
    assert db.current_revision() == "0001"
    assert "audit_log" not in sa.inspect(db.engine).get_table_names()  # 0002 rolled back whole
    with db.write() as conn:
        conn.exec_driver_sql("DROP TABLE predictions")
    # the migration lock was released: a new migrator does not wait for it
    retry = Database(_with_lock_timeout(fresh_url) if backend == "postgres" else fresh_url)
    retry.upgrade()
    assert retry.current_revision() == HEAD_REVISION
    retry.close()
    db.close()


# -- transactions --------------------------------------------------------------------------


def test_a_write_commits_as_a_whole(db: Database) -> None:
    with db.write() as conn:
        _insert_dataset(conn, "a")
        _insert_dataset(conn, "b")
    assert _count(db, tables.datasets) == 2


def test_a_write_that_raises_leaves_nothing_behind(db: Database) -> None:
    def change() -> None:
        with db.write() as conn:
            dataset_id = _insert_dataset(conn, "iris")
            conn.execute(
                tables.audit_log.insert().values(
                    id=new_id(),
                    ts=1,
                    actor="me",
                    action="dataset.create",
                    object_type="dataset",
                    object_id=dataset_id,
                    detail={},
                )
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        change()
    assert _count(db, tables.datasets) == 0
    assert _count(db, tables.audit_log) == 0


def test_a_failing_statement_rolls_back_the_earlier_ones(db: Database) -> None:
    def change() -> None:
        with db.write() as conn:
            _insert_dataset(conn, "first")
            _insert_dataset(conn, "dup")
            _insert_dataset(conn, "dup")

    with pytest.raises(sa.exc.IntegrityError, match=r"(?i)unique"):
        change()
    assert _count(db, tables.datasets) == 0


def test_uncommitted_writes_are_invisible_to_readers(db: Database) -> None:
    with db.write() as conn:
        _insert_dataset(conn, "pending")
        assert _count(db, tables.datasets) == 0  # another connection, not blocked
    assert _count(db, tables.datasets) == 1


def test_foreign_keys_are_enforced(db: Database) -> None:
    orphan = tables.runs.insert().values(
        id=new_id(),
        experiment_id=new_id(),  # no such experiment
        name="orphan",
        status="RUNNING",
        start_time=1,
        lifecycle_stage="active",
    )
    with pytest.raises(sa.exc.IntegrityError, match=r"(?i)foreign key"):
        _write(db, orphan)
    assert _count(db, tables.runs) == 0


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'mloop.db'}")
    for transaction in (db.read, db.write):
        with transaction() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    db.close()


@pytest.mark.parametrize("shared", [True, False], ids=["one-database", "two-databases"])
def test_two_threads_writing_to_sqlite_both_succeed(tmp_path: Path, shared: bool) -> None:
    """Each write reads a count and inserts a row named after it: a read-modify-write that
    only works when writers queue (BEGIN IMMEDIATE) instead of failing on a lock upgrade or
    racing into a unique-name clash."""
    url = f"sqlite:///{tmp_path / 'mloop.db'}"
    first = Database(url)
    first.ensure_schema()
    second = first if shared else Database(url)
    per_thread = 40
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(db: Database) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                with db.write() as conn:
                    n = conn.execute(
                        sa.select(sa.func.count())
                        .select_from(tables.experiments)
                        .where(tables.experiments.c.name != "Default")
                    ).scalar_one()
                    conn.execute(
                        tables.experiments.insert().values(
                            id=new_id(), name=f"exp-{n}", lifecycle_stage="active", created_at=1
                        )
                    )
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(db,)) for db in (first, second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with first.read() as conn:
        names = set(conn.execute(sa.select(tables.experiments.c.name)).scalars())
    assert names - {"Default"} == {f"exp-{i}" for i in range(2 * per_thread)}
    first.close()
    second.close()


# -- errors --------------------------------------------------------------------------------


def _unreachable_urls(tmp_path: Path) -> dict[str, str]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return {
        "postgres-refused": "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/mloop",
        "postgres-no-driver": "postgresql+nodriver://postgres:s3cret@127.0.0.1/mloop",
        "sqlite-is-a-folder": f"sqlite:///{folder}",
        "sqlite-under-a-file": f"sqlite:///{a_file / 'mloop.db'}",
    }


def _read(db: Database) -> None:
    with db.read() as conn:
        conn.exec_driver_sql("SELECT 1")


def _write(db: Database, statement: sa.Executable = sa.text("SELECT 1")) -> None:
    with db.write() as conn:
        conn.execute(statement)


USES: dict[str, Callable[[Database], object]] = {
    "ensure_schema": Database.ensure_schema,
    "upgrade": Database.upgrade,
    "current_revision": Database.current_revision,
    "read": _read,
    "write": _write,
}


@pytest.mark.parametrize("use", USES)
@pytest.mark.parametrize(
    "case", ["postgres-refused", "postgres-no-driver", "sqlite-is-a-folder", "sqlite-under-a-file"]
)
def test_an_unreachable_database_raises_storage_error(tmp_path: Path, case: str, use: str) -> None:
    url = _unreachable_urls(tmp_path)[case]

    def attempt() -> None:
        db = Database(url)  # on some URLs this already fails
        try:
            USES[use](db)
        finally:
            db.close()

    with pytest.raises(StorageError) as info:
        attempt()
    assert "s3cret" not in str(info.value)


def test_an_unreachable_workspace_database_raises_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"127\.0\.0\.1"):
        Workspace.open(tmp_path / "ws", database_url="postgresql+psycopg://u@127.0.0.1:1/x")


@pytest.mark.parametrize("url", ["not a url", "", "://nothing"])
def test_a_malformed_url_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput, match="database URL"):
        Database(url)


def test_display_url_hides_the_password() -> None:
    db = Database("postgresql+psycopg://alice:s3cret@db.example:5432/mloop")
    assert "s3cret" not in db.display_url
    assert "alice" in db.display_url
    assert db.dialect == "postgresql"
    db.close()
