"""Seeding the prediction log of a trained model through the real logger, at chosen times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from helpers import drift_frame
from mloop.core.clock import to_ms
from mloop.serving import PredictionLogger, PredictionRecord
from mloop.workspace import Workspace

MODEL = "scorer"
BASE = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)  # on a whole hour: windows of 1 min align


def train(ws: Workspace) -> None:
    ws.datasets.ingest(drift_frame(2000, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL
    )


def log_rows(
    ws: Workspace,
    start: datetime,
    frame: pl.DataFrame,
    *,
    latencies: list[float] | None = None,
    errors: int = 0,
    spread_ms: int = 10_000,
) -> None:
    """Log ``frame``'s rows (with the model's real answers) from ``start`` over ``spread_ms``,
    then ``errors`` failed requests; through the prediction logger the server uses."""
    rows: list[dict[str, Any]] = frame.to_dicts()
    result = ws.predict(MODEL, rows)
    version = result.version
    begin = to_ms(start)
    records = []
    for i, row in enumerate(rows):
        outputs: dict[str, Any] = {"prediction": result.predictions[i]}
        if result.probabilities is not None:
            outputs["probabilities"] = result.probabilities[i]
        records.append(
            PredictionRecord(
                request_id=f"r{begin}-{i}",
                row_index=0,
                model_name=MODEL,
                model_version=version,
                ts_ms=begin + i * spread_ms // max(len(rows), 1),
                latency_ms=latencies[i] if latencies is not None else 5.0,
                inputs=row,
                outputs=outputs,
            )
        )
    for j in range(errors):
        records.append(
            PredictionRecord(
                request_id=f"e{begin}-{j}",
                row_index=0,
                model_name=MODEL,
                model_version=version,
                ts_ms=begin + spread_ms + j,
                latency_ms=1.0,
                inputs={},
                outputs={},
                error="INTERNAL_ERROR",
            )
        )
    logger = PredictionLogger(ws.db)
    logger.log(records)
    assert logger.flush()
    logger.close()
