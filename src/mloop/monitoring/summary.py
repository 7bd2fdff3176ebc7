"""Compact, mergeable column summaries — what drift is computed from.

A :class:`Profile` is made once from the reference data: for each numeric column a set of bin
edges (``BINS`` quantiles of a sample of the reference, so every bin holds about the same share
of it) and the reference's own histogram over them; for each categorical column the counts of
its categories. A window of current data is a :class:`Summary` over the same edges: each bin's
count and the sum of its values, the sum of squares, null counts, category counts, and — while
the window is small — its values themselves, for the exact small-sample tests (a profile keeps a
sample of 10,000 reference values for them). Updating one with a batch is a sort of each column
and a search of the edges in it; two summaries over the same profile add up (``merge``), so a
sliding window is the sum of the tumbling ones inside it. Memory is bounded whatever the
traffic: ``BINS`` + 2 counts a numeric column, at most ``MAX_CATEGORIES`` counts a categorical
one (the rest is counted as ``OTHER``), at most ``SMALL_SAMPLE`` kept values.

For data quality, a numeric summary also counts the values outside its column's limits
(``low`` / ``high``: the reference's minimum and maximum unless a validation suite's range is
set with :meth:`Profile.set_limits`) as ``below`` and ``above`` — two more binary searches in the
sorted batch. Summaries stored before these counters (or counted against other limits) read
them as None: unknown, and they stay unknown through merges.

From two summaries, :func:`compare` gives the same verdicts as :mod:`mloop.monitoring.drift` on
the raw data (Evidently's defaults): for more than ``SMALL_SAMPLE`` values on both sides,
Wasserstein ÷ the reference's standard deviation (numbers) and Jensen–Shannon distance
(categories), drift at ≥ 0.1; else Kolmogorov–Smirnov / chi-square p-values, drift at p < 0.05.
The Wasserstein distance is integrated bin by bin from the counts and sums: exact unless the two
CDFs cross inside a bin (then it errs low by at most that bin's share of the difference; with
1,000 equal-share bins, well under 0.001 of a standard deviation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module
from mloop.monitoring.drift import (
    EFFECT_SIZE,
    NULL_CATEGORY,
    P_VALUE,
    PSI_BINS,
    SMALL_SAMPLE,
    ColumnDrift,
    Kind,
    _finite,
    _psi,
    _top,
    no_verdict,
)

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")

BINS = 1000  # equal-share bins of the reference, a multiple of PSI_BINS
EDGE_SAMPLE = 200_000  # reference values the edges are taken from, at most
REFERENCE_SAMPLE = 10_000  # reference values a profile keeps for the small-sample KS test
MAX_CATEGORIES = 1000  # distinct categories counted per column; the rest is OTHER
OTHER = "<other>"


@dataclass
class NumericSummary:
    """One numeric column over fixed edges: ``counts[0]`` below the first edge, ``counts[i]``
    in ``[edges[i-1], edges[i])``, ``counts[-1]`` at or above the last edge; ``sums`` the sum
    of the values in each bin (what makes the Wasserstein integral exact inside a bin)."""

    edges: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    nulls: int = 0
    squares: float = 0.0
    values: list[np.ndarray] | None = field(default_factory=list)  # while n <= SMALL_SAMPLE
    reference_sample: np.ndarray | None = None  # a profile's: a stride sample, for KS
    # data quality: the values below ``low`` and above ``high`` (None: not known)
    low: float = -math.inf
    high: float = math.inf
    below: int | None = 0
    above: int | None = 0
    # the edges, then low and the float just above high: one search places them all
    _probes: Any = field(default=None, repr=False, compare=False)

    kind = "numeric"

    @classmethod
    def empty(
        cls, edges: np.ndarray, low: float | None = None, high: float | None = None
    ) -> NumericSummary:
        """No values yet; out of range means below ``low`` / above ``high`` (by default the
        first and the last edge: the reference's minimum and maximum)."""
        return cls(
            edges,
            np.zeros(edges.size + 1, dtype=np.int64),
            np.zeros(edges.size + 1),
            low=float(edges[0]) if low is None else low,
            high=float(edges[-1]) if high is None else high,
        )

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def total(self) -> float:
        return float(self.sums.sum())

    def update(self, series: pl.Series) -> None:
        if series.dtype == pl.Boolean:
            series = series.cast(pl.Float64)
        raw = series.cast(pl.Float64, strict=False).to_numpy()
        # sorted, the non-finite values sit at the ends (-inf first; +inf, then NaN, last)
        ordered = np.sort(raw)
        low = int(np.searchsorted(ordered, -np.inf, side="right"))
        high = int(np.searchsorted(ordered, np.inf, side="left"))
        self.nulls += int(raw.size - (high - low))
        if high > low:
            self._add_sorted(ordered[low:high])

    def update_values(self, values: np.ndarray) -> None:
        """Add finite float64 values."""
        self._add_sorted(np.sort(values))

    def _add_sorted(self, ordered: np.ndarray) -> None:
        # sorting (SIMD in NumPy 2) then placing the edges among the sorted values is ~5x
        # faster than placing every value among the edges
        probes = self._probes
        if probes is None or probes.size != self.edges.size + 2:
            above_high = np.nextafter(self.high, np.inf)
            probes = self._probes = np.concatenate([self.edges, [self.low, above_high]])
        found = np.searchsorted(ordered, probes, side="left")  # values < each probe
        cuts = np.empty(self.edges.size + 2, dtype=np.int64)
        cuts[0], cuts[-1] = 0, ordered.size
        cuts[1:-1] = found[:-2]
        counts = np.diff(cuts)
        self.counts += counts
        filled = np.flatnonzero(counts)
        self.sums[filled] += np.add.reduceat(ordered, cuts[filled])
        self.squares += float(np.dot(ordered, ordered))
        if self.below is not None and self.above is not None:
            self.below += int(found[-2])
            self.above += int(ordered.size - found[-1])
        if self.values is not None:
            if self.n > SMALL_SAMPLE:
                self.values = None  # large now: the tests that need them are not used
            else:
                self.values.append(ordered.copy())

    def merge(self, other: NumericSummary) -> None:
        if other.edges is not self.edges and not np.array_equal(other.edges, self.edges):
            raise InvalidInput("cannot merge summaries made over different reference edges")
        self.counts += other.counts
        self.sums += other.sums
        self.nulls += other.nulls
        self.squares += other.squares
        if (
            self.below is None
            or self.above is None
            or other.below is None
            or other.above is None
            or (other.low, other.high) != (self.low, self.high)
        ):
            self.below = self.above = None  # counted against other limits: not known
        else:
            self.below += other.below
            self.above += other.above
        if self.values is not None and other.values is not None and self.n <= SMALL_SAMPLE:
            self.values.extend(other.values)
        else:
            self.values = None

    def sample(self) -> np.ndarray | None:
        """The values themselves while there are at most ``SMALL_SAMPLE``; a profile's
        reference sample beyond."""
        if self.values is None:
            return self.reference_sample
        return np.concatenate(self.values) if self.values else np.empty(0)

    @property
    def mean(self) -> float:
        return self.total / max(self.n, 1)

    @property
    def std(self) -> float:
        n = self.n
        if n == 0:
            return 0.0
        mean = self.total / n
        return math.sqrt(max(self.squares / n - mean * mean, 0.0))

    def cdf(self) -> np.ndarray:
        """The share of values below each edge."""
        return np.cumsum(self.counts[:-1]) / max(self.n, 1)

    def to_dict(self) -> dict[str, Any]:
        values = None if self.values is None else self.sample()
        return {
            "kind": "numeric",
            "counts": self.counts.tolist(),
            "sums": self.sums.tolist(),
            "nulls": self.nulls,
            "squares": self.squares,
            "values": None if values is None else values.tolist(),
            "reference_sample": None
            if self.reference_sample is None
            else self.reference_sample.tolist(),
            # JSON has no infinity: an open side is null
            "low": self.low if math.isfinite(self.low) else None,
            "high": self.high if math.isfinite(self.high) else None,
            "below": self.below,
            "above": self.above,
        }

    @classmethod
    def from_dict(
        cls,
        edges: np.ndarray,
        data: dict[str, Any],
        low: float | None = None,
        high: float | None = None,
    ) -> NumericSummary:
        """A stored summary; ``low`` / ``high``: the limits it should have been counted
        against (its profile's). Counted against others, or stored before out-of-range
        counting, its ``below`` / ``above`` read as None."""
        values = data.get("values")
        sample = data.get("reference_sample")
        out = cls(
            edges,
            np.asarray(data["counts"], dtype=np.int64),
            np.asarray(data["sums"], dtype=np.float64),
            int(data["nulls"]),
            float(data["squares"]),
            None if values is None else [np.asarray(values, dtype=np.float64)],
            None if sample is None else np.asarray(sample, dtype=np.float64),
        )
        if "below" in data:  # counted against the limits it records
            stored_low = -math.inf if data.get("low") is None else float(data["low"])
            stored_high = math.inf if data.get("high") is None else float(data["high"])
            below, above = data.get("below"), data.get("above")
        else:  # stored before out-of-range counting
            stored_low, stored_high = float(edges[0]), float(edges[-1])
            below = above = None
        out.low = stored_low if low is None else low
        out.high = stored_high if high is None else high
        if below is None or above is None or (out.low, out.high) != (stored_low, stored_high):
            out.below = out.above = None
        else:
            out.below, out.above = int(below), int(above)
        return out


@dataclass
class CategoricalSummary:
    counts: dict[str, int] = field(default_factory=dict)
    # categories looked up by position (a window's: its reference's), not hashed into a table
    known: list[str] = field(default_factory=list)
    _known_array: Any = field(default=None, repr=False, compare=False)

    kind = "categorical"

    @property
    def n(self) -> int:
        return sum(self.counts.values())

    def update(self, series: pl.Series) -> None:
        if series.dtype == pl.Boolean:
            series = series.cast(pl.String).str.to_lowercase()
        try:
            import pyarrow as pa
            import pyarrow.compute as pc

            values = series.to_arrow()
            if self.known and pa.types.is_large_string(values.type):
                self._count_known(values, pa, pc)
            else:  # Arrow's value counts: half the time of Polars' on a batch of 10,000
                self._count_all(values, pc)
        except (ImportError, NotImplementedError, TypeError, ValueError):
            polars = series.cast(pl.String).fill_null(NULL_CATEGORY).value_counts()
            self._add(zip(polars[:, 0].to_list(), polars[:, 1].to_list(), strict=True))

    def _count_all(self, values: Any, pc: Any) -> None:
        counted = pc.value_counts(values)
        keys = counted.field("values").to_pylist()
        self._add(
            zip(
                [NULL_CATEGORY if k is None else k for k in keys],
                counted.field("counts").to_pylist(),
                strict=True,
            )
        )

    def _count_known(self, values: Any, pa: Any, pc: Any) -> None:
        """The categories seen before (a window starts with its reference's): each value's
        position among them, counted with ``bincount``; the rest by value counts."""
        known = self.known
        if self._known_array is None or len(self._known_array) != len(known):
            self._known_array = pa.array(known, pa.large_string())
        index = pc.index_in(values, value_set=self._known_array)
        missing = index.null_count  # nulls, and values not among the known
        counted = np.bincount(pc.fill_null(index, len(known)).to_numpy(), minlength=len(known) + 1)
        counts = self.counts
        for key, n in zip(known, counted[:-1].tolist(), strict=True):
            if n:
                counts[key] = counts.get(key, 0) + n
        if missing:
            nulls = values.null_count
            if nulls:
                self._add([(NULL_CATEGORY, nulls)])
            if missing > nulls:
                self._count_all(values.filter(pc.is_null(index)).drop_null(), pc)

    def _add(self, pairs: Any) -> None:
        counts = self.counts
        for key, value in pairs:
            key = str(key)
            if key in counts or len(counts) < MAX_CATEGORIES:
                counts[key] = counts.get(key, 0) + int(value)
            else:
                counts[OTHER] = counts.get(OTHER, 0) + int(value)

    def merge(self, other: CategoricalSummary) -> None:
        self._add(other.counts.items())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "categorical", "counts": dict(self.counts)}


ColumnSummary = NumericSummary | CategoricalSummary


def column_kind(dtype: pl.DataType) -> Kind | None:
    """How a column of this type is summarised; None: not at all (lists, structs, binary)."""
    if dtype.is_numeric():
        return "numeric"
    if dtype in (pl.String, pl.Boolean, pl.Categorical, pl.Enum) or isinstance(
        dtype, (pl.Categorical, pl.Enum)
    ):
        return "categorical"
    if dtype.is_temporal():
        return None
    return None


def _stride(values: np.ndarray, size: int) -> np.ndarray:
    """At most ``size`` values, evenly spaced through the array (a copy)."""
    if values.size <= size:
        return values.copy()
    return values[(np.arange(size) * (values.size / size)).astype(np.int64)]


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` - 1 inner edges at equal-share quantiles of (a sample of) the values, plus the
    smallest and the largest value; repeated edges (discrete data) collapse into one."""
    sample = _stride(values, EDGE_SAMPLE)
    inner = np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.concatenate([[values.min()], inner, [values.max()]])
    return np.unique(edges)


@dataclass
class Profile:
    """The reference: its columns' kinds and edges, and its own summaries over them."""

    columns: dict[str, ColumnSummary]
    rows: int

    @classmethod
    def from_frame(
        cls, frame: pl.DataFrame, columns: list[str] | None = None, *, bins: int = BINS
    ) -> Profile:
        if bins < PSI_BINS or bins % PSI_BINS:
            raise InvalidInput(f"bins must be a multiple of {PSI_BINS}, got {bins}")
        summaries: dict[str, ColumnSummary] = {}
        for name in columns or frame.columns:
            if name not in frame.columns:
                raise InvalidInput(f"the reference has no column {name!r}")
            series = frame.get_column(name)
            kind = column_kind(series.dtype)
            if kind is None:
                continue
            if kind == "numeric":
                raw = series.cast(pl.Float64, strict=False).to_numpy()
                finite = raw[np.isfinite(raw)]
                edges = _edges(finite, bins) if finite.size else np.zeros(1)
                numeric = NumericSummary.empty(edges)
                numeric.nulls = int(raw.size - finite.size)
                if finite.size:
                    numeric.update_values(finite)
                if numeric.values is None:
                    numeric.reference_sample = _stride(finite, REFERENCE_SAMPLE)
                summaries[name] = numeric
            else:
                categorical = CategoricalSummary()
                categorical.update(series)
                summaries[name] = categorical
        return cls(summaries, frame.height)

    def set_limits(self, name: str, low: float | None, high: float | None) -> None:
        """Count a numeric column's values below ``low`` / above ``high`` as out of range in
        the windows made from now on (None: that side open)."""
        ref = self.columns.get(name)
        if not isinstance(ref, NumericSummary):
            raise InvalidInput(f"the profile has no numeric column {name!r}")
        ref.low = -math.inf if low is None else float(low)
        ref.high = math.inf if high is None else float(high)
        ref._probes = None

    def window(self) -> Summary:
        """An empty summary of current data over this profile's edges."""
        columns: dict[str, ColumnSummary] = {}
        for name, ref in self.columns.items():
            columns[name] = (
                NumericSummary.empty(ref.edges, ref.low, ref.high)
                if isinstance(ref, NumericSummary)
                else CategoricalSummary(
                    known=[k for k in ref.counts if k not in (NULL_CATEGORY, OTHER)]
                )
            )
        return Summary(columns)

    def summarize(self, frame: pl.DataFrame) -> Summary:
        summary = self.window()
        summary.update(frame)
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "edges": {
                name: s.edges.tolist()
                for name, s in self.columns.items()
                if isinstance(s, NumericSummary)
            },
            "columns": {name: s.to_dict() for name, s in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        edges = {k: np.asarray(v, dtype=np.float64) for k, v in data["edges"].items()}
        return cls(_columns_from_dict(data["columns"], edges), int(data["rows"]))

    def summary_from_dict(self, data: dict[str, Any]) -> Summary:
        """A stored window over this profile. Every column of the profile is there: one the
        stored summary lacks (it was folded before the profile had it) starts empty; one the
        profile no longer has, or of another kind, is left out."""
        stored = data["columns"]
        empty = self.window().columns
        columns: dict[str, ColumnSummary] = {}
        for name, ref in self.columns.items():
            column = stored.get(name)
            if column is None or column.get("kind") != ref.kind:
                columns[name] = empty[name]
            elif isinstance(ref, NumericSummary):
                if len(column["counts"]) != ref.counts.size:
                    columns[name] = empty[name]  # counted over other edges
                else:
                    columns[name] = NumericSummary.from_dict(ref.edges, column, ref.low, ref.high)
            else:
                columns[name] = CategoricalSummary(
                    {str(k): int(v) for k, v in column["counts"].items()},
                    known=empty[name].known,  # type: ignore[union-attr]
                )
        return Summary(columns, int(data.get("rows", 0)))


def _columns_from_dict(
    data: dict[str, dict[str, Any]], edges: dict[str, np.ndarray]
) -> dict[str, ColumnSummary]:
    out: dict[str, ColumnSummary] = {}
    for name, column in data.items():
        if column["kind"] == "numeric":
            out[name] = NumericSummary.from_dict(edges[name], column)
        else:
            out[name] = CategoricalSummary({str(k): int(v) for k, v in column["counts"].items()})
    return out


PARALLEL_BATCH = 2_000  # rows from which Summary.update uses a second thread
_POOL: list[Any] = []


def _pool() -> Any:
    import os

    if (os.cpu_count() or 1) < 2:
        return None
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="mloop-summary"))
    return _POOL[0]


def _update_all(pairs: list[tuple[ColumnSummary, pl.Series]]) -> None:
    for summary, series in pairs:
        summary.update(series)


@dataclass
class Summary:
    """Current data summarised over a profile's edges (a window of traffic, or a dataset)."""

    columns: dict[str, ColumnSummary]
    rows: int = 0

    def update(self, frame: pl.DataFrame) -> None:
        """Add a batch of rows. Columns the profile does not know are ignored; a profile
        column the batch lacks counts as null. A tall batch of many columns is split between
        two threads (sorting and counting leave the interpreter lock)."""
        height = frame.height
        present = []
        for name, summary in self.columns.items():
            if name in frame.columns:
                present.append((summary, frame.get_column(name)))
            elif isinstance(summary, NumericSummary):
                summary.nulls += height
            else:
                summary._add([(NULL_CATEGORY, height)])
        pool = _pool() if height >= PARALLEL_BATCH and len(present) >= 4 else None
        if pool is None:
            for summary, series in present:
                summary.update(series)
        else:
            half = present[1::2]
            future = pool.submit(_update_all, half)
            _update_all(present[0::2])
            future.result()
        self.rows += height

    def merge(self, other: Summary) -> None:
        for name, summary in self.columns.items():
            theirs = other.columns.get(name)
            if theirs is not None:
                summary.merge(theirs)  # type: ignore[arg-type]
        self.rows += other.rows

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": {n: s.to_dict() for n, s in self.columns.items()}}


# -- comparing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """When a column drifts; per-column overrides by name."""

    effect_size: float = EFFECT_SIZE
    p_value: float = P_VALUE
    small_sample: int = SMALL_SAMPLE
    columns: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_column(self, name: str) -> Thresholds:
        override = self.columns.get(name)
        if not override:
            return self
        unknown = set(override) - {"effect_size", "p_value", "small_sample"}
        if unknown:
            raise InvalidInput(f"unknown drift threshold(s) for {name!r}: {sorted(unknown)}")
        return Thresholds(
            float(override.get("effect_size", self.effect_size)),
            float(override.get("p_value", self.p_value)),
            int(override.get("small_sample", self.small_sample)),
        )


def compare(
    profile: Profile | Summary, current: Summary, thresholds: Thresholds | None = None
) -> list[ColumnDrift]:
    """Each column of the reference (a profile, or an earlier window's summary over the same
    edges) against the current summary."""
    limits = thresholds or Thresholds()
    out = []
    for name, ref in profile.columns.items():
        cur = current.columns.get(name)
        if cur is None:
            continue
        if isinstance(ref, NumericSummary):
            assert isinstance(cur, NumericSummary)
            out.append(numeric_from_summaries(name, ref, cur, limits.for_column(name)))
        else:
            assert isinstance(cur, CategoricalSummary)
            out.append(categorical_from_summaries(name, ref, cur, limits.for_column(name)))
    return out


def _wasserstein(ref: NumericSummary, cur: NumericSummary) -> float:
    """∫|F_ref − F_cur|, bin by bin. Inside a bin [a, b) of width w, ∫F = F(a)·w + Σ(b − x)/n
    over the bin's values — known exactly from its count and its sum — so each bin's integral
    of the difference is exact, and so is its absolute value unless the difference changes
    sign inside the bin. The bins beyond the first and the last edge count the same way."""
    edges = ref.edges
    n_ref, n_cur = max(ref.n, 1), max(cur.n, 1)
    # F at the lower end of each bin: 0 for the bin below the first edge
    f_ref = np.concatenate([[0.0], ref.cdf()])
    f_cur = np.concatenate([[0.0], cur.cdf()])
    inner = slice(1, edges.size)  # bins [edges[i-1], edges[i])
    widths = np.diff(edges)
    upper = edges[1:]
    in_ref = (ref.counts[inner] * upper - ref.sums[inner]) / n_ref
    in_cur = (cur.counts[inner] * upper - cur.sums[inner]) / n_cur
    d = (f_cur[inner] - f_ref[inner]) * widths + (in_cur - in_ref)
    total = float(np.abs(d).sum())
    # below the first edge: ∫F over (-inf, e0) = Σ(e0 − x)/n; above the last: ∫(1 − F)
    below = (ref.counts[0] * edges[0] - ref.sums[0]) / n_ref
    below_cur = (cur.counts[0] * edges[0] - cur.sums[0]) / n_cur
    above = (ref.sums[-1] - ref.counts[-1] * edges[-1]) / n_ref
    above_cur = (cur.sums[-1] - cur.counts[-1] * edges[-1]) / n_cur
    return total + float(abs(below_cur - below) + abs(above_cur - above))


def _ks_statistic(ref: NumericSummary, cur: NumericSummary) -> float:
    d = np.abs(cur.cdf() - ref.cdf())
    return float(d.max()) if d.size else 0.0


def numeric_from_summaries(
    column: str, ref: NumericSummary, cur: NumericSummary, limits: Thresholds
) -> ColumnDrift:
    n_ref, n_cur = ref.n, cur.n
    base: dict[str, Any] = {
        "column": column,
        "kind": "numeric",
        "reference_rows": n_ref,
        "current_rows": n_cur,
        "reference_null_fraction": ref.nulls / max(n_ref + ref.nulls, 1),
        "current_null_fraction": cur.nulls / max(n_cur + cur.nulls, 1),
        "reference_summary": _summary(ref),
        "current_summary": _summary(cur),
    }
    if n_ref < 2 or n_cur < 2:
        return no_verdict(base, "too few non-null values to compare")
    psi = _psi_of(ref, cur)
    if min(n_ref, n_cur) <= limits.small_sample:
        from scipy import stats

        ref_values, cur_values = ref.sample(), cur.sample()
        if ref_values is not None and cur_values is not None:
            # the small side's values against the other's (or its profile's sample of 10,000)
            p_value = float(stats.ks_2samp(ref_values, cur_values).pvalue)
        else:  # both CDFs at the edges
            statistic = _ks_statistic(ref, cur)
            n_eff = round(n_ref * n_cur / (n_ref + n_cur))
            p_value = float(stats.kstwo.sf(statistic, max(n_eff, 1)))
        return ColumnDrift(
            **base,
            method="ks",
            statistic=p_value,
            threshold=limits.p_value,
            drifted=p_value < limits.p_value,
            psi=psi,
        )
    std = ref.std
    distance = _wasserstein(ref, cur)
    normed = distance / std if std > 0 else (0.0 if distance == 0 else math.inf)
    return ColumnDrift(
        **base,
        method="wasserstein_std",
        statistic=min(normed, 1e9),
        threshold=limits.effect_size,
        drifted=normed >= limits.effect_size,
        psi=psi,
    )


def _psi_of(ref: NumericSummary, cur: NumericSummary) -> float | None:
    """PSI over the reference's deciles: every ``BINS / 10``-th edge (fewer when edges
    collapsed on discrete data: then over the bins there are)."""
    inner = ref.counts[1:-1]
    if inner.size < 2:
        return None
    groups = np.array_split(np.arange(ref.counts.size), min(PSI_BINS, ref.counts.size))
    r = np.array([ref.counts[g].sum() for g in groups], dtype=np.float64)
    c = np.array([cur.counts[g].sum() for g in groups], dtype=np.float64)
    return _psi(r / max(r.sum(), 1), c / max(c.sum(), 1))


def _summary(s: NumericSummary) -> dict[str, Any]:
    if s.n == 0:
        return {}
    return {"mean": _finite(s.mean), "std": _finite(s.std), "p50": _finite(_median(s))}


def _median(s: NumericSummary) -> float:
    cdf = s.cdf()
    i = int(np.searchsorted(cdf, 0.5))
    if i >= s.edges.size:
        return float(s.edges[-1])
    if i == 0:
        return float(s.edges[0])
    lo, hi = cdf[i - 1], cdf[i]
    t = (0.5 - lo) / (hi - lo) if hi > lo else 0.0
    return float(s.edges[i - 1] + t * (s.edges[i] - s.edges[i - 1]))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance, base 2 (in [0, 1]), of two distributions' shares — SciPy's
    ``jensenshannon(p, q, base=2)`` without importing SciPy for it."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        right = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(math.sqrt(max((left + right) / 2, 0.0)))


def categorical_from_summaries(
    column: str, ref: CategoricalSummary, cur: CategoricalSummary, limits: Thresholds
) -> ColumnDrift:
    categories = sorted(set(ref.counts) | set(cur.counts))
    r = np.array([ref.counts.get(c, 0) for c in categories], dtype=np.float64)
    c = np.array([cur.counts.get(k, 0) for k in categories], dtype=np.float64)
    n_ref, n_cur = int(r.sum()), int(c.sum())
    base: dict[str, Any] = {
        "column": column,
        "kind": "categorical",
        "reference_rows": n_ref,
        "current_rows": n_cur,
        "reference_null_fraction": ref.counts.get(NULL_CATEGORY, 0) / max(n_ref, 1),
        "current_null_fraction": cur.counts.get(NULL_CATEGORY, 0) / max(n_cur, 1),
        "reference_summary": _top(ref.counts, n_ref),
        "current_summary": _top(cur.counts, n_cur),
    }
    if n_ref == 0 or n_cur == 0:
        return no_verdict(base, "no values to compare")
    ref_share, cur_share = r / n_ref, c / n_cur
    psi = _psi(ref_share, cur_share)
    if min(n_ref, n_cur) <= limits.small_sample:
        from scipy import stats

        p_value = (
            1.0 if len(categories) < 2 else float(stats.chi2_contingency(np.vstack([r, c]))[1])
        )
        return ColumnDrift(
            **base,
            method="chi_square",
            statistic=p_value,
            threshold=limits.p_value,
            drifted=p_value < limits.p_value,
            psi=psi,
        )
    distance = jensen_shannon(ref_share, cur_share)
    return ColumnDrift(
        **base,
        method="jensen_shannon",
        statistic=distance,
        threshold=limits.effect_size,
        drifted=distance >= limits.effect_size,
        psi=psi,
    )
