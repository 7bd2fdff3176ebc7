"""The raw JetStream pull client against a scripted server: every status that ends a pull is
looked at, the connection is kept alive with PINGs, every pull carries max_bytes, and a
server that never finishes the handshake is an error, not a hang. No broker needed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mloop.data.streams import StreamUnavailable
from mloop.data.streams import nats as raw

NEXT = "$JS.API.CONSUMER.MSG.NEXT.s.d"


class FakeNats:
    """One connection: INFO, answers the handshake's PING, then ``on_pull(body)`` returns the
    bytes to send for each pull request; later PINGs are answered while ``pong`` is set."""

    def __init__(
        self,
        on_pull: Callable[[dict[str, Any], bytes], bytes],
        *,
        info: bool = True,
        pong: bool = True,
    ) -> None:
        self.on_pull, self.info, self.pong = on_pull, info, pong
        self.pulls: list[dict[str, Any]] = []
        self.pings = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            if not self.info:
                time.sleep(5)
                return
            conn.sendall(b'INFO {"server_id":"fake","max_payload":1048576}\r\n')
            rest, inbox = b"", b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                rest += chunk
                while b"\r\n" in rest:
                    line, _, rest = rest.partition(b"\r\n")
                    if line == b"PING":
                        self.pings += 1
                        if self.pings == 1 or self.pong:
                            conn.sendall(b"PONG\r\n")
                    elif line.startswith(b"SUB "):
                        inbox = line.split()[1]
                    elif line.startswith(b"PUB "):
                        size = int(line.split()[-1])
                        while len(rest) < size + 2:
                            rest += conn.recv(65536)
                        body, rest = rest[:size], rest[size + 2 :]
                        if line.split()[1] == NEXT.encode():
                            request = json.loads(body)
                            self.pulls.append(request)
                            conn.sendall(self.on_pull(request, inbox))

    def close(self) -> None:
        self.listener.close()


def status(inbox: bytes, line: str) -> bytes:
    head = f"NATS/1.0 {line}\r\n\r\n".encode()
    return b"HMSG %s 1 %d %d\r\n%s\r\n" % (inbox, len(head), len(head), head)


@pytest.fixture
def puller_of() -> Iterator[Callable[..., raw._RawPuller]]:
    made: list[tuple[FakeNats, raw._RawPuller]] = []

    def make(on_pull: Any, **kw: Any) -> raw._RawPuller:
        server = FakeNats(on_pull, **kw)
        puller = raw._RawPuller(server.address, NEXT, 100, 10_000, "d")
        made.append((server, puller))
        puller.handshake()
        return puller

    yield make
    for server, puller in made:
        puller.close()
        server.close()


def _take_until_failure(puller: raw._RawPuller, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        puller.take(10, 0.2)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("409 Consumer Deleted", "was deleted"),
        ("503", "no responder"),
        ("400 Bad Request", "400 Bad Request"),
        ("409 Exceeded MaxRequestBatch of 10", "Exceeded MaxRequestBatch"),
        ("409 Message Size Exceeds MaxBytes", "larger than a pull request may bring"),
    ],
)
def test_a_status_that_is_not_passing_fails_the_pull_with_its_reason(
    puller_of: Any, line: str, reason: str
) -> None:
    puller = puller_of(lambda _req, inbox: status(inbox, line))
    with pytest.raises(StreamUnavailable, match=reason):
        _take_until_failure(puller, 5)


@pytest.mark.parametrize(
    "line",
    ["408 Request Timeout", "404 No Messages", "409 Exceeded MaxWaiting", "409 Leadership Change"],
)
def test_passing_statuses_end_the_request_and_another_is_sent(puller_of: Any, line: str) -> None:
    server_pulls: list[Any] = []

    def answer(request: dict[str, Any], inbox: bytes) -> bytes:
        server_pulls.append(request)
        return status(inbox, line)

    puller = puller_of(answer)
    deadline = time.monotonic() + 5
    while len(server_pulls) < 3 and time.monotonic() < deadline:
        assert len(puller.take(10, 0.1)) == 0
    assert len(server_pulls) >= 3
    assert puller.failure is None


def test_every_pull_carries_max_bytes_within_the_budget(puller_of: Any) -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: dict[str, Any], inbox: bytes) -> bytes:
        seen.append(request)
        return status(inbox, "408 Request Timeout")

    puller = puller_of(answer)
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        puller.take(10, 0.1)
    assert seen
    # an empty buffer: the whole budget, here less than the server's largest message
    assert all(r["max_bytes"] == puller.max_message + raw.BYTES_SLACK for r in seen)
    # as the buffer fills: its free bytes, never less than the server's largest message
    assert _body(puller, buffered=4_000)["max_bytes"] == puller.max_message + raw.BYTES_SLACK
    puller.max_message, puller.prefetch_bytes = 100_000, 1_000_000
    assert _body(puller, buffered=400_000)["max_bytes"] == 600_000
    assert _body(puller, buffered=990_000)["max_bytes"] == 100_000 + raw.BYTES_SLACK
    assert _body(puller, buffered=1_000_000) is None


def _body(puller: raw._RawPuller, *, buffered: int) -> Any:
    with puller.lock:
        saved = (puller.outstanding, puller.buffered_bytes)
        puller.outstanding, puller.buffered_bytes = 0, buffered
        try:
            body = puller.request()
        finally:
            puller.outstanding, puller.buffered_bytes = saved
    return None if body is None else json.loads(body)


def test_a_server_that_stops_answering_pings_fails_the_connection(
    puller_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(raw, "PING_SECONDS", 0.2)
    puller = puller_of(lambda _req, inbox: status(inbox, "408 Request Timeout"), pong=False)
    # the missed pong is what it notices; on a loaded machine the fake server's end may close
    # first, and the next write fails instead — either way the connection is declared dead
    with pytest.raises(StreamUnavailable, match=r"stopped answering|Broken pipe"):
        _take_until_failure(puller, 5)


def test_a_server_that_never_finishes_the_handshake_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(raw, "CONNECT_TIMEOUT", 0.3)
    server = FakeNats(lambda _req, _inbox: b"", info=False)
    try:
        puller = raw._RawPuller(server.address, NEXT, 100, 10_000, "d")
        try:
            with pytest.raises(StreamUnavailable, match="did not complete the handshake"):
                puller.handshake()
        finally:
            puller.close()
    finally:
        server.close()
