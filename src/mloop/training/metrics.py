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
    macro averages), ROC-AUC (binary: that class's score; multiclass: one-vs-rest macro) and
    log loss."""
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
            out["roc_auc"] = float(skm.roc_auc_score(y_true == classes[-1], proba[:, 1]))
        elif len(np.unique(y_true)) == len(classes):
            out["roc_auc"] = float(
                skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
            )
        out["log_loss"] = float(skm.log_loss(y_true, proba, labels=classes))
    return {k: v for k, v in out.items() if not math.isnan(v)}


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE, MAE and R² (left out when undefined: fewer than two held-out rows)."""
    from sklearn import metrics as skm

    out = {
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
    }
    if len(y_true) >= 2:
        out["r2"] = float(skm.r2_score(y_true, y_pred))
    return {k: v for k, v in out.items() if not math.isnan(v)}
