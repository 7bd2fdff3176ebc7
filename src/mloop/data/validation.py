"""Expectation suites: inferred from a dataset version, edited by hand, run in Polars.

A suite is a list of expectations. Column-type checks and row-count checks judge the table as a
whole; ``not_null``, ``between``, ``in_set`` and ``unique`` judge each row. Every check yields a
vectorized boolean mask of failing rows, so validating a million rows is a handful of Polars
kernels, not a Python loop.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.core.lazy import lazy_module
from mloop.core.schema import NUMERIC_TYPES, ColumnType
from mloop.data.datasets import DatasetService, DatasetVersion, check_name, to_arrow
from mloop.data.readers import read_file
from mloop.data.types import logical_type
from mloop.security import AuditLog
from mloop.storage import Database, LineageStore, tables

if TYPE_CHECKING:
    import polars as pl
else:
    pl = lazy_module("polars")

MAX_INFERRED_CATEGORIES = 50
MIN_ROWS_FOR_UNIQUE = 100
RANGE_MARGIN = 0.1
SAMPLE_ROWS = 5
REASON_COLUMN = "_mloop_reason"


class _Check(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


class RowCountCheck(_Check):
    type: Literal["row_count"] = "row_count"
    column: None = None
    min: int | None = None
    max: int | None = None


Expectation = Annotated[
    ColumnTypeCheck | NotNullCheck | BetweenCheck | InSetCheck | UniqueCheck | RowCountCheck,
    Field(discriminator="type"),
]
ROW_LEVEL = (NotNullCheck, BetweenCheck, InSetCheck, UniqueCheck)


class Suite(BaseModel):
    """A named, versioned list of expectations."""

    model_config = ConfigDict(frozen=True)

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
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"invalid suite: {where}: {first['msg']}") from exc


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


class ValidationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    suite: str
    suite_version: int | None
    dataset: str | None
    rows: int
    success: bool
    failed_checks: int
    failing_rows: int
    checks: list[CheckResult]


class QuarantineResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    report: ValidationReport
    clean: DatasetVersion | None
    quarantined: DatasetVersion | None


class SplitResult:
    """A frame checked against a suite: the report, the rows that pass, and the rows that
    fail with their reasons in ``_mloop_reason``."""

    def __init__(self, report: ValidationReport, valid: pl.DataFrame, failed: pl.DataFrame):
        self.report = report
        self.valid = valid
        self.failed = failed


def split_frame(frame: pl.DataFrame, suite: Suite, label: str | None = None) -> SplitResult:
    """Validate ``frame`` and split it into passing and failing rows (a batch of a stream,
    say). A failed table-level check (row count, a missing column) fails every row."""
    evaluation = _Evaluation(suite, frame)
    report = evaluation.report(label)
    mask = evaluation.failing_mask()
    if not bool(mask.any()):
        return SplitResult(
            report,
            frame,
            frame.clear().with_columns(pl.lit(None, dtype=pl.String).alias(REASON_COLUMN)),
        )
    bad = frame.with_columns(evaluation.reasons()).filter(mask)
    return SplitResult(report, frame.filter(~mask), bad)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _fmt(value: float | None) -> str:
    if value is None:
        return "-inf"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _describe(check: Any) -> str:
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
    if isinstance(check, RowCountCheck):
        return f"row count between {check.min} and {check.max}"
    raise AssertionError(check)


def infer_suite(frame: pl.DataFrame, name: str, inferred_from: str | None = None) -> Suite:
    """Types, nullability, ranges (observed range widened by 10% of its width on each side,
    never across zero), allowed categories (strings and booleans with at most 50 values), and
    uniqueness for id-like columns (integers or strings, all distinct, at least 100 rows), which
    get no range or category check. A column holding NaN gets no range; an infinity leaves its
    side of the range open, so every suite passes on the data it was inferred from."""
    checks: list[Any] = []
    table = frame.to_arrow()
    stats_exprs: list[pl.Expr] = []
    for column in frame.columns:
        stats_exprs.append(pl.col(column).null_count().alias(f"{column}\x00nulls"))
        stats_exprs.append(pl.col(column).n_unique().alias(f"{column}\x00distinct"))
        ctype = logical_type(table.schema.field(column).type)
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
    stats = frame.select(stats_exprs).row(0, named=True)
    for column in frame.columns:
        ctype = logical_type(table.schema.field(column).type)
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
                values = frame.get_column(column).drop_nulls().unique().sort().to_list()
                checks.append(InSetCheck(column=column, values=values))
    return Suite(name=name, expectations=checks, inferred_from=inferred_from)


def _failing_expr(check: Any) -> pl.Expr:
    """The vectorized mask of rows that fail a row-level check (nulls pass all but not_null)."""
    col = pl.col(check.column)
    if isinstance(check, NotNullCheck):
        return col.is_null()
    if isinstance(check, BetweenCheck):
        numbers = col.cast(pl.Float64)
        bad = numbers.is_nan()
        if check.min is not None:
            bad = bad | (numbers < check.min)
        if check.max is not None:
            bad = bad | (numbers > check.max)
        return col.is_not_null() & bad
    if isinstance(check, InSetCheck):
        # each value as the column cast to text spells it (true, 1, 1.5), whatever the mix
        texts = [pl.Series([v]).cast(pl.String).item() for v in check.values]
        allowed = pl.Series(texts, dtype=pl.String).implode()
        return col.is_not_null() & ~col.cast(pl.String).is_in(allowed)
    if isinstance(check, UniqueCheck):
        return col.is_not_null() & col.is_duplicated()
    raise AssertionError(check)  # pragma: no cover - the union is closed


class _Evaluation:
    """Evaluate a suite on a frame; keeps the masks for quarantine."""

    def __init__(self, suite: Suite, frame: pl.DataFrame) -> None:
        self.suite = suite
        self.frame = frame
        self.results: list[CheckResult] = []
        self.row_masks: list[tuple[str, pl.Series]] = []
        self.table_failure: str | None = None
        self._run()

    def _type_of(self, column: str) -> ColumnType | None:
        if column not in self.frame.columns:
            return None
        return logical_type(self.frame.get_column(column).to_arrow().type)

    def _result(
        self,
        check: Any,
        success: bool,
        observed: Any,
        failing: int,
        message: str,
        sample: list[dict[str, Any]] | None = None,
    ) -> None:
        rows = max(self.frame.height, 1)
        self.results.append(
            CheckResult(
                expectation=check.model_dump(mode="json"),
                column=check.column,
                success=success,
                observed=observed,
                failing_rows=failing,
                failing_fraction=failing / rows,
                message=message,
                sample=sample or [],
            )
        )

    def _run(self) -> None:
        usable = self._table_checks()
        pending: list[tuple[Any, pl.Expr]] = []
        for check in self.suite.expectations:
            if isinstance(check, ColumnTypeCheck | RowCountCheck):
                continue
            if check.column not in self.frame.columns:
                message = f"column {check.column!r} is missing"
                self._result(check, False, "missing", self.frame.height, message)
                self.table_failure = self.table_failure or message
                continue
            if not usable.get(check.column, True) and not isinstance(check, NotNullCheck):
                self._result(
                    check,
                    False,
                    "not evaluated",
                    self.frame.height,
                    f"not evaluated: column {check.column!r} has the wrong type",
                )
                continue
            seen = self._type_of(check.column)
            if (isinstance(check, BetweenCheck) and seen not in NUMERIC_TYPES) or (
                isinstance(check, InSetCheck) and seen == "other"
            ):
                # no column_type check guards this one: say so instead of failing to cast
                message = f"not evaluated: column {check.column!r} is {seen}"
                self._result(check, False, "not evaluated", self.frame.height, message)
                self.table_failure = self.table_failure or message
                continue
            pending.append((check, _failing_expr(check)))
        if not pending:
            return
        masks = self.frame.select(
            expr.fill_null(False).alias(f"m{i}") for i, (_, expr) in enumerate(pending)
        )
        counts = masks.sum().row(0)
        indexed = self.frame.with_row_index("_row")
        for i, ((check, _), failing) in enumerate(zip(pending, counts, strict=True)):
            self._row_result(check, masks.get_column(f"m{i}"), int(failing), indexed)

    def _table_checks(self) -> dict[str, bool]:
        """Column types, extra columns and the row count; returns which columns are usable."""
        frame = self.frame
        usable: dict[str, bool] = {}
        for check in self.suite.expectations:
            if isinstance(check, ColumnTypeCheck):
                seen = self._type_of(check.column)
                ok = seen == check.expected or (check.expected == "float" and seen == "integer")
                usable[check.column] = ok
                if seen is None:
                    message = f"column {check.column!r} is missing"
                elif ok:
                    message = f"column {check.column!r} is {seen}"
                else:
                    message = f"column {check.column!r} is {seen}, expected {check.expected}"
                self._result(check, ok, seen or "missing", 0 if ok else frame.height, message)
                if not ok:
                    self.table_failure = self.table_failure or message
            elif isinstance(check, RowCountCheck):
                ok = (check.min is None or frame.height >= check.min) and (
                    check.max is None or frame.height <= check.max
                )
                message = f"{frame.height} rows" + ("" if ok else f"; expected {_describe(check)}")
                self._result(check, ok, frame.height, 0 if ok else frame.height, message)
                if not ok:
                    self.table_failure = self.table_failure or message
        if not self.suite.allow_extra_columns:
            expected = {c.column for c in self.suite.expectations if c.column is not None}
            extra = [c for c in frame.columns if c not in expected]
            if extra:
                self.table_failure = self.table_failure or f"unexpected columns: {extra}"
        return usable

    def _row_result(self, check: Any, mask: pl.Series, failing: int, indexed: pl.DataFrame) -> None:
        height = self.frame.height
        allowed_fraction = 1.0 - getattr(check, "mostly", 1.0)
        ok = failing == 0 or failing / max(height, 1) <= allowed_fraction + 1e-12
        sample: list[dict[str, Any]] = []
        if failing:
            sample = [
                {k: _json_value(v) for k, v in row.items()}
                for row in indexed.filter(mask).head(SAMPLE_ROWS).iter_rows(named=True)
            ]
        column = self.frame.get_column(check.column)
        observed: Any = None
        if isinstance(check, NotNullCheck):
            observed = {"null_count": failing}
        elif isinstance(check, BetweenCheck):
            numbers = column.cast(pl.Float64)
            finite = numbers.filter(numbers.is_finite())
            observed = {
                "min": _json_value(finite.min()) if finite.len() else None,
                "max": _json_value(finite.max()) if finite.len() else None,
            }
        elif isinstance(check, InSetCheck):
            unexpected = (
                column.filter(mask).cast(pl.String).value_counts(sort=True).head(SAMPLE_ROWS)
            ).rows()
            observed = {"unexpected": [{"value": v, "count": int(c)} for v, c in unexpected]}
        elif isinstance(check, UniqueCheck):
            observed = {"duplicated_rows": failing}
        message = (
            f"{_describe(check)}: all rows pass"
            if failing == 0
            else f"{_describe(check)}: {failing} of {height} rows fail"
        )
        self._result(check, ok, observed, failing, message, sample)
        if failing:
            self.row_masks.append((_describe(check), mask))

    def report(self, dataset: str | None) -> ValidationReport:
        failing_rows = self.frame.height if self.table_failure else int(self.failing_mask().sum())
        failed = sum(1 for r in self.results if not r.success)
        return ValidationReport(
            suite=self.suite.name,
            suite_version=self.suite.version,
            dataset=dataset,
            rows=self.frame.height,
            success=failed == 0 and self.table_failure is None,
            failed_checks=failed,
            failing_rows=failing_rows,
            checks=self.results,
        )

    def failing_mask(self) -> pl.Series:
        if self.table_failure:
            return pl.Series([True] * self.frame.height)
        mask = pl.Series([False] * self.frame.height)
        for _, row_mask in self.row_masks:
            mask = mask | row_mask
        return mask

    def reasons(self) -> pl.Series:
        """Per row, the checks it fails joined with '; ' (null for rows that pass)."""
        if self.table_failure:
            return pl.Series(REASON_COLUMN, [self.table_failure] * self.frame.height)
        masks = pl.DataFrame({f"m{i}": m for i, (_, m) in enumerate(self.row_masks)})
        if not self.row_masks:
            return pl.Series(REASON_COLUMN, [None] * self.frame.height, dtype=pl.String)
        exprs = [
            pl.when(pl.col(f"m{i}")).then(pl.lit(label))
            for i, (label, _) in enumerate(self.row_masks)
        ]
        return masks.select(
            pl.concat_str(exprs, separator="; ", ignore_nulls=True).alias(REASON_COLUMN)
        ).to_series()


def _to_polars(data: Any) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    frame = pl.from_arrow(to_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    return frame


class ValidationService:
    """Infer, store and run expectation suites; split failing rows into quarantine."""

    def __init__(
        self, db: Database, datasets: DatasetService, audit: AuditLog, lineage: LineageStore
    ) -> None:
        self._db = db
        self._datasets = datasets
        self._audit = audit
        self._lineage = lineage

    # -- suites ------------------------------------------------------------------------

    def infer_suite(self, ref: str, *, name: str | None = None, save: bool = True) -> Suite:
        """Infer a suite from a dataset version and (by default) store it as a new version."""
        version = self._datasets.get(ref)
        frame = self._datasets.load_polars(version)
        suite = infer_suite(frame, check_name(name or version.dataset, "suite"), version.id)
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

    def validate(self, data: str | DatasetVersion | Any, suite: Suite | str) -> ValidationReport:
        """Validate a dataset version (``NAME@N``), a file (a ``Path``) or a frame."""
        the_suite = self.get_suite(suite) if isinstance(suite, str) else suite
        frame, label = self._frame(data)
        if not isinstance(data, str | DatasetVersion):
            frame = self._protected(frame, the_suite)  # samples in the report: no raw PII
        return _Evaluation(the_suite, frame).report(label)

    def quarantine(self, ref: str | Path | DatasetVersion, suite: Suite | str) -> QuarantineResult:
        """Validate a version; if rows fail, write them with their reasons to
        ``<name>.quarantine`` and the passing rows as a new version of ``<name>``.

        Both are ordinary immutable versions with lineage back to the input; running this again
        on the same input writes nothing new.
        """
        if isinstance(ref, Path):
            raise InvalidInput(
                f"quarantine splits a dataset version; ingest {ref} first (mloop data ingest)"
            )
        version = ref if isinstance(ref, DatasetVersion) else self._datasets.get(ref)
        the_suite = self.get_suite(suite) if isinstance(suite, str) else suite
        frame = self._datasets.load_polars(version)
        evaluation = _Evaluation(the_suite, frame)
        report = evaluation.report(version.ref)
        mask = evaluation.failing_mask()
        if not bool(mask.any()):
            return QuarantineResult(report=report, clean=version, quarantined=None)
        reasons = evaluation.reasons()
        bad = frame.with_columns(reasons).filter(mask)
        good = frame.filter(~mask)
        quarantined = self._datasets.write_version(
            f"{version.dataset}.quarantine",
            bad.to_arrow(),
            kind="quarantine",
            parents=[version],
            relation="quarantined",
        )
        clean = None
        if good.height:
            clean = self._datasets.write_version(
                version.dataset,
                good.to_arrow(),
                kind="validated",
                parents=[version],
                relation="validated",
            )
        return QuarantineResult(report=report, clean=clean, quarantined=quarantined)

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
            table, _fmt = read_file(data)
            return _to_polars(table), str(data)
        return _to_polars(data), None
