"""Keyed sinks: publish records, each with a key, so that publishing again is harmless.

A producer (:class:`~mloop.data.streams.base.StreamProducer`) appends events; a sink publishes
*results* that a consumer of the source may cause to be published more than once (a crash
between publishing and acknowledging the input redelivers it). Each record carries a key — the
event id it answers — and every backend uses it to make a second publication of the same key
harmless, as far as the backend can:

- ``log://NAME``: a key already in the log is never appended again (the sink reads the keys
  the log holds, under a lock of its own shared by every sink writing that log). Exact, for
  the log's whole life.
- ``nats://…/SUBJECT``: published to JetStream with the ``Nats-Msg-Id`` header set to the key;
  the server drops a message whose id it saw within the stream's duplicate window (2 minutes
  unless the stream says otherwise). A redelivery later than that is stored again.
- ``kafka://…/TOPIC``: produced with the key as the message key (``acks=all``, idempotent
  producer: a retry inside the client never stores a record twice). Kafka does not drop a
  second record with the same key: readers deduplicate by key (or the topic is compacted).

:meth:`StreamSink.publish` returns once the backend holds every record.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mloop.core.errors import InvalidInput
from mloop.data.streams.base import StreamUnavailable, StreamURI, parse_stream_uri

DEFAULT_KEY_FIELD = "event_id"

GUARANTEES = {
    "log": "a key already in the log is never appended again",
    "nats": "JetStream drops a repeated key (Nats-Msg-Id) within the stream's duplicate window",
    "kafka": "records are keyed by event id; readers deduplicate by key (or compact the topic)",
}


class StreamSink(abc.ABC):
    """Where keyed records go. :meth:`publish` returns once the backend holds them."""

    uri: str
    scheme: str

    @abc.abstractmethod
    def publish(self, records: Sequence[tuple[str, bytes]]) -> int:
        """Publish ``(key, payload)`` records; returns how many were stored anew (a key the
        backend recognised as already published is not counted)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    def guarantee(self) -> str:
        """What a second publication of a key does, in one sentence."""
        return GUARANTEES[self.scheme]

    def __enter__(self) -> StreamSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_sink(
    uri: str | StreamURI, home: Path, *, key_field: str = DEFAULT_KEY_FIELD
) -> StreamSink:
    """The sink of ``uri``; ``key_field``: the JSON field of a local log's records holding
    their key (what a log sink reads back to know the keys it holds)."""
    parsed = parse_stream_uri(uri) if isinstance(uri, str) else uri
    if parsed.scheme == "log":
        return LogSink(parsed, Path(home), key_field=key_field)
    if parsed.scheme == "nats":
        return NatsSink(parsed)
    return KafkaSink(parsed)


# -- the local log ---------------------------------------------------------------------------


class LogSink(StreamSink):
    """Appends to ``log://NAME``, skipping keys the log already holds. Every sink writing one
    log takes ``NAME.sink.lock`` while it reads the keys appended since it last looked and
    appends, so two writers never both append one key."""

    scheme = "log"

    def __init__(self, uri: StreamURI, home: Path, *, key_field: str = DEFAULT_KEY_FIELD) -> None:
        from mloop.data.streams.log import LocalLog, log_path

        self.uri = uri.canonical
        self.key_field = key_field
        self.log = LocalLog(log_path(home, uri.target))
        self.lock_path = self.log.path.with_suffix(".sink.lock")
        self._keys: set[str] = set()
        self._position = 0  # how far the keys were read

    def keys(self) -> set[str]:
        """The keys the log holds (as far as it was read)."""
        self._catch_up()
        return set(self._keys)

    def _catch_up(self) -> None:
        if not self.log.path.exists():
            return
        while True:
            payloads, _offsets, self._position = self.log.read(self._position, 10_000)
            if not payloads:
                return
            for payload in payloads:
                key = _key_of(payload, self.key_field)
                if key is not None:
                    self._keys.add(key)

    def publish(self, records: Sequence[tuple[str, bytes]]) -> int:
        if not records:
            return 0
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._catch_up()
            fresh: list[bytes] = []
            seen: set[str] = set()
            for key, payload in records:
                if key in self._keys or key in seen:
                    continue
                seen.add(key)
                fresh.append(payload)
            self.log.append(fresh)
            self._keys.update(seen)
            self._catch_up()  # move past what was just appended
        finally:
            os.close(fd)  # releases the lock
        return len(fresh)

    def close(self) -> None:
        self.log.close()


def _key_of(payload: bytes, field: str) -> str | None:
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get(field) is None:
        return None
    key = value[field]
    return key if isinstance(key, str) else json.dumps(key)


# -- NATS JetStream --------------------------------------------------------------------------


class NatsSink(StreamSink):
    """Publishes to JetStream with ``Nats-Msg-Id: KEY`` and waits for every acknowledgement
    (creates a stream for the subject when none captures it)."""

    scheme = "nats"

    def __init__(self, uri: StreamURI, *, window: int = 4000) -> None:
        from mloop.data.streams.nats import NatsProducer

        if "*" in uri.target or ">" in uri.target:
            raise InvalidInput(f"cannot publish to the wildcard subject {uri.target!r}")
        self.uri = uri.canonical
        self._uri = uri
        self._producer = NatsProducer(uri, window=window)

    def publish(self, records: Sequence[tuple[str, bytes]]) -> int:
        if not records:
            return 0
        return int(
            self._producer._loop.run(self._publish(records), timeout=120, what="NATS (publish)")
        )

    async def _publish(self, records: Sequence[tuple[str, bytes]]) -> int:
        from mloop.data.streams.nats import _reason

        js = self._producer._js
        subject = self._uri.target
        try:
            futures = [
                await js.publish_async(subject, bytes(p), headers={"Nats-Msg-Id": key})
                for key, p in records
            ]
            await js.publish_async_completed()
        except Exception as exc:
            raise StreamUnavailable(
                self._uri.scrub(f"publishing to {self.uri} failed: {_reason(exc)}")
            ) from exc
        failed = [f.exception() for f in futures if f.exception() is not None]
        if failed:
            raise StreamUnavailable(
                f"{len(failed)} of {len(futures)} records were not stored by JetStream: "
                f"{_reason(failed[0])}"
            )
        return sum(1 for f in futures if not getattr(f.result(), "duplicate", False))

    def close(self) -> None:
        self._producer.close()


# -- Kafka -----------------------------------------------------------------------------------


class KafkaSink(StreamSink):
    """Produces keyed records with ``acks=all`` and idempotence, and waits for every delivery
    report; creates the topic (``partitions=`` option, default 1) when it does not exist."""

    scheme = "kafka"

    def __init__(self, uri: StreamURI) -> None:
        from mloop.data.streams.kafka import KafkaProducer

        self.uri = uri.canonical
        self._uri = uri
        self._producer = KafkaProducer(uri)

    def publish(self, records: Sequence[tuple[str, bytes]]) -> int:
        from mloop.data.streams.kafka import _kafka, _reason

        if not records:
            return 0
        kafka = _kafka()
        client: Any = self._producer._producer
        failures: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        topic = self._uri.target
        for i, (key, payload) in enumerate(records):
            while True:
                try:
                    client.produce(topic, payload, key=key.encode(), on_delivery=report)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    client.poll(0.05)
                except kafka.KafkaException as exc:
                    raise StreamUnavailable(
                        f"Kafka refused a record for {self.uri}: {_reason(exc)}"
                    ) from exc
            if i % 10_000 == 0:
                client.poll(0)
        left = client.flush(60)
        if left:
            raise StreamUnavailable(f"{left} records were not delivered to {self.uri} in 60 s")
        if failures:
            raise StreamUnavailable(
                f"{len(failures)} of {len(records)} records were not stored by Kafka: {failures[0]}"
            )
        return len(records)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._producer.close()
