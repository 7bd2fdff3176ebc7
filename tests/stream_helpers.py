"""Helpers of the stream tests (fixtures are in tests/data/streams/conftest.py): events,
a stream handle, NATS admin calls, and ``mloop data stream`` in a child process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.workspace import Workspace

NATS_ADDRESS = os.environ.get("MLOOP_TEST_NATS", "127.0.0.1:4222")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dumps(value: Any) -> bytes:
    """One event as compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


def events(ids: Sequence[int], **extra: Any) -> list[bytes]:
    """JSON events with these ids: an amount, a merchant, a flag (and ``extra`` fields)."""
    return [
        dumps(
            {
                "id": i,
                "amount": round((i * 7919) % 10_000 / 100, 2),
                "merchant": ("grocery", "fuel", "travel")[i % 3],
                "card_present": i % 2 == 0,
                **extra,
            }
        )
        for i in ids
    ]


def _nats(coro_fn: Callable[[Any], Any]) -> Any:
    import nats

    async def main() -> Any:
        nc = await nats.connect(
            f"nats://{NATS_ADDRESS}", connect_timeout=3, max_reconnect_attempts=0
        )
        try:
            return await coro_fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


def nats_consumer_info(uri: str, durable: str) -> Any:
    subject = uri.rsplit("/", 1)[1]

    async def info(js: Any) -> Any:
        stream = await js.find_stream_name_by_subject(subject)
        return await js.consumer_info(stream, durable)

    return _nats(info)


@dataclass
class Stream:
    """A stream for one test: its URI, and how to append events to it."""

    backend: str
    uri: str
    ws: Workspace

    def produce(self, payloads: Sequence[bytes]) -> int:
        return self.ws.streams.produce(self.uri, list(payloads))


# -- the command line in a process of its own ------------------------------------------------

CLI = [sys.executable, "-c", "from mloop.cli import main; main()"]


def spawn_stream(home: Path, dataset: str, uri: str, *args: str) -> subprocess.Popen[bytes]:
    """``mloop data stream`` in a child process (its stderr piped: the start line)."""
    return subprocess.Popen(
        [*CLI, "--workspace", str(home), "data", "stream", dataset, "--source", uri, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_started(process: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """Read the child's stderr until its 'consuming' line; False if it exited first."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            return False
        if line.startswith(b"consuming "):
            return True
    raise AssertionError("the consumer did not start in time")
