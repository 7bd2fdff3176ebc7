"""Model signatures, and the one function that turns input into the frame a model sees.

Training and serving both go through :func:`frame_from_columns`, so a column is coerced the same
way at fit time and at request time: numbers and booleans become float64 (null → NaN), strings
stay strings (null → NaN). That shared path is what keeps training and serving from skewing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import SchemaMismatch
from mloop.core.lazy import lazy_module
from mloop.core.schema import Column, ColumnType

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")

Task = Literal["classification", "regression"]
FEATURE_TYPES: frozenset[str] = frozenset({"integer", "float", "boolean", "string"})
MAX_ERRORS_SHOWN = 5


class Signature(BaseModel):
    """What a model takes (named, typed columns) and what it gives."""

    model_config = ConfigDict(frozen=True)

    inputs: list[Column]
    target: str
    target_type: ColumnType
    task: Task
    classes: list[Any] | None = None

    @property
    def input_names(self) -> list[str]:
        return [c.name for c in self.inputs]


def _numeric(values: Any) -> np.ndarray:
    return np.asarray(values, dtype="float64")


def frame_from_table(table: pa.Table, signature: Signature) -> pd.DataFrame:
    """Training path: an Arrow table (already typed) → the model's frame."""
    columns: dict[str, Any] = {}
    for col in signature.inputs:
        array = table.column(col.name)
        if col.type in ("integer", "float", "boolean"):
            columns[col.name] = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
        else:
            values = array.cast(pa.string()).to_numpy(zero_copy_only=False)
            columns[col.name] = pd.array(values, dtype=object)
    return frame_from_columns(columns, signature)


def frame_from_columns(columns: dict[str, Any], signature: Signature) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for col in signature.inputs:
        values = columns[col.name]
        if col.type in ("integer", "float", "boolean"):
            data[col.name] = _numeric(values)
        else:
            series = pd.Series(values, dtype=object)
            data[col.name] = series.where(series.notna(), np.nan)
    return pd.DataFrame(data, columns=signature.input_names)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def frame_from_rows(rows: Any, signature: Signature) -> pd.DataFrame:
    """Serving path: JSON rows → the model's frame, or SchemaMismatch naming what is wrong.

    Every input column must be present in every row (``null`` is allowed: the model imputes);
    unknown columns are refused, so a typo cannot silently turn into a missing value.
    """
    if not isinstance(rows, list) or not rows:
        raise SchemaMismatch("'rows' must be a non-empty list of objects")
    names = signature.input_names
    known = set(names)
    errors: list[str] = []
    columns: dict[str, list[Any]] = {n: [] for n in names}
    types = {c.name: c.type for c in signature.inputs}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append(f"row {i} is a {_type_name(row)}, not an object of column values")
            if len(errors) >= MAX_ERRORS_SHOWN:
                break
            continue
        if len(row) != len(names) or not known.issuperset(row):
            unknown = [k for k in row if k not in known]
            missing = [n for n in names if n not in row]
            if unknown:
                errors.append(
                    f"row {i}: unknown column {unknown[0]!r} (the model takes: {', '.join(names)})"
                )
            if missing:
                errors.append(f"row {i}: missing column {missing[0]!r}")
        for name in names:
            value = row.get(name)
            expected = types[name]
            if value is None:
                columns[name].append(None)
                continue
            if expected in ("integer", "float"):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                if ok and isinstance(value, float) and math.isinf(value):
                    ok = False
            elif expected == "boolean":
                ok = isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                want = {"integer": "a number", "float": "a number", "boolean": "true or false"}.get(
                    expected, "a string"
                )
                errors.append(
                    f"row {i}: column {name!r} must be {want}, got {_type_name(value)} {value!r}"
                )
                columns[name].append(None)
            else:
                columns[name].append(value)
        if len(errors) >= MAX_ERRORS_SHOWN:
            break
    if errors:
        raise SchemaMismatch(
            "; ".join(errors[:MAX_ERRORS_SHOWN]), details={"errors": errors[:MAX_ERRORS_SHOWN]}
        )
    return frame_from_columns(columns, signature)


def infer_signature(
    schema_columns: list[Column], target: str, task: Task, classes: list[Any] | None
) -> Signature:
    inputs = [c for c in schema_columns if c.name != target]
    target_col = next(c for c in schema_columns if c.name == target)
    return Signature(
        inputs=inputs, target=target, target_type=target_col.type, task=task, classes=classes
    )
