"""The plots a training run logs as artifacts (PNG, drawn with matplotlib's Agg backend):
ROC and precision-recall curves, the calibration curve and the confusion matrix for a
classifier; predicted against actual and the residuals for a regressor."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return buffer.getvalue()


def classification_plots(
    y_true: Any, y_pred: Any, proba: np.ndarray | None, classes: list[Any]
) -> dict[str, bytes]:
    """``plots/*.png`` for a classifier on held-out rows (curves for two classes only)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from sklearn import metrics as skm

    from mloop.training.metrics import calibration

    out: dict[str, bytes] = {}
    y_true = np.asarray(y_true)
    if proba is not None and len(classes) == 2 and len(np.unique(y_true)) == 2:
        positive = y_true == classes[-1]
        score = np.asarray(proba)[:, 1]
        fpr, tpr, _ = skm.roc_curve(positive, score)
        figure, axis = plt.subplots(figsize=(4.5, 4))
        axis.plot(fpr, tpr, label=f"AUC {skm.auc(fpr, tpr):.3f}")
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
        axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        axis.legend(loc="lower right")
        out["plots/roc_curve.png"] = _png(figure)
        precision, recall, _ = skm.precision_recall_curve(positive, score)
        figure, axis = plt.subplots(figsize=(4.5, 4))
        axis.plot(recall, precision)
        axis.set(xlabel="recall", ylabel="precision", title="precision-recall")
        out["plots/pr_curve.png"] = _png(figure)
        curve = calibration(y_true, proba, classes)
        if curve is not None:
            figure, axis = plt.subplots(figsize=(4.5, 4))
            axis.plot(curve["mean_predicted"], curve["fraction_positive"], marker="o")
            axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
            axis.set(xlabel="mean predicted", ylabel="fraction positive", title="calibration")
            out["plots/calibration_curve.png"] = _png(figure)
    matrix = skm.confusion_matrix(y_true, np.asarray(y_pred), labels=classes)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    skm.ConfusionMatrixDisplay(matrix, display_labels=[str(c) for c in classes]).plot(
        ax=axis, colorbar=False
    )
    out["plots/confusion_matrix.png"] = _png(figure)
    return out


def regression_plots(y_true: Any, y_pred: Any) -> dict[str, bytes]:
    """``plots/*.png`` for a regressor on held-out rows."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    truth, predicted = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.scatter(truth, predicted, s=6, alpha=0.5)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    axis.plot([low, high], [low, high], linestyle="--", color="grey")
    axis.set(xlabel="actual", ylabel="predicted", title="predicted vs actual")
    out = {"plots/predicted_vs_actual.png": _png(figure)}
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.hist(predicted - truth, bins=40)
    axis.set(xlabel="predicted − actual", ylabel="rows", title="residuals")
    out["plots/residuals.png"] = _png(figure)
    return out
