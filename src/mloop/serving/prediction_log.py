"""The prediction log: every served row, written off the request path, in batches.

Requests append their records to an in-memory queue and return (one append per request,
no lock held while writing); one background thread drains it and writes each batch in a
single transaction, so a reader (or a crash) sees whole records only.
What a SIGKILL can lose: the records still queued, at most ``flush_seconds`` worth of traffic.
A full queue drops records rather than slow requests down, and counts them
(``mloop_prediction_log_dropped_total``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from mloop.storage import Database, tables

log = logging.getLogger("mloop.serving")
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_COLUMNS = (
    "request_id",
    "row_index",
    "model_name",
    "model_version",
    "ts",
    "latency_ms",
    "inputs",
    "outputs",
    "deployment",
    "variant",
    "shadow",
)


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    request_id: str
    row_index: int
    model_name: str
    model_version: int
    ts_ms: int
    latency_ms: float
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    deployment: str | None = None
    variant: str | None = None
    shadow: bool | None = None


class PredictionLogger:
    def __init__(
        self,
        db: Database,
        *,
        flush_seconds: float = 0.5,
        batch_size: int = 1000,
        queue_size: int = 200_000,
    ) -> None:
        self._db = db
        self._flush_seconds = flush_seconds
        self._batch_size = batch_size
        self._capacity = queue_size
        # each request appends its list of records (one append, no per-record wake-up); the
        # writer pops from the other end
        self._chunks: deque[list[PredictionRecord]] = deque()
        self._counts = threading.Condition(threading.Lock())  # guards the counters below
        self._queued = 0  # records in _chunks
        self._pending = 0  # records accepted and not yet written (or lost)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._statement: tuple[str, list[str] | None] | None = None
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()  # a closed logger can start again (a second app lifespan)
            self._thread = threading.Thread(
                target=self._run, name="mloop-prediction-log", daemon=True
            )
            self._thread.start()

    def log(self, records: list[PredictionRecord]) -> None:
        """Queue records; never blocks the caller. Beyond the queue's size they are dropped
        and counted."""
        n = len(records)
        with self._counts:
            room = self._capacity - self._queued
            if n > room:
                self.dropped += n - max(room, 0)
                n = max(room, 0)
                records = records[:n]
            self._queued += n
            self._pending += n
            backlog = self._queued
        if n:
            self._chunks.append(records)
            if backlog >= self._batch_size and not self._wake.is_set():
                self._wake.set()

    @property
    def queued(self) -> int:
        return self._queued

    def _take(self, limit: int) -> list[PredictionRecord]:
        batch: list[PredictionRecord] = []
        chunks = self._chunks
        while chunks and len(batch) < limit:
            chunk = chunks.popleft()
            room = limit - len(batch)
            if len(chunk) > room:
                batch.extend(chunk[:room])
                chunks.appendleft(chunk[room:])
            else:
                batch.extend(chunk)
        if batch:
            with self._counts:
                self._queued -= len(batch)
        return batch

    def _insert(self) -> tuple[str, list[str] | None]:
        """The INSERT in the database's own parameter style, compiled once: the writer hands
        the driver plain tuples (or dicts), skipping SQLAlchemy's per-row work — it runs beside
        the request path and holds the GIL while it works."""
        if self._statement is None:
            compiled = tables.predictions.insert().compile(
                dialect=self._db.engine.dialect, column_keys=list(_COLUMNS)
            )
            order = list(compiled.positiontup or []) if compiled.positional else None
            self._statement = (str(compiled), order)
        return self._statement

    def _write(self, batch: list[PredictionRecord]) -> None:
        dumps = orjson.dumps
        # orjson writes NaN and infinities as null, and NumPy scalars as numbers
        values = [
            (
                r.request_id,
                r.row_index,
                r.model_name,
                r.model_version,
                r.ts_ms,
                r.latency_ms,
                dumps(r.inputs, option=_NUMPY).decode(),
                dumps(r.outputs, option=_NUMPY).decode(),
                r.deployment,
                r.variant,
                r.shadow,
            )
            for r in batch
        ]
        sql, order = self._insert()
        rows: list[Any]
        if order is not None:
            index = [_COLUMNS.index(name) for name in order]
            rows = [tuple(v[i] for i in index) for v in values]
        else:
            rows = [dict(zip(_COLUMNS, v, strict=True)) for v in values]
        for attempt in range(5):
            try:
                with self._db.write() as conn:
                    conn.exec_driver_sql(sql, rows)
                self.written += len(rows)
                return
            except Exception:  # a busy or restarting database: retry, then count the loss
                log.exception(
                    "writing %d prediction records failed (attempt %d)", len(rows), attempt + 1
                )
                time.sleep(0.2 * (attempt + 1))
        self.failed_batches += 1
        self.dropped += len(rows)

    def _write_pending(self) -> None:
        while batch := self._take(self._batch_size):
            try:
                self._write(batch)
            finally:
                with self._counts:
                    self._pending -= len(batch)
                    self._counts.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            self._write_pending()
        self._write_pending()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written; True when it is."""
        if self._thread is None:
            self._write_pending()
            return True
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._counts:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._counts.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer after it has written everything queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._write_pending()
