"""Kafka (confluent-kafka): ``kafka://[USER:PASSWORD@]HOST:PORT/TOPIC[?group=NAME]``.

The consumer assigns itself every partition of the topic (no group membership, so a restart
never waits for a session to time out) and seeks each one to the offset after the one stored
with the dataset, or to the beginning when none is stored. Offsets are never reset silently
(``auto.offset.reset=error``): when the broker says the offset to read is out of range, the
partition's watermarks decide — below its start (retention removed events before they were
read) is a warning and reading goes on from the start; otherwise (beyond its end: the topic
was deleted and created again) the consumer stops with the reason. A stored partition the
topic no longer has is refused at start. (The watermarks are not checked up front: some
Kafka-compatible brokers report them in batches, not records.)

After a batch is written it commits the next offsets to the group (``mloop-<dataset>-<hash>``
unless ``group=`` says otherwise), so tools that watch consumer lag see it; mloop itself never
reads them back. librdkafka prefetches in its own thread, bounded by
``queued.max.messages.kbytes``. Partitions added to the topic are picked up within
``REFRESH_SECONDS``. A user and password in the URI are sent with SASL (``?mechanism=``,
default PLAIN; ``?security=``, default SASL_PLAINTEXT).
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
    consumer_name,
    option_int,
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


def _config(uri: StreamURI, **settings: Any) -> dict[str, Any]:
    """librdkafka settings for ``uri``: its servers, and SASL when it names a user."""
    config: dict[str, Any] = {"bootstrap.servers": uri.servers, **settings}
    if uri.userinfo:
        user, _, password = uri.userinfo.partition(":")
        config.update(
            {
                "security.protocol": uri.options.get("security", "SASL_PLAINTEXT"),
                "sasl.mechanism": uri.options.get("mechanism", "PLAIN"),
                "sasl.username": user,
                "sasl.password": password,
            }
        )
    return config


def _client(factory: Any, uri: StreamURI, config: dict[str, Any]) -> Any:
    try:
        return factory(config)
    except Exception as exc:  # KafkaException: a setting librdkafka refuses
        raise StreamUnavailable(
            uri.scrub(f"cannot set up a Kafka client for {uri.canonical}: {exc}")
        ) from exc


def _metadata(client: Any, uri: StreamURI, topic: str | None = None) -> Any:
    try:
        return client.list_topics(topic, timeout=METADATA_TIMEOUT)
    except Exception as exc:  # KafkaException(_TRANSPORT, _TIMED_OUT...): no broker answered
        raise StreamUnavailable(
            uri.scrub(f"cannot reach Kafka at {uri.servers}: {_reason(exc)}")
        ) from exc


def _reason(exc: BaseException) -> str:
    describe = getattr(exc.args[0] if exc.args else None, "str", None)
    if callable(describe):
        return str(describe())  # a KafkaError: its message, not its repr
    return str(exc) or type(exc).__name__


def _partitions(client: Any, uri: StreamURI) -> list[int]:
    topic = uri.target
    found = _metadata(client, uri, topic).topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        reason = found.error.str() if found is not None and found.error else "unknown"
        raise StreamUnavailable(
            f"Kafka topic {topic!r} is not available at {uri.servers} ({reason}): create "
            "it, or produce to it first (mloop data produce)"
        )
    return sorted(found.partitions)


class KafkaSource(StreamSource):
    def __init__(
        self,
        uri: StreamURI,
        dataset: str,
        *,
        workspace: str = "",
        prefetch_kbytes: int = 32 * 1024,
    ) -> None:
        self.uri = uri.canonical
        self._uri = uri
        self.dataset = dataset
        self.topic = uri.target
        self.group = uri.options.get("group") or consumer_name(dataset, workspace)
        self._prefetch_kbytes = prefetch_kbytes
        self._consumer: Any = None
        self._assigned: set[int] = set()
        self._next: dict[int, int] = {}  # per partition, the offset to read next
        self._refreshed = 0.0
        self._warnings: list[str] = []

    def open(self, resume: dict[int, int], stored: dict[str, Any] | None = None) -> None:
        kafka = _kafka()
        self._resume = dict(resume)
        self._consumer = _client(
            kafka.Consumer,
            self._uri,
            _config(
                self._uri,
                **{
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    # never a silent jump: an offset out of range is an error (see _start)
                    "auto.offset.reset": "error",
                    "queued.max.messages.kbytes": self._prefetch_kbytes,
                    "fetch.max.bytes": min(50 * 2**20, self._prefetch_kbytes * 1024),
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 500,
                    "socket.timeout.ms": 10000,
                },
            ),
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
        found = _partitions(self._consumer, self._uri)
        if force:
            gone = sorted(set(self._resume) - set(found))
            if gone:
                raise StreamUnavailable(
                    f"Kafka topic {self.topic!r} has no partition {gone[0]} but dataset "
                    f"{self.dataset!r} holds events of it: was the topic deleted and created "
                    "again? Nothing was read; stream it into another dataset"
                )
        new = [p for p in found if p not in self._assigned]
        if not new:
            return
        for p in new:
            self._next[p] = self._resume[p] + 1 if p in self._resume else kafka.OFFSET_BEGINNING
        assignment = [kafka.TopicPartition(self.topic, p, self._next[p]) for p in new]
        try:
            self._consumer.incremental_assign(assignment)
        except kafka.KafkaException as exc:
            raise StreamUnavailable(f"Kafka refused to assign {self.uri}: {_reason(exc)}") from exc
        self._assigned.update(new)

    def _out_of_range(self, partition: int, error: Any) -> None:
        """The broker has no offset ``_next[partition]``: below the partition's start, a
        warning and on from the start; otherwise the topic is not the one the offsets were
        stored for, and nothing more is read."""
        kafka = _kafka()
        wanted = self._next.get(partition, -1)
        try:
            low, high = self._consumer.get_watermark_offsets(
                kafka.TopicPartition(self.topic, partition), timeout=METADATA_TIMEOUT
            )
        except kafka.KafkaException as exc:
            raise StreamUnavailable(
                f"cannot read the offsets of {self.uri} partition {partition}: {_reason(exc)}"
            ) from exc
        if 0 <= wanted < low:
            self._warnings.append(
                f"topic {self.topic} partition {partition} no longer holds offsets "
                f"{wanted}..{low - 1} (its retention removed them before they were read)"
            )
            self._next[partition] = int(low)
            self._consumer.seek(kafka.TopicPartition(self.topic, partition, int(low)))
            return
        raise StreamUnavailable(
            f"Kafka topic {self.topic!r} partition {partition} has no offset {wanted} (it "
            f"holds {low}..{high - 1}; {error.str()}) but dataset {self.dataset!r} was read "
            "up to there: was the topic deleted and created again? Nothing more was read; "
            "stream it into another dataset"
        )

    def fetch(self, max_messages: int, timeout: float) -> Fetched:
        self._refresh()
        kafka = _kafka()
        try:
            messages = self._consumer.consume(num_messages=max_messages, timeout=timeout)
        except kafka.KafkaException as exc:
            raise StreamUnavailable(
                f"Kafka consume from {self.uri} failed: {_reason(exc)}"
            ) from exc
        payloads: list[bytes] = []
        offsets: list[int] = []
        partitions: list[int] = []
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() == kafka.KafkaError._PARTITION_EOF:
                    continue
                if error.code() == kafka.KafkaError._AUTO_OFFSET_RESET:
                    self._out_of_range(m.partition(), error)
                    continue
                raise StreamUnavailable(f"Kafka consume from {self.uri} failed: {error.str()}")
            payloads.append(m.value() or b"")
            offsets.append(m.offset())
            partitions.append(m.partition())
        for p, o in zip(partitions, offsets, strict=True):
            self._next[p] = o + 1
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
    """Produces with ``acks=all`` and idempotence (``enable.idempotence``: a retry inside the
    client never stores an event twice) and waits for every delivery report; creates the topic
    (``partitions=`` option, default 1) when it does not exist."""

    def __init__(self, uri: StreamURI) -> None:
        kafka = _kafka()
        self.uri = uri.canonical
        self._uri = uri
        self._producer = _client(
            kafka.Producer,
            uri,
            _config(
                uri,
                **{
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "batch.num.messages": 10000,
                    "queue.buffering.max.messages": 200_000,
                    "log_level": 4,  # warnings and worse
                },
            ),
        )
        self._ensure_topic(option_int(uri, "partitions", 1))

    def _ensure_topic(self, partitions: int) -> None:
        kafka = _kafka()
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        metadata = _metadata(self._producer, self._uri)
        found = metadata.topics.get(self._uri.target)
        if found is not None and found.error is None:
            return
        admin = _client(AdminClient, self._uri, _config(self._uri))
        futures = admin.create_topics(
            [NewTopic(self._uri.target, num_partitions=partitions, replication_factor=1)]
        )
        for future in futures.values():
            try:
                future.result(METADATA_TIMEOUT)
            except kafka.KafkaException as exc:
                if exc.args[0].code() != kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise StreamUnavailable(
                        f"cannot create topic {self._uri.target}: {_reason(exc)}"
                    ) from exc
            except Exception as exc:  # a timeout waiting for the broker
                raise StreamUnavailable(
                    f"cannot create topic {self._uri.target}: {_reason(exc)}"
                ) from exc

    def send(self, payloads: Sequence[bytes]) -> int:
        kafka = _kafka()
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
                except kafka.KafkaException as exc:  # too large, an unknown topic...
                    raise StreamUnavailable(
                        f"Kafka refused an event for {self.uri}: {_reason(exc)}"
                    ) from exc
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
