"""Distribution checks: a column against a reference, by KS or PSI, in NumPy.

A reference is either raw values (a dataset version's column) or :class:`ReferenceStats` kept in
the suite. The population stability index bins numbers by the reference's deciles (inner edges;
the outer bins are open) and categories by value; shares are floored at 1e-4 so an empty bin
does not make it infinite. The Kolmogorov–Smirnov statistic D is exact against raw values and,
against stored stats, the largest gap at up to 101 points of the reference's distribution (exact
for columns with at most that many distinct values, within a percentile otherwise).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mloop.core.lazy import lazy_module
from mloop.data.expectations import ReferenceStats

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")

PSI_EPS = 1e-4
PSI_BINS = 10
KS_POINTS = 101


class Reference:
    """A reference column, kept in the form the statistics need (sorted finite numbers, or
    the share of each category); built once per reference and reused batch after batch."""

    def __init__(
        self,
        *,
        numbers: np.ndarray | None = None,
        stats: ReferenceStats | None = None,
        categories: dict[str, float] | None = None,
        rows: int = 0,
    ) -> None:
        self.numbers = numbers  # sorted, finite
        self.stats = stats
        self.categories = categories
        self.rows = rows

    @classmethod
    def of_series(cls, series: pl.Series) -> Reference:
        if series.dtype.is_numeric() and series.dtype != pl.Boolean:
            numbers = finite_sorted(series)
            return cls(numbers=numbers, rows=int(numbers.size))
        shares, rows = category_shares(series)
        return cls(categories=shares, rows=rows)

    @classmethod
    def of_stats(cls, stats: ReferenceStats) -> Reference:
        return cls(stats=stats, categories=stats.categories, rows=stats.rows)


def finite_sorted(series: pl.Series) -> np.ndarray:
    values: np.ndarray = series.drop_nulls().cast(pl.Float64).to_numpy()
    values = values[np.isfinite(values)]
    values.sort()
    return values


def category_shares(series: pl.Series) -> tuple[dict[str, float], int]:
    counted = series.drop_nulls().cast(pl.String).value_counts()
    total = int(counted.get_column("count").sum()) if counted.height else 0
    if not total:
        return {}, 0
    return {str(v): int(c) / total for v, c in counted.iter_rows()}, total


def decile_edges(numbers: np.ndarray) -> np.ndarray:
    """Inner PSI bin edges: the distinct reference deciles 10 %..90 %."""
    return np.unique(np.quantile(numbers, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))


def bin_shares(numbers: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``numbers`` below edges[0], in [edges[i], edges[i+1]), and from edges[-1] up."""
    counts = np.bincount(np.searchsorted(edges, numbers, side="right"), minlength=edges.size + 1)
    return counts / max(numbers.size, 1)


def psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    r = np.clip(ref_share, PSI_EPS, None)
    c = np.clip(cur_share, PSI_EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def stats_of(series: pl.Series, method: str) -> ReferenceStats:
    """What a suite keeps of a reference column for ``method`` (numbers or categories)."""
    if series.dtype.is_numeric() and series.dtype != pl.Boolean:
        numbers = finite_sorted(series)
        if method == "ks":
            points = np.unique(np.quantile(numbers, np.linspace(0, 1, KS_POINTS)))
            cdf = np.searchsorted(numbers, points, side="right") / numbers.size
            return ReferenceStats(
                rows=int(numbers.size), quantiles=points.tolist(), cdf=_rounded(cdf)
            )
        edges = decile_edges(numbers)
        return ReferenceStats(
            rows=int(numbers.size),
            edges=edges.tolist(),
            fractions=_rounded(bin_shares(numbers, edges)),
        )
    shares, rows = category_shares(series)
    return ReferenceStats(rows=rows, categories={k: round(v, 8) for k, v in shares.items()})


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in values]


def compare(method: str, series: pl.Series, reference: Reference) -> dict[str, Any]:
    """``{"statistic": ..., ...}`` comparing ``series`` with ``reference``; raises ValueError
    when the two cannot be compared that way."""
    numeric = series.dtype.is_numeric() and series.dtype != pl.Boolean
    if method == "ks":
        if not numeric:
            raise ValueError("KS compares numbers; use method: psi for categories")
        return _ks(finite_sorted(series), reference)
    if numeric and reference.categories is None:
        return _psi_numbers(finite_sorted(series), reference)
    if reference.categories is None:
        raise ValueError("the reference holds numbers; this column holds categories")
    shares, rows = category_shares(series)
    if not rows:
        return {"statistic": None, "rows": 0}
    keys = sorted(set(reference.categories) | set(shares))
    ref = np.array([reference.categories.get(k, 0.0) for k in keys])
    cur = np.array([shares.get(k, 0.0) for k in keys])
    new = sorted(set(shares) - set(reference.categories))
    return {"statistic": psi(ref, cur), "rows": rows, "new_values": new[:5]}


def _ks(current: np.ndarray, reference: Reference) -> dict[str, Any]:
    if current.size == 0:
        return {"statistic": None, "rows": 0}
    if reference.numbers is not None:
        ref = reference.numbers
        if ref.size == 0:
            raise ValueError("the reference has no numbers")
        points = np.concatenate([ref, current])
        gaps = np.abs(
            np.searchsorted(ref, points, side="right") / ref.size
            - np.searchsorted(current, points, side="right") / current.size
        )
        statistic = float(gaps.max())
        scale = math.sqrt(ref.size * current.size / (ref.size + current.size))
        from scipy.special import kolmogorov

        return {
            "statistic": statistic,
            "p_value": float(kolmogorov(scale * statistic)),
            "rows": int(current.size),
        }
    stats = reference.stats
    if stats is None or stats.quantiles is None or stats.cdf is None:
        raise ValueError("reference_stats for KS need quantiles and cdf")
    quantiles = np.asarray(stats.quantiles)
    cur_cdf = np.searchsorted(current, quantiles, side="right") / current.size
    return {
        "statistic": float(np.abs(cur_cdf - np.asarray(stats.cdf)).max()),
        "rows": int(current.size),
    }


def _psi_numbers(current: np.ndarray, reference: Reference) -> dict[str, Any]:
    if current.size == 0:
        return {"statistic": None, "rows": 0}
    if reference.numbers is not None:
        if reference.numbers.size == 0:
            raise ValueError("the reference has no numbers")
        edges = decile_edges(reference.numbers)
        ref_share = bin_shares(reference.numbers, edges)
    else:
        stats = reference.stats
        if stats is None or stats.edges is None or stats.fractions is None:
            raise ValueError("reference_stats for PSI on numbers need edges and fractions")
        edges, ref_share = np.asarray(stats.edges), np.asarray(stats.fractions)
    return {"statistic": psi(ref_share, bin_shares(current, edges)), "rows": int(current.size)}
