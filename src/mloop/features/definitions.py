"""Feature definitions: entities (join keys and their types) and feature views over a dataset.

A definition is plain data. ``ws.features.apply([...])`` checks it against its source dataset and
stores it versioned: the same definition is the same version, a changed one the next version.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mloop.core.errors import InvalidInput
from mloop.core.schema import ColumnType

_TTL = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
KEY_TYPES: frozenset[str] = frozenset({"integer", "string"})


def parse_ttl(value: Any) -> int | None:
    """A TTL as whole seconds: a ``timedelta``, a number of seconds, ``"7d"``, ``"12h"``,
    ``"30m"``, ``"45s"``, ``"2w"``; None (or 0) is no TTL."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise InvalidInput(f"invalid ttl {value!r}: give a timedelta or a text like '7d'")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _TTL.match(value)
        if match is None:
            raise InvalidInput(
                f"invalid ttl {value!r}: give a timedelta or a number and a unit (s, m, h, d, w)"
                " like '7d'"
            )
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise InvalidInput(f"invalid ttl {value!r}: give a timedelta or a text like '7d'")
    if seconds < 0:
        raise InvalidInput(f"invalid ttl {value!r}: it cannot be negative")
    return int(seconds) or None


class Entity(BaseModel):
    """What features are about (a customer, a driver): its name and join keys with their
    logical types (``"integer"`` or ``"string"``)."""

    model_config = ConfigDict(frozen=True)

    name: str
    join_keys: dict[str, str]
    description: str | None = None
    # set by apply / get: which stored version this is
    version: int | None = Field(default=None, exclude=True)
    created_at: datetime | None = Field(default=None, exclude=True)

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("join_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            raise ValueError("give join keys with their types, e.g. {'customer_id': 'integer'}")
        return value

    def check(self) -> None:
        if not self.join_keys:
            raise InvalidInput(f"entity {self.name!r} needs at least one join key")
        for key, kind in self.join_keys.items():
            if kind not in KEY_TYPES:
                raise InvalidInput(
                    f"entity {self.name!r}: join key {key!r} has type {kind!r}; "
                    f"use one of {sorted(KEY_TYPES)}"
                )

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


class Feature(BaseModel):
    """One feature of a view: a column of the source and its logical type (None: the source's
    type, resolved when applied)."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: ColumnType | None = None

    def __init__(self, name: str | None = None, dtype: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        if dtype is not None:
            data["dtype"] = dtype
        super().__init__(**data)


class FeatureView(BaseModel):
    """Features of one or more entities, read from a dataset (its versions are resolved when the
    view is used): a timestamp column says when each value became true; a value older than
    ``ttl`` before the time asked about is no value."""

    model_config = ConfigDict(frozen=True)

    name: str
    entities: list[str]
    source: str
    timestamp_column: str
    features: list[Feature]
    ttl: int | None = None  # seconds
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    version: int | None = Field(default=None, exclude=True)
    created_at: datetime | None = Field(default=None, exclude=True)

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("entities", mode="before")
    @classmethod
    def _entities(cls, value: Any) -> Any:
        if isinstance(value, str | Entity):
            value = [value]
        return [e.name if isinstance(e, Entity) else e for e in value]

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> Any:
        if isinstance(value, str | Feature):
            value = [value]
        return [Feature(name=f) if isinstance(f, str) else f for f in value]

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> Any:
        return parse_ttl(value)

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


def spec_hash(kind: str, spec: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
