"""Expectation suites: inferred from a dataset version, edited by hand (YAML), run in Polars.

A suite is a list of expectations (:mod:`mloop.data.expectations`). Column types, the row count,
freshness and distributions judge the table as a whole; ``not_null``, ``between``, ``in_set``,
``unique``, ``regex`` and ``sql`` judge each row.

Validation is two passes at most, whatever the number of checks:

1. one Polars ``select`` of aggregates counts the failing rows of every row check (and the
   observed minimum, maximum and newest values) — a vectorized expression per check, evaluated
   in parallel, no mask kept; SQL checks are one DuckDB query over the same Arrow buffers;
2. only when some rows fail: one ``select`` materializes the masks of the failing checks, for
   the sample rows, the union of failing rows, and the per-row reasons of quarantine (built for
   the failing rows only).

Severity ``warn`` checks are evaluated and reported like the others but never fail the suite nor
quarantine a row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.core.lazy import lazy_module
from mloop.core.schema import NUMERIC_TYPES, ColumnType
from mloop.data.datasets import DatasetService, DatasetVersion, check_name, to_arrow
from mloop.data.distribution import Reference, compare, stats_of
from mloop.data.expectations import (
    ROW_LEVEL,
    BetweenCheck,
    Check,
    ColumnTypeCheck,
    DistributionCheck,
    DistributionMethod,
    Expectation,
    FreshnessCheck,
    InSetCheck,
    NotNullCheck,
    ReferenceStats,
    RegexCheck,
    RowCountCheck,
    Severity,
    SqlCheck,
    Suite,
    UniqueCheck,
    sql_expression,
)
from mloop.data.readers import detect_format, read_file
from mloop.security import AuditLog
from mloop.storage import Database, LineageStore, tables

if TYPE_CHECKING:
    import duckdb
    import polars as pl
else:
    duckdb = lazy_module("duckdb")
    pl = lazy_module("polars")

MAX_INFERRED_CATEGORIES = 50
MIN_ROWS_FOR_UNIQUE = 100
RANGE_MARGIN = 0.1
SAMPLE_ROWS = 5
REASON_COLUMN = "_mloop_reason"
SUITE_FILE_SUFFIXES = (".yaml", ".yml", ".json")
SMALL_SET = 16  # up to this many allowed strings are compared one by one, not hashed
REFERENCE_CACHE = 32  # reference columns kept in memory by a service, for batch after batch

References = Callable[[DistributionCheck], Reference]


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    expectation: dict[str, Any]
    column: str | None
    success: bool
    observed: Any
    failing_rows: int
    failing_fraction: float
    message: str
    sample: list[dict[str, Any]] = []
    severity: Severity = "error"


class ValidationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    suite: str
    suite_version: int | None
    dataset: str | None
    rows: int
    success: bool
    failed_checks: int  # error-severity checks that failed
    failing_rows: int  # rows an error-severity check fails (what quarantine sets apart)
    checks: list[CheckResult]
    warnings: int = 0  # warn-severity checks that failed


class QuarantineResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    report: ValidationReport
    clean: DatasetVersion | None
    quarantined: DatasetVersion | None
    # the rows this split set apart (``quarantined`` is NAME.quarantine's version: every split's)
    quarantined_rows: int = 0


class SplitResult:
    """A frame checked against a suite: the report, the rows that pass, and the rows that
    fail with their reasons in ``_mloop_reason``."""

    def __init__(self, report: ValidationReport, valid: pl.DataFrame, failed: pl.DataFrame):
        self.report = report
        self.valid = valid
        self.failed = failed


def split_frame(
    frame: pl.DataFrame,
    suite: Suite,
    label: str | None = None,
    *,
    references: References | None = None,
) -> SplitResult:
    """Validate ``frame`` and split it into passing and failing rows (a batch of a stream,
    say). A failed table-level check (row count, a missing column) fails every row.

    Distribution checks against a dataset version need ``references`` (what
    ``ws.validation.split`` passes); with stored ``reference_stats`` they need nothing."""
    evaluation = _Evaluation(suite, frame, references)
    valid, failed = evaluation.split()
    return SplitResult(evaluation.report(label), valid, failed)


def validate_frame(
    frame: pl.DataFrame,
    suite: Suite,
    label: str | None = None,
    *,
    references: References | None = None,
) -> ValidationReport:
    """Validate a Polars frame against a suite (no workspace needed)."""
    return _Evaluation(suite, frame, references).report(label)


def load_suite_file(path: Path) -> Suite:
    """A suite from a YAML or JSON file; a missing name is the file's stem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"suite file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read suite file {path}: {exc}") from None
    return Suite.from_yaml(text, name=path.stem)


def is_suite_file(ref: str) -> bool:
    """Whether ``ref`` names a suite file rather than a stored suite (``NAME`` or ``NAME@N``)."""
    return ref.lower().endswith(SUITE_FILE_SUFFIXES) or "/" in ref or Path(ref).is_file()


def needs_references(suite: Suite) -> bool:
    """Whether the suite compares with a dataset version (and so needs a workspace)."""
    return any(
        isinstance(e, DistributionCheck) and e.reference is not None for e in suite.expectations
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _fmt(value: float | None) -> str:
    if value is None:
        return "-inf"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def describe(check: Check) -> str:
    """A check in a few words: the label of its report line and of quarantine reasons."""
    if isinstance(check, ColumnTypeCheck):
        return f"{check.column}: type {check.expected}"
    if isinstance(check, NotNullCheck):
        return f"{check.column}: not null"
    if isinstance(check, BetweenCheck):
        return f"{check.column}: between {_fmt(check.min)} and {_fmt(check.max)}"
    if isinstance(check, InSetCheck):
        shown = ", ".join(map(str, check.values[:5])) + (", ..." if len(check.values) > 5 else "")
        return f"{check.column}: in {{{shown}}}"
    if isinstance(check, UniqueCheck):
        return f"{check.column}: unique"
    if isinstance(check, RegexCheck):
        return f"{check.column}: matches /{check.pattern}/"
    if isinstance(check, SqlCheck):
        return f"sql: {check.expression}"
    if isinstance(check, RowCountCheck):
        return f"row count between {check.min} and {check.max}"
    if isinstance(check, FreshnessCheck):
        return f"{check.column}: newest within {check.max_age}"
    if isinstance(check, DistributionCheck):
        against = check.reference or "stored reference"
        return f"{check.column}: {check.method} vs {against} ≤ {check.limit:g}"
    raise AssertionError(check)  # pragma: no cover - the union is closed


@functools.lru_cache(maxsize=256)
def polars_type(dtype: pl.DataType) -> ColumnType:
    """The logical type of a Polars dtype (what ``logical_type`` says of its Arrow form)."""
    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_integer():
        return "integer"
    if dtype.is_float() or dtype.is_decimal():
        return "float"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Categorical | pl.Enum):
        return "string"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Date:
        return "date"
    return "other"


# -- inference --------------------------------------------------------------------------------


def infer_suite(
    frame: pl.DataFrame,
    name: str,
    inferred_from: str | None = None,
    *,
    distribution: DistributionMethod | None = None,
) -> Suite:
    """Types, nullability, ranges (observed range widened by 10% of its width on each side,
    never across zero), allowed categories (strings and booleans with at most 50 values), and
    uniqueness for id-like columns (integers or strings, all distinct, at least 100 rows), which
    get no range or category check. A column holding NaN gets no range; an infinity leaves its
    side of the range open, so every suite passes on the data it was inferred from.

    With ``distribution`` (``"psi"`` or ``"ks"``), each numeric column that is not an id and
    each categorical one also gets a distribution check against stats of this data, kept in
    the suite, with severity ``warn`` (KS applies to numbers; categories always get PSI)."""
    checks: list[Any] = []
    types = {column: polars_type(dtype) for column, dtype in frame.schema.items()}
    stats_exprs: list[pl.Expr] = []
    for column in frame.columns:
        stats_exprs.append(pl.col(column).null_count().alias(f"{column}\x00nulls"))
        stats_exprs.append(pl.col(column).n_unique().alias(f"{column}\x00distinct"))
        ctype = types[column]
        if ctype in NUMERIC_TYPES:
            numbers = pl.col(column).cast(pl.Float64)
            finite = numbers.filter(numbers.is_finite())
            stats_exprs += [
                finite.min().alias(f"{column}\x00min"),
                finite.max().alias(f"{column}\x00max"),
                numbers.is_nan().any().alias(f"{column}\x00nan"),
                (numbers == math.inf).any().alias(f"{column}\x00+inf"),
                (numbers == -math.inf).any().alias(f"{column}\x00-inf"),
            ]
        elif ctype in ("string", "boolean"):
            stats_exprs.append(pl.col(column).drop_nulls().n_unique().alias(f"{column}\x00card"))
    stats = frame.select(stats_exprs).row(0, named=True) if stats_exprs else {}
    for column in frame.columns:
        ctype = types[column]
        checks.append(ColumnTypeCheck(column=column, expected=ctype))
        nulls = stats[f"{column}\x00nulls"]
        if nulls == 0:
            checks.append(NotNullCheck(column=column))
        identifier = (
            ctype in ("integer", "string")
            and frame.height >= MIN_ROWS_FOR_UNIQUE
            and nulls == 0
            and stats[f"{column}\x00distinct"] == frame.height
        )
        categorical = False
        if identifier:
            # an id: every value distinct. Its range says nothing about the next batch.
            checks.append(UniqueCheck(column=column))
        elif ctype in NUMERIC_TYPES:
            lo, hi = stats[f"{column}\x00min"], stats[f"{column}\x00max"]
            # NaN fails any range, so a column that holds NaN gets none (its reference would fail)
            if lo is not None and hi is not None and not stats[f"{column}\x00nan"]:
                margin = (hi - lo) * RANGE_MARGIN
                new_lo, new_hi = lo - margin, hi + margin
                if lo >= 0:
                    new_lo = max(new_lo, 0.0)
                if hi <= 0:
                    new_hi = min(new_hi, 0.0)
                if ctype == "integer":
                    new_lo, new_hi = float(math.floor(new_lo)), float(math.ceil(new_hi))
                # an infinity seen leaves that side open
                checks.append(
                    BetweenCheck(
                        column=column,
                        min=None if stats[f"{column}\x00-inf"] else new_lo,
                        max=None if stats[f"{column}\x00+inf"] else new_hi,
                    )
                )
        elif ctype in ("string", "boolean"):
            cardinality = stats[f"{column}\x00card"]
            if 0 < cardinality <= MAX_INFERRED_CATEGORIES and cardinality < max(
                2, frame.height // 2
            ):
                categorical = True
                values = frame.get_column(column).drop_nulls().unique().sort().to_list()
                checks.append(InSetCheck(column=column, values=values))
        if distribution and not identifier and (ctype in NUMERIC_TYPES or categorical):
            series = frame.get_column(column)
            method: DistributionMethod = distribution if ctype in NUMERIC_TYPES else "psi"
            reference = stats_of(series, method)
            if reference.rows:
                checks.append(
                    DistributionCheck(
                        column=column,
                        method=method,
                        reference_stats=reference,
                        severity="warn",
                    )
                )
    return Suite(name=name, expectations=checks, inferred_from=inferred_from)


# -- evaluation -------------------------------------------------------------------------------

_INT_SAFE = 2**53


def _int_bounds(check: BetweenCheck) -> tuple[int | None, int | None] | None:
    """Integer bounds equivalent to the float ones (so an integer column is compared without a
    cast), or None when a bound is too large to be exact."""
    lo = hi = None
    if check.min is not None:
        if not math.isfinite(check.min) or abs(check.min) >= _INT_SAFE:
            return None
        lo = math.ceil(check.min)
    if check.max is not None:
        if not math.isfinite(check.max) or abs(check.max) >= _INT_SAFE:
            return None
        hi = math.floor(check.max)
    return lo, hi


def _outside(col: pl.Expr, lo: Any, hi: Any, floats: bool) -> pl.Expr:
    """True where a value is outside [lo, hi] (NaN is outside any range), null where null."""
    if lo is not None and hi is not None:
        return col.is_between(lo, hi).not_()
    if lo is not None:
        return col.ge(lo).not_()
    if hi is not None:
        return col.le(hi).not_()
    return col.is_nan() if floats else pl.repeat(False, pl.len())


def _spelling(value: str | bool | int | float) -> str:
    """A value as Polars spells it when casting a column to text (true, 1, 1.5)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text: str = pl.Series([value], dtype=pl.Float64).cast(pl.String).item()
    return text


def _in_set_expr(check: InSetCheck, ctype: ColumnType, dtype: pl.DataType) -> pl.Expr:
    """True where a value is not allowed. Values compare as the column cast to text spells them
    (true, 1, 1.5), whatever the mix; strings, integers and booleans without the cast."""
    col = pl.col(check.column)
    texts = [_spelling(v) for v in check.values]
    if dtype == pl.String:
        if not texts:
            return col.is_not_null()
        if len(texts) <= SMALL_SET:
            # a few comparisons beat hashing every string: ~5x faster on short values
            matched: pl.Expr = functools.reduce(operator.or_, (col == t for t in texts))
            return matched.not_()
        return col.is_in(pl.Series(texts, dtype=pl.String).implode()).not_()
    if ctype == "integer":
        ints = [int(t) for t in texts if t.lstrip("-").isdigit() and str(int(t)) == t]
        return ~col.is_in(pl.Series(ints, dtype=dtype, strict=False).drop_nulls().implode())
    if ctype == "boolean":
        allowed = [t == "true" for t in texts if t in ("true", "false")]
        return ~col.is_in(pl.Series(allowed, dtype=pl.Boolean).implode())
    return ~col.cast(pl.String).is_in(pl.Series(texts, dtype=pl.String).implode())


class _RowCheck:
    """A row-level check being evaluated: its failing-rows mask (an expression, or a DuckDB
    column for SQL) and, once counted, how many rows fail."""

    def __init__(self, index: int, check: Any, mask: pl.Expr | None) -> None:
        self.index = index
        self.check = check
        self.mask = mask  # None for SQL checks
        self.failing = 0
        self.label = describe(check)

    @property
    def name(self) -> str:
        return f"m{self.index}"


class _Evaluation:
    """Evaluate a suite on a frame; keeps the failing checks' masks for quarantine."""

    def __init__(
        self, suite: Suite, frame: pl.DataFrame, references: References | None = None
    ) -> None:
        self.suite = suite
        self.frame = frame
        self.height = frame.height
        self.references = references
        self.types: dict[str, ColumnType] = {
            column: polars_type(dtype) for column, dtype in frame.schema.items()
        }
        self.results: list[CheckResult | None] = [None] * len(suite.expectations)
        self.table_failure: str | None = None
        self.row_checks: list[_RowCheck] = []
        self.sql_checks: list[_RowCheck] = []
        self._masks: pl.DataFrame | None = None
        self._sql: _SqlRunner | None = None
        self._union: pl.Series | None = None
        self._run()

    # -- results -------------------------------------------------------------------------

    def _result(
        self,
        index: int,
        check: Any,
        success: bool,
        observed: Any,
        failing: int,
        message: str,
        sample: list[dict[str, Any]] | None = None,
    ) -> None:
        self.results[index] = CheckResult(
            expectation=check.model_dump(mode="json"),
            column=check.column,
            success=success,
            observed=observed,
            failing_rows=failing,
            failing_fraction=failing / max(self.height, 1),
            message=message,
            sample=sample or [],
            severity=check.severity,
        )
        if not success and check.severity == "error" and not isinstance(check, ROW_LEVEL):
            self.table_failure = self.table_failure or message

    def _not_evaluated(self, index: int, check: Any, why: str, observed: Any = None) -> None:
        """A check that could not run fails every row; an error one fails the table."""
        self._result(index, check, False, observed or "not evaluated", self.height, why)
        if check.severity == "error":
            self.table_failure = self.table_failure or why

    # -- the passes ----------------------------------------------------------------------

    def _run(self) -> None:
        usable = self._table_checks()
        aggregates: list[pl.Expr] = []
        fresh: list[tuple[int, FreshnessCheck]] = []
        distributions: list[tuple[int, DistributionCheck]] = []
        for index, check in enumerate(self.suite.expectations):
            if isinstance(check, ColumnTypeCheck | RowCountCheck):
                continue
            if isinstance(check, SqlCheck):
                self.sql_checks.append(_RowCheck(index, check, None))
                continue
            if check.column not in self.types:
                self._not_evaluated(
                    index, check, f"column {check.column!r} is missing", observed="missing"
                )
                continue
            if not usable.get(check.column, True) and not isinstance(check, NotNullCheck):
                self._not_evaluated(
                    index, check, f"not evaluated: column {check.column!r} has the wrong type"
                )
                continue
            ctype = self.types[check.column]
            col = pl.col(check.column)
            if isinstance(check, FreshnessCheck):
                if ctype not in ("datetime", "date"):
                    self._not_evaluated(
                        index,
                        check,
                        f"not evaluated: column {check.column!r} "
                        f"is {ctype}, not a datetime or date",
                    )
                    continue
                aggregates.append(col.max().alias(f"newest{index}"))
                fresh.append((index, check))
                continue
            if isinstance(check, DistributionCheck):
                distributions.append((index, check))
                continue
            mask = self._mask_expr(index, check, ctype)
            if mask is None:
                continue
            row = _RowCheck(index, check, mask)
            self.row_checks.append(row)
            aggregates += self._count_exprs(row, ctype)
        counted = (
            self.frame.lazy().select(aggregates).collect().row(0, named=True)
            if (aggregates)
            else {}
        )
        for row in self.row_checks:
            if not isinstance(row.check, UniqueCheck):
                row.failing = int(counted[f"n{row.index}"] or 0)
        repeated = self._repeated_values(counted)
        self._run_sql()
        if repeated or any(r.failing for r in (*self.row_checks, *self.sql_checks)):
            self._materialize_masks(repeated)
        if self._sql is not None:
            self._sql.close()
        for row in (*self.row_checks, *self.sql_checks):
            self._row_result(row, counted)
        for index, check in fresh:
            self._freshness(index, check, counted[f"newest{index}"])
        for index, check in distributions:
            self._distribution(index, check)

    def _mask_expr(self, index: int, check: Any, ctype: ColumnType) -> pl.Expr | None:
        """The expression true on failing rows (null where the row passes by being null), or
        None when the check cannot run on this column (reported as not evaluated)."""
        col = pl.col(check.column)
        if isinstance(check, NotNullCheck):
            return col.is_null()
        if isinstance(check, BetweenCheck):
            if ctype not in NUMERIC_TYPES:
                # no column_type check guards this one: say so instead of failing to cast
                self._not_evaluated(
                    index, check, f"not evaluated: column {check.column!r} is {ctype}"
                )
                return None
            bounds = _int_bounds(check) if ctype == "integer" else None
            if bounds is not None:
                return _outside(col, bounds[0], bounds[1], floats=False)
            numbers = col if ctype == "float" else col.cast(pl.Float64)
            return _outside(numbers, check.min, check.max, floats=True)
        if isinstance(check, InSetCheck):
            if ctype == "other":
                self._not_evaluated(
                    index, check, f"not evaluated: column {check.column!r} is {ctype}"
                )
                return None
            return _in_set_expr(check, ctype, self.frame.schema[check.column])
        if isinstance(check, UniqueCheck):
            return col.is_duplicated() & col.is_not_null()
        if isinstance(check, RegexCheck):
            if ctype != "string":
                self._not_evaluated(
                    index, check, f"not evaluated: column {check.column!r} is {ctype}, not text"
                )
                return None
            text = col if self.frame.schema[check.column] == pl.String else col.cast(pl.String)
            return ~text.str.contains(check.pattern)
        raise AssertionError(check)  # pragma: no cover - the union is closed

    def _count_exprs(self, row: _RowCheck, ctype: ColumnType) -> list[pl.Expr]:
        """Aggregates of the first pass: failing rows, and what the report shows observed."""
        check, col, i = row.check, pl.col(row.check.column), row.index
        if isinstance(check, NotNullCheck):
            return [col.null_count().alias(f"n{i}")]
        if isinstance(check, UniqueCheck):
            # distinct values are cheaper to count than duplicated rows, and a strictly
            # increasing (or decreasing) integer column, as ids often are, is unique without
            # hashing: duplicated rows are counted only if something repeats
            if ctype == "integer":
                diff = col.diff()
                return [
                    diff.min().alias(f"d{i}"),
                    diff.max().alias(f"D{i}"),
                    col.null_count().alias(f"z{i}"),
                ]
            return [col.n_unique().alias(f"n{i}"), col.null_count().alias(f"z{i}")]
        assert row.mask is not None
        exprs = [row.mask.sum().alias(f"n{i}")]
        if isinstance(check, BetweenCheck):
            exprs += [col.min().alias(f"lo{i}"), col.max().alias(f"hi{i}")]
        return exprs

    def _run_sql(self) -> None:
        """Every SQL check in one DuckDB pass over the frame's Arrow buffers (a connection of
        its own, no file or network access)."""
        if not self.sql_checks:
            return
        self._sql = runner = _SqlRunner(self.frame)
        runnable = []
        for row in self.sql_checks:
            problem = runner.problem(row.check.expression)
            if problem is None:
                runnable.append(row)
            else:
                self._not_evaluated(row.index, row.check, f"{row.label}: not evaluated: {problem}")
        self.sql_checks = runnable
        for row, failing in zip(runnable, runner.counts(runnable), strict=True):
            row.failing = failing

    def _repeated_values(self, counted: dict[str, Any]) -> list[_RowCheck]:
        """The unique checks whose column repeats a value (their failing rows are counted from
        their masks): a distinct count below the non-null rows, or, for an integer column that
        is not strictly monotonic, one more pass counting distinct values."""
        repeated, unsure = [], []
        for row in self.row_checks:
            if not isinstance(row.check, UniqueCheck):
                continue
            i = row.index
            nulls = int(counted[f"z{i}"] or 0)
            present = self.height - nulls
            if f"n{i}" in counted:
                if int(counted[f"n{i}"]) - (1 if nulls else 0) < present:
                    repeated.append(row)
                continue
            low, high = counted[f"d{i}"], counted[f"D{i}"]
            monotonic = nulls == 0 and (
                (low is not None and low > 0) or (high is not None and high < 0)
            )
            if present > 1 and not monotonic:
                unsure.append(row)
        if unsure:
            distinct = (
                self.frame.lazy()
                .select(pl.col(r.check.column).n_unique() for r in unsure)
                .collect()
                .row(0)
            )
            for row, n in zip(unsure, distinct, strict=True):
                nulls = int(counted[f"z{row.index}"] or 0)
                if int(n) - (1 if nulls else 0) < self.height - nulls:
                    repeated.append(row)
        for row in repeated:
            if self.types[row.check.column] == "integer":
                # the repeated values by sorting (several times faster than hashing every row
                # for is_duplicated), then the rows holding one of them
                values = self.frame.get_column(row.check.column).drop_nulls().sort()
                twice = values.filter(values.diff() == 0).unique()
                row.mask = pl.col(row.check.column).is_in(twice.implode())
        return repeated

    def _materialize_masks(self, repeated: Sequence[_RowCheck]) -> None:
        """The second pass: the masks of the checks some rows fail, as one frame (and the
        failing rows of the unique checks whose column repeats a value)."""
        failing = [r for r in self.row_checks if r.failing or r in repeated]
        masks = (
            self.frame.lazy()
            .select(r.mask.fill_null(False).alias(r.name) for r in failing if r.mask is not None)
            .collect()
        )
        for row in repeated:
            row.failing = int(masks.get_column(row.name).sum())
        failing_sql = [r for r in self.sql_checks if r.failing]
        if failing_sql:
            assert self._sql is not None
            sql_masks = self._sql.masks(failing_sql)
            masks = masks.hstack(sql_masks.get_columns()) if masks.width else sql_masks
        self._masks = masks

    def _table_checks(self) -> dict[str, bool]:
        """Column types, extra columns and the row count; returns which columns are usable."""
        usable: dict[str, bool] = {}
        for index, check in enumerate(self.suite.expectations):
            if isinstance(check, ColumnTypeCheck):
                seen = self.types.get(check.column)
                ok = seen == check.expected or (check.expected == "float" and seen == "integer")
                if check.severity == "error":  # a warned type leaves the other checks to try
                    usable[check.column] = ok or usable.get(check.column, False)
                if seen is None:
                    message = f"column {check.column!r} is missing"
                elif ok:
                    message = f"column {check.column!r} is {seen}"
                else:
                    message = f"column {check.column!r} is {seen}, expected {check.expected}"
                self._result(index, check, ok, seen or "missing", 0 if ok else self.height, message)
            elif isinstance(check, RowCountCheck):
                ok = (check.min is None or self.height >= check.min) and (
                    check.max is None or self.height <= check.max
                )
                message = f"{self.height} rows" + ("" if ok else f"; expected {describe(check)}")
                self._result(index, check, ok, self.height, 0 if ok else self.height, message)
        if not self.suite.allow_extra_columns:
            expected = {c.column for c in self.suite.expectations if c.column is not None}
            extra = [c for c in self.frame.columns if c not in expected]
            if extra:
                self.table_failure = self.table_failure or f"unexpected columns: {extra}"
        return usable

    def _row_result(self, row: _RowCheck, counted: dict[str, Any]) -> None:
        check, failing = row.check, row.failing
        allowed_fraction = 1.0 - getattr(check, "mostly", 1.0)
        ok = failing == 0 or failing / max(self.height, 1) <= allowed_fraction + 1e-12
        sample: list[dict[str, Any]] = []
        mask = None
        if failing:
            assert self._masks is not None
            mask = self._masks.get_column(row.name)
            sample = self._sample(mask)
        observed: Any = None
        if isinstance(check, NotNullCheck):
            observed = {"null_count": failing}
        elif isinstance(check, BetweenCheck):
            observed = {
                "min": _json_value(counted[f"lo{row.index}"]),
                "max": _json_value(counted[f"hi{row.index}"]),
            }
        elif isinstance(check, InSetCheck | RegexCheck):
            unexpected = []
            if mask is not None:
                values = self.frame.get_column(check.column).filter(mask).cast(pl.String)
                unexpected = values.value_counts(sort=True).head(SAMPLE_ROWS).rows()
            observed = {"unexpected": [{"value": v, "count": int(c)} for v, c in unexpected]}
        elif isinstance(check, UniqueCheck):
            observed = {"duplicated_rows": failing}
        elif isinstance(check, SqlCheck):
            observed = {"false_rows": failing}
        message = (
            f"{row.label}: all rows pass"
            if failing == 0
            else f"{row.label}: {failing} of {self.height} rows fail"
        )
        self._result(row.index, check, ok, observed, failing, message, sample)

    def _sample(self, mask: pl.Series) -> list[dict[str, Any]]:
        """The first failing rows, with their position as ``_row``."""
        positions = mask.arg_true().head(SAMPLE_ROWS)
        rows = self.frame[positions].insert_column(0, positions.alias("_row"))
        return [{k: _json_value(v) for k, v in r.items()} for r in rows.iter_rows(named=True)]

    def _freshness(self, index: int, check: FreshnessCheck, newest: Any) -> None:
        if newest is None:
            self._result(index, check, False, None, self.height, f"{check.column}: no values")
            return
        moment = newest if isinstance(newest, datetime) else datetime(*newest.timetuple()[:3])
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        age = (from_ms(now_ms()) - moment).total_seconds()
        ok = age <= check.max_age_seconds
        observed = {"newest": moment.isoformat(), "age_seconds": round(age, 3)}
        message = f"{check.column}: newest {moment.isoformat()} is {_age(age)} old" + (
            "" if ok else f"; expected within {check.max_age}"
        )
        self._result(index, check, ok, observed, 0 if ok else self.height, message)

    def _distribution(self, index: int, check: DistributionCheck) -> None:
        if check.reference_stats is not None:
            reference = Reference.of_stats(check.reference_stats)
        elif self.references is None:
            self._not_evaluated(
                index,
                check,
                f"{describe(check)}: not evaluated: comparing with {check.reference} needs a "
                "workspace (ws.validation), or reference_stats in the suite",
            )
            return
        else:
            reference = self.references(check)
        try:
            observed = compare(check.method, self.frame.get_column(check.column), reference)
        except ValueError as exc:
            self._not_evaluated(index, check, f"{describe(check)}: not evaluated: {exc}")
            return
        statistic = observed["statistic"]
        observed["reference_rows"] = reference.rows
        if statistic is None:
            self._result(index, check, True, observed, 0, f"{describe(check)}: no values")
            return
        ok = statistic <= check.limit
        message = f"{describe(check)}: {check.method} {statistic:.4g}"
        self._result(index, check, ok, observed, 0 if ok else self.height, message)

    # -- what the callers take -----------------------------------------------------------

    def report(self, dataset: str | None) -> ValidationReport:
        results = [r for r in self.results if r is not None]
        assert len(results) == len(self.results)
        failed = sum(1 for r in results if not r.success and r.severity == "error")
        warnings = sum(1 for r in results if not r.success and r.severity == "warn")
        failing_rows = self.height if self.table_failure else int(self.failing_mask().sum())
        return ValidationReport(
            suite=self.suite.name,
            suite_version=self.suite.version,
            dataset=dataset,
            rows=self.height,
            success=failed == 0 and self.table_failure is None,
            failed_checks=failed,
            failing_rows=failing_rows,
            checks=results,
            warnings=warnings,
        )

    def _quarantining(self) -> list[_RowCheck]:
        """Row checks whose failing rows go to quarantine: error severity, some rows failing
        (whether or not ``mostly`` lets the check pass)."""
        return [
            r
            for r in (*self.row_checks, *self.sql_checks)
            if r.failing and r.check.severity == "error"
        ]

    def failing_mask(self) -> pl.Series:
        if self._union is not None:
            return self._union
        if self.table_failure:
            union = pl.repeat(True, self.height, eager=True)
        else:
            quarantining = self._quarantining()
            if not quarantining:
                union = pl.repeat(False, self.height, eager=True)
            elif len(quarantining) == 1:
                assert self._masks is not None
                union = self._masks.get_column(quarantining[0].name)
            else:
                assert self._masks is not None
                union = self._masks.select(
                    pl.any_horizontal(r.name for r in quarantining)
                ).to_series()
        self._union = union
        return union

    def split(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The passing rows, and the failing rows with the checks each fails in
        ``_mloop_reason`` (joined with '; ')."""
        mask = self.failing_mask()
        if self.table_failure:
            reason = pl.lit(self.table_failure, dtype=pl.String).alias(REASON_COLUMN)
            return self.frame.clear(), self.frame.with_columns(reason)
        quarantining = self._quarantining()
        if not quarantining:
            empty = pl.lit(None, dtype=pl.String).alias(REASON_COLUMN)
            return self.frame, self.frame.clear().with_columns(empty)
        assert self._masks is not None
        masks = self._masks.filter(mask)
        reasons = masks.select(
            pl.concat_str(
                [pl.when(pl.col(r.name)).then(pl.lit(r.label)) for r in quarantining],
                separator="; ",
                ignore_nulls=True,
            ).alias(REASON_COLUMN)
        ).to_series()
        failed = self.frame.filter(mask).with_columns(reasons)
        return self.frame.filter(~mask), failed


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


class _SqlRunner:
    """SQL checks on a frame, in a DuckDB connection of their own: no file system, no network,
    configuration locked; the frame's columns are handed over as Arrow, without a copy."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self.con: Any = duckdb.connect(config={"enable_external_access": False})
        self.con.execute("SET lock_configuration = true")
        self.registered: set[str] = set()

    def close(self) -> None:
        self.con.close()

    def _register(self, expressions: Sequence[str]) -> None:
        """Hand DuckDB the columns the expressions name (all of them if unsure)."""
        text = " ".join(expressions).lower()
        wanted = {c for c in self.frame.columns if c.lower() in text or '"' in c}
        if not wanted:
            wanted = set(self.frame.columns[:1])
        if wanted <= self.registered:
            return
        self.registered |= wanted
        columns = [c for c in self.frame.columns if c in self.registered]
        table = self.frame.select(columns).to_arrow(compat_level=pl.CompatLevel.newest())
        self.con.register("data", table)

    def problem(self, expression: str) -> str | None:
        """Why the expression cannot run on this frame (unknown column, not a boolean), or None."""
        sql = sql_expression(expression)
        self._register([sql])
        try:
            kind = str(self.con.sql(f"SELECT ({sql}) AS ok FROM data LIMIT 0").types[0])
        except duckdb.Error as exc:
            return " ".join(str(exc).split())[:300]
        if kind not in ("BOOLEAN", '"NULL"', "NULL"):
            return f"the expression is {kind}, not a boolean"
        return None

    def counts(self, rows: Sequence[_RowCheck]) -> list[int]:
        if not rows:
            return []
        exprs = [sql_expression(r.check.expression) for r in rows]
        self._register(exprs)
        select = ", ".join(f"count(*) FILTER (WHERE NOT ({e}))" for e in exprs)
        (found,) = self.con.sql(f"SELECT {select} FROM data").fetchall()
        return [int(n) for n in found]

    def masks(self, rows: Sequence[_RowCheck]) -> pl.DataFrame:
        exprs = [sql_expression(r.check.expression) for r in rows]
        select = ", ".join(
            f"coalesce(NOT ({e}), false) AS {r.name}" for e, r in zip(exprs, rows, strict=True)
        )
        masks: pl.DataFrame = self.con.sql(f"SELECT {select} FROM data").pl()
        return masks


def _to_polars(data: Any) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    frame = pl.from_arrow(to_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    return frame


def read_frame(path: Path) -> pl.DataFrame:
    """A data file (CSV, Parquet, JSON Lines) as a Polars frame. Parquet is read by Polars
    itself (its types are in the file): no copy through Arrow, about half the memory."""
    if path.is_file() and detect_format(path) == "parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # Polars' errors have no common base worth naming
            said = str(exc).strip().splitlines()
            raise InvalidInput(
                f"cannot read {path} as parquet: {said[0] if said else exc}"
            ) from None
        if frame.width and frame.height:
            empty = [c for c, dtype in frame.schema.items() if dtype == pl.Null]
            return frame.with_columns(pl.col(empty).cast(pl.String)) if empty else frame
    table, _fmt = read_file(path)  # CSV and JSON Lines typed as ingestion types them
    return _to_polars(table)


class ValidationService:
    """Infer, store and run expectation suites; split failing rows into quarantine."""

    def __init__(
        self, db: Database, datasets: DatasetService, audit: AuditLog, lineage: LineageStore
    ) -> None:
        self._db = db
        self._datasets = datasets
        self._audit = audit
        self._lineage = lineage
        self._references: OrderedDict[tuple[str, str, str], Reference] = OrderedDict()

    # -- suites ------------------------------------------------------------------------

    def infer_suite(
        self,
        ref: str,
        *,
        name: str | None = None,
        save: bool = True,
        distribution: DistributionMethod | None = None,
    ) -> Suite:
        """Infer a suite from a dataset version and (by default) store it as a new version."""
        version = self._datasets.get(ref)
        frame = self._datasets.load_polars(version)
        suite = infer_suite(
            frame,
            check_name(name or version.dataset, "suite"),
            version.id,
            distribution=distribution,
        )
        return self.save_suite(suite) if save else suite

    def save_suite(self, suite: Suite) -> Suite:
        """Store a suite; the same body as its latest version returns that version."""
        check_name(suite.name, "suite")
        body = suite.body()
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        t = tables.expectation_suites
        for _attempt in range(5):
            try:
                with self._db.write() as conn:
                    latest = (
                        conn.execute(
                            sa.select(t).where(t.c.name == suite.name).order_by(t.c.version.desc())
                        )
                        .mappings()
                        .first()
                    )
                    if latest is not None and latest["content_hash"] == digest:
                        return self._suite_from_row(latest)
                    row = {
                        "id": new_id(),
                        "name": suite.name,
                        "version": (latest["version"] if latest else 0) + 1,
                        "body": body,
                        "content_hash": digest,
                        "inferred_from": suite.inferred_from,
                        "created_at": now_ms(),
                    }
                    conn.execute(t.insert().values(**row))
                    if suite.inferred_from:
                        self._lineage.add(
                            conn,
                            ("dataset_version", suite.inferred_from),
                            ("suite", str(row["id"])),
                            "inferred",
                        )
                    self._audit.record(
                        conn,
                        "suite.create",
                        "suite",
                        f"{suite.name}@{row['version']}",
                        {"expectations": len(suite.expectations)},
                    )
                return self._suite_from_row(row)
            except DBIntegrityError:
                continue
        raise Conflict(f"could not save suite {suite.name!r}: too many concurrent writers")

    def apply_suite(self, text: str, *, name: str | None = None) -> Suite:
        """Store a suite written as YAML (or JSON) as the next version of its name (``name``
        overrides the file's); bad YAML or an unknown check is refused with InvalidInput."""
        suite = Suite.from_yaml(text, name=name)
        if name is not None and suite.name != name:
            suite = suite.model_copy(update={"name": name})
        return self.save_suite(suite)

    @staticmethod
    def _suite_from_row(row: Any) -> Suite:
        return Suite.parse(
            {
                **row["body"],
                "name": row["name"],
                "version": row["version"],
                "inferred_from": row["inferred_from"],
            }
        )

    def get_suite(self, ref: str) -> Suite:
        """``NAME`` (latest) or ``NAME@N``."""
        name, _, version = ref.partition("@")
        check_name(name, "suite")
        t = tables.expectation_suites
        query = sa.select(t).where(t.c.name == name)
        if version and version != "latest":
            if not (version.isascii() and version.isdigit()) or len(version) > 9:
                raise NotFound(f"suite {name!r} has no version {version!r}; use {name}@N")
            query = query.where(t.c.version == int(version))
        with self._db.read() as conn:
            row = conn.execute(query.order_by(t.c.version.desc())).mappings().first()
        if row is None:
            raise NotFound(
                f"suite {ref!r} does not exist; infer one with: mloop data suite DATASET@VERSION"
            )
        return self._suite_from_row(row)

    def load_suite(self, ref: str | Path | Suite) -> Suite:
        """A suite from a stored name (``NAME``, ``NAME@N``) or a YAML/JSON file path."""
        if isinstance(ref, Suite):
            return ref
        if isinstance(ref, Path) or is_suite_file(ref):
            return load_suite_file(Path(ref))
        return self.get_suite(ref)

    def list_suites(self) -> list[dict[str, Any]]:
        t = tables.expectation_suites
        with self._db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(
                        t.c.name,
                        sa.func.max(t.c.version).label("latest"),
                        sa.func.min(t.c.created_at).label("created"),
                    )
                    .group_by(t.c.name)
                    .order_by(t.c.name)
                )
                .mappings()
                .all()
            )
        return [
            {
                "name": r["name"],
                "latest_version": r["latest"],
                "created_at": from_ms(r["created"]).isoformat(),
            }
            for r in rows
        ]

    # -- validation --------------------------------------------------------------------

    def validate(
        self, data: str | DatasetVersion | Any, suite: Suite | str | Path
    ) -> ValidationReport:
        """Validate a dataset version (``NAME@N``), a file (a ``Path``) or a frame against a
        suite (a :class:`Suite`, a stored ``NAME``/``NAME@N``, or a YAML file path)."""
        the_suite = self.load_suite(suite)
        frame, label = self._frame(data)
        if not isinstance(data, str | DatasetVersion):
            frame = self._protected(frame, the_suite)  # samples in the report: no raw PII
        return validate_frame(frame, the_suite, label, references=self.reference)

    def split(self, frame: pl.DataFrame, suite: Suite, label: str | None = None) -> SplitResult:
        """:func:`split_frame` with this workspace's dataset versions as references."""
        return split_frame(frame, suite, label, references=self.reference)

    def reference(self, check: DistributionCheck) -> Reference:
        """The reference column of a distribution check, loaded once and kept (versions are
        immutable) for the next batches."""
        assert check.reference is not None
        version = self._datasets.get(check.reference)
        column = check.reference_column or check.column
        key = (version.id, column, check.method)
        found = self._references.get(key)
        if found is not None:
            self._references.move_to_end(key)
            return found
        frame = self._datasets.load_polars(version)
        if column not in frame.columns:
            raise InvalidInput(f"reference {version.ref} has no column {column!r}")
        built = Reference.of_series(frame.get_column(column))
        self._references[key] = built
        while len(self._references) > REFERENCE_CACHE:
            self._references.popitem(last=False)
        return built

    def quarantine(
        self, ref: str | Path | DatasetVersion, suite: Suite | str | Path
    ) -> QuarantineResult:
        """Validate a version; if rows fail, append them with their reasons to
        ``<name>.quarantine`` and write the passing rows as a new version of ``<name>``, in one
        transaction.

        The version split must be its dataset's latest (else :class:`Conflict`, nothing
        written): the validated version replaces it, and must not drop rows appended since;
        a writer adding a version meanwhile makes it a Conflict too. Quarantined rows have the
        columns a stream's quarantine has (``_mloop_kind`` ``validation``, ``_mloop_reason``,
        the row as a JSON object in ``_mloop_payload``, a null ``_mloop_partition``, the row's
        position in the version in ``_mloop_offset``), so batches and streams share
        ``<name>.quarantine``. Data that passes writes nothing; so does running the same split
        again (it returns the versions it wrote).
        """
        if isinstance(ref, Path):
            raise InvalidInput(
                f"quarantine splits a dataset version; ingest {ref} first (mloop data ingest)"
            )
        version = ref if isinstance(ref, DatasetVersion) else self._datasets.get(ref)
        the_suite = self.load_suite(suite)
        frame = self._datasets.load_polars(version)
        evaluation = _Evaluation(the_suite, frame, self.reference)
        report = evaluation.report(version.ref)
        good, bad = evaluation.split()
        if not bad.height:
            return QuarantineResult(report=report, clean=version, quarantined=None)
        rows = evaluation.failing_mask().arg_true().to_list()
        clean, quarantined = self._datasets.write_split(
            version, good.to_arrow() if good.height else None, bad, rows
        )
        return QuarantineResult(
            report=report, clean=clean, quarantined=quarantined, quarantined_rows=bad.height
        )

    def _protected(self, frame: pl.DataFrame, suite: Suite) -> pl.DataFrame:
        """A file or frame checked against the suite of a dataset with PII columns gets that
        dataset's policy first, as ingestion would, so no report carries a raw value."""
        dataset = suite.name
        if suite.inferred_from:
            dataset = self._datasets.dataset_name_of(suite.inferred_from) or dataset
        if not self._datasets.policy(dataset, missing_ok=True):
            return frame
        protected = pl.from_arrow(self._datasets.protect(dataset, frame.to_arrow()))
        assert isinstance(protected, pl.DataFrame)
        return protected

    def _frame(self, data: Any) -> tuple[pl.DataFrame, str | None]:
        if isinstance(data, DatasetVersion):
            return self._datasets.load_polars(data), data.ref
        if isinstance(data, str):
            version = self._datasets.get(data)
            return self._datasets.load_polars(version), version.ref
        if isinstance(data, Path):
            return read_frame(data), str(data)
        return _to_polars(data), None


__all__ = [
    "REASON_COLUMN",
    "BetweenCheck",
    "CheckResult",
    "ColumnTypeCheck",
    "DistributionCheck",
    "Expectation",
    "FreshnessCheck",
    "InSetCheck",
    "NotNullCheck",
    "QuarantineResult",
    "ReferenceStats",
    "RegexCheck",
    "RowCountCheck",
    "SplitResult",
    "SqlCheck",
    "Suite",
    "UniqueCheck",
    "ValidationReport",
    "ValidationService",
    "describe",
    "infer_suite",
    "is_suite_file",
    "load_suite_file",
    "needs_references",
    "read_frame",
    "split_frame",
    "validate_frame",
]
