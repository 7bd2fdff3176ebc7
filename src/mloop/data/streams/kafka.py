"""Kafka (confluent-kafka): ``kafka://HOST:PORT/TOPIC[?group=NAME]``.

The consumer assigns itself every partition of the topic (no group membership, so a restart
never waits for a session to time out) and seeks each one to the offset after the one stored
with the dataset, or to the beginning when none is stored. After a batch is written it commits
the next offsets to the group (``mloop-<dataset>`` unless ``group=`` says otherwise), so tools
that watch consumer lag see it; mloop itself never reads them back. librdkafka prefetches in
its own thread, bounded by ``queued.max.messages.kbytes``. Partitions added to the topic are
picked up within ``REFRESH_SECONDS``.
"""

from __future__ import annotations

import time
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

REFRESH_SECONDS = 30.0
METADATA_TIMEOUT = 10.0


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError:  # pragma: no cover - the extra is documented
        raise InvalidInput(
            "Kafka streams need confluent-kafka: pip install 'mloop[streams]'"
        ) from None
    return confluent_kafka


def _partitions(client: Any, topic: str, servers: str) -> list[int]:
    try:
        metadata = client.list_topics(topic, timeout=METADATA_TIMEOUT)
    except Exception as exc:
        raise StreamUnavailable(f"cannot reach Kafka at {servers}: {exc}") from exc
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        reason = found.error if found is not None else "unknown"
        raise InvalidInput(
            f"Kafka topic {topic!r} is not available at {servers} ({reason}): create it, "
            "or produce to it first (mloop data produce)"
        )
    return sorted(found.partitions)


class KafkaSource(StreamSource):
    def __init__(self, uri: StreamURI, dataset: str, *, prefetch_kbytes: int = 32 * 1024) -> None:
        self.uri = uri.canonical
        self._uri = uri
        self.topic = uri.target
        self.group = uri.options.get("group") or safe_token(f"mloop-{dataset}")
        self._prefetch_kbytes = prefetch_kbytes
        self._consumer: Any = None
        self._assigned: set[int] = set()
        self._refreshed = 0.0
        self._warnings: list[str] = []

    def open(self, resume: dict[int, int]) -> None:
        kafka = _kafka()
        self._resume = dict(resume)
        self._consumer = kafka.Consumer(
            {
                "bootstrap.servers": self._uri.servers,
                "group.id": self.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "queued.max.messages.kbytes": self._prefetch_kbytes,
                "fetch.max.bytes": min(50 * 2**20, self._prefetch_kbytes * 1024),
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "socket.timeout.ms": 10000,
            }
        )
        try:
            self._refresh(force=True)
        except BaseException:
            self.close()
            raise

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._refreshed < REFRESH_SECONDS:
            return
        self._refreshed = now
        kafka = _kafka()
        found = _partitions(self._consumer, self.topic, self._uri.servers)
        new = [p for p in found if p not in self._assigned]
        if not new:
            return
        assignment = [
            kafka.TopicPartition(
                self.topic,
                p,
                self._resume[p] + 1 if p in self._resume else kafka.OFFSET_BEGINNING,
            )
            for p in new
        ]
        self._consumer.incremental_assign(assignment)
        self._assigned.update(new)

    def fetch(self, max_messages: int, timeout: float) -> Fetched:
        self._refresh()
        messages = self._consumer.consume(num_messages=max_messages, timeout=timeout)
        payloads: list[bytes] = []
        offsets: list[int] = []
        partitions: list[int] = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() == _kafka().KafkaError._PARTITION_EOF:
                    continue
                raise StreamUnavailable(f"Kafka consume from {self.uri} failed: {error}")
            payloads.append(m.value() or b"")
            offsets.append(m.offset())
            partitions.append(m.partition())
        return Fetched(payloads, offsets, partitions)

    def ack(self, fetched: Sequence[Fetched]) -> None:
        """Commit the next offset of each partition to the group (for lag monitoring)."""
        kafka = _kafka()
        last: dict[int, int] = {}
        for f in fetched:
            for p, o in zip(f.partitions, f.offsets, strict=True):
                if o > last.get(p, -1):
                    last[p] = o
        if not last:
            return
        offsets = [kafka.TopicPartition(self.topic, p, o + 1) for p, o in sorted(last.items())]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except kafka.KafkaException as exc:  # the data and its offsets are safe in mloop
            message = f"committing offsets to group {self.group} failed: {exc}"
            if message not in self._warnings:
                self._warnings.append(message)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def describe(self) -> dict[str, Any]:
        return {"topic": self.topic, "group": self.group}

    def warnings(self) -> list[str]:
        return list(self._warnings)


class KafkaProducer(StreamProducer):
    """Produces with ``acks=all`` and idempotence and waits for every delivery report; creates
    the topic (``partitions=`` option, default 1) when it does not exist."""

    def __init__(self, uri: StreamURI) -> None:
        kafka = _kafka()
        self.uri = uri.canonical
        self._uri = uri
        self._producer = kafka.Producer(
            {
                "bootstrap.servers": uri.servers,
                "acks": "all",
                "linger.ms": 5,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 200_000,
                "log_level": 4,  # warnings and worse
            }
        )
        self._ensure_topic(option_int(uri, "partitions", 1))

    def _ensure_topic(self, partitions: int) -> None:
        kafka = _kafka()
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        metadata = self._producer.list_topics(timeout=METADATA_TIMEOUT)
        found = metadata.topics.get(self._uri.target)
        if found is not None and found.error is None:
            return
        admin = AdminClient({"bootstrap.servers": self._uri.servers})
        futures = admin.create_topics(
            [NewTopic(self._uri.target, num_partitions=partitions, replication_factor=1)]
        )
        for future in futures.values():
            try:
                future.result(METADATA_TIMEOUT)
            except kafka.KafkaException as exc:
                if exc.args[0].code() != kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise StreamUnavailable(
                        f"cannot create topic {self._uri.target}: {exc}"
                    ) from exc

    def send(self, payloads: Sequence[bytes]) -> int:
        failures: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        topic = self._uri.target
        produce, poll = self._producer.produce, self._producer.poll
        for i, payload in enumerate(payloads):
            while True:
                try:
                    produce(topic, payload, on_delivery=report)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    poll(0.05)
            if i % 10_000 == 0:
                poll(0)
        left = self._producer.flush(60)
        if left:
            raise StreamUnavailable(f"{left} events were not delivered to {self.uri} in 60 s")
        if failures:
            raise StreamUnavailable(
                f"{len(failures)} of {len(payloads)} events were not stored by Kafka: {failures[0]}"
            )
        return len(payloads)

    def close(self) -> None:
        self._producer.flush(10)
