"""Running feature transformations: a view's over its source rows, an on-demand view's over
joined features and request data. The same functions serve training sets, materialization and
request time, so the three can never compute a feature two ways."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module
from mloop.data import first_line, to_arrow
from mloop.features.definitions import FeatureTransform

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa
else:
    duckdb = lazy_module("duckdb")
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")

# logical type -> the Polars type a feature of it is cast to (so every path yields the same)
POLARS_TYPES: dict[str, Any] = {}


def polars_type(kind: str) -> Any:
    if not POLARS_TYPES:
        POLARS_TYPES.update(
            {
                "integer": pl.Int64,
                "float": pl.Float64,
                "boolean": pl.Boolean,
                "string": pl.String,
                "datetime": pl.Datetime("us"),
                "date": pl.Date,
            }
        )
    return POLARS_TYPES.get(kind)


def needed_columns(transform: FeatureTransform | None, wanted: Sequence[str]) -> list[str] | None:
    """The source columns a view needs to produce ``wanted``: those (less what a Polars
    transform makes) and what its expressions read; None: every column (SQL, Python)."""
    if transform is None:
        return list(dict.fromkeys(wanted))
    if transform.kind != "polars":
        return None
    exprs = transform.expressions()
    columns = [c for c in wanted if c not in exprs]
    for expr in exprs.values():
        columns += expr.meta.root_names()
    return list(dict.fromkeys(columns))


def _frame(result: Any, label: str) -> pl.DataFrame:
    if isinstance(result, pl.LazyFrame):
        result = result.collect()
    if isinstance(result, pl.DataFrame):
        return result
    is_pandas = type(result).__name__ == "DataFrame" and type(result).__module__.startswith(
        "pandas"
    )
    if isinstance(result, pa.Table) or is_pandas:
        frame = pl.from_arrow(to_arrow(result))
        assert isinstance(frame, pl.DataFrame)
        return frame
    raise InvalidInput(
        f"{label} returned {type(result).__name__}, not a frame: return a Polars DataFrame or "
        "LazyFrame, an Arrow table or a pandas DataFrame"
    )


def run_transform(transform: FeatureTransform, frame: pl.DataFrame, label: str) -> pl.DataFrame:
    """``frame`` through ``transform``: a failure is InvalidInput naming the view (and, for a
    Python function, the line of its code)."""
    try:
        if transform.kind == "polars":
            return frame.with_columns(**transform.expressions())
        if transform.kind == "sql":
            con = duckdb.connect(
                ":memory:", config={"enable_external_access": False, "lock_configuration": True}
            )
            try:
                con.register("source", frame.to_arrow())
                relation = con.sql(transform.code)
                if relation is None:
                    raise InvalidInput(f"the SQL of {label} returned no result: use one SELECT")
                out = pl.from_arrow(relation.arrow())
                assert isinstance(out, pl.DataFrame)
                return out
            finally:
                con.close()
        return _frame(transform.function(label)(frame), label)
    except InvalidInput:
        raise
    except duckdb.Error as exc:
        raise InvalidInput(f"the SQL of {label} failed: {first_line(exc)}") from exc
    except Exception as exc:
        where = [
            f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<")
        ]
        at = f" (line {where[-1]} of its code)" if where and transform.kind == "python" else ""
        raise InvalidInput(f"{label} failed{at}: {type(exc).__name__}: {first_line(exc)}") from exc


def conform(frame: pl.DataFrame, types: dict[str, str], label: str) -> pl.DataFrame:
    """``frame``'s columns named in ``types``, cast to those logical types; a column missing
    or not castable is InvalidInput."""
    missing = [c for c in types if c not in frame.columns]
    if missing:
        raise InvalidInput(f"{label} produced no column {missing[0]!r}")
    columns = []
    for name, kind in types.items():
        target = polars_type(kind)
        column = pl.col(name)
        if target is not None and frame.schema[name] != target:
            column = column.cast(target, strict=True)
        columns.append(column)
    try:
        return frame.select(columns)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise InvalidInput(
            f"{label}: a column does not have its declared type: {first_line(exc)}"
        ) from exc


def empty_frame(types: dict[str, str]) -> pl.DataFrame:
    """One row of typed nulls: what an on-demand transform is tried on when it is applied."""
    return pl.DataFrame(
        {
            name: pl.Series(name, [None], dtype=polars_type(kind) or pl.Null)
            for name, kind in types.items()
        }
    )
