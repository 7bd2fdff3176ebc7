"""From physical Arrow types to mloop's logical column types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mloop.core.lazy import lazy_module
from mloop.core.schema import Column, ColumnType, TableSchema

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


def logical_type(dtype: pa.DataType) -> ColumnType:
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "float"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_dictionary(dtype):
        return logical_type(dtype.value_type)
    if pa.types.is_timestamp(dtype):
        return "datetime"
    if pa.types.is_date(dtype):
        return "date"
    return "other"


def schema_of(table: pa.Table) -> TableSchema:
    return TableSchema(
        columns=[
            Column(
                name=field.name,
                type=logical_type(field.type),
                nullable=table.column(i).null_count > 0,
                physical=str(field.type),
            )
            for i, field in enumerate(table.schema)
        ]
    )
