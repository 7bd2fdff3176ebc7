"""Drift statistics, each chosen for the column's type and the samples' sizes.

Small samples (either side ≤ ``SMALL_SAMPLE`` rows) are judged by a test's p-value: two-sample
Kolmogorov–Smirnov for numbers, chi-square on the contingency table for categories; drift when
p < ``P_VALUE``. Large samples are judged by an effect size, because at 100k rows every p-value
is tiny: the Wasserstein distance divided by the reference's standard deviation for numbers, the
Jensen–Shannon distance (base 2, in [0, 1]) for categories; drift when it is ≥ ``EFFECT_SIZE``.
The population stability index (PSI, 10 reference-quantile bins) is reported alongside; it
does not decide. These are Evidently's defaults, so the numbers compare.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")

SMALL_SAMPLE = 1000
P_VALUE = 0.05
EFFECT_SIZE = 0.1
PSI_BINS = 10
PSI_EPS = 1e-4
NULL_CATEGORY = "<null>"

Kind = Literal["numeric", "categorical"]


class ColumnDrift(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    kind: Kind
    method: str
    statistic: float | None
    threshold: float
    drifted: bool
    psi: float | None
    reference_rows: int
    current_rows: int
    reference_null_fraction: float
    current_null_fraction: float
    reference_summary: dict[str, Any]
    current_summary: dict[str, Any]
    note: str | None = None


def no_verdict(base: dict[str, Any], note: str) -> ColumnDrift:
    """A column with too little on one side to compare: described, not judged."""
    return ColumnDrift(
        **base, method="none", statistic=None, threshold=0.0, drifted=False, psi=None, note=note
    )


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def _psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    r = np.clip(ref_share, PSI_EPS, None)
    c = np.clip(cur_share, PSI_EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_drift(column: str, reference: np.ndarray, current: np.ndarray) -> ColumnDrift:
    from scipy import stats

    ref_all = np.asarray(reference, dtype="float64")
    cur_all = np.asarray(current, dtype="float64")
    ref = ref_all[np.isfinite(ref_all)]
    cur = cur_all[np.isfinite(cur_all)]
    base: dict[str, Any] = {
        "column": column,
        "kind": "numeric",
        "reference_rows": int(ref.size),
        "current_rows": int(cur.size),
        "reference_null_fraction": (ref_all.size - ref.size) / max(ref_all.size, 1),
        "current_null_fraction": (cur_all.size - cur.size) / max(cur_all.size, 1),
        "reference_summary": _numeric_summary(ref),
        "current_summary": _numeric_summary(cur),
    }
    if ref.size < 2 or cur.size < 2:
        return no_verdict(base, "too few non-null values to compare")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, PSI_BINS + 1)))
    if edges.size >= 2:
        edges[0], edges[-1] = -np.inf, np.inf
        ref_share = np.histogram(ref, edges)[0] / ref.size
        cur_share = np.histogram(cur, edges)[0] / cur.size
        psi: float | None = _psi(ref_share, cur_share)
    else:
        psi = None
    if min(ref.size, cur.size) <= SMALL_SAMPLE:
        p_value = float(stats.ks_2samp(ref, cur).pvalue)
        return ColumnDrift(
            **base,
            method="ks",
            statistic=p_value,
            threshold=P_VALUE,
            drifted=p_value < P_VALUE,
            psi=psi,
        )
    distance = float(stats.wasserstein_distance(ref, cur))
    std = float(np.std(ref))
    normed = distance / std if std > 0 else (0.0 if distance == 0 else math.inf)
    return ColumnDrift(
        **base,
        method="wasserstein_std",
        statistic=min(normed, 1e9),
        threshold=EFFECT_SIZE,
        drifted=normed >= EFFECT_SIZE,
        psi=psi,
    )


def _numeric_summary(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {}
    return {
        "mean": _finite(float(values.mean())),
        "std": _finite(float(values.std())),
        "p50": _finite(float(np.median(values))),
    }


def _counts(values: pl.Series | list[Any]) -> dict[str, int]:
    series = values if isinstance(values, pl.Series) else pl.Series(values)
    if series.dtype == pl.Boolean:
        series = series.cast(pl.String).str.to_lowercase()
    counted = series.cast(pl.String).fill_null(NULL_CATEGORY).value_counts()
    return {str(k): int(v) for k, v in counted.iter_rows()}


def categorical_drift(
    column: str, reference: pl.Series | list[Any], current: pl.Series | list[Any]
) -> ColumnDrift:
    """Chi-square p-value for small samples, Jensen–Shannon distance for large ones — the same
    computation as on summaries (category counts are the whole story for a category)."""
    from mloop.monitoring.summary import (
        CategoricalSummary,
        Thresholds,
        categorical_from_summaries,
    )

    ref, cur = CategoricalSummary(), CategoricalSummary()
    ref.counts, cur.counts = _counts(reference), _counts(current)
    return categorical_from_summaries(column, ref, cur, Thresholds())


def _top(counts: dict[str, int], total: int, n: int = 5) -> dict[str, Any]:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return {"top": [{"value": k, "share": v / max(total, 1)} for k, v in ordered]}
