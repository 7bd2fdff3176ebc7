"""Shared fixtures: workspaces on SQLite and on PostgreSQL, and service availability.

PostgreSQL tests use the server at 127.0.0.1:5432 (or ``MLOOP_TEST_PG_URL``, a server-level URL
such as ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). Each test gets a database of
its own, cloned from a migrated template made once per session, and dropped afterwards. Without a
server these tests skip with the reason; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# OpenMP threads (scikit-learn's boosting, LightGBM, XGBoost) that find no work sleep instead of
# spinning: on 2 cores shared with PostgreSQL and worker processes, spinning threads turned
# 2 s fits into 20 s ones. Read once, when the OpenMP runtime loads: before any import below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import sqlalchemy as sa

from mloop.workspace import Workspace

PG_SERVER_URL = os.environ.get(
    "MLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_unavailable(reason: str) -> None:
    """Skip with ``reason`` on a developer machine; fail under CI, where services must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required services must be running)", pytrace=False)
    pytest.skip(reason)


def _admin_engine() -> sa.Engine:
    return sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def _db_url(name: str) -> str:
    return sa.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)


def _reachable_admin_engine() -> sa.Engine:
    """An AUTOCOMMIT engine on the server, or skip (fail under CI) saying why not."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        service_unavailable("psycopg is not installed (pip install 'mloop[postgres]')")
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        engine.dispose()
        service_unavailable(f"PostgreSQL is not reachable at {PG_SERVER_URL}: {exc.orig}")
    return engine


@contextlib.contextmanager
def _database(engine: sa.Engine, prefix: str, template: str | None = None) -> Iterator[str]:
    """Create a database of our own (a random name), yield its name, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"{clause}')
    try:
        yield name
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated to head, used as the template of every test's database."""
    from mloop.storage import Database

    engine = _reachable_admin_engine()
    try:
        with _database(engine, "mloop_tmpl") as name:
            db = Database(_db_url(name))
            db.upgrade()
            db.close()
            yield name
    finally:
        engine.dispose()


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    engine = _admin_engine()
    try:
        with _database(engine, "mloop_test", template=pg_template) as name:
            yield _db_url(name)
    finally:
        engine.dispose()


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database with no tables, for migration tests."""
    engine = _reachable_admin_engine()
    try:
        with _database(engine, "mloop_empty") as name:
            yield _db_url(name)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The metadata database URL of the parametrized backend."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'ws' / 'mloop.db'}"


@pytest.fixture
def ws(tmp_path: Path, database_url: str) -> Iterator[Workspace]:
    """A fresh workspace on each metadata backend (SQLite and PostgreSQL)."""
    workspace = Workspace.open(tmp_path / "ws", database_url=database_url)
    try:
        yield workspace
    finally:
        workspace.close()


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh embedded workspace (SQLite), for tests whose subject is not the backend."""
    workspace = Workspace.open(tmp_path / "ws")
    try:
        yield workspace
    finally:
        workspace.close()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's MLOOP_* settings or mloop.toml."""
    for key in list(os.environ):
        if key.startswith("MLOOP_") and key != "MLOOP_TEST_PG_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
