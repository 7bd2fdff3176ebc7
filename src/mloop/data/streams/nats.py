"""NATS JetStream: ``nats://HOST:PORT/SUBJECT[?stream=NAME&durable=NAME]``.

The consumer is a durable pull consumer (``mloop-<dataset>`` unless ``durable=`` says otherwise)
with ``AckAll``: one acknowledgement per written batch covers every message up to it. At start
it is created afresh at the stream sequence after the one stored with the dataset, so the
database, never the broker, says where reading resumes; messages the broker delivers again are
recognised by their stream sequence and skipped.

nats-py's ``fetch`` spends tens of microseconds per message in asyncio; this module speaks the
pull protocol itself (a request for N messages, replies to one inbox, a callback appending to a
buffer) on an event loop in a background thread, so the next messages arrive while the current
batch is written. The buffer holds at most ``prefetch`` messages and ``prefetch_bytes`` bytes:
no pull is requested beyond that, whatever the producers' rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from mloop.core.errors import InvalidInput
from mloop.data.streams.base import (
    Fetched,
    StreamProducer,
    StreamSource,
    StreamUnavailable,
    StreamURI,
    option_int,
    safe_token,
)

CONNECT_TIMEOUT = 5.0
PULL_EXPIRES = 1.0  # seconds a pull request lingers on the server waiting for messages


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

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


async def _connect(uri: StreamURI, on_error: Any = None) -> Any:
    nats = _import_nats()
    servers = [f"nats://{s}" for s in uri.servers.split(",")]

    async def error_cb(exc: Exception) -> None:
        if on_error is not None:
            on_error(exc)

    try:
        return await nats.connect(
            servers,
            connect_timeout=CONNECT_TIMEOUT,
            max_reconnect_attempts=3,
            allow_reconnect=True,
            pending_size=64 * 2**20,
            error_cb=error_cb,
        )
    except Exception as exc:  # nats raises NoServersError, OSError, TimeoutError...
        raise StreamUnavailable(f"cannot connect to NATS at {uri.servers}: {exc}") from exc


async def _stream_name(js: Any, uri: StreamURI, create: bool) -> str:
    from nats.js.api import StreamConfig
    from nats.js.errors import NotFoundError

    if "stream" in uri.options:
        return uri.options["stream"]
    try:
        return str(await js.find_stream_name_by_subject(uri.target))
    except NotFoundError:
        if not create:
            raise InvalidInput(
                f"no JetStream stream captures subject {uri.target!r} at {uri.servers}: "
                "create one (nats stream add) or produce to it first (mloop data produce)"
            ) from None
    name = safe_token(uri.target.replace(".", "_").replace("*", "any").replace(">", "all"))
    await js.add_stream(StreamConfig(name=name, subjects=[uri.target]))
    return name


class NatsSource(StreamSource):
    def __init__(
        self, uri: StreamURI, dataset: str, *, prefetch: int = 50_000, prefetch_bytes: int = 2**26
    ) -> None:
        self.uri = uri.canonical
        self._uri = uri
        self.durable = uri.options.get("durable") or safe_token(f"mloop-{dataset}")
        self.ack_wait = option_int(uri, "ack_wait", 300)
        self.prefetch = max(1, prefetch)
        self.prefetch_bytes = prefetch_bytes
        self.stream = ""
        self._loop: _Loop | None = None
        self._nc: Any = None
        self._buffer: deque[tuple[bytes, int, str]] = deque()
        self._buffered_bytes = 0
        self._outstanding = 0  # messages the current pull request may still deliver
        self._wake_puller: asyncio.Event | None = None
        self._arrived: asyncio.Event | None = None
        self._puller: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._delivery = 0  # the consumer sequence of the last delivery
        self._warnings: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, resume: dict[int, int]) -> None:
        self._loop = _Loop()
        try:
            self._loop.run(self._open(resume.get(0, 0)), timeout=60)
        except BaseException:
            self.close()
            raise

    async def _open(self, last: int) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        self._nc = await _connect(self._uri, self._on_error)
        js = self._nc.jetstream()
        self.stream = await _stream_name(js, self._uri, create=False)
        info = await js.stream_info(self.stream)
        first = info.state.first_seq
        if last and info.state.messages and first > last + 1:
            self._warnings.append(
                f"stream {self.stream} no longer holds sequences {last + 1}..{first - 1} "
                "(its retention removed them before they were read)"
            )
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
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}"
        self._inbox = self._nc.new_inbox()
        self._wake_puller = asyncio.Event()
        self._arrived = asyncio.Event()
        await self._nc.subscribe(
            self._inbox,
            cb=self._on_message,
            pending_msgs_limit=4 * self.prefetch + 1000,
            pending_bytes_limit=4 * self.prefetch_bytes,
        )
        self._puller = asyncio.get_running_loop().create_task(self._pull())

    def close(self) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._loop.run(self._close(), timeout=10)
        self._loop.stop()
        self._loop = None

    async def _close(self) -> None:
        if self._puller is not None:
            self._puller.cancel()
            with contextlib.suppress(BaseException):
                await self._puller
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    # -- the pull loop (event loop thread) -------------------------------------------------

    def _on_error(self, exc: Exception) -> None:
        from nats.errors import SlowConsumerError

        if isinstance(exc, SlowConsumerError):  # a delivery was dropped: never ack past it
            self._failure = exc

    async def _on_message(self, msg: Any) -> None:
        headers = msg.headers
        if headers and headers.get("Status"):
            status = headers.get("Status")
            if status not in ("100",):  # 404 no messages, 408 expired, 409 limits: request over
                self._outstanding = 0
                assert self._wake_puller is not None
                self._wake_puller.set()
            return
        reply = msg.reply
        tokens = reply.split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or with
        # <domain>.<account hash> after $JS.ACK (and a trailing token) in the v2 form
        at = 5 if len(tokens) == 9 else 7
        seq, delivery = int(tokens[at]), int(tokens[at + 1])
        if self._delivery and delivery != self._delivery + 1:
            # a delivery went missing between the server and us: acking past it would lose it
            self._failure = StreamUnavailable(
                f"NATS delivery {self._delivery + 1} of consumer {self.durable} never arrived"
            )
        self._delivery = delivery
        data = msg.data
        self._buffer.append((data, seq, reply))
        self._buffered_bytes += len(data)
        self._outstanding -= 1
        assert self._arrived is not None
        assert self._wake_puller is not None
        self._arrived.set()
        if self._outstanding <= 0:
            self._wake_puller.set()

    async def _pull(self) -> None:
        assert self._wake_puller is not None
        try:
            while True:
                room = self.prefetch - len(self._buffer)
                if (
                    self._outstanding <= 0
                    and room >= max(1, self.prefetch // 4)
                    and self._buffered_bytes < self.prefetch_bytes
                ):
                    self._outstanding = room
                    request = {
                        "batch": room,
                        "expires": int(PULL_EXPIRES * 1e9),
                        "max_bytes": max(self.prefetch_bytes - self._buffered_bytes, 1024),
                    }
                    await self._nc.publish(
                        self._next_subject, json.dumps(request).encode(), reply=self._inbox
                    )
                self._wake_puller.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_puller.wait(), PULL_EXPIRES + 1.0)
                if self._outstanding > 0 and not self._wake_puller.is_set():
                    self._outstanding = 0  # the request's end never came (reconnect): ask again
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by the next fetch
            self._failure = exc

    async def _take(self, max_messages: int, timeout: float) -> Fetched:
        assert self._arrived is not None
        assert self._wake_puller is not None
        if not self._buffer:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
        if self._failure is not None:  # checked here, in the loop's thread: nothing after a gap
            raise StreamUnavailable(f"NATS pull from {self.uri} failed: {self._failure}")
        payloads: list[bytes] = []
        offsets: list[int] = []
        last_reply = None
        buffer = self._buffer
        size = 0
        while buffer and len(payloads) < max_messages:
            data, seq, last_reply = buffer.popleft()
            payloads.append(data)
            offsets.append(seq)
            size += len(data)
        self._buffered_bytes -= size
        self._wake_puller.set()
        return Fetched(payloads, offsets, [0] * len(offsets), last_reply)

    # -- the consumer's calls (its own thread) ---------------------------------------------

    def fetch(self, max_messages: int, timeout: float) -> Fetched:
        if self._failure is not None:
            raise StreamUnavailable(f"NATS pull from {self.uri} failed: {self._failure}")
        if self._loop is None:
            raise StreamUnavailable(f"{self.uri} is not open")
        return self._loop.run(self._take(max_messages, timeout))  # type: ignore[no-any-return]

    def ack(self, fetched: Sequence[Fetched]) -> None:
        """AckAll: acknowledging the highest sequence of the batch covers all before it."""
        if self._failure is not None:
            raise StreamUnavailable(f"NATS pull from {self.uri} failed: {self._failure}")
        best: tuple[int, str] | None = None
        for f in fetched:
            if f.token is not None and f.offsets and (best is None or f.offsets[-1] > best[0]):
                best = (f.offsets[-1], f.token)
        if best is None or self._loop is None:
            return
        self._loop.run(self._nc.publish(best[1], b"+ACK"), timeout=30)

    def describe(self) -> dict[str, Any]:
        return {"stream": self.stream, "durable": self.durable}

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
            self._loop.run(self._open(), timeout=60)
        except BaseException:
            self._loop.stop()
            raise

    async def _open(self) -> None:
        self._nc = await _connect(self._uri)
        self._js = self._nc.jetstream(publish_async_max_pending=self._window)
        await _stream_name(self._js, self._uri, create=True)

    def send(self, payloads: Sequence[bytes]) -> int:
        return int(self._loop.run(self._send(payloads)))

    async def _send(self, payloads: Sequence[bytes]) -> int:
        subject = self._uri.target
        if "*" in subject or ">" in subject:
            raise InvalidInput(f"cannot publish to the wildcard subject {subject!r}")
        futures = [await self._js.publish_async(subject, bytes(p)) for p in payloads]
        await self._js.publish_async_completed()
        failed = [f.exception() for f in futures if f.exception() is not None]
        if failed:
            raise StreamUnavailable(
                f"{len(failed)} of {len(futures)} events were not stored by JetStream: {failed[0]}"
            )
        return len(futures)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.run(self._nc.close(), timeout=10)
        self._loop.stop()
