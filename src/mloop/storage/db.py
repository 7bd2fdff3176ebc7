"""The metadata database: one SQLAlchemy engine, migrated by Alembic, SQLite or PostgreSQL.

``Database.read()`` and ``Database.write()`` each open one transaction. On SQLite a write takes
the write lock up front (``BEGIN IMMEDIATE``) so two writers queue on ``busy_timeout`` instead of
failing half-way, and the journal is WAL so readers never block the writer.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from mloop.core.errors import InvalidInput, StorageError

HEAD_REVISION = "0013"
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_ID = 724101  # the PostgreSQL advisory lock one migrator holds at a time
_WRITE = "mloop_write"
_migrate_lock = threading.Lock()


def _sqlite_file(url: sa.URL) -> Path | None:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def memory_sqlite(url: sa.URL) -> bool:
    """A SQLite database only the process that opened it sees (in memory)."""
    return _sqlite_file(url) is None


def _enable_wal(cursor: Any) -> None:
    """Switch a SQLite database to WAL (persistent, so only a new file really changes).

    The switch takes an exclusive lock without waiting on ``busy_timeout``: when several
    connections open a new database at once, the losers get "database is locked" and retry."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _url_options(url: sa.URL) -> list[str]:
    """The ``options`` the URL itself asks for (kept: connect_args would replace them)."""
    value = url.query.get("options")
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def create_engine(url: str) -> Engine:
    """An engine for ``url`` set up the way mloop needs it (WAL and IMMEDIATE on SQLite)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise InvalidInput(
            f"cannot read database URL {url!r}: "
            "use sqlite:///path/mloop.db or postgresql+psycopg://user@host/db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder of database {path}: {exc}") from exc
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_pre_ping=False,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # mloop issues BEGIN itself (see _on_begin)
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            _enable_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # LIKE matches case as on PostgreSQL (and as MLflow's search means it); ILIKE ignores it
            cursor.execute("PRAGMA case_sensitive_like=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get(_WRITE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    try:
        # JIT compiling pays off for long analytic queries, not for metadata lookups: on a
        # search over 100k runs it took 200 of 350 ms
        return sa.create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            connect_args={"options": " ".join([*_url_options(parsed), "-c jit=off"])},
        )
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise StorageError(
            f"cannot open database {parsed.render_as_string(hide_password=True)}: {exc}. "
            "For PostgreSQL install the extra: pip install 'mloop[postgres]'"
        ) from exc


class Database:
    """The metadata store. Thread-safe; share one per process and workspace."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """One read transaction."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise StorageError(f"metadata database {self.display_url}: {exc.orig}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: everything inside commits together or not at all."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise StorageError(f"metadata database {self.display_url}: {exc.orig}") from exc

    # -- schema ----------------------------------------------------------------------------

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot reach the metadata database {self.display_url}: {exc}"
            ) from exc

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema up to ``revision`` in place (a no-op when it is there already)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with _migrate_lock, self._file_lock(), self.engine.connect() as conn:
                conn.execution_options(**{_WRITE: True})  # SQLite: hold the write lock throughout
                if self.dialect == "postgresql":
                    # one migrator at a time across processes
                    conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
                try:
                    config.attributes["connection"] = conn
                    command.upgrade(config, revision)
                    conn.commit()
                finally:
                    if self.dialect == "postgresql":
                        conn.rollback()  # a failed migration leaves the transaction aborted
                        conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
                        conn.commit()
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot migrate the metadata database {self.display_url} to {revision}: {exc}"
            ) from exc

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """On a SQLite file, one migrator at a time across processes."""
        path = _sqlite_file(self.engine.url) if self.dialect == "sqlite" else None
        if path is None:
            yield
            return
        import fcntl

        with open(path.with_name(path.name + ".migrate-lock"), "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure_schema(self) -> None:
        """Migrate if behind; refuse a database written by a newer mloop."""
        current = self.current_revision()
        if current == HEAD_REVISION:
            return
        if current is not None and current > HEAD_REVISION:
            raise StorageError(
                f"the workspace database is at schema revision {current}, newer than this "
                f"mloop understands ({HEAD_REVISION}); upgrade mloop"
            )
        self.upgrade()

    def close(self) -> None:
        self.engine.dispose()
