"""The stream consumer: micro-batches from a source into dataset versions, exactly once.

Each batch goes through the same steps, in this order:

1. messages at or below the offsets already stored with the dataset are skipped (a broker
   delivering again what was written before a crash);
2. the rest are parsed against the dataset's schema (:mod:`.events`); messages that are not
   JSON objects, lack the id, or do not fit the columns are rejected with a reason;
3. rows whose id is in the recent-id window, or earlier in the batch, are dropped as duplicates;
4. a suite, when given, splits off the rows that fail it;
5. rejected rows (the raw message, the reason, its partition and offset) and the rows are
   appended to ``<dataset>.quarantine`` and to the dataset, each with the batch's offsets, in
   ONE database transaction (:meth:`DatasetService.append_together`): both versions and both
   offset states commit, or nothing does;
6. only then the broker hears that the messages are done.

A crash anywhere before step 5 commits leaves nothing of the batch behind, and the restart
reads it again from the stored offsets — whatever batch its events fall into then, and
whatever that batch rejects. A crash after it: step 1 skips what was committed. So every
message lands exactly once in one of the two datasets, or is counted as a duplicate. Where a
run resumes is the larger of the offsets stored with the dataset and with its quarantine (a
batch whose every event was rejected moves only the quarantine's).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.data.datasets import AppendPart, DatasetService, DatasetVersion, check_name
from mloop.data.streams.base import (
    StreamProducer,
    StreamSource,
    StreamURI,
    parse_stream_uri,
)
from mloop.data.streams.events import (
    KINDS,
    SCHEMA,
    VALIDATION,
    DedupWindow,
    Parsed,
    parse_batch,
)
from mloop.data.validation import REASON_COLUMN, Suite, ValidationService
from mloop.data.versioning import SchemaChanged, SourceState
from mloop.storage import ArtifactStore

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
else:
    from mloop.core.lazy import lazy_module

    np = lazy_module("numpy")
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")

DEFAULT_BATCH_SIZE = 10_000
DEFAULT_MAX_WAIT = 1.0
DEFAULT_DEDUP_WINDOW = 100_000
DEFAULT_MAX_BATCH_BYTES = 64 * 2**20
POLL_SECONDS = 0.25

QUARANTINE_COLUMNS = (
    "_mloop_kind",
    REASON_COLUMN,
    "_mloop_payload",
    "_mloop_partition",
    "_mloop_offset",
)


@dataclass
class StreamStats:
    """What a consumer did: counts of events and where they went."""

    dataset: str
    source: str
    events: int = 0  # messages taken from the source (re-deliveries of written ones excluded)
    written: int = 0  # rows appended to the dataset
    duplicates: int = 0  # dropped: their id was already written
    quarantined: int = 0  # rows appended to the quarantine dataset
    reasons: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    redelivered: int = 0  # messages already written before (a restart), skipped
    batches: int = 0
    version: str | None = None  # the last version written
    quarantine_version: str | None = None
    seconds: float = 0.0
    stopped: str = ""  # max-events, idle, signal or stop
    warnings: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_second": round(self.events_per_second, 1)}


def open_source(
    uri: StreamURI,
    home: Path,
    dataset: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workspace: str = "",
) -> StreamSource:
    """The source of ``uri`` for ``dataset``; ``workspace`` (what identifies the workspace)
    goes into the broker-side consumer name, so two workspaces never share one."""
    if uri.scheme == "log":
        from mloop.data.streams.log import LogSource

        return LogSource(uri, home)
    if uri.scheme == "nats":
        from mloop.data.streams.nats import NatsSource

        return NatsSource(uri, dataset, workspace=workspace, prefetch=max(batch_size, 1000))
    from mloop.data.streams.kafka import KafkaSource

    return KafkaSource(uri, dataset, workspace=workspace)


def open_producer(uri: StreamURI, home: Path) -> StreamProducer:
    if uri.scheme == "log":
        from mloop.data.streams.log import LogProducer

        return LogProducer(uri, home)
    if uri.scheme == "nats":
        from mloop.data.streams.nats import NatsProducer

        return NatsProducer(uri)
    from mloop.data.streams.kafka import KafkaProducer

    return KafkaProducer(uri)


def _offsets(state: dict[str, Any] | None) -> dict[int, int]:
    if not state:
        return {}
    return {int(p): int(o) for p, o in (state.get("offsets") or {}).items()}


def _quarantine_key(uri: StreamURI, dataset: str, quarantine: str) -> str:
    """What the quarantine's offsets are stored under: the stream's key, and the dataset
    when the quarantine has a name of its own (it may serve several datasets)."""
    if quarantine == f"{dataset}.quarantine":
        return uri.key
    return f"{uri.key} into {dataset}"


def _resume_state(
    datasets: DatasetService, dataset: str, quarantine: str, uri: StreamURI
) -> dict[str, Any] | None:
    """Where a consumer of ``uri`` into ``dataset`` resumes: the state stored with the
    dataset and the one stored with its quarantine (each written with its rows, in one
    transaction), with the larger offset of each partition."""
    data = datasets.source_state(dataset, uri.key)
    if data is None and uri.legacy_key != uri.key:  # stored before offsets had their own key
        data = datasets.source_state(dataset, uri.legacy_key)
    held = datasets.source_state(quarantine, _quarantine_key(uri, dataset, quarantine))
    if data is None and held is None:
        return None
    a, b = _offsets(data), _offsets(held)
    merged = {p: max(a.get(p, -1), b.get(p, -1)) for p in sorted({*a, *b})}
    return {**(held or {}), **(data or {}), "offsets": _state_offsets(merged)}


def _state_offsets(done: dict[int, int]) -> dict[str, int]:
    return {str(p): o for p, o in sorted(done.items())}


def _merge(done: dict[int, int], partitions: np.ndarray, offsets: np.ndarray) -> dict[int, int]:
    merged = dict(done)
    if len(offsets) == 0:
        return merged
    if (partitions == partitions[0]).all():
        groups = [(int(partitions[0]), int(offsets.max()))]
    else:
        groups = [(int(p), int(offsets[partitions == p].max())) for p in np.unique(partitions)]
    for p, o in groups:
        if o > merged.get(p, -1):
            merged[p] = o
    return merged


class StreamConsumer:
    """Consume ``source`` into dataset ``dataset``; :meth:`run` until a stop condition."""

    def __init__(
        self,
        datasets: DatasetService,
        validation: ValidationService,
        artifacts: ArtifactStore,
        home: Path,
        dataset: str,
        source: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_wait: float = DEFAULT_MAX_WAIT,
        suite: str | Suite | None = None,
        id_field: str = "id",
        dedup_window: int = DEFAULT_DEDUP_WINDOW,
        quarantine: str | None = None,
        max_events: int | None = None,
        idle_exit: float | None = None,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        on_batch: Callable[[StreamStats], None] | None = None,
        on_start: Callable[[StreamStats], None] | None = None,
        workspace: str = "",
    ) -> None:
        self.dataset = check_name(dataset)
        self.quarantine = check_name(quarantine or f"{dataset}.quarantine")
        if self.quarantine == self.dataset:
            raise InvalidInput("the quarantine dataset must differ from the dataset")
        self.uri = parse_stream_uri(source)
        if batch_size < 1:
            raise InvalidInput("--batch-size must be at least 1")
        if max_wait <= 0:
            raise InvalidInput("--max-wait must be positive")
        if max_events is not None and max_events < 1:
            raise InvalidInput("--max-events must be at least 1")
        if idle_exit is not None and idle_exit <= 0:
            raise InvalidInput("--idle-exit must be positive")
        if not id_field:
            raise InvalidInput("the id field must be named")
        self._datasets = datasets
        self._validation = validation
        self._artifacts = artifacts
        self._home = Path(home)
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.suite_ref = suite
        self.id_field = id_field
        self.max_events = max_events
        self.idle_exit = idle_exit
        self.max_batch_bytes = max_batch_bytes
        self.window = DedupWindow(dedup_window)
        self.on_batch = on_batch
        self.on_start = on_start
        self.workspace = workspace
        self.stats = StreamStats(dataset=self.dataset, source=self.uri.canonical)
        self._stop = threading.Event()
        self._stop_reason = "stop"
        self._schema: pa.Schema | None = None
        self._suite: Suite | None = None
        self._done: dict[int, int] = {}  # offsets stored (with the data or the quarantine)
        self._stored: dict[str, Any] = {}  # the state stored with them (what the source said)
        self._handled: dict[int, int] = {}  # highest offset taken into a batch in this run
        self._created: DatasetVersion | None = None  # a version of the dataset, once there is

    # -- control ---------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Finish the current batch (write it, acknowledge it), then return from :meth:`run`.
        Safe from another thread or a signal handler."""
        self._stop_reason = reason
        self._stop.set()

    @contextlib.contextmanager
    def _signals(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.stop("signal")

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One consumer per dataset in a workspace: a second one would write the same events."""
        folder = self._home / "streams" / ".consumers"
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / f"{self.dataset}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict(
                    f"another consumer is already streaming into dataset {self.dataset!r} "
                    "in this workspace"
                ) from None
            yield
        finally:
            os.close(fd)

    # -- the loop --------------------------------------------------------------------------

    def run(self, *, handle_signals: bool = False) -> StreamStats:
        """Consume until ``max_events``, ``idle_exit``, :meth:`stop` or (with
        ``handle_signals``) SIGTERM/SIGINT; the batch in hand is always written first."""
        with self._exclusive(), self._signals(handle_signals):
            self._prepare()
            source = open_source(
                self.uri,
                self._home,
                self.dataset,
                batch_size=self.batch_size,
                workspace=self.workspace,
            )
            source.open(self._done, self._stored)
            started = time.monotonic()
            try:
                if self.on_start is not None:
                    self.on_start(self.stats)
                self._loop(source, started)
            finally:
                self.stats.seconds = time.monotonic() - started
                self.stats.warnings = source.warnings()
                source.close()
        return self.stats

    def _loop(self, source: StreamSource, started: float) -> None:
        last_arrival = started
        while True:
            fetched, reason, last_arrival = self._collect(source, last_arrival)
            if fetched:
                self._process(source, fetched)
                self.stats.seconds = time.monotonic() - started
                if self.on_batch is not None:
                    self.on_batch(self.stats)
            if reason is None and self.max_events and self.stats.events >= self.max_events:
                reason = "max-events"
            if reason is not None:
                self.stats.stopped = reason
                return

    def _collect(
        self, source: StreamSource, last_arrival: float
    ) -> tuple[list[Any], str | None, float]:
        fetched: list[Any] = []
        count = size = 0
        first_at: float | None = None
        while True:
            if self._stop.is_set():
                return fetched, self._stop_reason, last_arrival
            want = self.batch_size - count
            if self.max_events:
                want = min(want, self.max_events - self.stats.events - count)
            if want <= 0:
                return fetched, None, last_arrival
            now = time.monotonic()
            timeout = POLL_SECONDS
            if first_at is not None:
                timeout = min(timeout, first_at + self.max_wait - now)
            elif self.idle_exit is not None:
                timeout = min(timeout, last_arrival + self.idle_exit - now)
            got = source.fetch(want, max(timeout, 0.001))
            now = time.monotonic()
            if len(got):
                fetched.append(got)
                count += len(got)
                size += sum(map(len, got.payloads))
                last_arrival = now
                if first_at is None:
                    first_at = now
            if count >= self.batch_size or size >= self.max_batch_bytes:
                return fetched, None, last_arrival
            if first_at is not None and now - first_at >= self.max_wait:
                return fetched, None, last_arrival
            if (
                first_at is None
                and self.idle_exit is not None
                and now - last_arrival >= self.idle_exit
            ):
                return fetched, "idle", last_arrival

    # -- before the first batch ------------------------------------------------------------

    def _prepare(self) -> None:
        if self.suite_ref is not None:
            self._suite = (
                self.suite_ref
                if isinstance(self.suite_ref, Suite)
                else self._validation.get_suite(self.suite_ref)
            )
        self._stored = _resume_state(self._datasets, self.dataset, self.quarantine, self.uri) or {}
        self._done = _offsets(self._stored)
        self._check_quarantine()
        self._protect_quarantine()
        latest = self._latest(self.dataset)
        if latest is not None:
            self._created = latest
            self._restore(latest)

    def _latest(self, name: str) -> DatasetVersion | None:
        try:
            return self._datasets.get(name)
        except NotFound:
            return None

    def _check_quarantine(self) -> None:
        latest = self._latest(self.quarantine)
        if latest is not None and latest.schema_.names != list(QUARANTINE_COLUMNS):
            raise InvalidInput(
                f"dataset {self.quarantine!r} exists with other columns than a stream's "
                f"quarantine ({', '.join(QUARANTINE_COLUMNS)}); name another with --quarantine"
            )

    def _protect_quarantine(self) -> None:
        """Rejected events hold the dataset's PII too: a quarantine named otherwise than
        ``NAME.quarantine`` (which has NAME's policy) gets NAME's PII tags."""
        if self.quarantine == f"{self.dataset}.quarantine":
            return
        pii = (self._datasets.policy(self.dataset, missing_ok=True) or {}).get("pii") or {}
        held = (self._datasets.policy(self.quarantine, missing_ok=True) or {}).get("pii") or {}
        if any(held.get(column) != action for column, action in pii.items()):
            self._datasets.set_policy(self.quarantine, pii)

    def _restore(self, latest: DatasetVersion) -> None:
        """The dataset's exact Arrow schema and the ids of its last rows (the dedup window)."""
        digests = self._datasets.segment_digests(latest)
        chunks: list[pa.Array] = []
        held = 0
        for n, digest in enumerate(reversed(digests)):
            data = io.BytesIO(self._artifacts.get_bytes(digest))
            if n == 0:
                self._schema = pq.read_schema(data).remove_metadata()
                if self._schema.get_field_index(self.id_field) < 0:
                    raise InvalidInput(
                        f"dataset {self.dataset!r} has no column {self.id_field!r} to tell "
                        f"events apart; name its id column with --id-field "
                        f"(columns: {', '.join(self._schema.names)})"
                    )
                data.seek(0)
            if held >= self.window.size:
                break
            column = pq.read_table(data, columns=[self.id_field]).column(0)
            chunks.insert(0, column.combine_chunks())
            held += len(column)
        for chunk in chunks:  # oldest first: the window keeps the newest
            self.window.add(chunk)

    def _segment_schema(self, version: DatasetVersion) -> pa.Schema:
        digest = self._datasets.segment_digests(version)[-1]
        return pq.read_schema(io.BytesIO(self._artifacts.get_bytes(digest))).remove_metadata()

    # -- one batch -------------------------------------------------------------------------

    def _process(self, source: StreamSource, fetched: list[Any]) -> None:
        stats = self.stats
        payloads = [p for f in fetched for p in f.payloads]
        offsets = np.fromiter((o for f in fetched for o in f.offsets), np.int64, len(payloads))
        partitions = np.fromiter(
            (p for f in fetched for p in f.partitions), np.int64, len(payloads)
        )
        # 1. skip what is already written (stored offsets) or already taken in this run
        fresh = self._fresh(partitions, offsets)
        self._handled = _merge(self._handled, partitions, offsets)
        if not fresh.all():
            stats.redelivered += int((~fresh).sum())
            keep = np.flatnonzero(fresh)
            payloads = [payloads[i] for i in keep]
            offsets, partitions = offsets[keep], partitions[keep]
        stats.events += len(payloads)
        stats.batches += 1
        if not payloads:
            source.ack(fetched)
            return
        # 2. parse, 3. drop duplicates, 4. validate
        parsed = parse_batch(payloads, self._schema, self.id_field)
        if self._schema is None and parsed.schema is not None and parsed.table is not None:
            self._schema = parsed.schema
        table, index, rejected = self._dedup(parsed)
        if table is not None and self._suite is not None:
            table, index = self._validate(table, index, rejected)
        # 5. the quarantine, the rows and the offsets of both in one transaction; 6. the broker
        done = _merge(self._done, partitions, offsets)
        if table is not None and not table.num_rows:
            table = None
        if table is not None or rejected:
            try:
                self._commit(table, rejected, payloads, partitions, offsets, done, source)
            except SchemaChanged as exc:  # the dataset changed under us: keep the rows aside
                if table is None:
                    raise  # the quarantine refused its own rows: nothing to fall back to
                latest = self._latest(self.dataset)
                if latest is not None:
                    self._schema = self._segment_schema(latest)
                moved = [(int(i), SCHEMA, exc.message) for i in index]
                self._commit(None, rejected + moved, payloads, partitions, offsets, done, source)
            self._done = done
        source.ack(fetched)

    def _commit(
        self,
        table: pa.Table | None,
        rejected: list[tuple[int, str, str]],
        payloads: list[bytes],
        partitions: np.ndarray,
        offsets: np.ndarray,
        done: dict[int, int],
        source: StreamSource,
    ) -> None:
        """The batch's rejected events into the quarantine and its rows into the dataset, each
        with the offsets ``done``, in one transaction; the counts move once it committed."""
        state = {"offsets": _state_offsets(done), **source.describe()}
        parts = []
        if rejected:
            parts.append(
                AppendPart(
                    self.quarantine,
                    self._quarantine_table(rejected, payloads, partitions, offsets),
                    source=self.uri.canonical,
                    kind="quarantine",
                    state=SourceState(self._quarantine_key, state),
                )
            )
        if table is not None:
            parts.append(
                AppendPart(
                    self.dataset,
                    table,
                    source=self.uri.canonical,
                    kind="stream",
                    state=SourceState(self.uri.key, state),
                )
            )
        versions = self._datasets.append_together(parts)
        stats = self.stats
        if rejected:
            stats.quarantined += len(rejected)
            for _, kind, _ in rejected:
                stats.reasons[kind] = stats.reasons.get(kind, 0) + 1
            stats.quarantine_version = versions[0].ref
        if table is not None:
            version = versions[-1]
            stats.written += table.num_rows
            stats.version = version.ref
            self.window.add(table.column(self.id_field))
            if self._created is None:
                self._created = version  # the stored schema is the one to parse against
                self._schema = self._segment_schema(version)

    @property
    def _quarantine_key(self) -> str:
        return _quarantine_key(self.uri, self.dataset, self.quarantine)

    def _fresh(self, partitions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        if len(offsets) == 0:
            return np.zeros(0, dtype=bool)
        seen = {
            p: max(self._done.get(p, -1), self._handled.get(p, -1)) for p in self._all(partitions)
        }
        if len(seen) == 1:
            (floor,) = seen.values()
            return np.asarray(offsets > floor)
        floors = np.fromiter((seen[int(p)] for p in partitions), np.int64, len(partitions))
        return np.asarray(offsets > floors)

    @staticmethod
    def _all(partitions: np.ndarray) -> list[int]:
        if (partitions == partitions[0]).all():
            return [int(partitions[0])]
        return [int(p) for p in np.unique(partitions)]

    def _dedup(
        self, parsed: Parsed
    ) -> tuple[pa.Table | None, np.ndarray, list[tuple[int, str, str]]]:
        table, index = parsed.table, parsed.index
        if table is None or not table.num_rows:
            return None, index, parsed.rejected
        keep = self.window.check(table.column(self.id_field))
        dropped = len(keep) - int(keep.sum())
        if dropped:
            self.stats.duplicates += dropped
            table, index = table.filter(pa.array(keep)), index[keep]
        return table, index, parsed.rejected

    def _validate(
        self, table: pa.Table, index: np.ndarray, rejected: list[tuple[int, str, str]]
    ) -> tuple[pa.Table, np.ndarray]:
        assert self._suite is not None
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        # through the service: distribution checks against a dataset version get their
        # reference (read once, cached)
        result = self._validation.split(frame, self._suite, f"{self.dataset} (stream batch)")
        failed = result.failed
        if not failed.height:
            return table, index
        ids = table.column(self.id_field).to_pylist()
        reasons = dict(
            zip(
                failed.get_column(self.id_field).to_list(),
                failed.get_column(REASON_COLUMN).to_list(),
                strict=True,
            )
        )
        passing = np.fromiter((i not in reasons for i in ids), bool, len(ids))
        for row in np.flatnonzero(~passing):
            rejected.append((int(index[row]), VALIDATION, str(reasons[ids[row]])))
        return table.filter(pa.array(passing)), index[passing]

    @staticmethod
    def _quarantine_table(
        rejected: list[tuple[int, str, str]],
        payloads: list[bytes],
        partitions: np.ndarray,
        offsets: np.ndarray,
    ) -> pa.Table:
        rows = sorted(rejected)
        return pa.table(
            {
                "_mloop_kind": pa.array([k for _, k, _ in rows], pa.string()),
                REASON_COLUMN: pa.array([r for _, _, r in rows], pa.string()),
                "_mloop_payload": pa.array(
                    [payloads[i].decode("utf-8", "backslashreplace") for i, _, _ in rows],
                    pa.string(),
                ),
                "_mloop_partition": pa.array([int(partitions[i]) for i, _, _ in rows], pa.int64()),
                "_mloop_offset": pa.array([int(offsets[i]) for i, _, _ in rows], pa.int64()),
            }
        )


class StreamService:
    """``ws.streams``: consume streams into datasets, produce events, open local logs."""

    def __init__(
        self,
        datasets: DatasetService,
        validation: ValidationService,
        artifacts: ArtifactStore,
        home: Path,
    ) -> None:
        self._datasets = datasets
        self._validation = validation
        self._artifacts = artifacts
        self._home = Path(home)

    @property
    def workspace(self) -> str:
        """What identifies this workspace to a broker (in consumer names): its metadata
        database, without a password (a PostgreSQL workspace is one wherever it is opened)."""
        db = getattr(self._datasets, "_db", None)
        url = getattr(db, "display_url", None)
        return str(url) if url else str(self._home.resolve())

    def consumer(self, dataset: str, source: str, **options: Any) -> StreamConsumer:
        """A :class:`StreamConsumer` (options as its keyword arguments); call ``run()``."""
        options.setdefault("workspace", self.workspace)
        return StreamConsumer(
            self._datasets,
            self._validation,
            self._artifacts,
            self._home,
            dataset,
            source,
            **options,
        )

    def consume(self, dataset: str, source: str, **options: Any) -> StreamStats:
        """Consume until a stop condition (``max_events=`` or ``idle_exit=`` for a bounded run)."""
        return self.consumer(dataset, source, **options).run()

    def producer(self, source: str) -> StreamProducer:
        return open_producer(parse_stream_uri(source), self._home)

    def produce(self, source: str, events: Any) -> int:
        """Send events (dicts, JSON strings or bytes) to a stream; returns how many."""
        payloads = []
        for event in events:
            if isinstance(event, bytes):
                payloads.append(event)
            elif isinstance(event, str):
                payloads.append(event.encode())
            else:
                payloads.append(json.dumps(event, separators=(",", ":")).encode())
        with self.producer(source) as producer:
            return producer.send(payloads)

    def state(
        self, dataset: str, source: str, *, quarantine: str | None = None
    ) -> dict[str, Any] | None:
        """The offsets stored for ``source`` with ``dataset`` and its quarantine: where a
        consumer resumes (None: it starts at the beginning)."""
        check_name(dataset)
        held = check_name(quarantine or f"{dataset}.quarantine")
        return _resume_state(self._datasets, dataset, held, parse_stream_uri(source))
