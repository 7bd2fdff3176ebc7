"""Column profiles, computed in Polars in one pass of vectorized expressions.

Numbers: null count, min, max, mean, std and quantiles. Categories (strings, booleans): null
count, cardinality and the most frequent values. Times: null count, min, max.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_module("polars")


QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
TOP_VALUES = 10


def _num(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) or math.isinf(f) else f


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_numeric():
        return "numeric"
    if dtype == pl.Boolean or dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "categorical"
    if dtype.is_temporal():
        return "temporal"
    return "other"


def profile_frame(df: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """A profile per column: ``{column: {"kind": ..., "null_count": ..., ...}}``."""
    exprs: list[pl.Expr] = []
    kinds = {name: _kind(dtype) for name, dtype in df.schema.items()}
    for i, (name, kind) in enumerate(kinds.items()):
        col = pl.col(name)
        exprs.append(col.null_count().alias(f"{i}:null_count"))
        if kind == "numeric":
            values = col.cast(pl.Float64)
            finite = values.filter(values.is_finite())
            exprs += [
                finite.min().alias(f"{i}:min"),
                finite.max().alias(f"{i}:max"),
                finite.mean().alias(f"{i}:mean"),
                finite.std().alias(f"{i}:std"),
                values.is_nan().sum().alias(f"{i}:nan_count"),
                (values == 0).sum().alias(f"{i}:zero_count"),
            ]
            exprs += [
                finite.quantile(q, interpolation="linear").alias(f"{i}:q{q}") for q in QUANTILES
            ]
        elif kind in ("categorical", "temporal"):
            exprs.append(col.drop_nulls().n_unique().alias(f"{i}:cardinality"))
            if kind == "temporal":
                exprs += [col.min().alias(f"{i}:min"), col.max().alias(f"{i}:max")]
    stats = df.select(exprs).row(0, named=True) if exprs else {}

    profile: dict[str, dict[str, Any]] = {}
    for i, (name, kind) in enumerate(kinds.items()):
        entry: dict[str, Any] = {
            "kind": kind,
            "dtype": str(df.schema[name]),
            "count": df.height,
            "null_count": int(stats[f"{i}:null_count"]),
        }
        if kind == "numeric":
            entry.update(
                min=_num(stats[f"{i}:min"]),
                max=_num(stats[f"{i}:max"]),
                mean=_num(stats[f"{i}:mean"]),
                std=_num(stats[f"{i}:std"]),
                nan_count=int(stats[f"{i}:nan_count"] or 0),
                zero_count=int(stats[f"{i}:zero_count"] or 0),
                quantiles={str(q): _num(stats[f"{i}:q{q}"]) for q in QUANTILES},
            )
        elif kind == "categorical":
            cardinality = int(stats[f"{i}:cardinality"])
            counts = (
                df.get_column(name).drop_nulls().value_counts(sort=True).head(TOP_VALUES).rows()
            )
            entry.update(
                cardinality=cardinality,
                top_values=[{"value": v, "count": int(c)} for v, c in counts],
            )
        elif kind == "temporal":
            lo, hi = stats[f"{i}:min"], stats[f"{i}:max"]
            entry.update(
                cardinality=int(stats[f"{i}:cardinality"]),
                min=None if lo is None else str(lo),
                max=None if hi is None else str(hi),
            )
        profile[name] = entry
    return profile
