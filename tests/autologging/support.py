"""Helpers of the autologging tests: runs, and small data sets."""

from __future__ import annotations

import numpy as np
import pandas as pd

import mloop
from mloop import fluent
from mloop.tracking import Run


def reset_fluent() -> None:
    while mloop.active_run() is not None:
        mloop.end_run()
    if fluent._ctx is not None:
        fluent._ctx.close()
        fluent._ctx = None


def all_runs() -> list[Run]:
    """Every run of the default experiment, oldest first."""
    return sorted(mloop.search_runs(), key=lambda r: (r.start_time, r.id))


def only_run() -> Run:
    runs = all_runs()
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def binary_frame(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": rng.normal(50, 20, n),
            "age": rng.integers(18, 90, n),
            "score": rng.normal(0, 1, n),
        }
    )
    logits = 0.04 * (X["amount"] - 50) + 1.5 * X["score"] + rng.normal(0, 1, n)
    y = pd.Series((logits > 0).astype(int), name="is_fraud")
    return X, y


def regression_frame(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n)})
    y = pd.Series(3 * X["a"] - 2 * X["b"] + rng.normal(0, 0.5, n), name="price")
    return X, y
