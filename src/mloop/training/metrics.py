"""Held-out metrics: classification and regression, each in one place."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


def classification_metrics(
    y_true: Any, y_pred: Any, proba: np.ndarray | None, classes: list[Any]
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (binary: of the last class in sorted order; multiclass:
    macro averages), ROC-AUC and PR-AUC (average precision; binary: that class's score;
    multiclass: one-vs-rest macro), log loss and, for two classes, the Brier score."""
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    binary = len(classes) == 2
    kwargs: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[-1]} if binary else {"average": "macro"}
    )
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0, **kwargs)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0, **kwargs)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0, **kwargs)),
    }
    if proba is not None and len(np.unique(y_true)) > 1:
        if binary:
            positive = y_true == classes[-1]
            out["roc_auc"] = float(skm.roc_auc_score(positive, proba[:, 1]))
            out["pr_auc"] = float(skm.average_precision_score(positive, proba[:, 1]))
            out["brier"] = float(skm.brier_score_loss(positive, proba[:, 1]))
        elif len(np.unique(y_true)) == len(classes):
            out["roc_auc"] = float(
                skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
            )
            onehot = np.stack([y_true == c for c in classes], axis=1)
            out["pr_auc"] = float(skm.average_precision_score(onehot, proba, average="macro"))
        out["log_loss"] = float(skm.log_loss(y_true, proba, labels=classes))
    return {k: v for k, v in out.items() if not math.isnan(v)}


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE, MAE, R² (left out when undefined: fewer than two held-out rows) and MAPE (left out
    when a true value is 0, where it is undefined)."""
    from sklearn import metrics as skm

    truth = np.asarray(y_true, dtype=float)
    out = {
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
    }
    if len(y_true) >= 2:
        out["r2"] = float(skm.r2_score(y_true, y_pred))
    if len(truth) and not np.any(truth == 0):
        out["mape"] = float(skm.mean_absolute_percentage_error(y_true, y_pred))
    return {k: v for k, v in out.items() if not math.isnan(v)}


def calibration(
    y_true: Any, proba: np.ndarray, classes: list[Any], *, bins: int = 10
) -> dict[str, list[float]] | None:
    """The calibration curve of a binary classifier (the last class is positive): per
    quantile bin of predicted probability, the mean prediction and the observed rate, with the
    bin's row count; None for more than two classes."""
    if len(classes) != 2 or proba is None or len(proba) == 0:
        return None
    score = np.asarray(proba)[:, 1]
    positive = (np.asarray(y_true) == classes[-1]).astype(float)
    edges = np.unique(np.quantile(score, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, max(len(edges) - 2, 0))
    predicted, observed, counts = [], [], []
    for b in range(max(len(edges) - 1, 1)):
        rows = which == b
        if rows.any():
            predicted.append(float(score[rows].mean()))
            observed.append(float(positive[rows].mean()))
            counts.append(float(rows.sum()))
    return {"mean_predicted": predicted, "fraction_positive": observed, "count": counts}
