"""schema: logical column types shared by dataset schemas and model signatures."""

from __future__ import annotations

import pydantic
import pytest

from mloop.core.schema import NUMERIC_TYPES, Column, TableSchema


def test_table_schema_names_and_lookup() -> None:
    schema = TableSchema(
        columns=[Column(name="age", type="integer", nullable=False), Column(name="y", type="float")]
    )
    assert schema.names == ["age", "y"]
    age = schema.column("age")
    assert age is not None
    assert age.type == "integer"
    assert not age.nullable
    assert schema.column("missing") is None


def test_schemas_are_frozen_and_round_trip_through_json() -> None:
    schema = TableSchema(columns=[Column(name="when", type="datetime", physical="timestamp[us]")])
    with pytest.raises(pydantic.ValidationError):
        schema.columns[0].name = "other"  # type: ignore[misc]
    assert TableSchema.model_validate(schema.model_dump(mode="json")) == schema
    assert TableSchema.model_validate_json(schema.model_dump_json()) == schema


def test_unknown_types_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        Column(name="x", type="decimal")  # type: ignore[arg-type]


def test_numeric_types() -> None:
    assert frozenset({"integer", "float"}) == NUMERIC_TYPES
