"""Streaming inference: consume events, predict with a deployment, publish one result per event.

Each micro-batch (up to ``max_batch`` events, or ``max_wait_ms`` after its first) goes through:

1. messages at or below the offsets in the checkpoint are skipped (a broker delivering again
   what was published before a restart);
2. each message is parsed as a JSON object; its id is the field ``id_field`` (default
   ``event_id``), or — when the event has none — the broker's position of the message (the
   NATS stream sequence, ``PARTITION-OFFSET`` in Kafka, the byte offset in a local log); an id
   seen earlier in the same batch is a duplicate and dropped;
3. the events, less their id field, are checked against the model's signature all at once;
   when that fails, one by one, so each event that does not fit gets the 422 message alone;
4. the rows that fit are predicted in one model call;
5. one record per event is published, keyed by its id (:mod:`mloop.data.streams.sinks`): a
   result to the sink, an event that is not valid to the dead letter (or, without one, to the
   sink with ``error`` and ``message`` instead of ``prediction``);
6. the checkpoint (the highest offset per partition) is written, and only then the source
   hears that the messages are done.

At least once: a crash before step 6 redelivers the batch after a restart, and it is published
again under the same keys, which each backend makes harmless as far as it can (a local log
never appends a key twice; NATS drops a repeated ``Nats-Msg-Id`` within the stream's duplicate
window; Kafka keeps both records under one key). A bad event never stops the stream: it is
published to the dead letter and acknowledged with the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from mloop.core.clock import now_ms
from mloop.core.errors import Conflict, InvalidInput, SchemaMismatch
from mloop.core.ids import new_id
from mloop.data import (
    StreamSink,
    StreamSource,
    open_stream_sink,
    open_stream_source,
    parse_stream_uri,
)
from mloop.registry import ModelVersion, RegistryService
from mloop.serving.deployments import DeploymentService, Variant
from mloop.serving.prediction_log import PredictionLogger, PredictionRecord
from mloop.serving.served import ServedModel

log = logging.getLogger("mloop.serving")

DEFAULT_ID_FIELD = "event_id"
DEFAULT_MAX_BATCH = 500
DEFAULT_MAX_WAIT_MS = 100
DEFAULT_REFRESH_SECONDS = 30.0
POLL_SECONDS = 0.25
INVALID_JSON = "INVALID_JSON"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class StreamPredictStats:
    """What a streaming predictor did."""

    deployment: str
    source: str
    sink: str
    dead_letter: str | None = None
    variant: str = ""
    model: str = ""
    version: int = 0
    events: int = 0  # messages taken from the source (skipped re-deliveries excluded)
    predicted: int = 0  # results published (or found already published)
    errors: int = 0  # events that were not valid, published to the dead letter
    duplicates: int = 0  # an id seen earlier in the same batch
    already_published: int = 0  # records the sink recognised as published before
    redelivered: int = 0  # messages at or below the checkpoint, skipped
    batches: int = 0
    swaps: int = 0  # times the deployment's alias moved and the model was reloaded
    seconds: float = 0.0
    stopped: str = ""  # max-events, idle, signal or stop
    guarantee: str = ""  # what the sink does with a key published twice
    warnings: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "events_per_second": round(self.events_per_second, 1)}


@dataclass
class _Model:
    variant: Variant
    version: ModelVersion
    served: ServedModel


@dataclass
class _Event:
    index: int  # position in the batch
    partition: int
    offset: int
    payload: bytes
    event_id: Any = None
    key: str = ""
    row: dict[str, Any] | None = None
    error: tuple[str, str] | None = None  # (code, message)


def _key(value: Any) -> str:
    """An id as the sink's key: a string as it is, anything else as its JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


def _ts() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StreamPredictor:
    """Predict every event of ``source`` with ``deployment``; :meth:`run` until a stop
    condition. ``source``, ``sink`` and ``dead_letter`` are stream URIs (``log://NAME``,
    ``nats://HOST:PORT/SUBJECT``, ``kafka://HOST:PORT/TOPIC``)."""

    def __init__(
        self,
        deployments: DeploymentService,
        registry: RegistryService,
        home: Path,
        deployment: str,
        source: str,
        sink: str,
        *,
        id_field: str = DEFAULT_ID_FIELD,
        variant: str | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        idle_exit: float | None = None,
        max_events: int | None = None,
        dead_letter: str | None = None,
        refresh_seconds: float | None = DEFAULT_REFRESH_SECONDS,
        logger: PredictionLogger | None = None,
        workspace: str = "",
        on_start: Callable[[StreamPredictStats], None] | None = None,
        on_batch: Callable[[StreamPredictStats], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise InvalidInput("--max-batch must be at least 1")
        if max_wait_ms <= 0:
            raise InvalidInput("--max-wait-ms must be positive")
        if idle_exit is not None and idle_exit <= 0:
            raise InvalidInput("--idle-exit must be positive")
        if max_events is not None and max_events < 1:
            raise InvalidInput("--max-events must be at least 1")
        if not id_field:
            raise InvalidInput("the id field must be named")
        self.source_uri = parse_stream_uri(source)
        self.sink_uri = parse_stream_uri(sink)
        self.dead_uri = parse_stream_uri(dead_letter) if dead_letter else None
        outputs = [self.sink_uri.key] + ([self.dead_uri.key] if self.dead_uri else [])
        if self.source_uri.key in outputs:
            raise InvalidInput("the source must differ from the sink and the dead letter")
        self._deployments = deployments
        self._registry = registry
        self._home = Path(home)
        self.deployment = deployments.get(deployment).name
        self.variant_name = variant
        self.id_field = id_field
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.idle_exit = idle_exit
        self.max_events = max_events
        self.refresh_seconds = refresh_seconds
        self.logger = logger
        self.workspace = workspace
        self.on_start = on_start
        self.on_batch = on_batch
        digest = hashlib.sha256("\0".join(outputs).encode()).hexdigest()[:8]
        # what the broker-side consumer (a NATS durable, a Kafka group) is named after
        self.consumer = f"predict-{self.deployment}-{digest}"
        where = hashlib.sha256(self.source_uri.key.encode()).hexdigest()[:8]
        self.checkpoint_path = self._home / "streams" / ".predict" / f"{self.consumer}-{where}.json"
        self.stats = StreamPredictStats(
            deployment=self.deployment,
            source=self.source_uri.canonical,
            sink=self.sink_uri.canonical,
            dead_letter=self.dead_uri.canonical if self.dead_uri else None,
        )
        self._stop = threading.Event()
        self._stop_reason = "stop"
        self._done: dict[int, int] = {}
        self._stored: dict[str, Any] = {}
        self._model: _Model | None = None
        self._checked_at = 0.0

    # -- control ---------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Finish the batch in hand (publish it, acknowledge it), then return from :meth:`run`.
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
        """One predictor per (deployment, source, sink): a second would publish the same."""
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.checkpoint_path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict(
                    f"another predictor already streams {self.stats.source} through "
                    f"deployment {self.deployment!r} to {self.stats.sink}"
                ) from None
            yield
        finally:
            os.close(fd)

    # -- the model -------------------------------------------------------------------------

    def _resolve(self) -> tuple[Variant, ModelVersion]:
        deployment = self._deployments.get(self.deployment)
        served = deployment.served()
        if self.variant_name is None:
            chosen = served[0]
        else:
            found = [v for v in deployment.variants if v.name == self.variant_name]
            if not found:
                names = ", ".join(v.name for v in deployment.variants)
                raise InvalidInput(
                    f"deployment {self.deployment!r} has no variant {self.variant_name!r} "
                    f"(it has {names})"
                )
            chosen = found[0]
        return chosen, self._registry.resolve(chosen.model)

    def _load(self, variant: Variant, version: ModelVersion) -> _Model:
        model: Any = None
        runtime = "native"
        if variant.runtime in ("auto", "onnx"):
            model = self._registry.load_onnx(version)
            if model is not None:
                runtime = "onnx"
            elif variant.runtime == "onnx":
                raise InvalidInput(
                    f"variant {variant.name!r} asks for ONNX Runtime, but {version.ref} has no "
                    "verified ONNX export"
                )
        if model is None:
            model = self._registry.load(version)
        loaded = _Model(variant, version, ServedModel(model, runtime))
        self.stats.variant, self.stats.model = variant.name, version.name
        self.stats.version = version.version
        return loaded

    def _refresh(self) -> None:
        """Follow the deployment: reload when its variant now names another version."""
        if self.refresh_seconds is None or self._model is None:
            return
        now = time.monotonic()
        if now - self._checked_at < self.refresh_seconds:
            return
        self._checked_at = now
        try:
            variant, version = self._resolve()
        except Exception as exc:  # keep serving what is loaded; say why
            log.warning("deployment %s could not be re-resolved: %s", self.deployment, exc)
            return
        current = self._model
        if version.id != current.version.id or variant != current.variant:
            self._model = self._load(variant, version)
            self.stats.swaps += 1
            log.info("deployment %s now predicts with %s", self.deployment, version.ref)

    # -- the checkpoint --------------------------------------------------------------------

    def _read_checkpoint(self) -> None:
        try:
            state = json.loads(self.checkpoint_path.read_text())
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise InvalidInput(f"the checkpoint {self.checkpoint_path} is not JSON: {exc}") from exc
        self._done = {int(p): int(o) for p, o in (state.get("offsets") or {}).items()}
        self._stored = state.get("source_state") or {}

    def _write_checkpoint(self, source: StreamSource) -> None:
        state = {
            "deployment": self.deployment,
            "source": self.source_uri.key,
            "sink": self.sink_uri.canonical,
            "offsets": {str(p): o for p, o in sorted(self._done.items())},
            "source_state": {**self._stored, **source.describe()},
            "updated_ms": now_ms(),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            out.write(json.dumps(state))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.checkpoint_path)

    # -- the loop --------------------------------------------------------------------------

    def run(self, *, handle_signals: bool = False) -> StreamPredictStats:
        """Predict until ``max_events``, ``idle_exit``, :meth:`stop` or (with
        ``handle_signals``) SIGTERM/SIGINT; the batch in hand is always published and
        acknowledged first."""
        with self._exclusive(), self._signals(handle_signals):
            variant, version = self._resolve()
            self._model = self._load(variant, version)
            self._checked_at = time.monotonic()
            self._read_checkpoint()
            with contextlib.ExitStack() as stack:
                sink = stack.enter_context(
                    open_stream_sink(self.sink_uri, self._home, key_field=DEFAULT_ID_FIELD)
                )
                self.stats.guarantee = sink.guarantee
                dead = (
                    stack.enter_context(
                        open_stream_sink(self.dead_uri, self._home, key_field=DEFAULT_ID_FIELD)
                    )
                    if self.dead_uri is not None
                    else None
                )
                source = open_stream_source(
                    self.source_uri,
                    self._home,
                    self.consumer,
                    batch_size=self.max_batch,
                    workspace=self.workspace,
                )
                source.open(self._done, self._stored)
                stack.callback(source.close)
                started = time.monotonic()
                try:
                    if self.on_start is not None:
                        self.on_start(self.stats)
                    self._loop(source, sink, dead, started)
                finally:
                    self.stats.seconds = time.monotonic() - started
                    self.stats.warnings = source.warnings()
        return self.stats

    def _loop(
        self, source: StreamSource, sink: StreamSink, dead: StreamSink | None, started: float
    ) -> None:
        last_arrival = started
        while True:
            fetched, reason, last_arrival = self._collect(source, last_arrival)
            if fetched:
                self._process(source, sink, dead, fetched)
                self.stats.seconds = time.monotonic() - started
                if self.on_batch is not None:
                    self.on_batch(self.stats)
            if reason is None and self.max_events and self.stats.events >= self.max_events:
                reason = "max-events"
            if reason is not None:
                self.stats.stopped = reason
                return
            self._refresh()

    def _collect(
        self, source: StreamSource, last_arrival: float
    ) -> tuple[list[Any], str | None, float]:
        fetched: list[Any] = []
        count = 0
        first_at: float | None = None
        while True:
            if self._stop.is_set():
                return fetched, self._stop_reason, last_arrival
            want = self.max_batch - count
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
                last_arrival = now
                if first_at is None:
                    first_at = now
            if count >= self.max_batch:
                return fetched, None, last_arrival
            if first_at is not None and now - first_at >= self.max_wait:
                return fetched, None, last_arrival
            if (
                first_at is None
                and self.idle_exit is not None
                and now - last_arrival >= self.idle_exit
            ):
                return fetched, "idle", last_arrival

    # -- one batch -------------------------------------------------------------------------

    def _events(self, fetched: Sequence[Any]) -> list[_Event]:
        kafka = self.source_uri.scheme == "kafka"
        events: list[_Event] = []
        seen: set[str] = set()
        for batch in fetched:
            for payload, partition, offset in zip(
                batch.payloads, batch.partitions, batch.offsets, strict=True
            ):
                if offset <= self._done.get(partition, -1):
                    self.stats.redelivered += 1
                    continue
                self.stats.events += 1
                event = _Event(len(events), partition, offset, payload)
                broker_id = f"{partition}-{offset}" if kafka else str(offset)
                try:
                    value = orjson.loads(payload)
                except orjson.JSONDecodeError as exc:
                    value = None
                    event.error = (INVALID_JSON, f"not valid JSON: {exc}")
                if event.error is None and not isinstance(value, dict):
                    event.error = (INVALID_JSON, "the event is not a JSON object")
                event.event_id = broker_id
                if isinstance(value, dict):
                    given = value.get(self.id_field)
                    if isinstance(given, dict | list | bool):
                        event.error = (
                            SchemaMismatch.code,
                            f"the id field {self.id_field!r} must be a string or a number",
                        )
                    elif given is not None:
                        event.event_id = given
                    event.row = {k: v for k, v in value.items() if k != self.id_field}
                event.key = _key(event.event_id)
                if event.key in seen:
                    self.stats.duplicates += 1
                    continue
                seen.add(event.key)
                events.append(event)
        return events

    def _predict(self, events: list[_Event]) -> dict[int, tuple[Any, dict[str, float] | None]]:
        """Predictions of the events that fit the signature, by their index; the others get
        their error."""
        assert self._model is not None
        served = self._model.served
        valid = [e for e in events if e.error is None and e.row is not None]
        if not valid:
            return {}
        prepared: list[tuple[Any, int]] = []
        fitting: list[_Event] = []
        try:
            prepared = [served.prepare([e.row for e in valid])]
            fitting = valid
        except SchemaMismatch:
            for e in valid:
                try:
                    prepared.append(served.prepare([e.row]))
                    fitting.append(e)
                except SchemaMismatch as exc:
                    e.error = (exc.code, exc.message.replace("row 0: ", ""))
        if not fitting:
            return {}
        try:
            outputs = served.run(prepared)
        except SchemaMismatch:  # the model refused the batch: find the events it refuses
            outputs = []
            kept: list[_Event] = []
            for e in fitting:
                try:
                    outputs.extend(served.run([served.prepare([e.row])]))
                    kept.append(e)
                except SchemaMismatch as exc:
                    e.error = (exc.code, exc.message)
            fitting = kept
        return self._split(fitting, outputs)

    @staticmethod
    def _split(
        fitting: list[_Event], outputs: list[Any]
    ) -> dict[int, tuple[Any, dict[str, float] | None]]:
        labels: list[Any] = []
        probabilities: list[dict[str, float]] | None = []
        for predictions, probs in outputs:
            labels.extend(predictions)
            if probs is None:
                probabilities = None
            elif probabilities is not None:
                probabilities.extend(probs)
        return {
            e.index: (labels[i], probabilities[i] if probabilities is not None else None)
            for i, e in enumerate(fitting)
        }

    def _process(
        self,
        source: StreamSource,
        sink: StreamSink,
        dead: StreamSink | None,
        fetched: list[Any],
    ) -> None:
        assert self._model is not None
        started = time.perf_counter()
        events = self._events(fetched)
        results = self._predict(events)
        model = self._model
        ts = _ts()
        common = {
            "deployment": self.deployment,
            "variant": model.variant.name,
            "model": model.version.name,
            "version": model.version.version,
            "ts": ts,
        }
        good: list[tuple[str, bytes]] = []
        bad: list[tuple[str, bytes]] = []
        for e in events:
            if e.index in results:
                prediction, probabilities = results[e.index]
                body: dict[str, Any] = {"event_id": e.event_id, "prediction": prediction}
                if probabilities is not None:
                    body["probabilities"] = probabilities
                good.append((e.key, orjson.dumps({**body, **common}, option=_NUMPY)))
            else:
                code, message = e.error or (SchemaMismatch.code, "the event has no fields")
                record = {
                    "event_id": e.event_id,
                    "error": code,
                    "status": 422,
                    "message": message,
                    "payload": e.payload.decode("utf-8", "backslashreplace"),
                    "partition": e.partition,
                    "offset": e.offset,
                    **common,
                }
                bad.append((e.key, orjson.dumps(record, option=_NUMPY)))
        if dead is None:
            stored = sink.publish(good + bad)
        else:
            stored = sink.publish(good) + dead.publish(bad)
        self.stats.predicted += len(good)
        self.stats.errors += len(bad)
        self.stats.already_published += len(good) + len(bad) - stored
        self.stats.batches += 1
        if self.logger is not None and results:
            self._log(events, results, time.perf_counter() - started)
        for batch in fetched:
            for p, o in zip(batch.partitions, batch.offsets, strict=True):
                if o > self._done.get(p, -1):
                    self._done[p] = o
        self._write_checkpoint(source)
        source.ack(fetched)

    def _log(
        self,
        events: list[_Event],
        results: dict[int, tuple[Any, dict[str, float] | None]],
        seconds: float,
    ) -> None:
        assert self.logger is not None
        assert self._model is not None
        model = self._model
        request_id = new_id()
        ts = now_ms()
        per_row = seconds * 1000 / max(len(results), 1)
        records = []
        for i, e in enumerate(e for e in events if e.index in results):
            prediction, probabilities = results[e.index]
            outputs: dict[str, Any] = {"prediction": prediction, "event_id": e.event_id}
            if probabilities is not None:
                outputs["probabilities"] = probabilities
            records.append(
                PredictionRecord(
                    request_id=request_id,
                    row_index=i,
                    model_name=model.version.name,
                    model_version=model.version.version,
                    ts_ms=ts,
                    latency_ms=per_row,
                    inputs=e.row or {},
                    outputs=outputs,
                    deployment=self.deployment,
                    variant=model.variant.name,
                    shadow=False,
                )
            )
        self.logger.log(records)


def predict_stream(
    ws: Any,
    deployment: str,
    source: str,
    sink: str,
    *,
    log_predictions: bool = False,
    **options: Any,
) -> StreamPredictStats:
    """Run a :class:`StreamPredictor` over workspace ``ws`` until a stop condition
    (``idle_exit=`` or ``max_events=`` for a bounded run); ``log_predictions`` writes every
    result to the prediction log too."""
    predictor = stream_predictor(ws, deployment, source, sink, **options)
    if not log_predictions:
        return predictor.run()
    logger = PredictionLogger(ws.db)
    logger.start()
    predictor.logger = logger
    try:
        return predictor.run()
    finally:
        logger.close()


def stream_predictor(
    ws: Any, deployment: str, source: str, sink: str, **options: Any
) -> StreamPredictor:
    """A :class:`StreamPredictor` over workspace ``ws`` (options as its keyword arguments)."""
    options.setdefault("workspace", ws.streams.workspace)
    return StreamPredictor(
        ws.deployments, ws.registry, ws.home, deployment, source, sink, **options
    )
