"""NATS JetStream: ``nats://HOST:PORT/SUBJECT[?stream=NAME&durable=NAME]``.

The consumer is a durable pull consumer (``mloop-<dataset>-<hash of the dataset and the
workspace>`` unless ``durable=`` says otherwise) with ``AckAll``: one acknowledgement per
written batch covers every message up to it. At start it is created afresh at the stream
sequence after the one stored with the dataset, so the database, never the broker, says where
reading resumes; messages the broker delivers again are recognised by their stream sequence
and skipped. A stored sequence the stream never reached (a stream deleted and created again)
is refused.

nats-py's ``fetch`` spends tens of microseconds per message in asyncio; this module speaks the
pull protocol itself (a request for N messages, replies to one inbox, a callback appending to a
buffer) on an event loop in a background thread, so the next messages arrive while the current
batch is written. The buffer holds at most ``prefetch`` messages and ``prefetch_bytes`` bytes
(plus at most one message): every pull request carries ``max_bytes``, the free room of that
budget (never less than the server's largest message), so no pull brings more, whatever the
producers' rate.

Every status that ends a pull request is looked at: 404 and 408 (nothing came), and the
passing 409s (``Exceeded MaxWaiting``, ``Leadership Change``…) are asked again; any other
(``Consumer Deleted``, 503 no responders, 400, a message larger than ``max_bytes``) stops the
consumer with the reason. The raw connection PINGs the server every ``PING_SECONDS`` and fails
after ``MAX_PINGS_OUT`` unanswered PINGs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from mloop.core.errors import InvalidInput, MloopError
from mloop.data.streams.base import (
    Fetched,
    StreamProducer,
    StreamSource,
    StreamUnavailable,
    StreamURI,
    consumer_name,
    option_int,
    safe_token,
)

CONNECT_TIMEOUT = 5.0
PULL_EXPIRES = 1.0  # seconds a pull request lingers on the server waiting for messages
PING_SECONDS = 10.0  # the raw connection's keepalive
MAX_PINGS_OUT = 2  # unanswered PINGs before the connection counts as dead
READ_POLL = 0.25  # how often the reader thread looks up from the socket
MAX_PAYLOAD = 2**20  # the server's default max_payload, until its INFO says otherwise
BYTES_SLACK = 2**16  # a message's subject and headers, beyond its payload
# 409s that end a pull request and are worth asking again (lower case)
PASSING_409 = ("exceeded maxwaiting", "leadership change", "batch completed", "server shutdown")


def _import_nats() -> Any:
    try:
        import nats
    except ImportError:  # pragma: no cover - the extra is documented
        raise InvalidInput("NATS streams need nats-py: pip install 'mloop[streams]'") from None
    return nats


class _Loop:
    """An asyncio event loop running in a daemon thread; ``run`` waits for a coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None, what: str = "NATS") -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:  # concurrent.futures' is the builtin since 3.11
            if future.done() and not future.cancelled():
                raise  # the coroutine's own timeout, not ours
            future.cancel()
            raise StreamUnavailable(f"{what} did not answer in {timeout:g} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


async def _connect(uri: StreamURI, on_error: Any = None) -> Any:
    nats = _import_nats()
    at = uri.userinfo + "@" if uri.userinfo else ""
    servers = [f"nats://{at}{s}" for s in uri.servers.split(",")]

    async def error_cb(exc: Exception) -> None:
        if on_error is not None:
            on_error(exc)

    try:
        return await nats.connect(
            servers,
            connect_timeout=CONNECT_TIMEOUT,
            max_reconnect_attempts=3,
            allow_reconnect=True,
            ping_interval=int(PING_SECONDS),  # the raw connection's keepalive, for nats-py's
            max_outstanding_pings=MAX_PINGS_OUT,
            pending_size=64 * 2**20,
            error_cb=error_cb,
        )
    except Exception as exc:  # nats raises NoServersError, OSError, TimeoutError...
        raise StreamUnavailable(
            uri.scrub(f"cannot connect to NATS at {uri.servers}: {_reason(exc)}")
        ) from exc


def _reason(exc: BaseException) -> str:
    """An exception as a short phrase (nats-py's often have an empty ``str``)."""
    text = str(exc).strip()
    return text if text else type(exc).__name__


async def _stream_name(js: Any, uri: StreamURI, create: bool) -> str:
    from nats.js.api import StreamConfig
    from nats.js.errors import NotFoundError

    if "stream" in uri.options:
        name = uri.options["stream"]
        try:
            await js.stream_info(name)
        except NotFoundError:
            if not create:
                raise StreamUnavailable(
                    f"no JetStream stream {name!r} at {uri.servers}: create it (nats stream "
                    "add) or produce to it first (mloop data produce)"
                ) from None
            await js.add_stream(StreamConfig(name=name, subjects=[uri.target]))
        return name
    try:
        return str(await js.find_stream_name_by_subject(uri.target))
    except NotFoundError:
        if not create:
            raise StreamUnavailable(
                f"no JetStream stream captures subject {uri.target!r} at {uri.servers}: "
                "create one (nats stream add) or produce to it first (mloop data produce)"
            ) from None
    name = safe_token(uri.target.replace(".", "_").replace("*", "any").replace(">", "all"))
    await js.add_stream(StreamConfig(name=name, subjects=[uri.target]))
    return name


def _delivery_of(reply: bytes | str) -> tuple[int, int]:
    """(stream sequence, consumer sequence) from a JetStream reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``, or with
    ``<domain>.<account hash>`` after ``$JS.ACK`` (and a trailing token) in the v2 form."""
    tokens = reply.split(b"." if isinstance(reply, bytes) else ".")  # type: ignore[arg-type]
    at = 5 if len(tokens) == 9 else 7
    return int(tokens[at]), int(tokens[at + 1])


class _Puller:
    """Keeps a bounded buffer of delivered messages filled by pull requests sized to its free
    room; ``take`` empties it. Subclasses move the bytes."""

    def __init__(self, next_subject: str, prefetch: int, prefetch_bytes: int, name: str) -> None:
        self.next_subject = next_subject
        self.prefetch = prefetch
        self.prefetch_bytes = prefetch_bytes
        self.name = name
        self.buffer: deque[tuple[bytes, int, Any]] = deque()
        self.buffered_bytes = 0
        self.outstanding = 0  # messages the current pull request may still deliver
        self.request_delivered = 0  # messages the current pull request did deliver
        self.requested_at = 0.0
        self.delivery = 0  # the consumer sequence of the last delivery
        self.max_message = MAX_PAYLOAD  # the server's max_payload
        self.failure: BaseException | None = None

    def request(self) -> bytes | None:
        """The next pull request's body when one is due (call with the state locked): as many
        messages as the buffer has room for, and ``max_bytes`` its free bytes — never less
        than the largest message the server takes, so every message fits a request."""
        now = time.monotonic()
        if self.outstanding > 0 and now - self.requested_at > PULL_EXPIRES + 2.0:
            self.outstanding = 0  # its end never came (a reconnect): ask again
        room = self.prefetch - len(self.buffer)
        free = self.prefetch_bytes - self.buffered_bytes
        if (
            self.failure is not None
            or self.outstanding > 0
            or room < max(1, self.prefetch // 4)
            or free <= 0
        ):
            return None
        self.outstanding, self.requested_at, self.request_delivered = room, now, 0
        body = {
            "batch": room,
            "expires": int(PULL_EXPIRES * 1e9),
            "max_bytes": max(free, self.max_message + BYTES_SLACK),
        }
        return json.dumps(body).encode()

    def status(self, code: int, description: str, delivered: int) -> bool:
        """A status message on the inbox: True when it ends the pull request. 404 and 408 (no
        messages, expired) and the passing 409s are asked again; any other stops the
        consumer (``failure``), never a silent spin. ``delivered``: messages of the current
        request before this status."""
        if code == 100:  # a heartbeat or flow control
            return False
        text = description.strip().lower()
        if code in (404, 408) or (code == 409 and text in PASSING_409):
            return True
        if code == 409 and text == "message size exceeds maxbytes" and delivered > 0:
            return True  # the request's byte budget is spent: the rest comes next request
        if self.failure is None:
            self.failure = StreamUnavailable(self._status_reason(code, description))
        return True

    def _status_reason(self, code: int, description: str) -> str:
        said = f"{code} {description.strip()}".strip()
        text = description.strip().lower()
        if code == 409 and text == "consumer deleted":
            return (
                f"NATS consumer {self.name} was deleted while it was read ({said}): another "
                "consumer of this dataset started, or an operator removed it; start again to "
                "resume from the stored offsets"
            )
        if code == 503:
            return (
                f"NATS has no responder for consumer {self.name} ({said}): the stream or the "
                "consumer is gone, or JetStream is not enabled"
            )
        if code == 409 and text == "message size exceeds maxbytes":
            return (
                f"a message of consumer {self.name} is larger than a pull request may bring "
                f"({said}, max_bytes {self.max_message + BYTES_SLACK:,})"
            )
        return f"NATS refused the pull requests of consumer {self.name}: {said}"

    def check_delivery(self, delivery: int) -> None:
        """Consumer sequences count every delivery: one skipped is one lost on the way."""
        if (self.delivery or not delivery) and delivery != self.delivery + 1 and not self.failure:
            # a delivery went missing between the server and us: acking past it would lose it
            self.failure = StreamUnavailable(
                f"NATS delivery {self.delivery + 1} of consumer {self.name} never arrived"
            )
        self.delivery = delivery

    def drain(self, max_messages: int) -> Fetched:
        if self.failure is not None:  # nothing after a gap is handed out
            raise StreamUnavailable(f"NATS pull failed: {_reason(self.failure)}")
        buffer = self.buffer
        count = min(max_messages, len(buffer))
        items = [buffer.popleft() for _ in range(count)]
        payloads = [item[0] for item in items]
        self.buffered_bytes -= sum(map(len, payloads))
        return Fetched(
            payloads, [item[1] for item in items], [0] * count, items[-1][2] if items else None
        )


class _RawPuller(_Puller):
    """The pull protocol on a plain socket read by a thread of its own: a JetStream message
    costs a few microseconds here against tens through nats-py's asyncio client.

    Two locks: ``lock`` guards the buffer and the request state (``arrived`` waits on it),
    ``send_lock`` keeps whole protocol messages apart on the socket (pull requests, acks,
    PING and PONG come from two threads). A send may hold ``send_lock`` and then take
    ``lock``, never the other way round. The socket blocks on sends (a send is never cut
    short mid-message); the reader polls it, so it can keep the connection alive."""

    def __init__(
        self, address: str, next_subject: str, prefetch: int, prefetch_bytes: int, name: str
    ) -> None:
        super().__init__(next_subject, prefetch, prefetch_bytes, name)
        self.address = address
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT)
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.inbox = f"_INBOX.mloop.{uuid.uuid4().hex}".encode()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True, name="mloop-nats")
        self.rest = b""
        self.split: int | None = None  # how many dots end a reply subject after the sequence
        self.pings_out = 0  # PINGs sent and not answered yet
        self.pinged_at = 0.0

    def handshake(self) -> bool:
        """INFO, CONNECT, PING/PONG, SUB; False when the server wants TLS or credentials."""
        try:
            return self._handshake()
        except (OSError, ValueError) as exc:  # a timeout, a reset, an INFO that is not JSON
            raise StreamUnavailable(
                f"NATS at {self.address} did not complete the handshake: {_reason(exc)}"
            ) from exc

    def _handshake(self) -> bool:
        info = self._line()
        if not info.startswith(b"INFO "):
            raise StreamUnavailable(f"not a NATS server at {self.address}: {info[:80]!r}")
        details = json.loads(info[5:])
        if details.get("tls_required") or details.get("auth_required"):
            return False
        self.max_message = int(details.get("max_payload") or MAX_PAYLOAD)
        connect = {
            "verbose": False,
            "pedantic": False,
            "name": "mloop-stream",
            "lang": "python",
            "version": "mloop",
            "protocol": 1,
            "headers": True,
            "no_responders": True,
        }
        self.sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        while True:
            line = self._line()
            if line == b"PONG":
                break
            if line.startswith(b"-ERR"):
                raise StreamUnavailable(f"NATS refused the connection: {line.decode()}")
        self.sock.sendall(b"SUB " + self.inbox + b" 1\r\n")
        self.sock.settimeout(None)  # sends block until whole; the reader polls
        self.pinged_at = time.monotonic()
        self.thread.start()
        self._pull()
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.rest:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise StreamUnavailable(f"NATS at {self.address} closed the connection")
            self.rest += chunk
        line, _, self.rest = self.rest.partition(b"\r\n")
        return line

    def _send(self, data: bytes) -> None:
        with self.send_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError as exc:
                if not self.closed:
                    self._fail(StreamUnavailable(f"NATS connection failed: {_reason(exc)}"))

    def _pull(self) -> None:
        with self.lock:
            body = self.request()
        if body is not None:
            subject = self.next_subject.encode()
            self._send(b"PUB %s %s %d\r\n%s\r\n" % (subject, self.inbox, len(body), body))

    def _read(self) -> None:
        buf = self.rest
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while not self.closed:
            try:
                chunk = self.sock.recv(4 * 2**20) if poller.poll(READ_POLL * 1000) else None
            except OSError as exc:
                if not self.closed:
                    self._fail(StreamUnavailable(f"NATS connection failed: {_reason(exc)}"))
                return
            if chunk == b"":
                if not self.closed:
                    self._fail(StreamUnavailable(f"NATS at {self.address} closed the connection"))
                return
            if chunk:
                buf = buf + chunk if buf else chunk
                try:
                    buf = self._parse(buf)
                except Exception as exc:
                    self._fail(exc)
                    return
            if not self._keepalive():
                return
            self._pull()

    def _keepalive(self) -> bool:
        """A PING every ``PING_SECONDS``; False (and the connection failed) once
        ``MAX_PINGS_OUT`` of them went unanswered."""
        now = time.monotonic()
        if now - self.pinged_at < PING_SECONDS:
            return True
        if self.pings_out >= MAX_PINGS_OUT:
            with contextlib.suppress(OSError):  # first: a send blocked on a dead peer returns
                self.sock.shutdown(socket.SHUT_RDWR)
            self._fail(
                StreamUnavailable(
                    f"NATS at {self.address} stopped answering: no PONG to {self.pings_out} "
                    f"PINGs in {now - self.pinged_at + PING_SECONDS * (self.pings_out - 1):.0f} s"
                )
            )
            return False
        self.pings_out += 1
        self.pinged_at = now
        self._send(b"PING\r\n")
        return True

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            self.failure = self.failure or exc
            self.arrived.notify_all()

    def _parse(self, buf: bytes) -> bytes:
        """Every complete protocol message in ``buf``; returns the incomplete rest.

        The hot path: a message is ``MSG <inbox> <sid> <reply> <size>``, its payload, and a
        reply subject ``$JS.ACK.<stream>.<consumer>.<n>.<sseq>.<cseq>.<ts>.<pending>`` (the v2
        form adds a domain and an account before and a token after) that gives the stream
        sequence; the consumer sequences of a chunk are checked to follow each other."""
        payloads: list[bytes] = []
        seqs: list[int] = []
        replies: list[bytes] = []
        ended = False
        pos, size = 0, len(buf)
        find, rfind = buf.find, buf.rfind
        while True:
            eol = find(b"\r\n", pos)
            if eol < 0:
                break
            op = buf[pos : pos + 4]
            if op == b"MSG ":
                space = rfind(b" ", pos, eol)
                end = eol + 2 + int(buf[space + 1 : eol])
                if end + 2 > size:
                    break
                payload = buf[eol + 2 : end]
                start = rfind(b" ", pos, space) + 1
                reply = buf[start:space] if buf[start : start + 8] == b"$JS.ACK." else b""
            elif op == b"HMSG":
                parts = buf[pos + 5 : eol].split(b" ")
                head, end = eol + 2 + int(parts[-2]), eol + 2 + int(parts[-1])
                if end + 2 > size:
                    break
                reply = parts[2] if len(parts) == 5 else b""
                status = buf[eol + 11 : eol + 14]  # "NATS/1.0 408 Request Timeout"
                if buf[eol + 10 : eol + 11] == b" " and status.isdigit():
                    line = buf[eol + 14 : find(b"\r\n", eol + 2)]
                    delivered = self.request_delivered + len(payloads)
                    description = line.decode("utf-8", "replace")
                    ended = self.status(int(status), description, delivered) or ended
                    pos = end + 2
                    continue
                payload = buf[head:end]
                if not reply.startswith(b"$JS.ACK."):
                    reply = b""
            else:
                line = buf[pos:eol]
                if line == b"PING":
                    self._send(b"PONG\r\n")
                elif line == b"PONG":
                    self.pings_out = 0
                elif line.startswith(b"-ERR"):
                    raise StreamUnavailable(f"NATS error: {line.decode(errors='replace')}")
                pos = eol + 2  # +OK, INFO
                continue
            pos = end + 2
            if reply:
                if self.split is None:
                    self.split = 4 if reply.count(b".") == 8 else 5
                seqs.append(int(reply.rsplit(b".", self.split)[1]))
                payloads.append(payload)
                replies.append(reply)
        if payloads:
            first, last = _delivery_of(replies[0])[1], _delivery_of(replies[-1])[1]
            if last - first + 1 != len(replies):  # a delivery missing inside the chunk
                self.check_delivery(0)
            self.check_delivery(first)
            self.delivery = last
        if payloads or ended or self.failure is not None:
            with self.lock:
                if payloads:
                    self.buffer.extend(zip(payloads, seqs, replies, strict=True))
                    self.buffered_bytes += sum(map(len, payloads))
                    self.outstanding -= len(payloads)
                    self.request_delivered += len(payloads)
                if ended:
                    self.outstanding = 0
                self.arrived.notify_all()
        return buf[pos:]

    def take(self, max_messages: int, timeout: float) -> Fetched:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not self.buffer and self.failure is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.arrived.wait(left)
            fetched = self.drain(max_messages)
        self._pull()
        return fetched

    def ack(self, reply: bytes) -> None:
        if self.failure is not None:
            raise StreamUnavailable(f"NATS pull failed: {_reason(self.failure)}")
        self._send(b"PUB %s 4\r\n+ACK\r\n" % reply)
        if self.failure is not None:
            raise StreamUnavailable(f"NATS acknowledgement failed: {_reason(self.failure)}")

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.thread.is_alive():
            self.thread.join(5)


class _ClientPuller(_Puller):
    """The same through nats-py (a server that wants TLS or credentials): slower."""

    def __init__(
        self, loop: _Loop, nc: Any, next_subject: str, prefetch: int, prefetch_bytes: int, name: str
    ) -> None:
        super().__init__(next_subject, prefetch, prefetch_bytes, name)
        self.loop, self.nc = loop, nc
        self.max_message = int(getattr(nc, "max_payload", 0) or MAX_PAYLOAD)
        self.wake: asyncio.Event | None = None
        self.arrived: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.loop.run(self._start(), timeout=30, what="NATS (subscribing)")

    async def _start(self) -> None:
        self.inbox = self.nc.new_inbox()
        self.wake, self.arrived = asyncio.Event(), asyncio.Event()
        await self.nc.subscribe(
            self.inbox,
            cb=self._on_message,
            pending_msgs_limit=4 * self.prefetch + 1000,
            pending_bytes_limit=4 * (self.prefetch_bytes + self.max_message + BYTES_SLACK),
        )
        self.task = asyncio.get_running_loop().create_task(self._pull())

    async def _on_message(self, msg: Any) -> None:
        assert self.wake is not None
        assert self.arrived is not None
        headers = msg.headers
        if headers and headers.get("Status"):
            try:
                code = int(headers.get("Status"))
            except ValueError:
                code = 0
            if self.status(code, headers.get("Description") or "", self.request_delivered):
                self.outstanding = 0
                self.wake.set()
                self.arrived.set()  # a failure is seen at once
            return
        seq, delivery = _delivery_of(msg.reply)
        self.check_delivery(delivery)
        self.buffer.append((msg.data, seq, msg.reply))
        self.buffered_bytes += len(msg.data)
        self.outstanding -= 1
        self.request_delivered += 1
        self.arrived.set()
        if self.outstanding <= 0:
            self.wake.set()

    async def _pull(self) -> None:
        assert self.wake is not None
        try:
            while True:
                body = self.request()
                if body is not None:
                    await self.nc.publish(self.next_subject, body, reply=self.inbox)
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), PULL_EXPIRES)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by the next take
            self.failure = exc

    async def _take(self, max_messages: int, timeout: float) -> Fetched:
        assert self.wake is not None
        assert self.arrived is not None
        if not self.buffer and self.failure is None:
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout)
        fetched = self.drain(max_messages)  # in the loop's thread: nothing after a gap
        self.wake.set()
        return fetched

    def take(self, max_messages: int, timeout: float) -> Fetched:
        return self.loop.run(self._take(max_messages, timeout))  # type: ignore[no-any-return]

    def ack(self, reply: str) -> None:
        if self.failure is not None:
            raise StreamUnavailable(f"NATS pull failed: {_reason(self.failure)}")
        try:
            self.loop.run(self.nc.publish(reply, b"+ACK"), timeout=30, what="NATS (ack)")
        except MloopError:
            raise
        except Exception as exc:
            raise StreamUnavailable(f"NATS acknowledgement failed: {_reason(exc)}") from exc

    def close(self) -> None:
        if self.task is not None:
            self.loop.loop.call_soon_threadsafe(self.task.cancel)


class NatsSource(StreamSource):
    """``?client=nats-py`` moves messages through nats-py instead of the raw protocol (always
    so when the server asks for TLS or credentials)."""

    def __init__(
        self,
        uri: StreamURI,
        dataset: str,
        *,
        workspace: str = "",
        prefetch: int = 50_000,
        prefetch_bytes: int = 2**26,
    ) -> None:
        self.uri = uri.canonical
        self._uri = uri
        self.dataset = dataset
        self.durable = uri.options.get("durable") or consumer_name(dataset, workspace)
        if safe_token(self.durable) != self.durable:
            raise InvalidInput(f"durable={self.durable!r}: use letters, digits, '_' and '-'")
        self.ack_wait = option_int(uri, "ack_wait", 300)
        self.prefetch = max(1, prefetch)
        self.prefetch_bytes = prefetch_bytes
        self.client = uri.options.get("client", "raw")
        if self.client not in ("raw", "nats-py"):
            raise InvalidInput(f"client={self.client!r}: use raw or nats-py")
        self.stream = ""
        self.stream_created = ""
        self._loop: _Loop | None = None
        self._nc: Any = None
        self._puller: _RawPuller | _ClientPuller | None = None
        self._failure: BaseException | None = None
        self._warnings: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, resume: dict[int, int], stored: dict[str, Any] | None = None) -> None:
        self._loop = _Loop()
        try:
            what = f"NATS at {self._uri.servers}"
            self._loop.run(self._open(resume.get(0, 0), stored or {}), timeout=60, what=what)
            next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}"
            args = (next_subject, self.prefetch, self.prefetch_bytes, self.durable)
            if self.client == "raw":
                for address in self._uri.servers.split(","):
                    try:
                        raw = _RawPuller(address, *args)
                    except OSError:
                        continue
                    try:
                        ready = raw.handshake()
                    except BaseException:
                        raw.close()
                        raise
                    if ready:
                        self._puller = raw
                    else:
                        raw.close()
                    break
            if self._puller is None:
                client = _ClientPuller(self._loop, self._nc, *args)
                client.start()
                self._puller = client
        except BaseException:
            self.close()
            raise

    async def _open(self, last: int, stored: dict[str, Any]) -> None:
        try:
            await self._prepare(last, stored)
        except MloopError:
            raise
        except Exception as exc:  # nats-py's errors: API errors, timeouts, no responders...
            raise StreamUnavailable(
                self._uri.scrub(
                    f"NATS JetStream at {self._uri.servers} failed to set up consumer "
                    f"{self.durable} of subject {self._uri.target!r}: {_reason(exc)}"
                )
            ) from exc

    async def _prepare(self, last: int, stored: dict[str, Any]) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        self._nc = await _connect(self._uri, self._on_error)
        js = self._nc.jetstream()
        self.stream = await _stream_name(js, self._uri, create=False)
        info = await js.stream_info(self.stream)
        self.stream_created = str(info.created or "")
        self._check_position(last, stored, info.state)
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(self.stream, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            ack_wait=self.ack_wait,
            max_ack_pending=-1,
            filter_subject=self._uri.target,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if last else DeliverPolicy.ALL,
            opt_start_seq=last + 1 if last else None,
            max_deliver=-1,
        )
        await js.add_consumer(self.stream, config)

    def _check_position(self, last: int, stored: dict[str, Any], state: Any) -> None:
        """The stored sequence must be one this stream had: a stream deleted and created
        again starts its sequences over, and reading it from the old position would skip
        (or miss) its events. Refused, as the local log refuses a replaced log."""
        if not last:
            return
        before = stored.get("stream_created")
        if last > state.last_seq or (
            before and self.stream_created and before != self.stream_created
        ):
            raise StreamUnavailable(
                f"stream {self.stream} ends at sequence {state.last_seq} (created "
                f"{self.stream_created or 'at an unknown time'}) but dataset {self.dataset!r} "
                f"already holds its event at sequence {last}"
                + (f" of the stream created {before}" if before else "")
                + ": was the stream deleted and created again? Nothing was read; stream it "
                "into another dataset"
            )
        first = state.first_seq
        if state.messages and first > last + 1:
            self._warnings.append(
                f"stream {self.stream} no longer holds sequences {last + 1}..{first - 1} "
                "(its retention removed them before they were read)"
            )

    def _on_error(self, exc: Exception) -> None:
        from nats.errors import SlowConsumerError

        if isinstance(exc, SlowConsumerError) and self._puller is not None:
            self._puller.failure = exc  # a delivery was dropped: never ack past it

    def close(self) -> None:
        if self._puller is not None:
            self._puller.close()
            self._puller = None
        if self._loop is None:
            return
        if self._nc is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._nc.close(), timeout=10)
        self._loop.stop()
        self._loop = None

    # -- the consumer's calls --------------------------------------------------------------

    def fetch(self, max_messages: int, timeout: float) -> Fetched:
        if self._puller is None:
            raise StreamUnavailable(f"{self.uri} is not open")
        return self._puller.take(max_messages, timeout)

    def ack(self, fetched: Sequence[Fetched]) -> None:
        """AckAll: acknowledging the highest sequence of the batch covers all before it."""
        best: tuple[int, Any] | None = None
        for f in fetched:
            if f.token is not None and f.offsets and (best is None or f.offsets[-1] > best[0]):
                best = (f.offsets[-1], f.token)
        if best is not None and self._puller is not None:
            self._puller.ack(best[1])

    def describe(self) -> dict[str, Any]:
        described = {"stream": self.stream, "durable": self.durable}
        if self.stream_created:
            described["stream_created"] = self.stream_created
        return described

    def warnings(self) -> list[str]:
        return list(self._warnings)


class NatsProducer(StreamProducer):
    """Publishes to JetStream and waits for every acknowledgement (creates the stream when no
    stream captures the subject)."""

    def __init__(self, uri: StreamURI, *, window: int = 4000) -> None:
        self.uri = uri.canonical
        self._uri = uri
        self._window = window
        self._loop = _Loop()
        self._nc: Any = None
        self._js: Any = None
        try:
            self._loop.run(self._open(), timeout=60, what=f"NATS at {uri.servers}")
        except BaseException:
            self.close()
            raise

    async def _open(self) -> None:
        self._nc = await _connect(self._uri)
        self._js = self._nc.jetstream(publish_async_max_pending=self._window)
        try:
            await _stream_name(self._js, self._uri, create=True)
        except MloopError:
            raise
        except Exception as exc:
            raise StreamUnavailable(
                self._uri.scrub(
                    f"NATS JetStream at {self._uri.servers} has no stream for subject "
                    f"{self._uri.target!r} and could not create one: {_reason(exc)}"
                )
            ) from exc

    def send(self, payloads: Sequence[bytes]) -> int:
        return int(self._loop.run(self._send(payloads)))

    async def _send(self, payloads: Sequence[bytes]) -> int:
        subject = self._uri.target
        if "*" in subject or ">" in subject:
            raise InvalidInput(f"cannot publish to the wildcard subject {subject!r}")
        try:
            futures = [await self._js.publish_async(subject, bytes(p)) for p in payloads]
            await self._js.publish_async_completed()
        except Exception as exc:
            raise StreamUnavailable(
                self._uri.scrub(f"publishing to {self.uri} failed: {_reason(exc)}")
            ) from exc
        failed = [f.exception() for f in futures if f.exception() is not None]
        if failed:
            raise StreamUnavailable(
                f"{len(failed)} of {len(futures)} events were not stored by JetStream: "
                f"{_reason(failed[0])}"
            )
        return len(futures)

    def close(self) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._nc.close(), timeout=10)
        self._loop.stop()
