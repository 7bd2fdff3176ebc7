"""Held-out metrics equal scikit-learn's own computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mloop.training import calibration, classification_metrics, regression_metrics


def test_binary_metrics_score_the_last_class() -> None:
    rng = np.random.default_rng(1)
    y_true = rng.choice(["fraud", "ok"], size=300, p=[0.2, 0.8])
    score = np.clip(rng.normal(0.5, 0.2, size=300) - 0.2 * (y_true == "fraud"), 0, 1)
    proba = np.column_stack([1 - score, score])  # columns follow the sorted classes
    y_pred = np.where(score > 0.5, "ok", "fraud")

    got = classification_metrics(y_true, y_pred, proba, ["fraud", "ok"])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, pos_label="ok"))
    assert got["recall"] == pytest.approx(skm.recall_score(y_true, y_pred, pos_label="ok"))
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, pos_label="ok"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == "ok", score))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, proba, labels=["fraud", "ok"]))


def test_multiclass_metrics_are_macro_averages() -> None:
    rng = np.random.default_rng(2)
    classes = [0, 1, 2]
    y_true = rng.choice(classes, size=300)
    proba = rng.dirichlet([1, 1, 1], size=300)
    y_pred = proba.argmax(axis=1)

    got = classification_metrics(y_true, y_pred, proba, classes)
    assert got["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, average="macro"))
    assert got["recall"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro"))
    assert got["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
    )


def test_without_probabilities_there_is_no_roc_auc() -> None:
    got = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], None, [0, 1])
    assert set(got) == {"accuracy", "precision", "recall", "f1"}


def test_a_hold_out_with_one_class_has_no_roc_auc() -> None:
    proba = np.array([[0.9, 0.1], [0.8, 0.2]])
    got = classification_metrics([0, 0], [0, 0], proba, [0, 1])
    assert "roc_auc" not in got
    assert got["accuracy"] == 1.0
    assert all(math.isfinite(v) for v in got.values())


def test_regression_metrics() -> None:
    rng = np.random.default_rng(3)
    y_true = rng.normal(10, 3, size=200)
    y_pred = y_true + rng.normal(0, 1, size=200)
    got = regression_metrics(y_true, y_pred)
    assert got["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y_true, y_pred)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred))
    assert got["r2"] == pytest.approx(skm.r2_score(y_true, y_pred))


def test_r2_is_left_out_when_undefined() -> None:
    # R² of one held-out row is undefined (NaN): a metric store cannot hold it, so leave it out
    assert regression_metrics([3.0], [2.5]) == {"rmse": 0.5, "mae": 0.5, "mape": 0.5 / 3}
    # MAPE divides by the true values: left out when one of them is 0
    assert "mape" not in regression_metrics([0.0, 2.0], [1.0, 2.0])


def test_mape_pr_auc_brier_and_calibration() -> None:
    assert regression_metrics([2.0, 4.0], [1.0, 5.0])["mape"] == pytest.approx((0.5 + 0.25) / 2)
    rng = np.random.default_rng(5)
    y = rng.choice(["no", "yes"], size=400)
    score = np.clip((y == "yes") * 0.4 + rng.random(400) * 0.6, 0, 1)
    proba = np.stack([1 - score, score], axis=1)
    got = classification_metrics(y, np.where(score > 0.5, "yes", "no"), proba, ["no", "yes"])
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y == "yes", score))
    assert got["brier"] == pytest.approx(np.mean((score - (y == "yes")) ** 2))
    curve = calibration(y, proba, ["no", "yes"], bins=5)
    assert curve is not None
    assert sum(curve["count"]) == 400
    assert len(curve["count"]) == 5
    # higher predicted bins see more positives, and each bin's mean is its rows' mean score
    assert curve["fraction_positive"] == sorted(curve["fraction_positive"])
    assert curve["mean_predicted"][0] == pytest.approx(np.sort(score)[:80].mean())
    assert calibration(y, np.zeros((400, 3)), ["a", "b", "c"]) is None
