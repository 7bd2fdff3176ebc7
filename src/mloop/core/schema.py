"""Logical column types shared by dataset schemas and model signatures."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

ColumnType = Literal["integer", "float", "boolean", "string", "datetime", "date", "other"]
NUMERIC_TYPES: frozenset[str] = frozenset({"integer", "float"})


class Column(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    type: ColumnType
    nullable: bool = True
    physical: str | None = None  # the Arrow/Polars type it came from, for humans


class TableSchema(BaseModel):
    model_config = ConfigDict(frozen=True)

    columns: list[Column]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None
