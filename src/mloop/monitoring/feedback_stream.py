"""Labels from a stream (``log://NAME``, ``nats://HOST:PORT/SUBJECT``) into the feedback table,
at least once.

Each event is one label item as ``POST /v1/feedback`` takes it: ``{"request_id", "row_index",
"label"}`` or ``{"request_id", "labels": [...]}``. A batch is recorded, then its offsets are
saved (a small JSON file in the workspace, written atomically), then acknowledged: a crash in
between replays the batch, which is harmless — a label sent again replaces itself. Events that
cannot be recorded (not JSON, an unknown request id, a label of the wrong type) are set aside
with their reason in a JSON-lines file beside the offsets, never dropped silently; the batch's
good events are recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from pydantic import BaseModel

from mloop.core.errors import InvalidInput, NotFound
from mloop.data import open_stream_source, parse_stream_uri
from mloop.monitoring.performance import PerformanceService

DEFAULT_BATCH = 1000
DEFAULT_MAX_WAIT = 1.0
STREAM_DATASET = "feedback"  # the broker-side consumer's name is derived from it


class FeedbackStreamStats(BaseModel):
    source: str
    events: int = 0  # taken from the stream
    accepted: int = 0  # labels written
    replaced: int = 0
    rejected: int = 0  # events set aside (see ``rejects``)
    batches: int = 0
    seconds: float = 0.0
    stopped: str = ""  # max_events, idle, signal, stop
    rejects: str = ""  # the file rejected events are appended to


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


class FeedbackStream:
    """Consume label events from ``uri`` into ``performance`` until a stop condition."""

    def __init__(
        self,
        performance: PerformanceService,
        uri: str,
        home: Path,
        *,
        batch_size: int = DEFAULT_BATCH,
        max_wait: float = DEFAULT_MAX_WAIT,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        workspace: str = "",
        on_batch: Callable[[FeedbackStreamStats], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise InvalidInput("--batch-size must be at least 1")
        if max_events is not None and max_events < 1:
            raise InvalidInput("--max-events must be at least 1")
        if idle_timeout is not None and idle_timeout <= 0:
            raise InvalidInput("--idle-timeout must be positive")
        self._performance = performance
        self.uri = parse_stream_uri(uri)
        self._home = Path(home)
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.max_events = max_events
        self.idle_timeout = idle_timeout
        self.workspace = workspace
        self.on_batch = on_batch
        folder = self._home / "streams" / ".feedback"
        self.state_path = folder / f"{_safe(self.uri.key)}.json"
        self.rejects_path = folder / f"{_safe(self.uri.key)}.rejected.jsonl"
        self.stats = FeedbackStreamStats(source=self.uri.canonical, rejects=str(self.rejects_path))
        self._stop = threading.Event()

    def stop(self, reason: str = "stop") -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self.stats.stopped = reason
        self._stop.set()

    def _load_state(self) -> tuple[dict[int, int], dict[str, Any]]:
        if not self.state_path.exists():
            return {}, {}
        state = orjson.loads(self.state_path.read_bytes())
        offsets = {int(p): int(o) for p, o in (state.get("offsets") or {}).items()}
        return offsets, state.get("stored") or {}

    def _save_state(self, offsets: dict[int, int], stored: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        body = {"offsets": {str(p): o for p, o in offsets.items()}, "stored": stored}
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            out.write(orjson.dumps(body))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.state_path)

    @contextlib.contextmanager
    def _signals(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(_signum: int, _frame: FrameType | None) -> None:
            self.stop("signal")

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def run(self, *, handle_signals: bool = False) -> FeedbackStreamStats:
        offsets, stored = self._load_state()
        source = open_stream_source(
            self.uri,
            self._home,
            STREAM_DATASET,
            batch_size=self.batch_size,
            workspace=self.workspace,
        )
        started = time.monotonic()
        with self._signals(handle_signals):
            source.open(offsets, stored)
            try:
                idle_since = time.monotonic()
                while not self._stop.is_set():
                    want = self.batch_size
                    if self.max_events is not None:
                        want = min(want, self.max_events - self.stats.events)
                    fetched = source.fetch(want, self.max_wait)
                    if not len(fetched):
                        if (
                            self.idle_timeout is not None
                            and time.monotonic() - idle_since >= self.idle_timeout
                        ):
                            self.stats.stopped = "idle"
                            break
                        continue
                    idle_since = time.monotonic()
                    self._handle(fetched.payloads, fetched.partitions, fetched.offsets)
                    for p, o in zip(fetched.partitions, fetched.offsets, strict=True):
                        offsets[p] = max(o, offsets.get(p, -1))
                    self._save_state(offsets, source.describe())  # durable, then acknowledged
                    source.ack([fetched])
                    self.stats.batches += 1
                    if self.on_batch is not None:
                        self.on_batch(self.stats)
                    if self.max_events is not None and self.stats.events >= self.max_events:
                        self.stats.stopped = "max_events"
                        break
            finally:
                source.close()
                self.stats.seconds = time.monotonic() - started
        return self.stats

    def _handle(self, payloads: list[bytes], partitions: list[int], offsets: list[int]) -> None:
        self.stats.events += len(payloads)
        items: list[tuple[int, Any]] = []
        rejected: list[tuple[int, str]] = []
        for i, payload in enumerate(payloads):
            try:
                items.append((i, orjson.loads(payload)))
            except orjson.JSONDecodeError as exc:
                rejected.append((i, f"not valid JSON: {exc}"))
        self._record(items, rejected)
        if rejected:
            self.rejects_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.rejects_path, "ab") as out:
                for i, reason in rejected:
                    out.write(
                        orjson.dumps(
                            {
                                "partition": partitions[i],
                                "offset": offsets[i],
                                "payload": payloads[i].decode(errors="replace"),
                                "reason": reason,
                            }
                        )
                        + b"\n"
                    )
                out.flush()
                os.fsync(out.fileno())
            self.stats.rejected += len(rejected)

    def _record(self, items: list[tuple[int, Any]], rejected: list[tuple[int, str]]) -> None:
        """Record the items, or halves of them until each bad one stands alone (a clean batch
        costs one call; k bad events about k·log2(n) more)."""
        if not items:
            return
        try:
            result = self._performance.record([item for _, item in items], source="stream")
        except (InvalidInput, NotFound) as exc:  # the events' fault; a failing store raises
            if len(items) == 1:
                rejected.append((items[0][0], exc.message))
                return
            half = len(items) // 2
            self._record(items[:half], rejected)
            self._record(items[half:], rejected)
            return
        self.stats.accepted += result.accepted
        self.stats.replaced += result.replaced
