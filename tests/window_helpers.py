"""The prediction log of a trained model, written straight into the table at chosen times:
what the window quality and report tests serve."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import polars as pl

from helpers import drift_frame
from mloop.core.clock import now_ms
from mloop.storage import tables
from mloop.workspace import Workspace

MODEL = "scorer"
SECOND = timedelta(seconds=1)


def log(ws: Workspace, frame: pl.DataFrame, ts_ms: int, **extra: Any) -> None:
    """Log the rows of ``frame`` as served predictions at ``ts_ms`` (straight into the log)."""
    outputs = json.dumps({"prediction": 1, "probabilities": {"0": 0.4, "1": 0.6}})
    rows = [
        {
            "request_id": f"r{ts_ms}",
            "row_index": i,
            "model_name": MODEL,
            "model_version": 1,
            "ts": ts_ms,
            "latency_ms": 1.0,
            "inputs": json.dumps(row),
            "outputs": outputs,
            **extra,
        }
        for i, row in enumerate(frame.to_dicts())
    ]
    with ws.db.write() as conn:
        conn.execute(tables.predictions.insert(), rows)


def clean(rows: int, seed: int, *, shifted: bool = False) -> pl.DataFrame:
    return drift_frame(rows, seed, shifted=shifted, labelled=False)


def with_nulls(frame: pl.DataFrame, column: str, every: int) -> pl.DataFrame:
    index = pl.int_range(pl.len())
    return frame.with_columns(
        pl.when(index % every == 0).then(None).otherwise(pl.col(column)).alias(column)
    )


def replaced(frame: pl.DataFrame, column: str, every: int, value: Any) -> pl.DataFrame:
    index = pl.int_range(pl.len())
    return frame.with_columns(
        pl.when(index % every == 0).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def trained(ws: Workspace) -> Workspace:
    """``ws`` with MODEL trained on 4,000 rows of ``drift_frame``, registered as version 1."""
    ws.datasets.ingest(drift_frame(4000, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL
    )
    return ws


def window_start() -> int:
    """The start of a 1-s window a while ago (ms)."""
    return (now_ms() // 1000 - 100) * 1000
