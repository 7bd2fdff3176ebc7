"""A real ``mloop serve`` per metadata backend, and the unmodified ``mlflow`` client aimed at it.

The server runs in a process of its own (``python -m mloop --workspace DIR serve``), on SQLite or
on a PostgreSQL database cloned from the session's migrated template; one per backend, shared
by the suite, so each test works in an experiment (and under model names) of its own. The
client runs in the test process with retries off and a short timeout, so a server error fails
the test at once instead of being retried for minutes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mloop.demo.runner import free_port
from mloop.workspace import Workspace

PG_SERVER_URL = os.environ.get(
    "MLOOP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
READY_WITHIN = 60.0  # seconds: a hang guard, never a measurement


@dataclass(frozen=True)
class Server:
    backend: str
    url: str
    home: Path
    database_url: str | None
    process: subprocess.Popen[bytes]
    log: Path

    def workspace(self) -> Workspace:
        """The server's workspace, opened in the test process (as a second client of its
        database)."""
        if self.database_url is None:
            return Workspace.open(self.home)
        return Workspace.open(self.home, database_url=self.database_url)


def _start(home: Path, database_url: str | None, backend: str) -> Server:
    port = free_port()
    log = home.parent / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOOP_", "MLFLOW_"))}
    if database_url is not None:
        env["MLOOP_DATABASE_URL"] = database_url
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mloop", "--workspace", str(home), "serve", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_WITHIN
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mloop serve exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return Server(backend, url, home, database_url, process, log)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"mloop serve was not ready within {READY_WITHIN}s")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's PID; SIGKILL if it does not stop."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session", params=BACKENDS)
def mlflow_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    backend: str = request.param
    home = tmp_path_factory.mktemp(f"mlflow-{backend}") / "ws"
    if backend == "sqlite":
        server = _start(home, None, backend)
        try:
            yield server
        finally:
            _stop(server.process)
        return
    template: str = request.getfixturevalue("pg_template")
    engine = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    name = f"mloop_mlflow_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = sa.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    try:
        server = _start(home, url, backend)
        try:
            yield server
        finally:
            _stop(server.process)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()


@pytest.fixture
def mlflow_client(mlflow_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The ``mlflow`` module pointed at the server, in an experiment of the test's own."""
    import mlflow

    settings = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",  # loading any model needs it (3.x)
        "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment(f"exp-{uuid.uuid4().hex[:12]}")
    try:
        yield mlflow
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture
def server_ws(mlflow_server: Server) -> Iterator[Workspace]:
    """The server's workspace, to check what the MLflow client wrote is ordinary mloop data."""
    ws = mlflow_server.workspace()
    try:
        yield ws
    finally:
        ws.close()
