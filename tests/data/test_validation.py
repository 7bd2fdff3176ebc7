"""Expectation suites: inference, storage, validation reports, ``mostly`` and quarantine."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.data import (
    BetweenCheck,
    ColumnTypeCheck,
    InSetCheck,
    NotNullCheck,
    RowCountCheck,
    Suite,
    UniqueCheck,
    ValidationReport,
    infer_suite,
)
from mloop.data.datasets import QUARANTINE_COLUMNS
from mloop.data.streams import consumer as stream_consumer
from mloop.data.validation import REASON_COLUMN
from mloop.workspace import Workspace

State = Callable[[Workspace], Any]

# the subject of most tests here is not the metadata backend: they run on SQLite only
embedded = pytest.mark.parametrize("backend", ["sqlite"])


def failed(report: ValidationReport) -> dict[str, int]:
    """``{check message without its row counts: failing rows}`` of the checks that failed."""
    return {
        re.sub(r": \d+ of \d+ rows fail$", "", r.message): r.failing_rows
        for r in report.checks
        if not r.success
    }


def check(report: ValidationReport, type_: str, column: str) -> Any:
    found = [r for r in report.checks if r.expectation["type"] == type_ and r.column == column]
    assert len(found) == 1, (type_, column)
    return found[0]


def broken(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (the ``sales`` rows) broken on purpose, row by row:

    rows 0-2: negative amount; row 2 also an unknown city; row 10: unknown city;
    row 20: null id; row 31 takes id 30 (ids 30 twice).
    """
    i = pl.int_range(pl.len())
    return frame.with_columns(
        pl.when(i < 3).then(-5.0).otherwise(pl.col("amount")).alias("amount"),
        pl.when(i.is_in([2, 10])).then(pl.lit("XX")).otherwise(pl.col("city")).alias("city"),
        pl.when(i == 20).then(None).when(i == 31).then(30).otherwise(pl.col("id")).alias("id"),
    )


# what ``broken`` breaks, against the suite inferred from ``sales``
BROKEN_FAILURES = {
    "id: not null": 1,
    "id: unique": 2,
    "amount: between 0 and 54.9": 3,
    "city: in {LA, NY, SF}": 2,
}
BROKEN_ROWS = {0, 1, 2, 10, 20, 30, 31}


@pytest.fixture
def sales_suite(ws: Workspace, sales_frame: pl.DataFrame) -> Suite:
    ws.datasets.ingest(sales_frame, name="sales")
    return ws.validation.infer_suite("sales@1")


# -- inference ------------------------------------------------------------------------------


def test_inferred_expectations(ws: Workspace) -> None:
    n = 120
    frame = pl.DataFrame(
        {
            "id": list(range(1000, 1000 + n)),
            "code": [f"C{i:04d}" for i in range(n)],
            "amount": [10.0 + (i % 91) for i in range(n)],  # 10 .. 100
            "qty": [1 + i % 7 for i in range(n)],  # 1 .. 7
            "delta": [-12.0 + (i % 11) for i in range(n)],  # -12 .. -2
            "score": [-5 + (i % 11) for i in range(n)],  # -5 .. 5
            "city": [("NY", "LA", "SF")[i % 3] for i in range(n)],
            "flag": [i % 2 == 0 for i in range(n)],
            "note": [None if i % 4 == 0 else f"n{i % 60}" for i in range(n)],  # 45 values
            "text": [f"t{i % 60}" for i in range(n)],  # 60 values
            "at": [dt.datetime(2024, 1, 1) + dt.timedelta(hours=i) for i in range(n)],
        }
    )
    version = ws.datasets.ingest(frame, name="orders")

    suite = ws.validation.infer_suite("orders")

    assert (suite.name, suite.version, suite.inferred_from) == ("orders", 1, version.id)
    assert [e.model_dump() for e in suite.expectations] == [
        e.model_dump()
        for e in [
            ColumnTypeCheck(column="id", expected="integer"),
            NotNullCheck(column="id"),
            UniqueCheck(column="id"),  # id-like: no range
            ColumnTypeCheck(column="code", expected="string"),
            NotNullCheck(column="code"),
            UniqueCheck(column="code"),  # id-like: no categories
            ColumnTypeCheck(column="amount", expected="float"),
            NotNullCheck(column="amount"),
            BetweenCheck(column="amount", min=1.0, max=109.0),  # 10% of 90 each side
            ColumnTypeCheck(column="qty", expected="integer"),
            NotNullCheck(column="qty"),
            BetweenCheck(column="qty", min=0.0, max=8.0),  # 0.4 .. 7.6, floored/ceiled
            ColumnTypeCheck(column="delta", expected="float"),
            NotNullCheck(column="delta"),
            BetweenCheck(column="delta", min=-13.0, max=-1.0),
            ColumnTypeCheck(column="score", expected="integer"),
            NotNullCheck(column="score"),
            BetweenCheck(column="score", min=-6.0, max=6.0),
            ColumnTypeCheck(column="city", expected="string"),
            NotNullCheck(column="city"),
            InSetCheck(column="city", values=["LA", "NY", "SF"]),
            ColumnTypeCheck(column="flag", expected="boolean"),
            NotNullCheck(column="flag"),
            InSetCheck(column="flag", values=[False, True]),
            ColumnTypeCheck(column="note", expected="string"),  # nulls: no not_null
            InSetCheck(column="note", values=sorted({f"n{i % 60}" for i in range(n) if i % 4})),
            ColumnTypeCheck(column="text", expected="string"),
            NotNullCheck(column="text"),  # more than 50 values: no categories
            ColumnTypeCheck(column="at", expected="datetime"),
            NotNullCheck(column="at"),
        ]
    ]
    # the ranges never cross zero
    ranges = {e.column: e for e in suite.expectations if isinstance(e, BetweenCheck)}
    assert ranges["qty"].min == 0.0
    assert ranges["delta"].max == -1.0
    # a suite passes on the data it was inferred from
    assert ws.validation.validate("orders@1", suite).success
    # it is stored, with lineage from the version and an audit record
    assert ws.validation.get_suite("orders") == suite
    edges = ws.lineage.downstream("dataset_version", version.id)
    assert [(e.dst.type, e.relation) for e in edges] == [("suite", "inferred")]
    assert [r.action for r in ws.audit.list(object_type="suite")] == ["suite.create"]


def test_ids_need_a_hundred_rows_and_categories_are_fifty_at_most() -> None:
    def kinds(frame: pl.DataFrame) -> list[tuple[str, str | None]]:
        return [(e.type, e.column) for e in infer_suite(frame, "s").expectations]

    assert ("unique", "id") in kinds(pl.DataFrame({"id": list(range(100))}))
    assert ("between", "id") in kinds(pl.DataFrame({"id": list(range(99))}))  # too few for an id
    assert ("in_set", "c") in kinds(pl.DataFrame({"c": [f"v{i % 50}" for i in range(200)]}))
    assert ("in_set", "c") not in kinds(pl.DataFrame({"c": [f"v{i % 51}" for i in range(200)]}))
    # ... and fewer than half the rows: twenty rows of ten values are not categories
    assert ("in_set", "c") not in kinds(pl.DataFrame({"c": [f"v{i % 10}" for i in range(20)]}))


def test_nan_and_infinities_do_not_make_a_suite_fail_its_own_data(sqlite_ws: Workspace) -> None:
    frame = pl.DataFrame(
        {
            "with_nan": [1.0, math.nan, 3.0],
            "with_inf": [1.0, math.inf, 3.0],
            "with_neg_inf": [-math.inf, 2.0, 3.0],
        }
    )
    suite = infer_suite(frame, "s")
    ranges = {e.column: (e.min, e.max) for e in suite.expectations if isinstance(e, BetweenCheck)}
    assert ranges == {"with_inf": (0.8, None), "with_neg_inf": (None, 3.1)}  # no "with_nan"
    assert sqlite_ws.validation.validate(frame, suite).success


_VALUE = st.one_of(
    st.none(),
    st.floats(min_value=-1e9, max_value=1e9),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    floats=st.lists(_VALUE, min_size=1, max_size=150),
    ints=st.lists(st.none() | st.integers(-(10**6), 10**6), min_size=150, max_size=150),
    words=st.lists(st.none() | st.sampled_from(["a", "b", "c"]), min_size=150, max_size=150),
)
def test_every_inferred_suite_passes_on_its_own_data(
    sqlite_ws: Workspace, floats: list[float | None], ints: list[int | None], words: list[Any]
) -> None:
    n = len(floats)
    frame = pl.DataFrame(
        {"f": floats, "i": ints[:n], "w": words[:n], "id": list(range(n))},
        schema={"f": pl.Float64, "i": pl.Int64, "w": pl.String, "id": pl.Int64},
    )
    report = sqlite_ws.validation.validate(frame, infer_suite(frame, "s"))
    assert report.success, [c.message for c in report.checks if not c.success]


# -- validation -----------------------------------------------------------------------------


@embedded
def test_clean_data_passes_in_every_form(
    ws: Workspace, tmp_path: Path, sales_suite: Suite, make_sales: Callable[[int], pl.DataFrame]
) -> None:
    fresh = make_sales(60)
    ws.datasets.ingest(fresh, name="sales")
    fresh.write_parquet(tmp_path / "fresh.parquet")
    for data, label in [
        ("sales@2", "sales@2"),
        (ws.datasets.get("sales@2"), "sales@2"),
        (fresh, None),
        (fresh.to_pandas(), None),
        (tmp_path / "fresh.parquet", str(tmp_path / "fresh.parquet")),
    ]:
        report = ws.validation.validate(data, "sales")
        assert report.success, label
        assert (report.suite, report.suite_version, report.dataset) == ("sales", 1, label)
        assert (report.rows, report.failed_checks, report.failing_rows) == (60, 0, 0)
        assert len(report.checks) == len(sales_suite.expectations)
        assert all(c.success and c.failing_rows == 0 and c.sample == [] for c in report.checks)
    amount = check(ws.validation.validate(fresh, sales_suite), "between", "amount")
    assert amount.observed == {"min": 1.0, "max": 50.0}


@embedded
def test_broken_data_fails_exactly_the_broken_checks(
    ws: Workspace, tmp_path: Path, sales_suite: Suite, sales_frame: pl.DataFrame
) -> None:
    bad = broken(sales_frame)
    ws.datasets.ingest(bad, name="sales")
    bad.write_csv(tmp_path / "bad.csv")
    as_pandas = bad.to_pandas().astype({"id": "Int64"})  # nullable ints stay ints
    for data in ("sales@2", bad, as_pandas, tmp_path / "bad.csv"):
        report = ws.validation.validate(data, sales_suite)
        assert not report.success
        assert failed(report) == BROKEN_FAILURES, data
        assert report.failed_checks == 4
        assert report.failing_rows == len(BROKEN_ROWS)
        assert report.rows == 120

    report = ws.validation.validate("sales@2", "sales")
    not_null = check(report, "not_null", "id")
    assert not_null.observed == {"null_count": 1}
    assert not_null.failing_fraction == pytest.approx(1 / 120)
    assert not_null.sample == [{"_row": 20, "id": None, "amount": 21.0, "city": "SF", "qty": 7}]
    unique = check(report, "unique", "id")
    assert unique.observed == {"duplicated_rows": 2}
    assert [r["_row"] for r in unique.sample] == [30, 31]
    between = check(report, "between", "amount")
    assert between.observed == {"min": -5.0, "max": 50.0}
    assert [(r["_row"], r["amount"]) for r in between.sample] == [(0, -5.0), (1, -5.0), (2, -5.0)]
    in_set = check(report, "in_set", "city")
    assert in_set.observed == {"unexpected": [{"value": "XX", "count": 2}]}
    assert [r["_row"] for r in in_set.sample] == [2, 10]
    assert between.message == "amount: between 0 and 54.9: 3 of 120 rows fail"


def test_samples_hold_at_most_five_rows(sqlite_ws: Workspace) -> None:
    frame = pl.DataFrame({"x": [-1.0] * 8 + [1.0] * 2})
    report = sqlite_ws.validation.validate(
        frame, Suite(name="s", expectations=[BetweenCheck(column="x", min=0.0)])
    )
    assert report.checks[0].failing_rows == 8
    assert [r["_row"] for r in report.checks[0].sample] == [0, 1, 2, 3, 4]


@embedded
def test_a_wrong_column_type_fails_the_table(
    ws: Workspace, sales_suite: Suite, sales_frame: pl.DataFrame
) -> None:
    frame = sales_frame.with_columns(pl.col("amount").cast(pl.String))
    report = ws.validation.validate(frame, sales_suite)
    assert failed(report) == {
        "column 'amount' is string, expected float": 120,
        "not evaluated: column 'amount' has the wrong type": 120,  # the range check
    }
    between = check(report, "between", "amount")
    assert between.observed == "not evaluated"
    assert check(report, "not_null", "amount").success  # still meaningful, still run
    assert report.failing_rows == 120


def test_an_integer_column_is_a_float_column_too(sqlite_ws: Workspace) -> None:
    suite = Suite(name="s", expectations=[ColumnTypeCheck(column="x", expected="float")])
    assert sqlite_ws.validation.validate(pl.DataFrame({"x": [1, 2]}), suite).success
    suite = Suite(name="s", expectations=[ColumnTypeCheck(column="x", expected="integer")])
    assert not sqlite_ws.validation.validate(pl.DataFrame({"x": [1.5]}), suite).success


@embedded
def test_a_missing_column_fails_every_check_on_it(
    ws: Workspace, sales_suite: Suite, sales_frame: pl.DataFrame
) -> None:
    report = ws.validation.validate(sales_frame.drop("city"), sales_suite)
    city = [r for r in report.checks if r.column == "city"]
    assert [(r.expectation["type"], r.success, r.observed, r.failing_rows) for r in city] == [
        ("column_type", False, "missing", 120),
        ("not_null", False, "missing", 120),
        ("in_set", False, "missing", 120),
    ]
    assert all(r.message == "column 'city' is missing" for r in city)
    assert report.failing_rows == 120
    assert report.failed_checks == 3


def test_a_suite_naming_a_column_the_data_lacks(sqlite_ws: Workspace) -> None:
    suite = Suite(name="s", expectations=[NotNullCheck(column="ghost")])
    report = sqlite_ws.validation.validate(pl.DataFrame({"x": [1]}), suite)
    assert not report.success
    assert report.checks[0].message == "column 'ghost' is missing"


def test_a_check_that_does_not_fit_its_column_is_reported_not_raised(
    sqlite_ws: Workspace,
) -> None:
    """A hand-written suite with no column_type guard: a range on text, categories of lists."""
    frame = pl.DataFrame({"city": ["NY", "LA"], "tags": [[1], [2]]})
    suite = Suite(
        name="s",
        expectations=[
            BetweenCheck(column="city", min=0),
            InSetCheck(column="tags", values=["x"]),
            UniqueCheck(column="tags"),
        ],
    )
    report = sqlite_ws.validation.validate(frame, suite)
    assert [(r.success, r.message, r.failing_rows) for r in report.checks] == [
        (False, "not evaluated: column 'city' is string", 2),
        (False, "not evaluated: column 'tags' is other", 2),
        (True, "tags: unique: all rows pass", 0),
    ]
    assert report.failing_rows == 2


def test_extra_columns_are_allowed_unless_the_suite_says_not(sqlite_ws: Workspace) -> None:
    frame = pl.DataFrame({"x": [1], "extra": ["y"]})
    checks = [ColumnTypeCheck(column="x", expected="integer")]
    assert sqlite_ws.validation.validate(frame, Suite(name="s", expectations=checks)).success
    strict = Suite(name="s", expectations=checks, allow_extra_columns=False)
    report = sqlite_ws.validation.validate(frame, strict)
    assert not report.success
    assert report.failing_rows == 1


def test_row_count(sqlite_ws: Workspace) -> None:
    frame = pl.DataFrame({"x": list(range(10))})
    for lo, hi, ok in [(5, 10, True), (11, None, False), (None, 9, False), (10, 10, True)]:
        suite = Suite(name="s", expectations=[RowCountCheck(min=lo, max=hi)])
        report = sqlite_ws.validation.validate(frame, suite)
        assert report.success is ok, (lo, hi)
        assert report.checks[0].observed == 10


@pytest.mark.parametrize(
    ("expectation", "failing", "passes"),
    [
        (NotNullCheck(column="x", mostly=0.9), 10, True),  # 10% may fail
        (NotNullCheck(column="x", mostly=0.91), 10, False),
        (BetweenCheck(column="y", min=0, max=89, mostly=0.9), 10, True),
        (BetweenCheck(column="y", min=0, max=88, mostly=0.9), 11, False),
        (InSetCheck(column="c", values=["a"], mostly=0.75), 25, True),
        (InSetCheck(column="c", values=["a"], mostly=0.76), 25, False),
        (NotNullCheck(column="x", mostly=0.0), 10, True),
    ],
)
def test_mostly_allows_a_fraction_of_failing_rows(
    sqlite_ws: Workspace, expectation: Any, failing: int, passes: bool
) -> None:
    frame = pl.DataFrame(
        {
            "x": [None if i % 10 == 0 else i for i in range(100)],
            "y": list(range(100)),
            "c": ["b" if i % 4 == 0 else "a" for i in range(100)],
        }
    )
    report = sqlite_ws.validation.validate(frame, Suite(name="s", expectations=[expectation]))
    assert report.checks[0].failing_rows == failing
    assert report.checks[0].success is passes
    assert report.success is passes


def test_nulls_pass_every_check_but_not_null_and_nan_is_out_of_range(
    sqlite_ws: Workspace,
) -> None:
    frame = pl.DataFrame({"x": [None, 1.0, math.nan], "c": [None, "a", "a"]})
    suite = Suite(
        name="s",
        expectations=[
            BetweenCheck(column="x", min=0, max=2),
            InSetCheck(column="c", values=["a"]),
            UniqueCheck(column="c"),
        ],
    )
    report = sqlite_ws.validation.validate(frame, suite)
    assert [r.failing_rows for r in report.checks] == [1, 0, 2]


def test_in_set_compares_values_as_the_column_spells_them(sqlite_ws: Workspace) -> None:
    frame = pl.DataFrame({"n": [1, 2, 3], "b": [True, False, True], "s": ["1", "x", "y"]})
    suite = Suite(
        name="s",
        expectations=[
            InSetCheck(column="n", values=[1, 2]),
            InSetCheck(column="b", values=[True]),
            InSetCheck(column="s", values=["x", 1, True]),  # a mixed list is no crash
        ],
    )
    report = sqlite_ws.validation.validate(frame, suite)
    assert [r.failing_rows for r in report.checks] == [1, 1, 1]


# -- suites ---------------------------------------------------------------------------------


def test_suites_are_versioned_by_content(ws: Workspace, sales_suite: Suite) -> None:
    assert ws.validation.infer_suite("sales@1") == sales_suite  # same body: same version
    edited = Suite(name="sales", expectations=[*sales_suite.expectations, RowCountCheck(min=1)])
    v2 = ws.validation.save_suite(edited)
    assert v2.version == 2
    assert ws.validation.get_suite("sales").version == 2
    assert ws.validation.get_suite("sales@latest").version == 2
    assert ws.validation.get_suite("sales@1") == sales_suite
    assert ws.validation.infer_suite("sales@1", name="other").name == "other"
    assert [(s["name"], s["latest_version"]) for s in ws.validation.list_suites()] == [
        ("other", 1),
        ("sales", 2),
    ]
    unsaved = ws.validation.infer_suite("sales@1", name="draft", save=False)
    assert unsaved.version is None
    with pytest.raises(NotFound):
        ws.validation.get_suite("draft")


@embedded
def test_unknown_suites(ws: Workspace, sales_suite: Suite) -> None:
    for ref in ("nope", "nope@1", "sales@2", "sales@abc", "sales@99999999999999999999"):
        with pytest.raises(NotFound, match="suite"):
            ws.validation.get_suite(ref)
        with pytest.raises(NotFound):
            ws.validation.validate("sales@1", ref)
    with pytest.raises(InvalidInput, match="suite name"):
        ws.validation.get_suite("bad name")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "invalid suite: .*Invalid JSON"),
        ('{"name": "s"}', "invalid suite: expectations: Field required"),
        ('{"name": "s", "expectations": [{"type": "nope", "column": "a"}]}', "does not match"),
        (
            '{"name": "s", "expectations": [{"type": "not_null", "column": "a", "mostly": 2}]}',
            "mostly: Input should be less than or equal to 1",
        ),
        (
            '{"name": "s", "expectations": [{"type": "unique", "column": "a", "oops": 1}]}',
            "oops: Extra inputs are not permitted",
        ),
        ('{"name": "s", "expectations": [{"type": "between"}]}', "column: Field required"),
    ],
)
def test_invalid_suites_are_refused(body: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Suite.parse(body)


@embedded
def test_a_suite_round_trips_through_json(ws: Workspace, sales_suite: Suite) -> None:
    again = Suite.parse(sales_suite.model_dump_json())
    assert again == sales_suite
    with pytest.raises(InvalidInput, match="suite name"):
        ws.validation.save_suite(Suite(name="bad name", expectations=[]))


# -- quarantine -----------------------------------------------------------------------------


def test_quarantine_splits_failing_rows_from_passing_rows(
    ws: Workspace, state: State, sales_suite: Suite, sales_frame: pl.DataFrame
) -> None:
    bad = broken(sales_frame)
    source = ws.datasets.ingest(bad, name="sales")

    result = ws.validation.quarantine("sales@2", "sales")

    assert not result.report.success
    assert failed(result.report) == BROKEN_FAILURES
    assert result.quarantined is not None
    assert result.clean is not None
    assert (result.quarantined.ref, result.quarantined.kind) == ("sales.quarantine@1", "quarantine")
    assert (result.clean.ref, result.clean.kind) == ("sales@3", "validated")
    assert result.quarantined.row_count == len(BROKEN_ROWS)
    assert result.clean.row_count == 120 - len(BROKEN_ROWS)

    quarantined = ws.datasets.load_polars(result.quarantined)
    clean = ws.datasets.load_polars(result.clean)
    # a stream's quarantine columns: batches and streams share sales.quarantine
    assert tuple(quarantined.columns) == QUARANTINE_COLUMNS == stream_consumer.QUARANTINE_COLUMNS
    assert set(quarantined["_mloop_kind"]) == {"validation"}
    assert quarantined["_mloop_partition"].null_count() == len(BROKEN_ROWS)
    payloads = [json.loads(p) for p in quarantined["_mloop_payload"]]
    reasons = {
        (row["id"], row["amount"], row["city"]): reason
        for row, reason in zip(payloads, quarantined[REASON_COLUMN], strict=True)
    }
    assert reasons == {
        (0, -5.0, "NY"): "amount: between 0 and 54.9",
        (1, -5.0, "LA"): "amount: between 0 and 54.9",
        (2, -5.0, "XX"): "amount: between 0 and 54.9; city: in {LA, NY, SF}",
        (10, 11.0, "XX"): "city: in {LA, NY, SF}",
        (None, 21.0, "SF"): "id: not null",
        (30, 31.0, "NY"): "id: unique",
        (30, 32.0, "LA"): "id: unique",
    }
    # each row's offset is its position in the version split
    for row, offset in zip(payloads, quarantined["_mloop_offset"], strict=True):
        assert bad.row(offset, named=True) == row
    # nothing dropped: the two parts are the input, row for row
    rejected = pl.DataFrame(payloads, schema=bad.schema)
    together = pl.concat([clean, rejected]).sort("amount", "city", "id")
    assert together.equals(bad.sort("amount", "city", "id"))
    assert ws.validation.validate(result.clean, "sales").success
    # lineage and audit
    for part, relation in [(result.quarantined, "quarantined"), (result.clean, "validated")]:
        edges = ws.lineage.upstream("dataset_version", part.id)
        assert [(e.src.id, e.relation) for e in edges] == [(source.id, relation)]
        assert [r.action for r in ws.audit.list(object_id=part.ref)] == ["dataset.version.create"]

    # again: the same two versions, nothing written; the validated latest passes
    before = state(ws)
    again = ws.validation.quarantine("sales@2", "sales")
    assert (again.clean, again.quarantined) == (result.clean, result.quarantined)
    assert ws.validation.quarantine("sales", "sales").clean == result.clean
    assert state(ws) == before

    # a version that is no longer the latest, never split: a validated version of it would
    # drop the rows added since, so it is refused
    ws.datasets.ingest(bad.head(50), name="sales")
    ws.datasets.append("sales", sales_frame.head(2).to_arrow())
    before = state(ws)
    with pytest.raises(Conflict, match=r"sales@4 is not the latest version .*\(sales@5 is\)"):
        ws.validation.quarantine("sales@4", "sales")
    assert state(ws) == before
    # the latest is split: its failing rows are appended to the quarantine, after the first's
    later = ws.validation.quarantine("sales", "sales")
    assert later.quarantined is not None
    assert (later.quarantined.ref, later.quarantined.segments) == ("sales.quarantine@2", [(1, 2)])
    assert later.quarantined_rows == 9  # the 7 broken rows, and the 2 appended (ids 0, 1 again)
    assert later.quarantined.row_count == len(BROKEN_ROWS) + later.quarantined_rows
    # a stream's rejected events append to the same quarantine (the consumer's own table shape)
    streamed = pa.table(
        {
            "_mloop_kind": ["schema"],
            "_mloop_reason": ["field 'id': not an integer"],
            "_mloop_payload": ['{"id": "x"}'],
            "_mloop_partition": pa.array([0], pa.int64()),
            "_mloop_offset": pa.array([17], pa.int64()),
        }
    )
    both = ws.datasets.append("sales.quarantine", streamed, kind="quarantine")
    assert both.schema_.names == list(stream_consumer.QUARANTINE_COLUMNS)


def test_quarantine_never_drops_rows_appended_meanwhile(
    ws: Workspace, sales_suite: Suite, sales_frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The validated version replaces the version split only while that is still the latest:
    a writer appending meanwhile makes it a Conflict, and nothing of the split is written."""
    from mloop.data import DatasetService

    ws.datasets.ingest(broken(sales_frame), name="sales")
    real = DatasetService._segment_and_profile
    raced: list[Any] = []

    def racing(self: DatasetService, table: Any, digest: str) -> Any:
        if not raced:  # another writer appends while the split's segments are written
            raced.append(True)
            ws.datasets.append("sales", sales_frame.head(3).to_arrow())
        return real(self, table, digest)

    monkeypatch.setattr(DatasetService, "_segment_and_profile", racing)
    with pytest.raises(Conflict, match="dataset 'sales' moved on"):
        ws.validation.quarantine("sales@2", sales_suite)
    monkeypatch.undo()
    assert [v.ref for v in ws.datasets.versions("sales")] == ["sales@1", "sales@2", "sales@3"]
    assert ws.datasets.get("sales").row_count == 123  # the appended rows are kept
    with pytest.raises(NotFound):
        ws.datasets.get("sales.quarantine")


@embedded
def test_quarantining_passing_data_writes_nothing(
    ws: Workspace, state: State, sales_suite: Suite
) -> None:
    before = state(ws)
    result = ws.validation.quarantine("sales@1", sales_suite)
    assert result.report.success
    assert result.quarantined is None
    assert result.clean == ws.datasets.get("sales@1")
    assert state(ws) == before


@embedded
def test_rows_a_mostly_check_tolerates_are_still_quarantined(ws: Workspace) -> None:
    """``mostly`` decides whether the batch passes; each row that breaks the expectation is
    still set apart, with its reason, when quarantining."""
    ws.datasets.ingest(pl.DataFrame({"x": [None, *range(1, 20)]}), name="m")
    suite = Suite(name="m", expectations=[NotNullCheck(column="x", mostly=0.9)])
    result = ws.validation.quarantine("m@1", suite)
    assert result.report.success
    assert result.report.failing_rows == 1
    assert result.quarantined is not None
    assert result.clean is not None
    assert (result.quarantined.row_count, result.clean.row_count) == (1, 19)


@embedded
def test_a_table_level_failure_quarantines_every_row(
    ws: Workspace, sales_suite: Suite, sales_frame: pl.DataFrame
) -> None:
    ws.datasets.ingest(sales_frame.drop("city").head(30), name="sales")
    result = ws.validation.quarantine("sales@2", sales_suite)
    assert result.clean is None
    assert result.quarantined is not None
    assert result.quarantined.row_count == 30
    reasons = ws.datasets.load_polars(result.quarantined)[REASON_COLUMN]
    assert reasons.to_list() == ["column 'city' is missing"] * 30
    assert [v.ref for v in ws.datasets.versions("sales")] == ["sales@1", "sales@2"]


@embedded
def test_quarantine_needs_a_dataset_version(ws: Workspace, tmp_path: Path, state: State) -> None:
    before = state(ws)
    with pytest.raises(InvalidInput, match=r"ingest .* first"):
        ws.validation.quarantine(tmp_path / "x.csv", "sales")
    with pytest.raises(NotFound):
        ws.validation.quarantine("nope@1", "sales")
    assert state(ws) == before


# -- a million rows -------------------------------------------------------------------------


def test_a_million_rows_are_validated_with_exact_counts(sqlite_ws: Workspace) -> None:
    n = 1_000_000
    rng = np.random.default_rng(42)
    ids = np.arange(n)
    ids[999_999] = 5  # one duplicated pair
    amount = rng.uniform(1.0, 100.0, n)
    amount[::1000] = -1.0  # 1000 negatives
    cities = rng.choice(np.array(["NY", "LA", "SF"]), n)
    unknown = rng.random(n) < 0.001
    cities[unknown] = "XX"
    null_qty = rng.random(n) < 0.002
    frame = pl.DataFrame(
        {
            "id": ids,
            "amount": amount,
            "city": cities,
            "qty": pl.Series(rng.integers(1, 10, n)).scatter(np.flatnonzero(null_qty), None),
        }
    )
    suite = Suite(
        name="big",
        expectations=[
            UniqueCheck(column="id"),
            BetweenCheck(column="amount", min=0.0, max=100.0),
            InSetCheck(column="city", values=["NY", "LA", "SF"]),
            NotNullCheck(column="qty"),
            BetweenCheck(column="qty", min=1, max=9),
        ],
    )
    report = sqlite_ws.validation.validate(frame, suite)

    expected_failing = [2, 1000, int(unknown.sum()), int(null_qty.sum()), 0]
    assert [r.failing_rows for r in report.checks] == expected_failing
    assert report.rows == n
    bad = (amount < 0) | unknown | null_qty
    bad[[5, 999_999]] = True
    assert report.failing_rows == int(bad.sum())
    assert report.failed_checks == 4
