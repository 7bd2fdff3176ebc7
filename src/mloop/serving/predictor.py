"""Predict on raw rows with a registered model, and log what was served."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from mloop.core.clock import now_ms
from mloop.core.ids import new_id
from mloop.features import FeatureService
from mloop.registry import ModelVersion, RegistryService
from mloop.serving.prediction_log import PredictionLogger, PredictionRecord

MAX_ROWS_PER_REQUEST = 10_000
MAX_CACHED_REFS = 1024
UNKNOWN_MODEL = "_unknown"


class PredictionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    model: str
    version: int
    request_id: str
    latency_ms: float


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


class Predictor:
    """Resolves model references (aliases cached for ``alias_cache_seconds``), keeps loaded
    models in memory, validates rows against the signature, predicts, and logs."""

    def __init__(
        self,
        registry: RegistryService,
        logger: PredictionLogger | None = None,
        *,
        alias_cache_seconds: float = 1.0,
        features: FeatureService | None = None,
    ) -> None:
        self._features = features
        self._registry = registry
        self._logger = logger
        self._ttl = alias_cache_seconds
        self._resolved: dict[str, tuple[float, ModelVersion]] = {}
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> ModelVersion:
        now = time.monotonic()
        with self._lock:
            hit = self._resolved.get(ref)
        if hit is not None and hit[0] > now:
            return hit[1]
        version = self._registry.resolve(ref)
        with self._lock:
            if len(self._resolved) >= MAX_CACHED_REFS:  # clients choose refs: stay bounded
                self._resolved.clear()
            self._resolved[ref] = (now + self._ttl, version)
            self._known.add(version.name)
        return version

    def model_label(self, ref: str) -> str:
        """A metrics label for ``ref``: the model's name once it has resolved, else
        ``_unknown`` — so clients cannot grow label sets with names that do not exist."""
        name = ref.partition("@")[0]
        with self._lock:
            return name if name in self._known else UNKNOWN_MODEL

    def with_features(self, version: ModelVersion, rows: Any) -> list[dict[str, Any]]:
        assert self._features is not None
        return rows_with_features(self._features, version, rows)

    def predict(self, ref: str, rows: Any) -> PredictionResult:
        from mloop.core.errors import InvalidInput

        if isinstance(rows, list) and len(rows) > MAX_ROWS_PER_REQUEST:
            raise InvalidInput(
                f"{len(rows)} rows in one request; the limit is {MAX_ROWS_PER_REQUEST}"
            )
        version = self.resolve(ref)
        model = self._registry.load(version)
        started = time.perf_counter()
        store = version.info.get("feature_store")
        if store and self._features is not None:
            rows = self.with_features(version, rows)
        predictions, probabilities = model.predict_rows(rows)
        latency_ms = (time.perf_counter() - started) * 1000
        request_id = new_id()
        if self._logger is not None:
            ts = now_ms()
            per_row = latency_ms / len(predictions)
            records = []
            for i, (row, prediction) in enumerate(zip(rows, predictions, strict=True)):
                outputs: dict[str, Any] = {"prediction": prediction}
                if probabilities is not None:
                    outputs["probabilities"] = probabilities[i]
                records.append(
                    PredictionRecord(
                        request_id=request_id,
                        row_index=i,
                        model_name=version.name,
                        model_version=version.version,
                        ts_ms=ts,
                        latency_ms=per_row,
                        inputs={k: _clean(v) for k, v in row.items()},
                        outputs=outputs,
                    )
                )
            self._logger.log(records)
        return PredictionResult(
            predictions=predictions,
            probabilities=probabilities,
            model=version.name,
            version=version.version,
            request_id=request_id,
            latency_ms=latency_ms,
        )


def rows_with_features(
    features: FeatureService, version: ModelVersion, rows: Any
) -> list[dict[str, Any]]:
    """A model trained on a training set is served by entity keys (and request fields): its
    features come from the online store through the feature store's one code path (on-demand
    features computed the same way as in training). A feature a row already carries is
    fetched all the same: what the store says is what the model sees."""
    from mloop.core.errors import InvalidInput

    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InvalidInput("rows are a list of objects")
    spec = version.info["feature_store"]
    if not rows:
        return rows
    fetched = features.online(rows, spec["features"])
    inputs = {c.name for c in version.require_signature().inputs}
    keys = [k for k in spec["keys"] if k not in inputs]  # which row, not a model input
    merged = []
    for row, found in zip(rows, fetched.rows, strict=True):
        both = {**row, **found}
        for key in keys:
            del both[key]
        merged.append(both)
    return merged
