"""Feature definitions: entities (join keys and their types), feature views over a dataset
(optionally fed by a stream, optionally transformed) and on-demand views computed from request
data.

A definition is plain data. ``ws.features.apply([...])`` checks it against its source dataset and
stores it versioned: the same definition is the same version, a changed one the next version.
A transformation is stored as what runs — serialized Polars expressions, one SQL ``SELECT`` or a
Python function's own source — so training, materialization and request time run the same code.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module
from mloop.core.schema import ColumnType
from mloop.data import PythonCode, check_sql, function_source, normalise_sql

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_module("polars")

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


class FeatureTransform(BaseModel):
    """What turns source rows into feature values, stored as what runs.

    ``polars``: named Polars expressions, evaluated with ``with_columns`` (each output column a
    feature or a helper); ``sql``: one DuckDB ``SELECT`` over the table ``source``; ``python``:
    a function taking the source rows as a Polars DataFrame and returning a frame (its own source
    is stored, so it must import what it uses inside; ``pl``, ``pa``, ``pc`` and ``np`` are
    provided)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["polars", "sql", "python"]
    code: str

    @classmethod
    def of(cls, value: Any, label: str) -> FeatureTransform | None:
        """A transform from what a user gives: a mapping of names to Polars expressions, a SQL
        text, a Python function, or a stored ``{"kind", "code"}``."""
        if value is None or isinstance(value, FeatureTransform):
            return value
        if isinstance(value, dict) and set(value) == {"kind", "code"}:
            return cls(**value)
        if isinstance(value, dict):
            exprs = {}
            for name, expr in value.items():
                if not isinstance(name, str) or not name:
                    raise InvalidInput(f"{label}: a Polars transform maps feature names to exprs")
                if not isinstance(expr, pl.Expr):
                    raise InvalidInput(
                        f"{label}: {name!r} maps to {type(expr).__name__}, not a Polars expression"
                    )
                exprs[name] = json.loads(expr.meta.serialize(format="json"))
            if not exprs:
                raise InvalidInput(f"{label}: the Polars transform names no expression")
            return cls(kind="polars", code=json.dumps(exprs, sort_keys=True))
        if isinstance(value, str):
            sql = normalise_sql(value)
            check_sql(sql, label)
            return cls(kind="sql", code=sql)
        if callable(value):
            source = function_source(value)
            code = PythonCode(source, label)
            code.check(1)
            return cls(kind="python", code=code.source)
        raise InvalidInput(
            f"{label}: a transform is a mapping of names to Polars expressions, a SQL SELECT or a "
            f"Python function, not {type(value).__name__}"
        )

    def expressions(self) -> dict[str, pl.Expr]:
        assert self.kind == "polars"
        return {
            name: pl.Expr.deserialize(io.StringIO(json.dumps(spec)), format="json").alias(name)
            for name, spec in json.loads(self.code).items()
        }

    def function(self, label: str) -> Callable[..., Any]:
        assert self.kind == "python"
        return PythonCode(self.code, label).load()

    @property
    def row_wise(self) -> bool:
        """Whether each output row depends on its input row alone (so new source rows can be
        transformed on their own). A Polars transform is taken as row-wise; SQL and Python may
        aggregate, so they always run over the whole source."""
        return self.kind == "polars"


class _ViewBase(BaseModel):
    """What feature views and on-demand views share: a name, features, a description, and the
    version ``apply`` / ``get`` set."""

    model_config = ConfigDict(frozen=True)

    name: str
    features: list[Feature]
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    version: int | None = Field(default=None, exclude=True)
    created_at: datetime | None = Field(default=None, exclude=True)

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> Any:
        if isinstance(value, str | Feature):
            value = [value]
        return [Feature(name=f) if isinstance(f, str) else f for f in value]

    def spec(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]


class FeatureView(_ViewBase):
    """Features of one or more entities, read from a dataset (its versions are resolved when the
    view is used): a timestamp column says when each value became true; a value older than
    ``ttl`` before the time asked about is no value."""

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        super().__init__(name, **data)

    model_config = ConfigDict(frozen=True)

    entities: list[str]
    source: str
    timestamp_column: str
    ttl: int | None = None  # seconds
    transform: FeatureTransform | None = None
    stream: str | None = None  # a stream URI whose events feed ``source`` (and the online store)

    @field_validator("entities", mode="before")
    @classmethod
    def _entities(cls, value: Any) -> Any:
        if isinstance(value, str | Entity):
            value = [value]
        return [e.name if isinstance(e, Entity) else e for e in value]

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> Any:
        return parse_ttl(value)

    @field_validator("transform", mode="before")
    @classmethod
    def _transform(cls, value: Any) -> Any:
        return FeatureTransform.of(value, "the view's transform")


class OnDemandFeatureView(_ViewBase):
    """Features computed when asked for — at request time online, over the joined frame in a
    training set — from request data (``request``: names and types the caller sends) and
    features of other views (``sources``: ``"view:feature"``). The ``transform`` (Polars
    expressions or a Python function over a Polars DataFrame) is the same code in both places."""

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        super().__init__(name, **data)

    model_config = ConfigDict(frozen=True)

    transform: FeatureTransform
    request: dict[str, ColumnType] = Field(default_factory=dict)
    sources: list[str] = Field(default_factory=list)

    @field_validator("sources", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("transform", mode="before")
    @classmethod
    def _transform(cls, value: Any) -> Any:
        found = FeatureTransform.of(value, "the on-demand view's transform")
        if found is not None and found.kind == "sql":
            raise ValueError(
                "an on-demand transform runs per request: give Polars expressions or a Python "
                "function, not SQL"
            )
        return found


def spec_hash(kind: str, spec: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
