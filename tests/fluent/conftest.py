"""Fixtures for the fluent API: where it logs, and real ``mloop serve`` processes.

``target`` runs a test four times: the fluent API on a local workspace (SQLite, PostgreSQL) and
on a real server (``python -m mloop serve``) whose workspace is on SQLite or PostgreSQL. Servers
live for the session (one per backend) and are shared, so each test logs to an experiment of
its own. After each test, runs still active are ended and the fluent API's process-wide state
is dropped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from fluent.support import Server, Target, reset_fluent, start_server, stop_server

PG_SERVER_URL = os.environ.get(
    "MLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MODES = [
    "local-sqlite",
    pytest.param("local-postgres", marks=pytest.mark.postgres),
    "remote-sqlite",
    pytest.param("remote-postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def server_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("server") / "ws")
    yield server
    stop_server(server.process)


@pytest.fixture(scope="session")
def shared_pg_url(pg_template: str) -> Iterator[str]:
    """One PostgreSQL database for the session's fluent tests (each logs to its own experiment):
    cloning a database per test would cost more than the tests."""
    engine = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    name = f"mloop_fluent_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield sa.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture(scope="session")
def server_postgres(tmp_path_factory: pytest.TempPathFactory, pg_template: str) -> Iterator[Server]:
    engine = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    name = f"mloop_srv_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    url = sa.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    try:
        server = start_server(tmp_path_factory.mktemp("server") / "ws", url)
        yield server
        stop_server(server.process)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture(params=MODES)
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Target]:
    """The fluent API initialised on one of the four stores, with an experiment of its own."""
    mode: str = request.param
    env: dict[str, str] = {}
    if mode.startswith("remote"):
        server: Server = request.getfixturevalue(f"server_{mode.split('-')[1]}")
        uri = server.url
    else:
        uri = str(tmp_path / "ws")
        if mode == "local-postgres":
            env["MLOOP_DATABASE_URL"] = request.getfixturevalue("shared_pg_url")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    chosen = Target(mode, uri, f"exp-{uuid.uuid4().hex[:12]}", env)
    reset_fluent()
    chosen.init()
    try:
        yield chosen
    finally:
        reset_fluent()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Target]:
    """The fluent API on an embedded workspace, for tests whose subject is not the store."""
    chosen = Target("local-sqlite", str(tmp_path / "ws"), f"exp-{uuid.uuid4().hex[:12]}")
    reset_fluent()
    chosen.init()
    try:
        yield chosen
    finally:
        reset_fluent()
