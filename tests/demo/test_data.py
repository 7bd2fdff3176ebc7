"""The demo's generated transactions: seeded, realistic enough, and broken only where it says."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from mloop.demo import DRIFTED_FEATURES, FEATURES, TARGET, corrupt, transactions
from mloop.demo.data import COUNTRIES, MERCHANTS
from mloop.monitoring import categorical_drift, numeric_drift
from mloop.workspace import Workspace

NUMERIC = {
    "amount",
    "hour",
    "customer_age",
    "account_age_days",
    "tx_last_24h",
    "distance_from_home_km",
}


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    assert transactions(2000, 5).equals(transactions(2000, 5))
    assert transactions(500, 5, drifted=True).equals(transactions(500, 5, drifted=True))
    assert (
        not transactions(2000, 5)
        .drop("transaction_id")
        .equals(transactions(2000, 6).drop("transaction_id"))
    )


def test_columns_and_types() -> None:
    frame = transactions(1000, 1)
    assert frame.columns == ["transaction_id", *FEATURES, TARGET]
    assert transactions(10, 1, labelled=False).columns == ["transaction_id", *FEATURES]
    assert frame.schema["amount"] == pl.Float64
    assert frame.schema["hour"] == pl.Int64
    assert frame.schema["card_present"] == pl.Boolean
    assert frame.schema[TARGET] == pl.Int64
    assert set(frame.get_column("merchant_category").unique()) <= set(MERCHANTS)
    assert set(frame.get_column("country").drop_nulls().unique()) <= set(COUNTRIES)
    assert frame.get_column("hour").is_between(0, 23).all()
    assert (frame.get_column("amount") > 0).all()
    assert frame.get_column("customer_age").drop_nulls().is_between(18, 90).all()


def test_transaction_ids_are_unique_across_seeds() -> None:
    a, b = transactions(1000, 3), transactions(1000, 4)
    ids = pl.concat([a, b]).get_column("transaction_id")
    assert ids.n_unique() == 2000
    assert a.get_column("transaction_id")[0] == 3_000_000


def test_missing_values_where_real_feeds_have_them() -> None:
    frame = transactions(20_000, 7)
    nulls = {c: frame.get_column(c).null_count() / frame.height for c in frame.columns}
    assert 0.02 < nulls["customer_age"] < 0.04
    assert 0.04 < nulls["distance_from_home_km"] < 0.06
    assert 0.005 < nulls["country"] < 0.015
    with_missing = {"customer_age", "distance_from_home_km", "country"}
    others = {c: share for c, share in nulls.items() if c not in with_missing}
    assert set(others.values()) == {0.0}


def test_plausible_fraud_rate_that_depends_on_the_features() -> None:
    frame = transactions(20_000, 7)
    rate = frame.get_column(TARGET).mean()
    assert isinstance(rate, float)
    assert 0.01 < rate < 0.15
    by_card = frame.group_by("card_present").agg(pl.col(TARGET).mean()).sort("card_present")
    assert by_card.get_column(TARGET)[0] > 2 * by_card.get_column(TARGET)[1]  # not present


def test_drifted_traffic_moves_exactly_the_drifted_features() -> None:
    """The contract the demo's summary rests on, checked with the monitor's own statistics."""
    normal, drifted = transactions(5000, 1), transactions(5000, 2, drifted=True)
    flagged = set()
    for column in FEATURES:
        ref, cur = normal.get_column(column), drifted.get_column(column)
        if column in NUMERIC:
            result = numeric_drift(
                column,
                ref.cast(pl.Float64).fill_null(np.nan).to_numpy(),
                cur.cast(pl.Float64).fill_null(np.nan).to_numpy(),
            )
        else:
            result = categorical_drift(column, ref, cur)
        if result.drifted:
            flagged.add(column)
    assert flagged == DRIFTED_FEATURES
    assert drifted.get_column("amount").median() > 2 * normal.get_column("amount").median()  # type: ignore[operator]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corrupt_breaks_exactly_the_rows_it_says(seed: int) -> None:
    clean = transactions(2000, 10 + seed)
    broken, count = corrupt(clean, seed)
    assert count == 40
    assert broken.columns == clean.columns
    assert broken.schema == clean.schema
    changed = pl.Series(
        [a != b for a, b in zip(clean.iter_rows(), broken.iter_rows(), strict=True)]
    )
    assert changed.sum() == count
    rows = broken.filter(changed)
    negative = rows.get_column("amount") < 0
    bad_country = rows.get_column("country") == "ZZ"
    bad_hour = rows.get_column("hour") == 27
    no_card = rows.get_column("card_present").is_null()
    per_row = (
        negative.cast(pl.Int8) + bad_country.cast(pl.Int8) + bad_hour.cast(pl.Int8)
    ) + no_card.cast(pl.Int8)
    assert per_row.to_list() == [1] * count  # one fault per broken row
    assert (negative.sum(), bad_country.sum(), bad_hour.sum(), no_card.sum()) == (12, 10, 8, 10)
    # the rows left alone are untouched, value for value, nulls included
    assert broken.filter(~changed).equals(clean.filter(~changed))
    assert corrupt(clean, seed)[0].equals(broken)


def test_corrupted_rows_fail_a_suite_inferred_from_clean_data(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    base = ws.datasets.ingest(transactions(5000, 7), name="tx")
    suite = ws.validation.infer_suite(base.ref, name="tx")
    broken, count = corrupt(transactions(1000, 8), 9)
    split = ws.validation.quarantine(ws.datasets.ingest(broken, name="tx"), suite)
    assert split.quarantined is not None
    assert split.clean is not None
    assert split.quarantined.row_count == count
    assert split.clean.row_count == 1000 - count
