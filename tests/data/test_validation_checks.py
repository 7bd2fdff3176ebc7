"""Validation at scale: every check type passing and failing, severities, suites as YAML, the
distribution checks, quarantine reasons, the HTML report, and the kernels against a reference."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings

from mloop.core.errors import InvalidInput, NotFound
from mloop.data import (
    BetweenCheck,
    ColumnTypeCheck,
    DistributionCheck,
    FreshnessCheck,
    InSetCheck,
    NotNullCheck,
    ReferenceStats,
    RegexCheck,
    RowCountCheck,
    SqlCheck,
    Suite,
    UniqueCheck,
    ValidationReport,
    infer_suite,
    render_html,
    split_frame,
    validate_frame,
)
from mloop.data.distribution import Reference
from mloop.data.validation import REASON_COLUMN
from mloop.workspace import Workspace


def orders(n: int = 200) -> pl.DataFrame:
    """``n`` clean orders: id, sku like ``AB-0001``, price × qty = total, a city, a recent
    timestamp and a day (times relative to now, when called: a long suite must not age them)."""
    now = dt.datetime.now(dt.UTC)
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "sku": [f"AB-{i:04d}" for i in range(n)],
            "price": [1.0 + i % 10 for i in range(n)],
            "qty": [1 + i % 3 for i in range(n)],
            "city": [("NY", "LA", "SF")[i % 3] for i in range(n)],
            "at": [now - dt.timedelta(minutes=i) for i in range(n)],
            "day": [now.date() - dt.timedelta(days=i % 2) for i in range(n)],
        }
    ).with_columns(total=pl.col("price") * pl.col("qty"))


def broken(frame: pl.DataFrame, rows: dict[int, dict[str, Any]]) -> pl.DataFrame:
    """``frame`` with the given cells replaced, row by row."""
    out = frame.to_dicts()
    for i, changes in rows.items():
        out[i] = {**out[i], **changes}
    return pl.DataFrame(out, schema=frame.schema)


def run(frame: pl.DataFrame, *checks: Any) -> ValidationReport:
    return validate_frame(frame, Suite(name="s", expectations=list(checks)))


# one good and one bad frame per check type: (check, what to break, failing rows)
OLD = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
CASES: list[tuple[Any, dict[int, dict[str, Any]], int]] = [
    (ColumnTypeCheck(column="price", expected="float"), {}, 0),
    (NotNullCheck(column="city"), {3: {"city": None}}, 1),
    (BetweenCheck(column="price", min=1, max=10), {0: {"price": 11.0}, 1: {"price": -1.0}}, 2),
    (InSetCheck(column="city", values=["NY", "LA", "SF"]), {5: {"city": "XX"}}, 1),
    (UniqueCheck(column="id"), {7: {"id": 8}}, 2),
    (RegexCheck(column="sku", pattern=r"^AB-\d{4}$"), {2: {"sku": "AB-12"}, 4: {"sku": "x"}}, 2),
    (SqlCheck(expression="price * qty = total"), {9: {"total": 0.5}}, 1),
    (RowCountCheck(min=150, max=250), {}, 0),
    (FreshnessCheck(column="at", max_age="1d"), {}, 0),
    (FreshnessCheck(column="day", max_age="3d"), {}, 0),
]


@pytest.mark.parametrize(("check", "breaks", "failing"), CASES, ids=lambda v: str(v)[:40])
def test_each_check_passes_on_good_rows_and_fails_on_bad_ones(
    check: Any, breaks: dict[int, dict[str, Any]], failing: int
) -> None:
    good = run(orders(), check)
    assert good.success, good.checks[0].message
    assert (good.failed_checks, good.failing_rows, good.checks[0].failing_rows) == (0, 0, 0)
    if not breaks:
        return
    bad = run(broken(orders(), breaks), check)
    assert not bad.success
    assert bad.failed_checks == 1
    assert bad.checks[0].failing_rows == failing
    assert bad.failing_rows == failing
    assert [r["_row"] for r in bad.checks[0].sample] == sorted(
        {*breaks, *([7, 8] if isinstance(check, UniqueCheck) else [])}
    )


@pytest.mark.parametrize(
    ("check", "frame", "message"),
    [
        (ColumnTypeCheck(column="price", expected="integer"), None, "is float, expected integer"),
        (RowCountCheck(min=201), None, "200 rows; expected row count between 201 and None"),
        (RowCountCheck(max=199), None, "expected row count between None and 199"),
        (
            FreshnessCheck(column="at", max_age="1h"),
            lambda: orders().with_columns(at=pl.col("at") - dt.timedelta(hours=2)),
            "is 2.0h old; expected within 1h",
        ),
        (
            FreshnessCheck(column="at", max_age="2d"),
            lambda: orders().with_columns(at=pl.col("at") - dt.timedelta(days=3)),
            "is 3.0d old; expected within 2d",
        ),
        (FreshnessCheck(column="day", max_age="12h"), lambda: orders().head(0), "day: no values"),
    ],
)
def test_table_checks_fail_the_whole_table(
    check: Any, frame: Callable[[], pl.DataFrame] | None, message: str
) -> None:
    data = orders() if frame is None else frame()
    report = run(data, check)
    assert not report.success
    assert message in report.checks[0].message
    assert report.failing_rows == data.height
    split = split_frame(data, Suite(name="s", expectations=[check]))
    assert split.valid.height == 0
    assert split.failed.height == data.height


def test_freshness_reads_naive_times_as_utc_and_aware_ones_as_they_are() -> None:
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    naive = pl.DataFrame({"at": [recent.replace(tzinfo=None)]})
    aware = pl.DataFrame({"at": [recent]}).with_columns(
        pl.col("at").dt.convert_time_zone("Asia/Tokyo")
    )
    for frame in (naive, aware):
        report = run(frame, FreshnessCheck(column="at", max_age="1h"))
        assert report.success, report.checks[0].message
        assert 1790 < report.checks[0].observed["age_seconds"] < 1900
        assert not run(frame, FreshnessCheck(column="at", max_age="20m")).success
    assert run(naive, FreshnessCheck(column="at", max_age=3600)).success  # seconds as a number


def test_checks_that_do_not_fit_the_column_are_reported_not_raised() -> None:
    report = run(
        orders(),
        RegexCheck(column="price", pattern="x"),
        FreshnessCheck(column="city", max_age="1h"),
        SqlCheck(expression="nope > 1"),
        SqlCheck(expression="price * qty"),
        DistributionCheck(
            column="city",
            method="ks",
            reference_stats=ReferenceStats(rows=1, categories={"NY": 1.0}),
        ),
    )
    assert [(c.success, c.failing_rows) for c in report.checks] == [(False, 200)] * 5
    messages = [c.message for c in report.checks]
    assert messages[0] == "not evaluated: column 'price' is float, not text"
    assert messages[1] == "not evaluated: column 'city' is string, not a datetime or date"
    assert messages[2].startswith("sql: nope > 1: not evaluated: Binder Error")
    assert '"nope" not found' in messages[2]
    assert messages[3] == "sql: price * qty: not evaluated: the expression is DOUBLE, not a boolean"
    assert "KS compares numbers" in messages[4]


def test_nulls_pass_regex_and_sql_checks() -> None:
    frame = pl.DataFrame({"code": ["A1", None, "zz"], "a": [1, None, 3], "b": [1, 2, None]})
    report = run(frame, RegexCheck(column="code", pattern="^A"), SqlCheck(expression="a = b"))
    assert [c.failing_rows for c in report.checks] == [1, 0]
    strict = run(frame, SqlCheck(expression="coalesce(a = b, false)"))
    assert strict.checks[0].failing_rows == 2


def test_sql_checks_cannot_reach_files_or_break_out_of_the_expression(tmp_path: Any) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n1\n")
    frame = pl.DataFrame({"x": [1, 2]})
    report = run(frame, SqlCheck(expression=f"x < (SELECT max(x) FROM read_csv('{secret}'))"))
    assert not report.success
    assert "not evaluated" in report.checks[0].message
    assert "disabled by configuration" in report.checks[0].message
    for sneaky in ("true) FROM data UNION SELECT (false", "x = 1; DROP TABLE data"):
        with pytest.raises(InvalidInput, match="bad SQL expression"):
            Suite.parse({"name": "s", "expectations": [{"type": "sql", "expression": sneaky}]})


# -- severity ---------------------------------------------------------------------------------


def test_a_warning_is_reported_but_never_fails_the_suite_nor_quarantines() -> None:
    bad = broken(orders(), {0: {"price": 99.0}, 1: {"city": "XX"}}).with_columns(
        at=pl.col("at") - dt.timedelta(hours=1)
    )
    warn = BetweenCheck(column="price", min=1, max=10, severity="warn")
    error = InSetCheck(column="city", values=["NY", "LA", "SF"])
    stale = FreshnessCheck(column="at", max_age="1s", severity="warn")

    only_warnings = run(bad, warn, stale)
    assert only_warnings.success
    assert (only_warnings.failed_checks, only_warnings.warnings) == (0, 2)
    assert only_warnings.failing_rows == 0
    assert [(c.severity, c.success) for c in only_warnings.checks] == [
        ("warn", False),
        ("warn", False),
    ]
    split = split_frame(bad, Suite(name="s", expectations=[warn, stale]))
    assert (split.valid.height, split.failed.height) == (200, 0)

    both = split_frame(bad, Suite(name="s", expectations=[warn, stale, error]))
    assert not both.report.success
    assert (both.report.failed_checks, both.report.warnings, both.report.failing_rows) == (1, 2, 1)
    assert both.failed.get_column(REASON_COLUMN).to_list() == ["city: in {NY, LA, SF}"]
    assert both.valid.height == 199


def test_a_warned_column_type_does_not_stop_the_other_checks() -> None:
    frame = pl.DataFrame({"x": [1.5, 2.5, 99.0]})
    warned = run(
        frame,
        ColumnTypeCheck(column="x", expected="integer", severity="warn"),
        BetweenCheck(column="x", min=0, max=10),
    )
    assert [(c.success, c.failing_rows) for c in warned.checks] == [(False, 3), (False, 1)]
    assert (warned.failed_checks, warned.warnings, warned.failing_rows) == (1, 1, 1)
    strict = run(
        frame,
        ColumnTypeCheck(column="x", expected="integer"),
        BetweenCheck(column="x", min=0, max=10),
    )
    assert strict.checks[1].message == "not evaluated: column 'x' has the wrong type"
    assert strict.failing_rows == 3


def test_the_default_severity_stays_out_of_stored_bodies() -> None:
    """Suites stored before severities existed load as they were and hash the same."""
    old_body = {
        "expectations": [
            {"type": "between", "column": "x", "min": 0.0, "max": 1.0, "mostly": 1.0},
            {"type": "row_count", "column": None, "min": 1, "max": None},
        ],
        "allow_extra_columns": True,
    }
    suite = Suite.parse({"name": "old", **old_body})
    assert all(e.severity == "error" for e in suite.expectations)
    assert suite.body() == old_body
    warned = Suite.parse(
        {"name": "s", "expectations": [{"type": "unique", "column": "x", "severity": "warn"}]}
    )
    assert warned.body()["expectations"] == [{"type": "unique", "column": "x", "severity": "warn"}]


# -- quarantine reasons -----------------------------------------------------------------------


def test_each_quarantined_row_lists_every_check_it_fails() -> None:
    frame = broken(
        orders(20),
        {
            0: {"sku": "bad", "total": 0.0, "city": "XX"},
            1: {"sku": "bad"},
            2: {"price": None, "total": 0.0},
            3: {"id": 4},
        },
    )
    suite = Suite(
        name="s",
        expectations=[
            NotNullCheck(column="price"),
            UniqueCheck(column="id"),
            InSetCheck(column="city", values=["NY", "LA", "SF"]),
            RegexCheck(column="sku", pattern="^AB-"),
            SqlCheck(expression="price * qty = total"),
            BetweenCheck(column="qty", min=1, max=2, severity="warn"),  # never a reason
        ],
    )
    split = split_frame(frame, suite, "orders")
    reasons = dict(split.failed.select("sku", REASON_COLUMN).iter_rows())
    assert split.failed.get_column("id").to_list() == [0, 1, 2, 4, 4]
    assert split.failed.select(REASON_COLUMN).to_series().to_list() == [
        "city: in {NY, LA, SF}; sku: matches /^AB-/; sql: price * qty = total",
        "sku: matches /^AB-/",
        "price: not null",  # a null makes the SQL expression null: it passes
        "id: unique",
        "id: unique",
    ]
    assert reasons["bad"]  # both 'bad' rows are there
    assert split.valid.height == 15
    assert split.valid.columns == frame.columns
    assert (split.report.failing_rows, split.report.warnings) == (5, 1)
    together = pl.concat([split.valid, split.failed.drop(REASON_COLUMN)]).sort("at")
    assert together.equals(frame.sort("at"))


# -- suites as YAML ---------------------------------------------------------------------------


def test_a_suite_round_trips_through_yaml_and_hand_edits_load() -> None:
    frame = orders()
    inferred = infer_suite(frame, "orders", "v-1", distribution="psi")
    text = inferred.to_yaml()
    assert text.startswith("# An mloop expectation suite")
    assert Suite.from_yaml(text) == inferred

    # a person edits it: a tighter range, a regex, a SQL rule, a warning, a row count
    edited = text.replace("allow_extra_columns: true", "allow_extra_columns: false")
    edited += (
        "- {type: regex, column: sku, pattern: '^AB-\\d+$'}\n"
        "- type: sql\n"
        "  expression: price * qty = total  # the invoice adds up\n"
        "- {type: row_count, min: 100, severity: warn}\n"
        "- {type: freshness, column: at, max_age: 1d 12h}\n"
    )
    loaded = Suite.from_yaml(edited)
    assert loaded.allow_extra_columns is False
    assert loaded.expectations[: len(inferred.expectations)] == inferred.expectations
    assert loaded.expectations[len(inferred.expectations) :] == [
        RegexCheck(column="sku", pattern=r"^AB-\d+$"),
        SqlCheck(expression="price * qty = total"),
        RowCountCheck(min=100, severity="warn"),
        FreshnessCheck(column="at", max_age="1d 12h"),
    ]
    assert loaded.expectations[-1].max_age_seconds == 129600  # type: ignore[union-attr]
    report = validate_frame(frame, loaded)
    assert report.success, [c.message for c in report.checks if not c.success]
    # the distribution checks inferred from this data are warnings that pass on it
    drift = [c for c in report.checks if c.expectation["type"] == "distribution"]
    assert {c.column for c in drift} == {"price", "qty", "city", "total"}
    assert all(c.severity == "warn" and c.success for c in drift)


def test_a_yaml_suite_takes_its_name_from_the_file_when_it_has_none() -> None:
    suite = Suite.from_yaml("expectations: [{type: not_null, column: a}]", name="from-file")
    assert suite.name == "from-file"
    assert Suite.from_yaml('{"name": "json", "expectations": []}').name == "json"  # JSON is YAML


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: s\n  expectations: [", r"invalid suite YAML at line 2, column \d+"),
        ("- just\n- a list\n", "expected a mapping with name and expectations, not list"),
        ("name: s\nexpectations: [{type: nope, column: a}]", "Input tag 'nope' found"),
        (
            "name: s\nexpectations: [{type: regex, column: a, pattern: '(?<=x)y'}]",
            r"expectations\.0\.regex\.pattern: bad regex '\(\?<=x\)y': .*look-around",
        ),
        (
            "name: s\nexpectations: [{type: regex, column: a, pattern: '[a-'}]",
            "bad regex",
        ),
        (
            "name: s\nexpectations: [{type: sql, expression: 'price * '}]",
            r"expectations\.0\.sql\.expression: bad SQL expression 'price \* ': Parser Error",
        ),
        ("name: s\nexpectations: [{type: sql, expression: ''}]", "at least 1 character"),
        (
            "name: s\nexpectations: [{type: freshness, column: a, max_age: soon}]",
            "max_age 'soon' is not a duration",
        ),
        (
            "name: s\nexpectations: [{type: distribution, column: a}]",
            "give either reference",
        ),
        (
            "name: s\nexpectations: [{type: distribution, column: a, reference: x@1, "
            "reference_stats: {rows: 1, categories: {a: 1}}}]",
            "give either reference",
        ),
        (
            "name: s\nexpectations: [{type: distribution, column: a, reference_stats: "
            "{rows: 3, edges: [1, 2], fractions: [1]}}]",
            "fractions needs one more entry than edges",
        ),
        ("name: s\nexpectations: [{type: not_null, column: a, severity: fatal}]", "severity"),
        ("name: s\nexpectations: [{type: unique, column: a, mostly: 0.5}]", "mostly"),
        ("name: s\nallow_extra_column: false\nexpectations: []", "allow_extra_column: Extra"),
    ],
)
def test_bad_suites_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Suite.from_yaml(text)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_stored_yaml_suites_version_by_content(ws: Workspace) -> None:
    text = "name: orders\nexpectations:\n- {type: regex, column: sku, pattern: '^AB-'}\n"
    first = ws.validation.apply_suite(text)
    assert (first.name, first.version) == ("orders", 1)
    assert ws.validation.apply_suite(text + "# a comment changes nothing\n") == first
    second = ws.validation.apply_suite(text.replace("^AB-", "^AB-\\d"))
    assert second.version == 2
    assert ws.validation.get_suite("orders@1") == first
    renamed = ws.validation.apply_suite(text, name="other")
    assert (renamed.name, renamed.version) == ("other", 1)
    with pytest.raises(InvalidInput, match="bad regex"):
        ws.validation.apply_suite(text.replace("^AB-", "(?=x)"))
    assert ws.validation.get_suite("orders").version == 2


# -- distributions ----------------------------------------------------------------------------


def _normal(n: int, shift: float, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "k": rng.integers(0, 5, n) + (2 if shift else 0),
            "c": np.array(["a", "b", "c"])[
                rng.choice(3, n, p=[0.6, 0.3, 0.1] if not shift else [0.2, 0.3, 0.5])
            ],
        }
    )


@pytest.mark.parametrize("backend", ["sqlite"])
def test_distribution_checks_against_a_reference_version(ws: Workspace) -> None:
    reference = ws.datasets.ingest(_normal(5000, 0.0, seed=1), name="ref")
    same, shifted = _normal(5000, 0.0, seed=2), _normal(5000, 1.0, seed=3)
    suite = Suite(
        name="drift",
        expectations=[
            DistributionCheck(column="x", method="ks", reference="ref@1"),
            DistributionCheck(column="x", method="psi", reference="ref@1"),
            DistributionCheck(column="k", method="psi", reference="ref@1", threshold=0.1),
            DistributionCheck(column="c", method="psi", reference="ref@1"),
            DistributionCheck(column="y", method="ks", reference="ref@1", reference_column="x"),
        ],
    )
    calm = ws.validation.validate(same.with_columns(y=pl.col("x")), suite)
    assert calm.success, [c.message for c in calm.checks if not c.success]
    stats = [c.observed["statistic"] for c in calm.checks]
    assert max(stats[0], stats[1], stats[3]) < 0.05
    assert calm.checks[0].observed["p_value"] > 0.01
    assert calm.checks[0].observed["reference_rows"] == 5000

    drifted = ws.validation.validate(shifted.with_columns(y=pl.col("x")), suite)
    assert not drifted.success
    assert [c.success for c in drifted.checks] == [False] * 5
    assert drifted.checks[0].observed["statistic"] > 0.3
    assert drifted.checks[0].message.startswith("x: ks vs ref@1 ≤ 0.1: ks 0.")
    assert drifted.failing_rows == 5000  # a table-level failure: the batch as a whole

    # the reference is read once and kept: the same Reference object serves the next batch
    check = suite.expectations[0]
    assert isinstance(check, DistributionCheck)
    assert ws.validation.reference(check) is ws.validation.reference(check)
    # ... by the streaming split too
    split = ws.validation.split(shifted.with_columns(y=pl.col("x")), suite, "batch-7")
    assert (split.report.dataset, split.valid.height, split.failed.height) == ("batch-7", 0, 5000)

    with pytest.raises(NotFound, match="'nope' does not exist"):
        ws.validation.validate(
            same, Suite(name="s", expectations=[DistributionCheck(column="x", reference="nope@1")])
        )
    with pytest.raises(InvalidInput, match=f"{reference.ref} has no column 'zz'"):
        ws.validation.validate(
            same,
            Suite(
                name="s",
                expectations=[
                    DistributionCheck(column="x", reference="ref@1", reference_column="zz")
                ],
            ),
        )


def test_a_reference_version_without_a_workspace_is_not_evaluated() -> None:
    check = DistributionCheck(column="x", reference="ref@1")
    report = run(_normal(100, 0.0, seed=1), check)
    assert not report.success
    assert "needs a workspace" in report.checks[0].message


def test_stored_reference_stats_judge_like_the_reference_data() -> None:
    ref = _normal(20_000, 0.0, seed=1)
    suite = infer_suite(ref, "s", distribution="ks")
    kinds = {(e.column, e.method) for e in suite.expectations if isinstance(e, DistributionCheck)}
    assert kinds == {("x", "ks"), ("k", "ks"), ("c", "psi")}  # KS is for numbers
    same = validate_frame(_normal(20_000, 0.0, seed=2), suite)
    assert all(c.success for c in same.checks), [c.message for c in same.checks]
    drifted = validate_frame(_normal(20_000, 0.5, seed=3), suite)
    drift = [c for c in drifted.checks if c.expectation["type"] == "distribution"]
    assert {c.column for c in drift if not c.success} == {"x", "k", "c"}
    assert {c.severity for c in drift} == {"warn"}  # inferred distribution checks warn
    assert drifted.warnings == 3
    # the KS statistic from the stored points is close to the exact one from the raw values
    stored = next(
        e for e in suite.expectations if isinstance(e, DistributionCheck) and e.column == "x"
    )
    exact = DistributionCheck(column="x", method="ks", reference="ref@1", severity="warn")
    both = validate_frame(
        _normal(20_000, 0.5, seed=3),
        Suite(name="s", expectations=[stored, exact]),
        references=lambda check: Reference.of_series(ref.get_column(check.column)),
    )
    approx, full = (c.observed["statistic"] for c in both.checks)
    assert full > 0.15
    assert abs(approx - full) < 0.01


def test_psi_on_categories_sees_new_values() -> None:
    stats = ReferenceStats(rows=100, categories={"a": 0.5, "b": 0.5})
    check = DistributionCheck(column="c", reference_stats=stats)
    calm = run(pl.DataFrame({"c": ["a", "b"] * 50}), check)
    assert calm.success
    assert calm.checks[0].observed["statistic"] == pytest.approx(0.0)
    new = run(pl.DataFrame({"c": ["a", "b", "z", "z"] * 25}), check)
    assert not new.success
    assert new.checks[0].observed["new_values"] == ["z"]


# -- the HTML report --------------------------------------------------------------------------


def test_the_html_report_is_one_page_with_the_failing_checks_first() -> None:
    frame = broken(orders(), {0: {"city": "<script>alert(1)</script>"}, 1: {"price": 50.0}})
    report = validate_frame(
        frame,
        Suite(
            name="orders",
            version=3,
            expectations=[
                NotNullCheck(column="id"),
                InSetCheck(column="city", values=["NY", "LA", "SF"]),
                BetweenCheck(column="price", min=1, max=10, severity="warn"),
            ],
        ),
        "orders@2",
    )
    page = render_html(report)
    assert page.startswith("<!doctype html>")
    assert "<script>" not in page  # data is escaped, and the page runs nothing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search("https?://", page)  # nothing fetched
    for part in ("FAILED", "orders@3", "200 rows"):
        assert part in page
    failing = page.index("city: in {NY, LA, SF}: 1 of 200 rows fail")
    warned = page.index("price: between 1 and 10: 1 of 200 rows fail")
    passing = page.index("id: not null: all rows pass")
    assert failing < warned < passing
    assert re.search(r"failed \(error\) <b>1</b>", page)
    assert re.search(r"warnings <b>1</b>", page)
    ok = render_html(validate_frame(orders(), Suite(name="s", expectations=[])))
    assert "passed" in ok
    assert "Failing checks" not in ok


# -- the kernels against a plain Python reference --------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ints=st.lists(st.none() | st.integers(-5, 5), min_size=0, max_size=60),
    texts=st.lists(st.none() | st.sampled_from(["a", "b", "ab", "ba", "", "c1"]), max_size=60),
    floats=st.lists(
        st.none() | st.floats(-10, 10) | st.sampled_from([math.nan, math.inf, -math.inf]),
        max_size=60,
    ),
    big_set=st.booleans(),
    sort=st.booleans(),
)
def test_row_checks_count_what_a_python_loop_counts(
    ints: list[int | None],
    texts: list[str | None],
    floats: list[float | None],
    big_set: bool,
    sort: bool,
) -> None:
    n = min(len(ints), len(texts), len(floats))
    ints, texts, floats = ints[:n], texts[:n], floats[:n]
    if sort:  # ids are often increasing: the fast path for unique must agree too
        ints = sorted(i for i in ints if i is not None) + [None] * ints.count(None)
    frame = pl.DataFrame(
        {"i": ints, "t": texts, "f": floats},
        schema={"i": pl.Int64, "t": pl.String, "f": pl.Float64},
    )
    allowed = ["a", "b", ""] + ([f"z{k}" for k in range(30)] if big_set else [])
    report = run(
        frame,
        UniqueCheck(column="i"),
        UniqueCheck(column="t"),
        InSetCheck(column="t", values=allowed),
        BetweenCheck(column="f", min=-1, max=1),
        BetweenCheck(column="i", min=-2.5, max=3.5),
        RegexCheck(column="t", pattern="^a"),
        InSetCheck(column="i", values=[1, "2", 3.0, True]),
    )

    def repeated(values: list[Any]) -> int:
        counts = Counter(v for v in values if v is not None)
        return sum(c for c in counts.values() if c > 1)

    expected = [
        repeated(ints),
        repeated(texts),
        sum(t is not None and t not in allowed for t in texts),
        sum(f is not None and not (-1 <= f <= 1) for f in floats),
        sum(i is not None and not (-2.5 <= i <= 3.5) for i in ints),
        sum(t is not None and not t.startswith("a") for t in texts),
        sum(i is not None and i not in (1, 2) for i in ints),  # "3.0" and "true" spell no int
    ]
    assert [c.failing_rows for c in report.checks] == expected
    failing_rows = {
        k
        for k in range(n)
        if (ints[k] is not None and (Counter(ints)[ints[k]] > 1 or not -2.5 <= ints[k] <= 3.5))
        or (ints[k] is not None and ints[k] not in (1, 2))
        or (texts[k] is not None and (Counter(texts)[texts[k]] > 1 or texts[k] not in allowed))
        or (texts[k] is not None and not texts[k].startswith("a"))
        or (floats[k] is not None and not (-1 <= floats[k] <= 1))
    }
    assert report.failing_rows == len(failing_rows)
    samples = [r["_row"] for c in report.checks for r in c.sample]
    assert all(0 <= s < n for s in samples)
    json.dumps(report.model_dump(mode="json"))  # the report is plain JSON
