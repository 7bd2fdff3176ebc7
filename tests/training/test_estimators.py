"""Estimators by dotted path, their parameters, and the preprocessing pipeline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge

from mloop import InvalidInput
from mloop.core.schema import Column
from mloop.training import build_pipeline, make_estimator, parse_param, resolve_estimator
from mloop.training.estimators import task_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max_iter=50", ("max_iter", 50)),
        ("learning_rate=0.05", ("learning_rate", 0.05)),
        ("loss=log_loss", ("loss", "log_loss")),
        ("loss='log_loss'", ("loss", "log_loss")),
        ("warm_start=true", ("warm_start", True)),
        ("warm_start=False", ("warm_start", False)),
        ("max_depth=none", ("max_depth", None)),
        ("class_weight={'a': 1}", ("class_weight", {"a": 1})),
        ("hidden=(10, 5)", ("hidden", (10, 5))),
        (" C = 2 ", ("C", 2)),
        ("expr=1+", ("expr", "1+")),
        ("empty=", ("empty", "")),
    ],
)
def test_parse_param(text: str, expected: tuple[str, Any]) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["max_iter", "=5", "  =5", ""])
def test_parse_param_needs_key_equals_value(text: str) -> None:
    with pytest.raises(InvalidInput, match="key=value"):
        parse_param(text)


def test_resolve_estimator() -> None:
    assert resolve_estimator("sklearn.linear_model.Ridge") is Ridge


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("Ridge", "dotted path"),
        ("sklearn.linear_model.", "dotted path"),
        ("sklearn.linear_model.NoSuchModel", "unknown estimator"),
        ("no_such_package.Model", "unknown estimator"),
        ("sklearn.preprocessing.StandardScaler", "not an estimator class"),
        ("sklearn.linear_model.ridge_regression", "not an estimator class"),  # a function
        ("math.pi", "not an estimator class"),
    ],
)
def test_resolve_estimator_refuses(path: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        resolve_estimator(path)


def test_make_estimator_sets_params() -> None:
    estimator = make_estimator("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 7})
    assert isinstance(estimator, HistGradientBoostingClassifier)
    assert estimator.max_iter == 7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_itr": 5}, "max_itr"),
        ({"max_iter": -1}, "max_iter"),
        ({"max_iter": "many"}, "max_iter"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"loss": "nope"}, "loss"),
    ],
)
def test_make_estimator_checks_params_before_fit(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        make_estimator("sklearn.ensemble.HistGradientBoostingClassifier", params)
    assert caught.value.message.startswith("sklearn.ensemble.HistGradientBoostingClassifier: ")


def test_task_of() -> None:
    assert task_of(LogisticRegression()) == "classification"
    assert task_of(Ridge()) == "regression"
    from sklearn.cluster import KMeans

    with pytest.raises(InvalidInput, match="neither a classifier nor a regressor"):
        task_of(KMeans())


def _features() -> list[Column]:
    return [
        Column(name="amount", type="float"),
        Column(name="count", type="integer"),
        Column(name="flag", type="boolean"),
        Column(name="city", type="string"),
    ]


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for name in ("amount", "count", "flag"):
        frame[name] = frame[name].astype("float64")
    frame["city"] = frame["city"].astype(object)
    return frame


def test_the_pipeline_imputes_scales_and_encodes() -> None:
    rng = np.random.default_rng(0)
    rows = [
        {
            "amount": float(rng.normal(50, 10)),
            "count": float(rng.integers(0, 5)),
            "flag": float(rng.integers(0, 2)),
            "city": str(rng.choice(["paris", "rome", "oslo"])),
        }
        for _ in range(200)
    ]
    y = np.array([int(r["amount"] > 50) for r in rows])
    pipeline = build_pipeline(LogisticRegression(), _features())
    pipeline.fit(_frame(rows), y)

    unseen = _frame(
        [
            {"amount": None, "count": None, "flag": None, "city": None},
            {"amount": 60.0, "count": 1.0, "flag": 1.0, "city": "atlantis"},
        ]
    )
    proba = pipeline.predict_proba(unseen)
    assert proba.shape == (2, 2)
    assert np.isfinite(proba).all()
    transformed = pipeline.named_steps["preprocess"].transform(unseen)
    # numeric: imputed with the median then scaled; categorical: an unseen city is all zeros
    assert np.isfinite(transformed).all()
    city_columns = transformed[:, 3:]
    assert city_columns[1].sum() == 0


def test_the_pipeline_keeps_only_its_columns() -> None:
    pipeline = build_pipeline(Ridge(), [Column(name="a", type="float")])
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "ignored": ["x", "y", "z", "w"]})
    pipeline.fit(frame, [1.0, 2.0, 3.0, 4.0])
    assert pipeline.predict(frame[["a", "ignored"]]).shape == (4,)


def test_a_column_that_was_always_missing_does_not_break_the_pipeline() -> None:
    features = [Column(name="a", type="float"), Column(name="b", type="float")]
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [np.nan] * 4})
    pipeline = build_pipeline(Ridge(), features)
    pipeline.fit(frame, [1.0, 2.0, 3.0, 4.0])
    assert np.isfinite(pipeline.predict(frame)).all()
