"""Buffered logging: calls return at once; a background thread sends batches.

The fluent API queues operations here instead of writing each one. A flusher thread sends
whatever has gathered every ``interval`` seconds (and sooner once ``batch_size`` metric values
wait), through the store's ``apply`` — one transaction, or one HTTP request, per batch.
``flush()`` sends everything now and raises what went wrong; ``end_run`` and interpreter exit
call it. A SIGKILL loses at most what was queued since the last send: ``interval`` seconds of
logging. Memory stays bounded: past ``max_pending`` queued values, the logging call itself
flushes and waits.

A batch refused as a whole (one bad op) is retried op by op, so one conflict does not cost the
rest; the errors are kept and raised by the next ``flush()``. A batch that fails for the store's
sake (a server restarting, a locked database) stays queued and is tried again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mloop.core.errors import MloopError, StorageError
from mloop.core.ids import new_id
from mloop.tracking.records import CreateRun, LogBatch, MetricValue, Operation, UpdateRun
from mloop.tracking.store import TrackingStore

log = logging.getLogger("mloop.tracking")

DEFAULT_INTERVAL = 1.0
DEFAULT_BATCH_SIZE = 10_000
DEFAULT_MAX_PENDING = 200_000


class _Pending:
    """Operations in arrival order; consecutive logging to one run merges into one LogBatch."""

    def __init__(self) -> None:
        self.ops: list[Any] = []  # CreateRun | UpdateRun | dict (a LogBatch being built)
        self.values = 0

    def log(
        self,
        run_id: str,
        metrics: list[tuple[str, float, int, int]] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        last = self.ops[-1] if self.ops else None
        if not (isinstance(last, dict) and last["run_id"] == run_id):
            last = {"run_id": run_id, "metrics": [], "params": {}, "tags": {}}
            self.ops.append(last)
        if metrics:
            last["metrics"].extend(metrics)
            self.values += len(metrics)
        if params:
            last["params"].update(params)
            self.values += len(params)
        if tags:
            last["tags"].update(tags)
            self.values += len(tags)

    def take(self) -> list[Operation]:
        ops, self.ops, self.values = self.ops, [], 0
        return [_build(op) for op in ops]


def _build(op: Any) -> Operation:
    if not isinstance(op, dict):
        return op  # type: ignore[no-any-return]
    # values were checked as they were queued: construct without validating again
    metrics = [
        MetricValue.model_construct(key=k, value=v, step=s, timestamp=t)
        for k, v, s, t in op["metrics"]
    ]
    return LogBatch.model_construct(
        op="log", run_id=op["run_id"], metrics=metrics, params=op["params"], tags=op["tags"]
    )


class BatchLogger:
    def __init__(
        self,
        store: TrackingStore,
        *,
        interval: float = DEFAULT_INTERVAL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_error: Callable[[MloopError], None] | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.batch_size = batch_size
        self.max_pending = max_pending
        self._pending = _Pending()
        self._lock = threading.Lock()  # guards _pending
        self._send_lock = threading.Lock()  # one sender at a time, so batches keep their order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._errors: list[MloopError] = []
        self._retry: list[Operation] = []  # sent, but the store was away: sent again first
        self._retry_values = 0
        self._retry_id: str | None = None  # the same batch id, so a resend is applied once
        self._on_error = on_error
        self._thread: threading.Thread | None = None

    # -- queueing ----------------------------------------------------------------------------

    def _started(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="mloop-batch-logger", daemon=True
            )
            self._thread.start()

    def create_run(self, op: CreateRun) -> None:
        with self._lock:
            self._pending.ops.append(op)
        self._started()

    def update_run(self, op: UpdateRun) -> None:
        with self._lock:
            self._pending.ops.append(op)
        self._started()

    def log(
        self,
        run_id: str,
        *,
        metrics: list[tuple[str, float, int, int]] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            self._pending.log(run_id, metrics, params, tags)
            waiting = self._pending.values + self._retry_values  # what waits for an absent store
        self._started()
        if waiting >= self.max_pending:
            self.flush()  # back-pressure: the producer waits for the store
        elif waiting >= self.batch_size:
            self._wake.set()

    # -- sending -----------------------------------------------------------------------------

    def _keep(self, ops: list[Operation], batch_id: str | None = None) -> None:
        """Hold ``ops`` to send again (called with ``_lock`` held)."""
        self._retry = ops
        self._retry_id = batch_id
        self._retry_values = sum(
            len(op.metrics) + len(op.params) + len(op.tags)
            for op in ops
            if isinstance(op, LogBatch)
        )

    def _send(self) -> None:
        with self._send_lock:
            while True:
                with self._lock:
                    if self._retry:
                        # a batch the store may have applied without our hearing it: alone and
                        # under its first id, so the store can tell it has it already
                        ops, batch_id = self._retry, self._retry_id or new_id()
                    else:
                        ops, batch_id = self._pending.take(), new_id()
                    self._keep([])
                if not ops:
                    return
                try:
                    self.store.apply(ops, batch_id=batch_id)
                except StorageError as exc:
                    # the store's trouble, not the data's: keep it for the next attempt
                    with self._lock:
                        self._keep(ops, batch_id)
                    raise exc
                except MloopError:
                    self._one_by_one(ops)

    def _one_by_one(self, ops: list[Operation]) -> None:
        failed_runs: set[str] = set()
        for i, op in enumerate(ops):
            try:
                self._apply_one(op, failed_runs)
            except StorageError:
                # every write is idempotent: what is left, this op included, is sent again
                with self._lock:
                    self._keep(ops[i:])
                raise

    def _apply_one(self, op: Operation, failed_runs: set[str]) -> None:
        run_id = op.run_id or ""
        if run_id in failed_runs and not isinstance(op, CreateRun):
            return  # its run could not be created: what follows cannot apply either
        try:
            self.store.apply([op])
        except StorageError:
            raise
        except MloopError as exc:
            if isinstance(op, CreateRun):
                failed_runs.add(run_id)
            if isinstance(op, LogBatch) and op.params and (op.metrics or op.tags):
                self._split(op)  # a refused param must not cost the values queued with it
            else:
                self._failed(exc)

    def _split(self, op: LogBatch) -> None:
        """Apply a refused LogBatch in parts: its metrics and tags, then each param alone."""
        rest = LogBatch.model_construct(
            op="log", run_id=op.run_id, metrics=op.metrics, params={}, tags=op.tags
        )
        parts = [rest] + [
            LogBatch.model_construct(op="log", run_id=op.run_id, metrics=[], params={k: v}, tags={})
            for k, v in op.params.items()
        ]
        for part in parts:
            try:
                self.store.apply([part])
            except StorageError:
                raise
            except MloopError as exc:
                self._failed(exc)
                if part is rest:
                    return  # the run itself refuses: the params would be refused too

    def _failed(self, exc: MloopError) -> None:
        self._errors.append(exc)
        if self._on_error is not None:
            self._on_error(exc)
        log.error("mloop tracking: %s", exc.message)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self._send()
            except StorageError as exc:
                log.warning("mloop tracking: the store is unavailable, will retry: %s", exc)
            except Exception:  # never let the flusher die
                log.exception("mloop tracking: sending a batch failed")

    def flush(self) -> None:
        """Send everything queued now; raise the first error any batch met since the last
        flush (the rest of its batch was written)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                self._send()
                break
            except StorageError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        if self._errors:
            errors, self._errors = self._errors, []
            raise errors[0]

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.flush()
