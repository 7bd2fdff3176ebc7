"""Slice metrics and the fairness report, checked against hand computations."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from mloop import InvalidInput
from mloop.training import classification_metrics, regression_metrics
from mloop.training.evaluation import fairness_report, slice_metrics

# ---------------------------------------------------------------------------------------------
# slices


def _city_frame() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    cities = ["a"] * 50 + ["b"] * 30 + ["c"] * 5 + ["d"] * 3 + [None] * 12
    frame = pd.DataFrame({"city": pd.Series(cities, dtype=object)})
    rng = np.random.default_rng(0)
    y_true = rng.choice([0, 1], size=100)
    y_pred = np.where(rng.random(100) < 0.7, y_true, 1 - y_true)
    score = np.clip(0.5 + 0.4 * (y_pred - 0.5) + rng.normal(0, 0.1, 100), 0.01, 0.99)
    proba = np.column_stack([1 - score, score])
    return frame, y_true, y_pred, proba


def test_slices_by_value_group_rare_values_and_keep_nulls_apart() -> None:
    frame, y_true, y_pred, proba = _city_frame()
    got = slice_metrics(frame, y_true, y_pred, proba, [0, 1], "classification", ["city"])
    assert [(s.value, s.kind, s.rows) for s in got] == [
        ("a", "value", 50),
        ("b", "value", 30),
        ("other (2 values)", "other", 8),
        ("null", "null", 12),
    ]
    assert got[2].values == ["c", "d"]
    assert sum(s.rows for s in got) == 100
    assert got[0].fraction == pytest.approx(0.5)
    # each slice's metrics are those of its rows
    rows = {"a": slice(0, 50), "b": slice(50, 80), "other (2 values)": slice(80, 88)}
    rows["null"] = slice(88, 100)
    for s in got:
        r = rows[s.value]
        expected = classification_metrics(y_true[r], y_pred[r], proba[r], [0, 1])
        assert s.metrics == pytest.approx(expected)
        assert s.metrics["accuracy"] == pytest.approx(float(np.mean(y_true[r] == y_pred[r])))


def test_many_distinct_numbers_are_cut_into_quantile_bins() -> None:
    x = np.arange(100, dtype="float64")
    x[[10, 60]] = np.nan
    frame = pd.DataFrame({"x": x})
    y = np.arange(100.0)
    pred = y + 1.0
    got = slice_metrics(frame, y, pred, None, None, "regression", ["x"], bins=4)
    values = x[~np.isnan(x)]
    edges = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    assert [s.kind for s in got] == ["bin", "bin", "bin", "bin", "null"]
    assert [s.lower for s in got[:4]] == pytest.approx(edges[:-1])
    assert [s.upper for s in got[:4]] == pytest.approx(edges[1:])
    # the first bin is closed at its lower edge, the others open: (lower, upper]
    expected_rows = [
        int(((values >= edges[0]) & (values <= edges[1])).sum()),
        *(int(((values > lo) & (values <= hi)).sum()) for lo, hi in itertools.pairwise(edges[1:])),
    ]
    assert [s.rows for s in got[:4]] == expected_rows
    assert sum(expected_rows) == 98
    assert got[4].rows == 2
    assert got[0].value.startswith("[0, ")
    assert got[1].value.startswith("(")
    first = (x >= edges[0]) & (x <= edges[1])  # NaN compares False: the null rows are out
    assert got[0].metrics == pytest.approx(regression_metrics(y[first], pred[first]))
    assert got[0].metrics["mae"] == pytest.approx(1.0)


def test_few_distinct_numbers_are_sliced_by_value() -> None:
    frame = pd.DataFrame(
        {"flag": np.array([0.0, 1.0] * 20), "n": np.array([1.0, 2.0, 3.5, 2.0] * 10)}
    )
    y = np.array([0, 1] * 20)
    got = slice_metrics(frame, y, y, None, [0, 1], "classification", ["flag", "n"])
    assert [(s.column, s.value, s.rows) for s in got] == [
        ("flag", "0", 20),
        ("flag", "1", 20),
        ("n", "2", 20),
        ("n", "1", 10),
        ("n", "3.5", 10),
    ]
    assert all(s.metrics["accuracy"] == 1.0 for s in got)


def test_without_probabilities_the_classes_may_be_left_out() -> None:
    frame, y_true, y_pred, _ = _city_frame()
    got = slice_metrics(frame, y_true, y_pred, None, None, "classification", ["city"])
    expected = classification_metrics(y_true[:50], y_pred[:50], None, [0, 1])
    assert got[0].metrics == pytest.approx(expected)


def test_slices_per_column_are_capped() -> None:
    values = [f"v{i:02d}" for i in range(30) for _ in range(20)]
    frame = pd.DataFrame({"k": pd.Series(values, dtype=object)})
    y = np.zeros(len(values))
    got = slice_metrics(frame, y, y, None, None, "regression", ["k"], max_slices=5)
    assert len(got) == 5
    assert [s.kind for s in got] == ["value"] * 4 + ["other"]
    assert got[-1].rows == 26 * 20
    assert got[-1].value == "other (26 values)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": ["nope"]}, "unknown column 'nope'"),
        ({"columns": []}, "at least one column"),
        ({"task": "ranking"}, "task must be"),
        ({"classes": None}, "need the classes"),
        ({"y_pred": np.zeros(3)}, "y_pred has 3 rows"),
        ({"max_slices": 1}, "max_slices"),
    ],
)
def test_slice_metrics_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    frame, y_true, y_pred, proba = _city_frame()
    args: dict[str, object] = {
        "y_true": y_true,
        "y_pred": y_pred,
        "proba": proba,
        "classes": [0, 1],
        "task": "classification",
        "columns": ["city"],
    }
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        slice_metrics(frame, **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# fairness

Y_TRUE = np.array(["yes", "yes", "no", "no", "yes", "yes", "no", "no"])
Y_PRED = np.array(["yes", "no", "no", "no", "yes", "yes", "yes", "no"])
SEX = np.array(["F", "F", "F", "F", "M", "M", "M", "M"])
# north: rows 0-5, south: rows 6-7 (no true positives there)
REGION = np.array(["north"] * 6 + ["south"] * 2)


def test_fairness_numbers_equal_a_hand_computation() -> None:
    pytest.importorskip("fairlearn")
    report = fairness_report(Y_TRUE, Y_PRED, {"sex": SEX, "region": REGION}, "yes")
    sex = report.column("sex")
    by_group = {g.group: g for g in sex.groups}
    # F: true yes,yes,no,no predicted yes,no,no,no; M: true yes,yes,no,no predicted yes,yes,yes,no
    assert by_group["F"].count == 4
    assert by_group["F"].positives == 2
    assert by_group["F"].selection_rate == pytest.approx(1 / 4)
    assert by_group["F"].true_positive_rate == pytest.approx(1 / 2)
    assert by_group["F"].false_positive_rate == pytest.approx(0.0)
    assert by_group["F"].accuracy == pytest.approx(3 / 4)
    assert by_group["M"].selection_rate == pytest.approx(3 / 4)
    assert by_group["M"].true_positive_rate == pytest.approx(1.0)
    assert by_group["M"].false_positive_rate == pytest.approx(1 / 2)
    assert sex.demographic_parity_difference == pytest.approx(0.5)
    assert sex.demographic_parity_ratio == pytest.approx(1 / 3)
    assert sex.equalized_odds_difference == pytest.approx(0.5)  # max(|1/2-1|, |0-1/2|)
    assert sex.equalized_odds_ratio == pytest.approx(0.0)  # min(1/2 / 1, 0 / (1/2))

    region = report.column("region")
    north, south = region.groups
    assert (north.group, north.count, south.group, south.count) == ("north", 6, "south", 2)
    assert north.selection_rate == pytest.approx(3 / 6)
    assert north.true_positive_rate == pytest.approx(3 / 4)
    assert south.selection_rate == pytest.approx(1 / 2)
    assert south.positives == 0  # its TPR is undefined: Fairlearn counts it as 0
    assert south.false_positive_rate == pytest.approx(1 / 2)
    assert region.demographic_parity_difference == pytest.approx(0.0)
    assert region.equalized_odds_difference == pytest.approx(0.75)

    summary = report.summary()
    assert summary["demographic_parity_difference"] == pytest.approx(0.5)  # worst: sex
    assert summary["equalized_odds_difference"] == pytest.approx(0.75)  # worst: region
    assert summary["demographic_parity_ratio"] == pytest.approx(1 / 3)
    assert summary["demographic_parity_difference[sex]"] == pytest.approx(0.5)
    assert summary["demographic_parity_difference[region]"] == pytest.approx(0.0)
    assert summary["equalized_odds_difference[sex]"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in summary.values())
    assert report.positive_label == "yes"
    assert report.rows == 8


def test_sensitive_columns_by_name_and_nulls_as_a_group() -> None:
    pytest.importorskip("fairlearn")
    frame = pd.DataFrame(
        {"sex": pd.Series(["F", "F", None, None, "M", "M", "M", "M"], dtype=object)}
    )
    report = fairness_report(Y_TRUE, Y_PRED, ["sex"], "yes", frame=frame)
    groups = {g.group: g.count for g in report.column("sex").groups}
    assert groups == {"F": 2, "M": 4, "null": 2}
    # integer labels and a numpy positive label
    report = fairness_report(
        (Y_TRUE == "yes").astype(int), (Y_PRED == "yes").astype(int), {"sex": SEX}, np.int64(1)
    )
    assert report.summary()["demographic_parity_difference"] == pytest.approx(0.5)
    assert report.model_dump(mode="json")["positive_label"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "regression"}, "needs a classifier"),
        (
            {"sensitive": ["age"], "frame": pd.DataFrame({"sex": SEX})},
            "unknown sensitive column 'age'",
        ),
        ({"sensitive": ["sex"]}, "need the frame"),
        ({"sensitive": {"sex": np.array(["F"] * 8)}}, "has one group"),
        ({"sensitive": {"sex": SEX[:5]}}, "has 5 rows"),
        ({"sensitive": {}}, "at least one sensitive column"),
        ({"positive_label": "maybe"}, "positive label 'maybe'"),
    ],
)
def test_fairness_report_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    pytest.importorskip("fairlearn")
    args: dict[str, object] = {"sensitive": {"sex": SEX}, "positive_label": "yes"}
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        fairness_report(Y_TRUE, Y_PRED, **args)  # type: ignore[arg-type]
