"""What a suite says: the check types, their severities, and the suite as JSON or YAML.

Every check is a frozen pydantic model in one discriminated union (``type``), so a suite stored
years ago (``expectation_suites.body``) still loads: new check types and new optional fields
never change how an old body reads. A check's ``severity`` is ``error`` (the default, left out
of dumps so stored bodies and their hashes stay as they were) or ``warn`` (reported, never fails
the suite, never quarantines a row).

Bad input is refused when the suite is read, with the check's position in the message: an
unknown ``type``, a regular expression Polars cannot compile, a SQL expression DuckDB cannot
parse, an unreadable ``max_age``, a distribution check with no reference.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module
from mloop.core.schema import ColumnType

if TYPE_CHECKING:
    import duckdb
    import polars as pl
else:
    duckdb = lazy_module("duckdb")
    pl = lazy_module("polars")

Severity = Literal["error", "warn"]
DistributionMethod = Literal["ks", "psi"]
DEFAULT_THRESHOLDS: dict[str, float] = {"ks": 0.1, "psi": 0.2}

_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(w|d|h|m|s)", re.ASCII)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


MAX_DURATION_SECONDS = 100 * 366 * 86400  # a century: longer is a typo, and overflows dates


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"15m"``, ``"6h"``, ``"2d"``, ``"1w"`` or a sum such as
    ``"1d 12h"``; a bare number is seconds. At most a century."""
    seconds = _parse_duration(text)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is longer than a century")
    return seconds


def _parse_duration(text: str) -> float:
    raw = text.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds > 0:
            return seconds
        raise ValueError(f"max_age must be positive, not {text!r}")
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != end:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        end = match.end()
    if end != len(raw) or not raw:
        raise ValueError(f"max_age {text!r} is not a duration such as 30m, 6h, 2d or 1d 12h")
    if total <= 0:
        raise ValueError(f"max_age must be positive, not {text!r}")
    return total


class _Check(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Severity = Field(default="error", exclude_if=lambda value: value == "error")


class ColumnTypeCheck(_Check):
    type: Literal["column_type"] = "column_type"
    column: str
    expected: ColumnType


class NotNullCheck(_Check):
    type: Literal["not_null"] = "not_null"
    column: str
    mostly: float = Field(default=1.0, ge=0, le=1)


class BetweenCheck(_Check):
    type: Literal["between"] = "between"
    column: str
    min: float | None = None
    max: float | None = None
    mostly: float = Field(default=1.0, ge=0, le=1)


class InSetCheck(_Check):
    type: Literal["in_set"] = "in_set"
    column: str
    values: list[str | bool | int | float]
    mostly: float = Field(default=1.0, ge=0, le=1)


class UniqueCheck(_Check):
    type: Literal["unique"] = "unique"
    column: str


class RegexCheck(_Check):
    """The value must contain a match of ``pattern`` (Rust regex syntax, as Polars runs it;
    anchor with ``^...$`` to match the whole value). Nulls pass."""

    type: Literal["regex"] = "regex"
    column: str
    pattern: str
    mostly: float = Field(default=1.0, ge=0, le=1)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            pl.Series([""], dtype=pl.String).str.contains(pattern)
        except Exception as exc:  # Polars says ComputeError; the message is what matters
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            said = [line for line in lines if line.startswith("error:")] or lines[:1]
            raise ValueError(f"bad regex {pattern!r}: {said[0][:300]}") from None
        return pattern


class SqlCheck(_Check):
    """A boolean SQL expression over the row's columns, run by DuckDB (``price * qty =
    total``). Rows where it is false fail; rows where it is null pass, as nulls pass every check
    but ``not_null`` (write ``coalesce(expr, false)`` to fail them)."""

    type: Literal["sql"] = "sql"
    column: None = None
    expression: str = Field(min_length=1)
    mostly: float = Field(default=1.0, ge=0, le=1)

    @field_validator("expression")
    @classmethod
    def _parses(cls, expression: str) -> str:
        sql_expression(expression)
        return expression


def sql_expression(expression: str) -> str:
    """``expression`` as DuckDB prints it once parsed: one expression, nothing else (no second
    statement, no trailing ``) FROM ...``); comments and aliases are gone."""
    try:
        return str(duckdb.SQLExpression(expression))
    except duckdb.Error as exc:
        detail = " ".join(str(exc).split())
    # raised outside the handler: the error keeps no DuckDB object alive (nanobind reports
    # those as leaks at exit)
    raise ValueError(f"bad SQL expression {expression!r}: {detail[:300]}")


class RowCountCheck(_Check):
    type: Literal["row_count"] = "row_count"
    column: None = None
    min: int | None = None
    max: int | None = None


class FreshnessCheck(_Check):
    """The newest value of a datetime (or date) column is at most ``max_age`` old. Naive
    timestamps are taken as UTC."""

    type: Literal["freshness"] = "freshness"
    column: str
    max_age: str

    @field_validator("max_age", mode="before")
    @classmethod
    def _readable(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{value}s"
        if isinstance(value, str):
            parse_duration(value)
        return value

    @property
    def max_age_seconds(self) -> float:
        return parse_duration(self.max_age)


class ReferenceStats(BaseModel):
    """What a distribution check keeps of its reference, so it needs no reference data:

    - ``edges`` / ``fractions``: PSI bins of a numeric column (the reference deciles as inner
      edges; ``fractions`` has one more entry than ``edges``: below the first edge, between
      each pair, from the last edge up);
    - ``quantiles`` / ``cdf``: points of the reference's cumulative distribution, for KS;
    - ``categories``: the share of each value, for PSI on strings and booleans.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(ge=0)
    edges: list[float] | None = None
    fractions: list[float] | None = None
    quantiles: list[float] | None = None
    cdf: list[float] | None = None
    categories: dict[str, float] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceStats:
        if self.edges is not None or self.fractions is not None:
            if self.edges is None or self.fractions is None:
                raise ValueError("edges and fractions go together")
            if len(self.fractions) != len(self.edges) + 1:
                raise ValueError("fractions needs one more entry than edges")
            if any(b < a for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError("edges must be sorted")
        if self.quantiles is not None or self.cdf is not None:
            if self.quantiles is None or self.cdf is None:
                raise ValueError("quantiles and cdf go together")
            if len(self.quantiles) != len(self.cdf):
                raise ValueError("quantiles and cdf must have the same length")
        if self.edges is None and self.quantiles is None and self.categories is None:
            raise ValueError("give edges and fractions, quantiles and cdf, or categories")
        return self


class DistributionCheck(_Check):
    """The column's distribution against a reference: a dataset version (``reference``,
    ``NAME@N``) or stats kept in the suite (``reference_stats``). ``ks``: the two-sample
    Kolmogorov–Smirnov statistic D (numbers); ``psi``: the population stability index (numbers
    in the reference's decile bins, or categories). Fails when the statistic exceeds
    ``threshold`` (default 0.1 for KS, 0.2 for PSI)."""

    type: Literal["distribution"] = "distribution"
    column: str
    method: DistributionMethod = "psi"
    threshold: float | None = Field(default=None, gt=0)
    reference: str | None = None
    reference_column: str | None = None
    reference_stats: ReferenceStats | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> DistributionCheck:
        if (self.reference is None) == (self.reference_stats is None):
            raise ValueError("give either reference (a dataset version) or reference_stats")
        if self.reference_column is not None and self.reference is None:
            raise ValueError("reference_column needs reference")
        return self

    @property
    def limit(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[self.method]


Check = (
    ColumnTypeCheck
    | NotNullCheck
    | BetweenCheck
    | InSetCheck
    | UniqueCheck
    | RegexCheck
    | SqlCheck
    | RowCountCheck
    | FreshnessCheck
    | DistributionCheck
)
Expectation = Annotated[Check, Field(discriminator="type")]
ROW_LEVEL = (NotNullCheck, BetweenCheck, InSetCheck, UniqueCheck, RegexCheck, SqlCheck)
TABLE_LEVEL = (ColumnTypeCheck, RowCountCheck, FreshnessCheck, DistributionCheck)

YAML_HEADER = """\
# An mloop expectation suite. Edit it, then store it: mloop data suite-apply FILE
# Checks (each may add `severity: warn` to report without failing or quarantining):
#   column_type (expected), not_null, between (min, max), in_set (values), unique,
#   regex (pattern), sql (expression), row_count (min, max), freshness (max_age: 6h),
#   distribution (method: ks|psi, threshold, reference: NAME@N | reference_stats)
# Row checks take `mostly` (0..1): the share of rows that must pass.
"""


class Suite(BaseModel):
    """A named, versioned list of expectations."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # a misspelt key is an error

    name: str
    version: int | None = None
    expectations: list[Expectation]
    allow_extra_columns: bool = True
    inferred_from: str | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"name", "version", "inferred_from"})

    @classmethod
    def parse(cls, data: dict[str, Any] | str) -> Suite:
        try:
            if isinstance(data, str):
                return cls.model_validate_json(data)
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(f"invalid suite: {_first_error(exc)}") from exc

    # -- YAML --------------------------------------------------------------------------

    def to_yaml(self) -> str:
        """The suite as YAML for a person to edit: defaults left out, ``type`` first."""
        import yaml

        doc: dict[str, Any] = {"name": self.name}
        if self.inferred_from:
            doc["inferred_from"] = self.inferred_from
        doc["allow_extra_columns"] = self.allow_extra_columns
        doc["expectations"] = [_compact(e) for e in self.expectations]
        text = yaml.safe_dump(
            doc, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
        )
        return YAML_HEADER + text

    @classmethod
    def from_yaml(cls, text: str, *, name: str | None = None) -> Suite:
        """Read a suite from YAML (JSON is YAML too); ``name`` fills in a missing name."""
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise InvalidInput(f"invalid suite YAML{where}: {problem}") from None
        if not isinstance(doc, dict):
            raise InvalidInput(
                "invalid suite YAML: expected a mapping with name and expectations, not "
                + type(doc).__name__
            )
        if name is not None and not doc.get("name"):
            doc = {**doc, "name": name}
        doc.pop("version", None)  # storing makes the next version; a stale one means nothing
        return cls.parse(doc)


def _compact(check: Check) -> dict[str, Any]:
    body = check.model_dump(mode="json", exclude_defaults=True, exclude={"type", "severity"})
    severity = {"severity": check.severity} if check.severity != "error" else {}
    return {"type": check.type, **body, **severity}


def _first_error(exc: ValidationError) -> str:
    """The first error, where it is (``expectations.3.sql.expression``) and what."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


__all__ = [
    "DEFAULT_THRESHOLDS",
    "ROW_LEVEL",
    "TABLE_LEVEL",
    "BetweenCheck",
    "Check",
    "ColumnTypeCheck",
    "DistributionCheck",
    "DistributionMethod",
    "Expectation",
    "FreshnessCheck",
    "InSetCheck",
    "NotNullCheck",
    "ReferenceStats",
    "RegexCheck",
    "RowCountCheck",
    "Severity",
    "SqlCheck",
    "Suite",
    "UniqueCheck",
    "parse_duration",
    "sql_expression",
]
