"""Data for the closed-loop tests: a two-class concept that can drift and flip."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

LOGREG = "sklearn.linear_model.LogisticRegression"
FEATURES = ["x1", "x2", "x3"]


def concept(n: int, seed: int, *, flipped: bool = False, shift: float = 0.0) -> pl.DataFrame:
    """Rows whose label follows x1 (or, ``flipped``, the opposite of x1); ``shift`` moves x1
    and x3 (drift the monitor sees)."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, 1.0, n)
    x2 = rng.normal(0.0, 1.0, n)
    x3 = rng.normal(shift, 1.0, n)
    signal = (-(x1 - shift) if flipped else (x1 - shift)) + 0.3 * x2
    label = (signal + rng.normal(0, 0.3, n) > 0).astype(np.int64)
    return pl.DataFrame({"x1": x1, "x2": x2, "x3": x3, "label": label})


def rows_of(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.select(FEATURES).to_dicts()


def retrain_on_loans(ctx: Any) -> int:
    """A recipe named by import path (``loop_helpers:retrain_on_loans``)."""
    result = ctx.ws.training.train(
        "loans", "label", model=LOGREG, register=ctx.model, tags=ctx.tags, plots=False
    )
    return int(result.model_version.version)


def returns_nonsense(ctx: Any) -> str:
    return "a string is not a model version"
