"""Data quality of served inputs, per window, from the window summaries.

Three checks per input column, each a share of the window's rows:

- **nulls** (missing, NaN or infinite numbers; missing categories): fails above the allowed
  share plus ``QualityThresholds.null_rate`` (default 0.05). The allowed share is 1 − ``mostly``
  of the suite's ``not_null`` check for the column when the training dataset has a suite, else
  the training data's own null rate.
- **out of range** (numbers): values below the suite's ``between`` minimum / above its maximum
  or, without one, below the training minimum / above the training maximum. Fails above
  1 − ``mostly`` of the ``between`` check (0 without one) plus ``out_of_range_rate`` (0.01).
- **unseen categories** (strings, booleans): values not among the suite's ``in_set`` values or,
  without one, the training data's categories. Fails above 1 − ``mostly`` (0 without a check)
  plus ``unseen_category_rate`` (0.01).

A check of severity ``warn`` in the suite reports its issue without failing the column. All
of it is read from counters the summaries keep (nulls, values below / above the limits, the
categories seen), so judging a window costs the same at a thousand rows as at a billion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput
from mloop.data import BetweenCheck, InSetCheck, NotNullCheck, Suite
from mloop.monitoring.drift import NULL_CATEGORY
from mloop.monitoring.summary import OTHER, CategoricalSummary, NumericSummary, Profile, Summary

NULL_RATE = 0.05
OUT_OF_RANGE_RATE = 0.01
UNSEEN_CATEGORY_RATE = 0.01
TOP_UNSEEN = 5
_KEYS = ("null_rate", "out_of_range_rate", "unseen_category_rate")


@dataclass(frozen=True)
class QualityThresholds:
    """Tolerances over what the suite (or the training data) allows; per-column overrides by
    name: ``columns={"age": {"null_rate": 0.2}}``."""

    null_rate: float = NULL_RATE
    out_of_range_rate: float = OUT_OF_RANGE_RATE
    unseen_category_rate: float = UNSEEN_CATEGORY_RATE
    columns: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, override in self.columns.items():
            unknown = set(override) - set(_KEYS)
            if unknown:
                raise InvalidInput(f"unknown quality threshold(s) for {name!r}: {sorted(unknown)}")
        for key in _KEYS:
            values = [getattr(self, key)] + [o[key] for o in self.columns.values() if key in o]
            if any(not 0 <= v <= 1 for v in values):
                raise InvalidInput(f"quality threshold {key} must be between 0 and 1")

    def for_column(self, name: str) -> QualityThresholds:
        override = self.columns.get(name)
        if not override:
            return self
        return QualityThresholds(
            float(override.get("null_rate", self.null_rate)),
            float(override.get("out_of_range_rate", self.out_of_range_rate)),
            float(override.get("unseen_category_rate", self.unseen_category_rate)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {**{key: getattr(self, key) for key in _KEYS}, "columns": self.columns}


@dataclass(frozen=True)
class Rule:
    """What a suite allows of one check: the share of rows that may fail it, and whether a
    failure fails the column (``error``) or is only reported (``warn``)."""

    allowed: float = 0.0
    severity: str = "error"


@dataclass
class ColumnRules:
    """The suite's checks on one column that quality applies per window."""

    not_null: Rule | None = None
    between: Rule | None = None
    low: float | None = None
    high: float | None = None
    in_set: Rule | None = None
    values: set[str] | None = None


def _spelling(value: Any) -> str:
    """A suite value as the summaries count it (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def rules_from_suite(suite: Suite | None) -> dict[str, ColumnRules]:
    """The ``not_null``, ``between`` and ``in_set`` checks of the suite, by column (the last
    one of a type wins)."""
    rules: dict[str, ColumnRules] = {}
    for check in suite.expectations if suite is not None else []:
        if not isinstance(check, NotNullCheck | BetweenCheck | InSetCheck):
            continue
        rule = Rule(1.0 - check.mostly, check.severity)
        column = rules.setdefault(check.column, ColumnRules())
        if isinstance(check, NotNullCheck):
            column.not_null = rule
        elif isinstance(check, BetweenCheck):
            column.between, column.low, column.high = rule, check.min, check.max
        else:
            column.in_set, column.values = rule, {_spelling(v) for v in check.values}
    return rules


class ColumnQuality(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    kind: str
    rows: int
    nulls: int
    null_rate: float
    training_null_rate: float
    allowed_null_rate: float
    # numbers: values outside [low, high] (None: open side); None when not known
    low: float | None = None
    high: float | None = None
    below: int | None = None
    above: int | None = None
    out_of_range_rate: float | None = None
    estimated: bool = False  # out of range read from the outer bins (a window folded before)
    # categories: values the training data (or the suite) did not have
    unseen: int | None = None
    unseen_category_rate: float | None = None
    unseen_categories: list[dict[str, Any]] = []
    issues: list[str] = []
    failed: bool = False


class WindowQuality(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    start: datetime
    end: datetime
    rows: int
    bounds: str  # where the limits come from: "training data" or "suite NAME@N"
    columns: list[ColumnQuality]
    failed_columns: list[str]
    failed: bool
    thresholds: dict[str, Any]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _judge(
    what: str, rate: float, allowed: float, tolerance: float, rule: Rule | None
) -> tuple[str | None, bool]:
    """An issue when ``rate`` is above ``allowed`` + ``tolerance``; whether it fails."""
    limit = allowed + tolerance
    if rate <= limit:
        return None, False
    warn = rule is not None and rule.severity == "warn"
    note = f"{what} {rate:.2%} > {limit:.2%}" + (" (warn)" if warn else "")
    return note, not warn


def assess_numeric(
    name: str,
    ref: NumericSummary,
    cur: NumericSummary,
    rules: ColumnRules,
    limits: QualityThresholds,
) -> ColumnQuality:
    rows = cur.n + cur.nulls
    training_null = ref.nulls / max(ref.n + ref.nulls, 1)
    allowed_null = rules.not_null.allowed if rules.not_null is not None else training_null
    below, above, estimated = cur.below, cur.above, False
    if (below is None or above is None) and (cur.low, cur.high) == (
        float(cur.edges[0]),
        float(cur.edges[-1]),
    ):
        # folded before out-of-range counting: the bins beyond the reference's extremes
        # (the top one also holds values equal to the maximum)
        below, above, estimated = int(cur.counts[0]), int(cur.counts[-1]), True
    base: dict[str, Any] = {
        "column": name,
        "kind": "numeric",
        "rows": rows,
        "nulls": cur.nulls,
        "null_rate": cur.nulls / max(rows, 1),
        "training_null_rate": training_null,
        "allowed_null_rate": allowed_null,
        "low": _finite(cur.low),
        "high": _finite(cur.high),
        "below": below,
        "above": above,
        "estimated": estimated,
    }
    if rows == 0:
        return ColumnQuality(**base, issues=["no rows"])
    issues, failed = [], False
    note, bad = _judge(
        "null rate", base["null_rate"], allowed_null, limits.null_rate, rules.not_null
    )
    if note:
        issues.append(note)
        failed |= bad
    if below is not None and above is not None:
        rate = (below + above) / rows
        base["out_of_range_rate"] = rate
        allowed = rules.between.allowed if rules.between is not None else 0.0
        note, bad = _judge("out of range", rate, allowed, limits.out_of_range_rate, rules.between)
        if note:
            issues.append(f"{note} ({below:,} below, {above:,} above)")
            failed |= bad
    else:
        issues.append("out of range not counted in this window (folded before the limits)")
    return ColumnQuality(**base, issues=issues, failed=failed)


def assess_categorical(
    name: str,
    ref: CategoricalSummary,
    cur: CategoricalSummary,
    rules: ColumnRules,
    limits: QualityThresholds,
) -> ColumnQuality:
    rows = cur.n
    nulls = cur.counts.get(NULL_CATEGORY, 0)
    training_null = ref.counts.get(NULL_CATEGORY, 0) / max(ref.n, 1)
    allowed_null = rules.not_null.allowed if rules.not_null is not None else training_null
    known: set[str] | None
    if rules.values is not None:
        known = rules.values
    elif OTHER in ref.counts:
        known = None  # the training data had more categories than a summary keeps
    else:
        known = set(ref.counts)
    base: dict[str, Any] = {
        "column": name,
        "kind": "categorical",
        "rows": rows,
        "nulls": nulls,
        "null_rate": nulls / max(rows, 1),
        "training_null_rate": training_null,
        "allowed_null_rate": allowed_null,
    }
    if rows == 0:
        return ColumnQuality(**base, issues=["no rows"])
    issues, failed = [], False
    note, bad = _judge(
        "null rate", base["null_rate"], allowed_null, limits.null_rate, rules.not_null
    )
    if note:
        issues.append(note)
        failed |= bad
    if known is None:
        issues.append("unseen categories not judged: the training data has too many categories")
        return ColumnQuality(**base, issues=issues, failed=failed)
    unseen = {k: v for k, v in cur.counts.items() if k != NULL_CATEGORY and k not in known}
    count = sum(unseen.values())
    rate = count / rows
    top = sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_UNSEEN]
    allowed = rules.in_set.allowed if rules.in_set is not None else 0.0
    note, bad = _judge(
        "unseen categories", rate, allowed, limits.unseen_category_rate, rules.in_set
    )
    if note:
        issues.append(f"{note} ({', '.join(k for k, _ in top)})")
        failed |= bad
    return ColumnQuality(
        **base,
        unseen=count,
        unseen_category_rate=rate,
        unseen_categories=[{"value": k, "count": v} for k, v in top],
        issues=issues,
        failed=failed,
    )


def assess(
    profile: Profile,
    current: Summary,
    columns: list[str],
    rules: dict[str, ColumnRules],
    thresholds: QualityThresholds,
) -> list[ColumnQuality]:
    """Each of ``columns`` (the inputs) of the current window against the profile."""
    unknown = set(thresholds.columns) - set(columns)
    if unknown:
        raise InvalidInput(f"quality thresholds name column(s) not checked: {sorted(unknown)}")
    out = []
    for name in columns:
        ref, cur = profile.columns.get(name), current.columns.get(name)
        column_rules = rules.get(name, ColumnRules())
        limits = thresholds.for_column(name)
        if isinstance(ref, NumericSummary) and isinstance(cur, NumericSummary):
            out.append(assess_numeric(name, ref, cur, column_rules, limits))
        elif isinstance(ref, CategoricalSummary) and isinstance(cur, CategoricalSummary):
            out.append(assess_categorical(name, ref, cur, column_rules, limits))
    return out
