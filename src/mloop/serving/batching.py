"""Adaptive micro-batching on the server's event loop.

Requests hand their already-validated input to a :class:`MicroBatcher` and await a future.
The first request of a batch schedules a flush: at once (``max_wait=0``: the flush runs after
the requests the event loop has already read, so concurrent requests share a model call and a
lone request waits for no one), or after ``max_wait`` seconds. A batch that reaches
``max_batch_size`` rows is flushed at once. The limits are honoured: no request waits in the
queue longer than ``max_wait`` while the model is idle, and no model call sees more than
``max_batch_size`` rows — except a single request larger than that, which runs alone.

The model runs on the event loop's thread. A server runs one worker per core, so handing the
call to another thread would only add a hop; ONNX Runtime and scikit-learn each take one
thread (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from mloop.core.errors import Unavailable

In = TypeVar("In")
Out = TypeVar("Out")


class _Item(Generic[In, Out]):
    __slots__ = ("deadline", "future", "rows", "value")

    def __init__(self, value: In, rows: int, future: asyncio.Future[Out], deadline: float) -> None:
        self.value = value
        self.rows = rows
        self.future = future
        self.deadline = deadline


class MicroBatcher(Generic[In, Out]):
    """Collects inputs and runs ``run`` over each batch, in order.

    ``run(values)`` returns one output per value. When it raises, each value of the batch is
    run again alone, so one bad request fails by itself. ``observe(rows, requests, seconds)``
    is told of every model call (metrics)."""

    def __init__(
        self,
        run: Callable[[Sequence[In]], Sequence[Out]],
        *,
        max_batch_size: int = 64,
        max_wait: float = 0.0,
        observe: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self._observe = observe
        self._queue: deque[_Item[In, Out]] = deque()
        self._rows = 0
        self._handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queued_rows(self) -> int:
        return self._rows

    @property
    def queued_requests(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Nothing queued and no flush pending."""
        return not self._queue and self._handle is None

    def run_alone(self, value: In, rows: int) -> Out:
        """Run one input now, on the caller's stack: for a request with no one to batch with
        (the server has no other request in flight and ``max_wait`` is 0), which then skips
        the event loop's round trip through the queue."""
        started = time.perf_counter()
        try:
            (output,) = self._run([value])
        finally:
            if self._observe is not None:
                self._observe(rows, 1, time.perf_counter() - started)
        return output

    def submit(self, value: In, rows: int, timeout: float) -> asyncio.Future[Out]:
        """Queue ``value`` (``rows`` rows); the future resolves to its output, or to
        :class:`Unavailable` when it waited over ``timeout`` seconds before its batch ran."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        self._queue.append(_Item(value, rows, future, time.monotonic() + timeout))
        self._rows += rows
        if self._rows >= self.max_batch_size:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = loop.call_soon(self._flush)
        elif self._handle is None:
            self._handle = (
                loop.call_later(self.max_wait, self._flush)
                if self.max_wait > 0
                else loop.call_soon(self._flush)
            )
        return future

    def _take(self) -> list[_Item[In, Out]]:
        batch: list[_Item[In, Out]] = []
        rows = 0
        now = time.monotonic()
        queue = self._queue
        while queue:
            item = queue[0]
            if batch and rows + item.rows > self.max_batch_size:
                break
            queue.popleft()
            self._rows -= item.rows
            if item.future.done():  # its request was cancelled (client gone)
                continue
            if item.deadline < now:
                item.future.set_exception(
                    Unavailable("the request timed out waiting for the model; try again")
                )
                continue
            batch.append(item)
            rows += item.rows
        return batch

    def _flush(self) -> None:
        self._handle = None
        batch = self._take()
        if self._queue:  # more than one batch waits: the next one goes after this one
            assert self._loop is not None
            self._handle = self._loop.call_soon(self._flush)
        if not batch:
            return
        started = time.perf_counter()
        try:
            outputs = self._run([item.value for item in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
            else:
                for item in batch:  # one bad request must not fail the others
                    try:
                        (output,) = self._run([item.value])
                    except Exception as alone:
                        _fail(item, alone)
                    else:
                        if not item.future.done():
                            item.future.set_result(output)
            return
        finally:
            if self._observe is not None:
                self._observe(sum(i.rows for i in batch), len(batch), time.perf_counter() - started)
        for item, output in zip(batch, outputs, strict=True):
            if not item.future.done():
                item.future.set_result(output)


def _fail(item: _Item[Any, Any], exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
