"""The serving data plane: live deployments, traffic routing, hot swaps, shadows, logging.

A :class:`ServingRuntime` keeps every deployment of the workspace loaded in memory: each
served variant's model, its micro-batcher and its metric handles. A background thread polls
the database every ``refresh_seconds`` (deployment revisions, and what each variant's model
reference resolves to); when something changed it loads the new models *first* and then swaps
the deployment in one assignment. Requests in flight finish on the models they started with,
new ones use the new models: a spec change or an alias move fails no request.

The request path touches no database and no disk: routing, validation, batching and the model
call are in memory, prediction records go to the logger's queue, metrics are counters.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mloop.core.clock import now_ms
from mloop.core.errors import InvalidInput, MloopError, NotFound, Unavailable
from mloop.core.ids import new_id
from mloop.registry import ModelVersion, RegistryService
from mloop.serving.batching import MicroBatcher
from mloop.serving.deployments import Deployment, DeploymentService, Variant
from mloop.serving.metrics import ServingMetrics
from mloop.serving.prediction_log import PredictionLogger, PredictionRecord
from mloop.serving.predictor import MAX_ROWS_PER_REQUEST, rows_with_features
from mloop.serving.served import Output, ServedModel

log = logging.getLogger("mloop.serving")

SHADOW_BACKLOG_BATCHES = 8  # a shadow further behind than this many batches drops copies
MISS_CACHE_SECONDS = 1.0


def route_point(salt: str, key: str | None) -> float:
    """Where a request falls in [0, 1): a hash of ``salt`` and ``key`` (sticky), or random."""
    if key is None:
        return random.random()
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(eq=False)
class LiveVariant:
    variant: Variant
    version: ModelVersion
    served: ServedModel
    batcher: MicroBatcher[tuple[Any, int], Output]
    feature_spec: dict[str, Any] | None
    requests_ok: Any  # metric children, resolved once
    latency: Any

    @property
    def name(self) -> str:
        return self.variant.name


@dataclass(eq=False)
class LiveDeployment:
    deployment: Deployment
    served: list[LiveVariant]
    shadows: list[LiveVariant]
    bounds: list[float]  # cumulative traffic shares of ``served``
    fingerprint: tuple[Any, ...]
    loaded_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.deployment.name

    def pick(self, key: str | None) -> LiveVariant:
        if len(self.served) == 1:
            return self.served[0]
        point = route_point(self.name, key)
        index = bisect.bisect_right(self.bounds, point)
        return self.served[min(index, len(self.served) - 1)]

    def variant_for_version(self, version: int) -> LiveVariant:
        for live in self.served:
            if live.version.version == version:
                return live
        raise NotFound(
            f"deployment {self.name!r} does not serve version {version} of "
            f"{self.served[0].version.name!r}"
        )


@dataclass(frozen=True)
class Served:
    """The answer to one predict request."""

    deployment: str
    variant: str
    model: str
    version: int
    request_id: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None
    latency_ms: float


class ServingRuntime:
    def __init__(
        self,
        deployments: DeploymentService,
        registry: RegistryService,
        metrics: ServingMetrics,
        logger: PredictionLogger | None = None,
        *,
        features: Any = None,
        refresh_seconds: float = 1.0,
        max_concurrency: int = 1024,
    ) -> None:
        self._deployments = deployments
        self._registry = registry
        self._metrics = metrics
        self._logger = logger
        self._features = features
        self.refresh_seconds = refresh_seconds
        self.max_concurrency = max_concurrency
        self._live: dict[str, LiveDeployment] = {}
        self._misses: dict[str, float] = {}
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self.ready = False
        # set by the server (uvicorn with mloop's protocol): requests read, not yet started;
        # without it every request goes through the micro-batcher
        self.requests_waiting: Callable[[], int] | None = None

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Load every deployment, then watch for changes in a background thread."""
        self.refresh()
        self.ready = True
        if self._thread is None and self.refresh_seconds > 0:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, name="mloop-deployments", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.ready = False

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # a database hiccup: keep serving what is loaded, retry
                log.exception("refreshing deployments failed; serving the loaded ones")

    def refresh(self) -> None:
        """Bring every live deployment up to date with the database (one pass)."""
        with self._load_lock:
            revisions = self._deployments.revisions()
            for name in list(self._live):
                if name not in revisions:
                    del self._live[name]
            for name in revisions:
                try:
                    self._refresh_one(name)
                except MloopError as exc:
                    # one broken deployment must not stop the others; one already serving keeps
                    # serving what it has (an alias deleted under it, a model that will not
                    # load) rather than fail every request
                    kept = "; still serving the loaded models" if name in self._live else ""
                    log.error("deployment %s cannot be refreshed: %s%s", name, exc.message, kept)

    def _refresh_one(self, name: str) -> LiveDeployment | None:
        deployment = self._deployments.find(name)
        if deployment is None:
            self._live.pop(name, None)
            return None
        resolved = self._deployments.resolve(deployment)
        fingerprint = (
            deployment.revision,
            tuple((v.name, mv.id, v.runtime) for v, mv in resolved),
        )
        current = self._live.get(name)
        if current is not None and current.fingerprint == fingerprint:
            return current
        live = self._build(deployment, resolved, fingerprint, current)
        self._live[name] = live  # the swap: one assignment
        self._misses.pop(name, None)
        if current is not None:
            self._metrics.swaps.labels(name).inc()
            log.info("deployment %s swapped to revision %d", name, deployment.revision)
        return live

    def _build(
        self,
        deployment: Deployment,
        resolved: list[tuple[Variant, ModelVersion]],
        fingerprint: tuple[Any, ...],
        current: LiveDeployment | None,
    ) -> LiveDeployment:
        previous = {}
        if current is not None:  # keep batchers of unchanged variants (their queues live on)
            for lv in current.served + current.shadows:
                previous[(lv.variant, lv.version.id)] = lv
        served: list[LiveVariant] = []
        shadows: list[LiveVariant] = []
        for variant, version in resolved:
            kept = previous.get((variant, version.id))
            live = kept or self._live_variant(deployment, variant, version)
            (shadows if variant.shadow else served).append(live)
        bounds: list[float] = []
        total = 0.0
        shares = {v.name: share for v, share in deployment.shares()}
        for live in served:
            total += shares[live.name]
            bounds.append(total)
        return LiveDeployment(deployment, served, shadows, bounds, fingerprint)

    def _live_variant(
        self, deployment: Deployment, variant: Variant, version: ModelVersion
    ) -> LiveVariant:
        started = time.perf_counter()
        model: Any = None
        runtime = "native"
        if variant.runtime in ("auto", "onnx"):
            model = self._registry.load_onnx(version)
            if model is not None:
                runtime = "onnx"
            elif variant.runtime == "onnx":
                raise InvalidInput(
                    f"variant {variant.name!r} asks for ONNX Runtime, but {version.ref} has no "
                    "verified ONNX export (train with onnx=True; pip install 'mloop[onnx]')"
                )
        if model is None:
            model = self._registry.load(version)
        served = ServedModel(model, runtime)
        self._metrics.model_load_seconds.labels(version.name, str(version.version), runtime).set(
            time.perf_counter() - started
        )
        name, vname = deployment.name, variant.name
        batch_rows = self._metrics.batch_rows.labels(name, vname)
        batch_requests = self._metrics.batch_requests.labels(name, vname)

        def observe(rows: int, requests: int, _seconds: float) -> None:
            batch_rows.observe(rows)
            batch_requests.observe(requests)

        batcher: MicroBatcher[tuple[Any, int], Output] = MicroBatcher(
            served.run,
            max_batch_size=deployment.batching.max_batch_size,
            max_wait=deployment.batching.max_wait_ms / 1000,
            observe=observe,
        )
        depth = self._metrics.queue_depth.labels(name, vname)
        depth.set_function(lambda: batcher.queued_requests)
        return LiveVariant(
            variant=variant,
            version=version,
            served=served,
            batcher=batcher,
            feature_spec=version.info.get("feature_store") if self._features else None,
            requests_ok=self._metrics.deployment_requests.labels(
                name, vname, str(version.version), "200"
            ),
            latency=self._metrics.deployment_latency.labels(name, str(version.version)),
        )

    # -- the request path ------------------------------------------------------------------

    def get(self, name: str) -> LiveDeployment | None:
        return self._live.get(name)

    def names(self) -> list[str]:
        return sorted(self._live)

    async def lookup(self, name: str) -> LiveDeployment:
        """The live deployment ``name``; one created after the last refresh is loaded now
        (off the event loop), an unknown name is remembered for a second."""
        live = self._live.get(name)
        if live is not None:
            return live
        missed = self._misses.get(name)
        if missed is not None and time.monotonic() - missed < MISS_CACHE_SECONDS:
            raise NotFound(f"no deployment named {name!r}")

        def load() -> LiveDeployment | None:
            with self._load_lock:
                return self._live.get(name) or self._refresh_one(name)

        found = await asyncio.to_thread(load)
        if found is None:
            if len(self._misses) > 1024:  # clients choose names: stay bounded
                self._misses.clear()
            self._misses[name] = time.monotonic()
            raise NotFound(f"no deployment named {name!r}")
        return found

    def admit(self) -> None:
        """Count a request in, or refuse it when the worker is at its concurrency limit."""
        if self._in_flight >= self.max_concurrency:
            self._metrics.rejected.labels("overloaded").inc()
            raise Unavailable(
                f"the server is at its limit of {self.max_concurrency} concurrent requests; "
                "retry shortly"
            )
        self._in_flight += 1
        self._metrics.in_flight.inc()

    def release(self) -> None:
        self._in_flight -= 1
        self._metrics.in_flight.dec()

    async def predict(
        self,
        live: LiveDeployment,
        rows: Any,
        *,
        key: str | None = None,
        version: int | None = None,
    ) -> Served:
        """Route, validate, batch, predict, mirror to shadows, log. Call between
        :meth:`admit` and :meth:`release`."""
        started = time.perf_counter()
        if not isinstance(rows, list) or not rows:
            raise InvalidInput("'rows' must be a non-empty list of objects")
        if len(rows) > MAX_ROWS_PER_REQUEST:
            raise InvalidInput(
                f"{len(rows)} rows in one request; the limit is {MAX_ROWS_PER_REQUEST}"
            )
        deployment = live.deployment
        if key is None and deployment.sticky_key is not None:
            first = rows[0]
            if isinstance(first, dict) and first.get(deployment.sticky_key) is not None:
                key = str(first[deployment.sticky_key])
        chosen = live.pick(key) if version is None else live.variant_for_version(version)
        try:
            if chosen.feature_spec is not None:
                rows = await asyncio.to_thread(self._with_features, chosen, rows)
            prepared = chosen.served.prepare(rows)
            batcher = chosen.batcher
            waiting = self.requests_waiting
            if (
                waiting is not None
                and self._in_flight <= 1
                and batcher.max_wait == 0
                and batcher.idle
                and waiting() == 0
            ):  # nobody to share a model call with: predict now, skipping the queue's round trip
                predictions, probabilities = batcher.run_alone(prepared, prepared[1])
            else:
                predictions, probabilities = await batcher.submit(
                    prepared, prepared[1], deployment.timeout_ms / 1000
                )
        except Exception as exc:
            # the variant failed the request: one row in the log says so (a canary's error
            # rate, and the error_rate series of alerts, are read from these rows)
            if self._logger is not None:
                self._log_failure(live, chosen, exc, time.perf_counter() - started)
            raise
        latency = time.perf_counter() - started
        request_id = new_id()
        if live.shadows:
            for shadow in live.shadows:
                self._mirror(live, shadow, rows, request_id)
        if self._logger is not None:
            self._log(live, chosen, rows, predictions, probabilities, request_id, latency, False)
        chosen.requests_ok.inc()
        chosen.latency.observe(latency)
        return Served(
            deployment=live.name,
            variant=chosen.name,
            model=chosen.version.name,
            version=chosen.version.version,
            request_id=request_id,
            predictions=predictions,
            probabilities=probabilities,
            latency_ms=latency * 1000,
        )

    def _with_features(self, live: LiveVariant, rows: list[Any]) -> list[dict[str, Any]]:
        return rows_with_features(self._features, live.version, rows)

    def _mirror(
        self, live: LiveDeployment, shadow: LiveVariant, rows: list[Any], request_id: str
    ) -> None:
        """Send a copy of the request to a shadow variant; its answer is logged, never
        returned, and its failures never reach the client."""
        counter = self._metrics.shadow_predictions
        batcher = shadow.batcher
        if batcher.queued_rows > SHADOW_BACKLOG_BATCHES * batcher.max_batch_size:
            counter.labels(live.name, shadow.name, "dropped").inc(len(rows))
            return
        try:
            prepared = shadow.served.prepare(rows)
        except MloopError:
            counter.labels(live.name, shadow.name, "error").inc(len(rows))
            return
        started = time.perf_counter()
        future = batcher.submit(prepared, prepared[1], live.deployment.timeout_ms / 1000)

        def done(f: asyncio.Future[Output]) -> None:
            if f.cancelled() or f.exception() is not None:
                counter.labels(live.name, shadow.name, "error").inc(len(rows))
                return
            predictions, probabilities = f.result()
            counter.labels(live.name, shadow.name, "ok").inc(len(rows))
            if self._logger is not None:
                self._log(
                    live,
                    shadow,
                    rows,
                    predictions,
                    probabilities,
                    request_id,
                    time.perf_counter() - started,
                    True,
                )

        future.add_done_callback(done)

    def _log(
        self,
        live: LiveDeployment,
        chosen: LiveVariant,
        rows: list[Any],
        predictions: list[Any],
        probabilities: list[dict[str, float]] | None,
        request_id: str,
        latency: float,
        shadow: bool,
    ) -> None:
        assert self._logger is not None
        ts = now_ms()
        per_row = latency * 1000 / len(predictions)
        name, version = chosen.version.name, chosen.version.version
        records = [
            PredictionRecord(
                request_id=request_id,
                row_index=i,
                model_name=name,
                model_version=version,
                ts_ms=ts,
                latency_ms=per_row,
                inputs=row,
                outputs=(
                    {"prediction": prediction}
                    if probabilities is None
                    else {"prediction": prediction, "probabilities": probabilities[i]}
                ),
                deployment=live.name,
                variant=chosen.name,
                shadow=shadow,
            )
            for i, (row, prediction) in enumerate(zip(rows, predictions, strict=True))
        ]
        self._logger.log(records)

    def _log_failure(
        self, live: LiveDeployment, chosen: LiveVariant, exc: Exception, latency: float
    ) -> None:
        assert self._logger is not None
        code = exc.code if isinstance(exc, MloopError) else type(exc).__name__
        self._logger.log(
            [
                PredictionRecord(
                    request_id=new_id(),
                    row_index=0,
                    model_name=chosen.version.name,
                    model_version=chosen.version.version,
                    ts_ms=now_ms(),
                    latency_ms=latency * 1000,
                    inputs={},
                    outputs={},
                    deployment=live.name,
                    variant=chosen.name,
                    shadow=False,
                    error=code[:64],
                )
            ]
        )

    def count_error(self, deployment: str, code: str) -> None:
        label = deployment if deployment in self._live else "_unknown"
        self._metrics.deployment_errors.labels(label, code).inc()
