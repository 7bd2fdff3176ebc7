"""Seeded, realistic card-transaction data with a fraud label, and drifted traffic."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

MERCHANTS = [
    "grocery",
    "restaurant",
    "gas",
    "online_retail",
    "travel",
    "electronics",
    "pharmacy",
    "entertainment",
    "utilities",
    "jewelry",
]
MERCHANT_P = [0.24, 0.18, 0.12, 0.14, 0.05, 0.06, 0.08, 0.07, 0.05, 0.01]
MERCHANT_RISK = {"online_retail": 1.0, "electronics": 1.1, "jewelry": 1.6, "travel": 0.6}
COUNTRIES = ["US", "GB", "DE", "FR", "CA", "NL", "ES", "IT", "BR", "NG"]
COUNTRY_P = [0.62, 0.08, 0.06, 0.05, 0.06, 0.03, 0.03, 0.03, 0.02, 0.02]
HOUR_P = np.array(
    [
        1,
        0.6,
        0.4,
        0.3,
        0.3,
        0.5,
        1.2,
        2.5,
        4,
        5,
        5.5,
        6,
        6.5,
        6,
        5.5,
        5.5,
        6,
        6.5,
        6.5,
        5.5,
        4.5,
        3.5,
        2.5,
        1.6,
    ]
)
HOUR_P = HOUR_P / HOUR_P.sum()
NIGHT_HOUR_P = np.roll(HOUR_P, 12)  # the drifted traffic shops at night

FEATURES = [
    "amount",
    "merchant_category",
    "country",
    "hour",
    "customer_age",
    "card_present",
    "account_age_days",
    "tx_last_24h",
    "distance_from_home_km",
]
TARGET = "is_fraud"
#: the features the demo's second half of traffic shifts, and nothing else
DRIFTED_FEATURES = frozenset({"amount", "merchant_category", "hour"})


def _features(rng: np.random.Generator, n: int, drifted: bool) -> dict[str, Any]:
    amount = rng.lognormal(mean=3.6 + (0.9 if drifted else 0.0), sigma=1.0, size=n)
    merchant_p = np.array(MERCHANT_P)
    if drifted:
        merchant_p = merchant_p * np.array([0.4, 0.5, 0.5, 3.0, 1, 3.0, 0.5, 1, 0.5, 2.0])
        merchant_p = merchant_p / merchant_p.sum()
    merchant = rng.choice(MERCHANTS, size=n, p=merchant_p)
    country = rng.choice(COUNTRIES, size=n, p=COUNTRY_P)
    hour = rng.choice(24, size=n, p=NIGHT_HOUR_P if drifted else HOUR_P)
    age = np.clip(rng.normal(45, 14, size=n), 18, 90).round()
    card_present = rng.random(n) < 0.7
    account_age = np.floor(rng.exponential(900, size=n)).astype(np.int64)
    tx24 = rng.poisson(2.0, size=n)
    distance = rng.lognormal(mean=2.0, sigma=1.2, size=n)
    return {
        "amount": np.round(amount, 2),
        "merchant_category": merchant,
        "country": country,
        "hour": hour.astype(np.int64),
        "customer_age": age,
        "card_present": card_present,
        "account_age_days": account_age,
        "tx_last_24h": tx24.astype(np.int64),
        "distance_from_home_km": np.round(distance, 1),
    }


def _label(rng: np.random.Generator, f: dict[str, Any]) -> np.ndarray:
    n = len(f["amount"])
    risk = np.array([MERCHANT_RISK.get(m, 0.0) for m in f["merchant_category"]])
    logit = (
        -6.0
        + 1.4 * (np.log(f["amount"]) - 3.6)
        + 1.5 * risk
        + 1.6 * (f["country"] != "US") * (f["country"] != "CA")
        + 1.4 * ((f["hour"] < 6) | (f["hour"] >= 23))
        + 1.8 * (~f["card_present"])
        + 1.2 * (f["account_age_days"] < 60)
        + 0.5 * (f["tx_last_24h"] - 2)
        + 0.6 * (np.log1p(f["distance_from_home_km"]) - 2)
        + rng.normal(0, 0.3, size=n)
    )
    return np.asarray(rng.random(n) < 1 / (1 + np.exp(-logit)), dtype=bool)


def _with_missing(rng: np.random.Generator, frame: pl.DataFrame) -> pl.DataFrame:
    n = frame.height
    return frame.with_columns(
        pl.when(pl.Series(rng.random(n) < 0.03))
        .then(None)
        .otherwise(pl.col("customer_age"))
        .alias("customer_age"),
        pl.when(pl.Series(rng.random(n) < 0.05))
        .then(None)
        .otherwise(pl.col("distance_from_home_km"))
        .alias("distance_from_home_km"),
        pl.when(pl.Series(rng.random(n) < 0.01))
        .then(None)
        .otherwise(pl.col("country"))
        .alias("country"),
    ).with_columns(pl.col("customer_age").cast(pl.Int64))


def transactions(
    n: int, seed: int, *, drifted: bool = False, labelled: bool = True
) -> pl.DataFrame:
    """``n`` transactions; with ``drifted`` the amount, merchant mix and hour shift."""
    rng = np.random.default_rng(seed)
    f = _features(rng, n, drifted)
    frame = pl.DataFrame(f)
    if labelled:
        frame = frame.with_columns(pl.Series(TARGET, _label(rng, f)).cast(pl.Int64))
    frame = _with_missing(rng, frame)
    return frame.with_row_index("transaction_id", offset=seed * 1_000_000).with_columns(
        pl.col("transaction_id").cast(pl.Int64)
    )


def corrupt(frame: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, int]:
    """Break a few rows the way real feeds break: negative amounts, an unknown country code,
    an impossible hour, a missing card_present. Returns the frame and how many rows broke."""
    rng = np.random.default_rng(seed)
    n = frame.height
    picks = rng.choice(n, size=40, replace=False)
    neg, bad_country, bad_hour, no_card = picks[:12], picks[12:22], picks[22:30], picks[30:]
    idx = pl.Series(np.arange(n))
    frame = frame.with_columns(
        pl.when(idx.is_in(neg.tolist()))
        .then(-pl.col("amount"))
        .otherwise(pl.col("amount"))
        .alias("amount"),
        pl.when(idx.is_in(bad_country.tolist()))
        .then(pl.lit("ZZ"))
        .otherwise(pl.col("country"))
        .alias("country"),
        pl.when(idx.is_in(bad_hour.tolist()))
        .then(pl.lit(27))
        .otherwise(pl.col("hour"))
        .alias("hour"),
        pl.when(idx.is_in(no_card.tolist()))
        .then(None)
        .otherwise(pl.col("card_present"))
        .alias("card_present"),
    )
    return frame, len(picks)
