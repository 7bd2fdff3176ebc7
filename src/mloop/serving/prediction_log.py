"""The prediction log: every served row, written off the request path, in batches.

Requests append their records to an in-memory queue and return (one append per request,
no lock held while writing); one background thread drains it and writes each batch in a
single transaction, so a reader (or a crash) sees whole records only.

With ``process=True`` (what ``mloop serve`` uses) the thread only encodes each batch (one
orjson call) and hands it through a pipe to a writer process of its own, which does the
database work — binding, inserting, committing, checkpointing: ~14 µs a record that would
otherwise share the interpreter lock, and the core, with the requests. The writer runs at a
lower CPU priority and ignores SIGINT and SIGTERM: it writes everything it was sent and exits
when the pipe closes, so a server that dies (even by SIGKILL) loses only what it had not sent
yet. ``flush`` waits until the writer has committed. Should the writer die, the thread writes
the batches it had not confirmed itself and carries on in-process (a batch can then be written
twice; never lost).

What a SIGKILL can lose: the records still queued, at most ``flush_seconds`` worth of traffic.
A full queue drops records rather than slow requests down, and counts them
(``mloop_prediction_log_dropped_total``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from mloop.storage import Database, memory_sqlite, tables

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
    "error",
)
_ROWS_PER_STATEMENT = 500  # x 12 parameters: far below SQLite's 32,766


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
    error: str | None = None  # a failed request's code: no prediction, outputs empty


class PredictionLogger:
    def __init__(
        self,
        db: Database,
        *,
        flush_seconds: float = 0.5,
        batch_size: int = 1000,
        queue_size: int = 200_000,
        process: bool = False,
    ) -> None:
        """``process``: write through a writer process of its own (see the module's doc);
        not for an in-memory SQLite database, which only this process can see."""
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
        self._turn = threading.Lock()  # one writer turn at a time (thread, flush, close)
        self._writer: _SqlWriter | None = None  # writing in this process (made on first use)
        url = db.engine.url
        self._process = process and not (url.get_backend_name() == "sqlite" and memory_sqlite(url))
        self._child: subprocess.Popen[bytes] | None = None
        self._child_failed_to_start = False
        self._sent: list[list[PredictionRecord]] = []  # sent to the child, not yet confirmed
        self._child_counts = (0, 0, 0)  # written, dropped, failed batches: the child's
        self._queue_dropped = 0

    @property
    def written(self) -> int:
        """Records written since the logger was made."""
        return self._child_counts[0] + (self._writer.written if self._writer else 0)

    @property
    def dropped(self) -> int:
        """Records lost: the queue was full, or the database refused them five times."""
        here = self._writer.dropped if self._writer else 0
        return self._queue_dropped + self._child_counts[1] + here

    @property
    def failed_batches(self) -> int:
        return self._child_counts[2] + (self._writer.failed_batches if self._writer else 0)

    @property
    def in_process(self) -> bool:
        """False while a writer process does the writing."""
        return not self._process

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
                self._queue_dropped += n - max(room, 0)
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

    def _write(self, batch: list[PredictionRecord]) -> None:
        """Write one batch: through the writer process when there is one, else here."""
        child = (self._child or self._spawn()) if self._process else None
        if child is None:
            self._sql().write(_values(batch))
            return
        self._sent.append(batch)
        try:
            _send_frame(child, b"R", orjson.dumps([_row(r) for r in batch], option=_NUMPY))
        except OSError:
            self._lost_child()  # which writes what was sent and not confirmed, this batch too

    def _sql(self) -> _SqlWriter:
        if self._writer is None:
            self._writer = _SqlWriter(self._db)
        return self._writer

    # -- the writer process -------------------------------------------------------------------

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        if not self._process or self._child_failed_to_start:
            return None
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
            )
            _send_frame(
                child, b"U", self._db.engine.url.render_as_string(hide_password=False).encode()
            )
        except OSError:
            log.exception("cannot start the prediction-log writer; writing in-process")
            self._child_failed_to_start = True
            return None
        self._child = child
        return child

    def _confirm(self) -> None:
        """Ask the writer process to commit what it was sent and wait for its counters; the
        batches it confirms leave ``_sent``."""
        child = self._child
        if child is None or not self._sent:
            return
        try:
            _send_frame(child, b"S", b"")
            assert child.stdout is not None
            reply = child.stdout.read(24)
            if len(reply) != 24:
                raise OSError("the prediction-log writer closed its pipe")
        except OSError:
            self._lost_child()
            return
        self._child_counts = struct.unpack(">QQQ", reply)
        self._sent.clear()

    def _lost_child(self) -> None:
        """The writer process died: write what it had not confirmed here, from now on."""
        child, self._child = self._child, None
        if child is not None:
            with contextlib.suppress(OSError):
                child.kill()
            child.wait()
        log.error(
            "the prediction-log writer process ended (exit %s); writing in-process from now on",
            None if child is None else child.returncode,
        )
        self._process = False
        unconfirmed, self._sent = self._sent, []
        for batch in unconfirmed:
            self._sql().write(_values(batch))

    def _stop_child(self, timeout: float) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdin is not None
        with contextlib.suppress(OSError):
            child.stdin.close()  # the writer writes the rest and exits
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("the prediction-log writer did not finish in %.0f s; stopping it", timeout)
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    def _write_pending(self) -> None:
        # the writer thread's turn (or a caller's when there is no thread): one at a time
        with self._turn:
            taken = 0
            try:
                while batch := self._take(self._batch_size):
                    taken += len(batch)
                    self._write(batch)
                self._confirm()
            finally:
                with self._counts:
                    self._pending -= taken
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
        self._stop_child(timeout)


class _SqlWriter:
    """Inserts batches of prediction rows (tuples in ``_COLUMNS`` order, inputs and outputs as
    JSON text) in one transaction each, retrying a busy database; counts what it loses."""

    def __init__(self, db: Database) -> None:
        self._db = db
        compiled = tables.predictions.insert().compile(
            dialect=db.engine.dialect, column_keys=list(_COLUMNS)
        )
        # the INSERT in the database's own parameter style, compiled once: the driver gets
        # plain tuples (or dicts), skipping SQLAlchemy's per-row work
        self._sql = str(compiled)
        self._order = (
            [_COLUMNS.index(name) for name in compiled.positiontup or []]
            if compiled.positional
            else None
        )
        self.written = 0
        self.dropped = 0
        self.failed_batches = 0

    def _statements(self, values: list[tuple[Any, ...]]) -> list[tuple[str, Any]]:
        index = self._order
        if index is None:
            return [(self._sql, [dict(zip(_COLUMNS, v, strict=True)) for v in values])]
        if self._db.dialect != "sqlite":
            return [(self._sql, [tuple(v[i] for i in index) for v in values])]
        # one multi-row INSERT per chunk: SQLite's driver releases and retakes the GIL around
        # every step, so executemany of 200 rows is 200 hand-offs with the request thread
        head, _, row = self._sql.partition(" VALUES ")
        statements: list[tuple[str, Any]] = []
        for start in range(0, len(values), _ROWS_PER_STATEMENT):
            part = values[start : start + _ROWS_PER_STATEMENT]
            params = tuple(v[i] for v in part for i in index)  # a tuple: one execution
            statements.append((f"{head} VALUES {', '.join([row] * len(part))}", params))
        return statements

    def write(self, values: list[tuple[Any, ...]]) -> bool:
        statements = self._statements(values)
        for attempt in range(5):
            try:
                with self._db.write() as conn:
                    for statement, params in statements:
                        conn.exec_driver_sql(statement, params)  # a list: executemany
                self.written += len(values)
                return True
            except Exception:  # a busy or restarting database: retry, then count the loss
                log.exception(
                    "writing %d prediction records failed (attempt %d)", len(values), attempt + 1
                )
                time.sleep(0.2 * (attempt + 1))
        self.failed_batches += 1
        self.dropped += len(values)
        return False


def _row(r: PredictionRecord) -> list[Any]:
    return [
        r.request_id,
        r.row_index,
        r.model_name,
        r.model_version,
        r.ts_ms,
        r.latency_ms,
        r.inputs,
        r.outputs,
        r.deployment,
        r.variant,
        r.shadow,
        r.error,
    ]


def _as_columns(row: list[Any]) -> tuple[Any, ...]:
    """A ``_row`` as the INSERT takes it: inputs and outputs as JSON text (orjson writes NaN
    and infinities as null, and NumPy scalars as numbers)."""
    inputs = orjson.dumps(row[6], option=_NUMPY).decode()
    outputs = orjson.dumps(row[7], option=_NUMPY).decode()
    return (*row[:6], inputs, outputs, *row[8:])


def _values(batch: list[PredictionRecord]) -> list[tuple[Any, ...]]:
    return [_as_columns(_row(r)) for r in batch]


def _send_frame(child: subprocess.Popen[bytes], kind: bytes, payload: bytes) -> None:
    assert child.stdin is not None
    child.stdin.write(_HEADER.pack(len(payload), kind) + payload)
    child.stdin.flush()


_HEADER = struct.Struct(">Ic")
_CHILD_CODE = "from mloop.serving.prediction_log import writer_main; writer_main()"


def writer_main() -> None:
    """The writer process: frames on stdin — ``U`` the database URL, ``R`` a batch of rows
    (orjson), ``S`` commit and report — until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops it, by closing the pipe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(5)  # requests first: it catches up when the server has a moment
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    writer: _SqlWriter | None = None
    while header := source.read(_HEADER.size):
        if len(header) < _HEADER.size:
            break
        size, kind = _HEADER.unpack(header)
        payload = source.read(size)
        if kind == b"U":
            writer = _SqlWriter(Database(payload.decode()))
        elif kind == b"R" and writer is not None:
            writer.write([_as_columns(row) for row in orjson.loads(payload)])
        elif kind == b"S" and writer is not None:
            sink.write(struct.pack(">QQQ", writer.written, writer.dropped, writer.failed_batches))
            sink.flush()
