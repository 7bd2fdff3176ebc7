"""The prediction log: every served row, written off the request path, in batches.

Requests put records on an in-memory queue and return; one background thread drains it and
writes each batch in a single transaction, so a reader (or a crash) sees whole records only.
What a SIGKILL can lose: the records still queued, at most ``flush_seconds`` worth of traffic.
A full queue drops records rather than slow requests down, and counts them
(``mloop_prediction_log_dropped_total``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from mloop.storage import Database, tables

log = logging.getLogger("mloop.serving")


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
        self._queue: queue.Queue[PredictionRecord | None] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
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
        """Queue records; never blocks the caller."""
        with self._idle:
            self._pending += len(records)
        for i, record in enumerate(records):
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                lost = len(records) - i
                with self._idle:  # requests log from many threads: count under the lock
                    self.dropped += lost
                    self._pending -= lost
                    self._idle.notify_all()
                return

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _drain(self, limit: int) -> list[PredictionRecord]:
        batch: list[PredictionRecord] = []
        while len(batch) < limit:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                break
            if record is not None:  # None only wakes the writer up (see close)
                batch.append(record)
        return batch

    def _write(self, batch: list[PredictionRecord]) -> None:
        rows = [
            {
                "request_id": r.request_id,
                "row_index": r.row_index,
                "model_name": r.model_name,
                "model_version": r.model_version,
                "ts": r.ts_ms,
                "latency_ms": r.latency_ms,
                "inputs": json.dumps(r.inputs, separators=(",", ":"), allow_nan=True),
                "outputs": json.dumps(r.outputs, separators=(",", ":"), allow_nan=True),
            }
            for r in batch
        ]
        for attempt in range(5):
            try:
                with self._db.write() as conn:
                    conn.execute(tables.predictions.insert(), rows)
                self.written += len(rows)
                return
            except Exception:  # a busy or restarting database: retry, then count the loss
                log.exception(
                    "writing %d prediction records failed (attempt %d)", len(rows), attempt + 1
                )
                time.sleep(0.2 * (attempt + 1))
        self.failed_batches += 1
        self.dropped += len(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            deadline = time.monotonic() + self._flush_seconds
            batch: list[PredictionRecord] = []
            while len(batch) < self._batch_size:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    record = self._queue.get(timeout=timeout)
                except queue.Empty:
                    break
                if record is None:  # woken by close(): write what we have, then stop
                    break
                batch.append(record)
                batch.extend(self._drain(self._batch_size - len(batch)))
                if self._stop.is_set():
                    break
            if batch:
                self._write(batch)
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()
        self._flush_remaining()

    def _flush_remaining(self) -> None:
        while batch := self._drain(self._batch_size):
            self._write(batch)
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued record is written; True when it is."""
        if self._thread is None:
            self._flush_remaining()
            return True
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer after it has written everything queued."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # a full queue means the writer is awake anyway
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._flush_remaining()
