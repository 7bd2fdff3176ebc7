"""Column profiles, checked against NumPy and plain Python on the same values."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings

from mloop.data import profile_frame
from mloop.data.profile import QUANTILES, TOP_VALUES
from mloop.workspace import Workspace


def assert_numeric_profile(entry: dict[str, Any], values: list[float | None]) -> None:
    """``entry`` agrees with NumPy on the finite, non-null ``values``."""
    present = [v for v in values if v is not None]
    finite = np.array([v for v in present if math.isfinite(v)], dtype=np.float64)
    assert entry["kind"] == "numeric"
    assert entry["count"] == len(values)
    assert entry["null_count"] == len(values) - len(present)
    assert entry["nan_count"] == sum(1 for v in present if math.isnan(v))
    assert entry["zero_count"] == sum(1 for v in present if v == 0)
    if finite.size == 0:
        assert entry["min"] is entry["max"] is entry["mean"] is entry["std"] is None
        assert all(q is None for q in entry["quantiles"].values())
        return
    scale = float(np.max(np.abs(finite))) or 1.0
    assert entry["min"] == finite.min()
    assert entry["max"] == finite.max()
    assert entry["mean"] == pytest.approx(float(finite.mean()), rel=1e-9, abs=1e-12 * scale)
    if finite.size < 2:
        assert entry["std"] is None
    else:
        expected_std = float(finite.std(ddof=1))
        assert entry["std"] == pytest.approx(expected_std, rel=1e-6, abs=1e-9 * scale)
    assert set(entry["quantiles"]) == {str(q) for q in QUANTILES}
    for q in QUANTILES:
        expected = float(np.quantile(finite, q, method="linear"))
        assert entry["quantiles"][str(q)] == pytest.approx(expected, rel=1e-9, abs=1e-9 * scale)


def assert_categorical_profile(entry: dict[str, Any], values: list[Any]) -> None:
    counts = Counter(v for v in values if v is not None)
    assert entry["kind"] == "categorical"
    assert entry["count"] == len(values)
    assert entry["null_count"] == sum(1 for v in values if v is None)
    assert entry["cardinality"] == len(counts)
    top = entry["top_values"]
    assert len(top) == min(TOP_VALUES, len(counts))
    listed = [t["count"] for t in top]
    assert listed == sorted(listed, reverse=True)
    for t in top:
        assert counts[t["value"]] == t["count"]
    # nothing left out is more frequent than the least frequent value shown
    shown = {t["value"] for t in top}
    if top:
        assert all(c <= listed[-1] for v, c in counts.items() if v not in shown)


# -- properties ------------------------------------------------------------------------------

# subnormals (5e-324…) underflow differently in Polars and NumPy sums: not what is tested here
_floats = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.none(), _floats), min_size=1, max_size=80))
def test_float_profile_matches_numpy(values: list[float | None]) -> None:
    profile = profile_frame(pl.DataFrame({"x": pl.Series(values, dtype=pl.Float64)}))
    assert_numeric_profile(profile["x"], values)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.integers(-(10**9), 10**9)), min_size=1, max_size=80))
def test_integer_profile_matches_numpy(values: list[int | None]) -> None:
    profile = profile_frame(pl.DataFrame({"n": pl.Series(values, dtype=pl.Int64)}))
    assert_numeric_profile(profile["n"], [None if v is None else float(v) for v in values])


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), _floats, st.sampled_from([math.nan, math.inf, -math.inf])),
        min_size=1,
        max_size=40,
    )
)
def test_nan_and_infinities_are_counted_apart_and_left_out_of_the_statistics(
    values: list[float | None],
) -> None:
    profile = profile_frame(pl.DataFrame({"x": pl.Series(values, dtype=pl.Float64)}))
    assert_numeric_profile(profile["x"], values)


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.sampled_from("abcdefghijklmnop")), min_size=1))
def test_string_profile_counts_values_and_cardinality(values: list[str | None]) -> None:
    profile = profile_frame(pl.DataFrame({"s": pl.Series(values, dtype=pl.String)}))
    assert_categorical_profile(profile["s"], values)


# -- examples --------------------------------------------------------------------------------


def test_top_values_are_the_ten_most_frequent() -> None:
    values = [f"v{i:02d}" for i in range(20) for _ in range(i + 1)]  # v19 most frequent
    entry = profile_frame(pl.DataFrame({"s": values}))["s"]
    assert entry["cardinality"] == 20
    assert [t["value"] for t in entry["top_values"]] == [f"v{i:02d}" for i in range(19, 9, -1)]
    assert [t["count"] for t in entry["top_values"]] == list(range(20, 10, -1))


def test_booleans_are_categories() -> None:
    entry = profile_frame(pl.DataFrame({"b": [True, None, True, False]}))["b"]
    assert entry["kind"] == "categorical"
    assert entry["null_count"] == 1
    assert entry["cardinality"] == 2
    assert entry["top_values"] == [{"value": True, "count": 2}, {"value": False, "count": 1}]


def test_dates_and_times_have_range_and_a_cardinality_without_nulls() -> None:
    frame = pl.DataFrame(
        {
            "d": [dt.date(2024, 3, 1), None, dt.date(2024, 1, 5), dt.date(2024, 3, 1)],
            "t": [None, None, dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 1, 2)],
        }
    )
    profile = profile_frame(frame)
    assert profile["d"] == {
        "kind": "temporal",
        "dtype": "Date",
        "count": 4,
        "null_count": 1,
        "cardinality": 2,
        "min": "2024-01-05",
        "max": "2024-03-01",
    }
    assert profile["t"]["null_count"] == 2
    assert profile["t"]["cardinality"] == 2
    assert profile["t"]["min"] == "2024-01-01 12:00:00"


def test_a_column_of_only_nulls() -> None:
    profile = profile_frame(
        pl.DataFrame({"x": pl.Series([None, None], dtype=pl.Float64), "s": [None, "a"]})
    )
    assert profile["x"]["null_count"] == 2
    assert profile["x"]["mean"] is None
    assert profile["s"]["cardinality"] == 1


def test_an_ingested_version_carries_the_profile_of_its_rows(ws: Workspace, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 500
    amount = rng.normal(100.0, 15.0, n).round(3)
    amount_or_null = [None if i % 9 == 0 else float(a) for i, a in enumerate(amount)]
    city = [None if i % 11 == 0 else str(c) for i, c in enumerate(rng.choice(["NY", "LA"], n))]
    frame = pl.DataFrame(
        {"id": np.arange(n), "amount": amount_or_null, "city": city},
        schema={"id": pl.Int64, "amount": pl.Float64, "city": pl.String},
    )
    frame.write_csv(tmp_path / "sales.csv")
    frame.write_parquet(tmp_path / "sales.parquet")
    frame.write_ndjson(tmp_path / "sales.jsonl")

    for suffix in (".csv", ".parquet", ".jsonl"):
        version = ws.datasets.ingest(tmp_path / f"sales{suffix}", name="sales")
        assert version.ref == "sales@1", suffix  # one content, three files
        assert_numeric_profile(version.profile["amount"], amount_or_null)
        assert_numeric_profile(version.profile["id"], [float(i) for i in range(n)])
        assert_categorical_profile(version.profile["city"], city)
        # the stored profile survives the metadata database unchanged
        assert ws.datasets.get("sales@1").profile == version.profile
