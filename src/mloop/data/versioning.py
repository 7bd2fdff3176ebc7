"""What versions are made of and how they compare: segments, source positions, schema
conformance for appends, profile merging and version diffs."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mloop.core.errors import InvalidInput, SchemaMismatch
from mloop.core.lazy import lazy_module
from mloop.core.schema import Column, TableSchema
from mloop.data.types import logical_type, schema_of

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc

    from mloop.data.datasets import DatasetVersion
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")


@dataclass(frozen=True)
class _Segment:
    data_digest: str
    content_hash: str
    row_count: int
    size_bytes: int


@dataclass(frozen=True)
class SourceState:
    """Where an incremental source stands (a SQL cursor, a stream's offsets), saved with the
    version holding the data read up to there."""

    source: str
    state: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def key_of(source: str) -> str:
        return hashlib.sha256(source.encode()).hexdigest()

    @property
    def key(self) -> str:
        return self.key_of(self.source)


class SchemaChanged(SchemaMismatch):
    """New rows do not have the dataset's schema; ``changes`` lists each difference."""

    def __init__(self, message: str, changes: list[dict[str, Any]]) -> None:
        super().__init__(message, details={"changes": changes})
        self.changes = changes


def schema_changes(old: TableSchema, new: TableSchema) -> list[dict[str, Any]]:
    """Added, removed and retyped columns from ``old`` to ``new`` (logical types)."""
    before = {c.name: c for c in old.columns}
    after = {c.name: c for c in new.columns}
    changes: list[dict[str, Any]] = []
    for name, col in after.items():
        if name not in before:
            changes.append({"column": name, "change": "added", "type": col.type})
    for name, col in before.items():
        if name not in after:
            changes.append({"column": name, "change": "removed", "type": col.type})
        elif after[name].type != col.type:
            changes.append(
                {"column": name, "change": "retyped", "from": col.type, "to": after[name].type}
            )
    return changes


def describe_changes(changes: list[dict[str, Any]]) -> str:
    parts = []
    for c in changes:
        if c["change"] == "retyped" and c.get("reason"):
            parts.append(f"column {c['column']!r}: {c['reason']}")
        elif c["change"] == "retyped":
            parts.append(f"column {c['column']!r} changed type {c['from']} → {c['to']}")
        else:
            parts.append(f"column {c['column']!r} ({c['type']}) {c['change']}")
    return "; ".join(parts)


def conform(table: pa.Table, schema: TableSchema, dataset: str) -> pa.Table:
    """``table`` with ``schema``'s columns in its order and the physical types of the dataset.

    Same names and logical types are required; a column with no values at all takes the
    dataset's type. A cast that would change a value is refused: an integer or time that does
    not fit, a float that a narrower float would round (float64 → float32), a time with a zone
    into a column without one or the reverse (zone-aware times into another zone are the same
    instants: allowed). Anything else raises :class:`SchemaChanged` and nothing is coerced."""
    incoming = schema_of(table)
    changes = []
    for change in schema_changes(schema, incoming):
        if change["change"] == "retyped" and table.column(change["column"]).null_count == len(
            table
        ):
            continue  # all nulls: no values to disagree with the dataset's type
        changes.append(change)
    if changes:
        raise SchemaChanged(
            f"the rows do not match dataset {dataset!r}: {describe_changes(changes)}", changes
        )
    columns = []
    for col in schema.columns:
        column = table.column(col.name)
        target = _physical(col)
        if target is not None and column.type != target:
            retyped: dict[str, Any] = {
                "column": col.name,
                "change": "retyped",
                "from": col.type,
                "to": col.type,
                "reason": f"its values do not fit {col.physical}",
            }
            empty = column.null_count == len(column)  # no value to lose
            loss = None if empty else _zone_change(column.type, target)
            if loss is None:
                try:
                    cast = column.cast(target, safe=True)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaChanged(
                        f"column {col.name!r} of the rows does not fit dataset {dataset!r}'s "
                        f"type {col.physical}: {exc}",
                        [retyped],
                    ) from exc
                loss = None if empty else _lost_in(column, cast)
                column = cast
            if loss is not None:
                raise SchemaChanged(
                    f"column {col.name!r} of the rows does not fit dataset {dataset!r}'s "
                    f"type {col.physical}: {loss}",
                    [{**retyped, "reason": loss}],
                )
        columns.append(column)
    return pa.table(columns, names=schema.names)


def _zone_change(source: pa.DataType, target: pa.DataType) -> str | None:
    """Why times of type ``source`` cannot become ``target`` without a guess: a zone-aware
    time would lose its zone in a naive column, and a naive one would need a zone invented."""
    if not (pa.types.is_timestamp(source) and pa.types.is_timestamp(target)):
        return None
    if source.tz is not None and target.tz is None:
        return f"its times have a zone ({source.tz}) and the dataset's have none"
    if source.tz is None and target.tz is not None:
        return f"its times have no zone and the dataset's are in {target.tz}"
    return None


def _lost_in(column: pa.ChunkedArray, cast: pa.ChunkedArray) -> str | None:
    """Why ``cast`` (a safe cast of ``column``) does not hold the same values, or None. A safe
    cast refuses overflow and truncation but still rounds floats to a narrower float."""
    if not (pa.types.is_floating(column.type) and pa.types.is_floating(cast.type)):
        return None
    if column.type.bit_width <= cast.type.bit_width:
        return None
    back = cast.cast(column.type)
    same = pc.or_kleene(pc.equal(column, back), pc.and_kleene(pc.is_nan(column), pc.is_nan(back)))
    if pc.all(same, skip_nulls=True).as_py() is False:
        return f"{column.type} values would lose precision as {cast.type}"
    return None


def _physical(col: Column) -> pa.DataType | None:
    if not col.physical:
        return None
    try:
        dtype = pa.type_for_alias(col.physical)
    except ValueError:
        if col.physical.startswith("timestamp["):
            unit, _, tz = col.physical[len("timestamp[") : -1].partition(", tz=")
            return pa.timestamp(unit, tz or None)
        return None
    return dtype if logical_type(dtype) == col.type else None


def merged_schema(old: TableSchema, new: TableSchema) -> TableSchema:
    nullable = {c.name: c.nullable for c in new.columns}
    return TableSchema(
        columns=[
            c.model_copy(update={"nullable": c.nullable or nullable.get(c.name, False)})
            for c in old.columns
        ]
    )


# -- profiles ----------------------------------------------------------------------------------


def merge_profiles(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The profile of old rows + new rows from the two profiles, without reading the rows.

    Counts, nulls, min, max, mean and standard deviation are exact; quantiles (weighted means
    of the two sides') and categorical cardinality and top values (summed counts of each
    side's top values) are estimates, and the entry says ``"approximate": true``."""
    merged: dict[str, dict[str, Any]] = {}
    for name, a in (old or new).items():
        b = new.get(name)
        if b is None:
            merged[name] = a
            continue
        if a.get("kind") != b.get("kind"):  # an old profile of another shape: keep the new side's
            merged[name] = {**b, "approximate": True}
            continue
        n1, n2 = int(a.get("count", 0)), int(b.get("count", 0))
        entry: dict[str, Any] = {
            "kind": a["kind"],
            "dtype": a.get("dtype"),
            "count": n1 + n2,
            "null_count": int(a.get("null_count", 0)) + int(b.get("null_count", 0)),
        }
        if a["kind"] == "numeric":
            entry.update(_merge_numeric(a, b))
        elif a["kind"] == "categorical":
            tops: dict[Any, int] = {}
            for side in (a, b):
                for item in side.get("top_values") or []:
                    tops[item["value"]] = tops.get(item["value"], 0) + int(item["count"])
            best = sorted(tops.items(), key=lambda kv: (-kv[1], str(kv[0])))[:10]
            entry.update(
                cardinality=max(a.get("cardinality") or 0, b.get("cardinality") or 0),
                top_values=[{"value": v, "count": c} for v, c in best],
                approximate=True,
            )
        elif a["kind"] == "temporal":
            entry.update(
                cardinality=max(a.get("cardinality") or 0, b.get("cardinality") or 0),
                min=_pick(min, a.get("min"), b.get("min")),
                max=_pick(max, a.get("max"), b.get("max")),
                approximate=True,
            )
        merged[name] = entry
    return merged


def _pick(fn: Any, x: Any, y: Any) -> Any:
    present = [v for v in (x, y) if v is not None]
    return fn(present) if present else None


def _merge_numeric(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    def finite(side: dict[str, Any]) -> int:
        return (
            int(side.get("count", 0))
            - int(side.get("null_count", 0))
            - int(side.get("nan_count", 0) or 0)
        )

    n1, n2 = max(finite(a), 0), max(finite(b), 0)
    m1, m2 = a.get("mean"), b.get("mean")
    if n1 and n2 and m1 is not None and m2 is not None:
        n = n1 + n2
        mean = (n1 * m1 + n2 * m2) / n
        s1, s2 = a.get("std") or 0.0, b.get("std") or 0.0
        ss = (n1 - 1) * s1 * s1 + (n2 - 1) * s2 * s2 + n1 * n2 / n * (m1 - m2) ** 2
        std: float | None = math.sqrt(ss / (n - 1)) if n > 1 else None
    else:
        mean, std = (m1, a.get("std")) if n1 else (m2, b.get("std"))
    quantiles: dict[str, float | None] = {}
    for q in set(a.get("quantiles") or {}) | set(b.get("quantiles") or {}):
        qa, qb = (a.get("quantiles") or {}).get(q), (b.get("quantiles") or {}).get(q)
        if qa is None or qb is None or not (n1 + n2):
            quantiles[q] = qa if qb is None else qb
        else:
            quantiles[q] = (n1 * qa + n2 * qb) / (n1 + n2)
    return {
        "min": _pick(min, a.get("min"), b.get("min")),
        "max": _pick(max, a.get("max"), b.get("max")),
        "mean": mean,
        "std": std,
        "nan_count": int(a.get("nan_count", 0) or 0) + int(b.get("nan_count", 0) or 0),
        "zero_count": int(a.get("zero_count", 0) or 0) + int(b.get("zero_count", 0) or 0),
        "quantiles": dict(sorted(quantiles.items(), key=lambda kv: float(kv[0]))),
        "approximate": True,
    }


# -- diffs -------------------------------------------------------------------------------------

_NUMERIC_STATS = ("null_count", "min", "max", "mean", "std")


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> dict[str, Any]:
    shared = set(a.segment_numbers()) & set(b.segment_numbers())
    columns: dict[str, dict[str, Any]] = {}
    for name in [n for n in b.schema_.names if n in a.profile and n in b.profile]:
        pa_, pb = a.profile[name], b.profile[name]
        stats: dict[str, Any] = {}
        keys = _NUMERIC_STATS if pb.get("kind") == "numeric" else ("null_count", "cardinality")
        for key in keys:
            x, y = pa_.get(key), pb.get(key)
            if x == y:
                continue
            entry: dict[str, Any] = {"from": x, "to": y}
            if isinstance(x, int | float) and isinstance(y, int | float):
                entry["delta"] = y - x
            stats[key] = entry
        if stats:
            columns[name] = stats
    return {
        "from": a.ref,
        "to": b.ref,
        "rows": {"from": a.row_count, "to": b.row_count, "delta": b.row_count - a.row_count},
        "schema": schema_changes(a.schema_, b.schema_),
        "shared_segments": len(shared),
        "new_segments": b.segment_count - len(shared),
        "profile": columns,
    }


# -- time travel -------------------------------------------------------------------------------


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date or time (``2026-11-20``, ``2026-11-20T10:00:00Z``) or None if ``text``
    is not one; a time without a zone is UTC."""
    if len(text) < 10 or text[4:5] != "-":
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"{text!r} is not an ISO 8601 time: {exc}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)
