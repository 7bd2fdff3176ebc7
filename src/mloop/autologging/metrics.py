"""The metrics autologging computes on a fitted estimator and some data.

Classifiers: ``accuracy``, ``precision``, ``recall``, ``f1`` (weighted by class support, as
MLflow's autologging does), and with ``predict_proba``: ``log_loss`` and ``roc_auc`` (binary:
the score of the second class in ``classes_``; multiclass: one-vs-rest, weighted).
Regressors: ``mse``, ``rmse``, ``mae``, ``r2``. Anything else: none. A metric that is undefined
on the data (ROC-AUC with one class present, R² on one row) is left out.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("mloop.autolog")


def task_of(estimator: Any) -> str | None:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    return None


def _collect(out: dict[str, float], name: str, compute: Callable[[], float]) -> None:
    try:
        value = float(compute())
    except Exception as exc:  # undefined on this data: leave it out
        log.debug("mloop autolog: metric %s not computed: %s", name, exc)
        return
    if math.isfinite(value):
        out[name] = value


def classification(estimator: Any, X: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
    from sklearn import metrics as skm

    y_true = np.asarray(y)
    y_pred = estimator.predict(X)
    w = sample_weight
    out: dict[str, float] = {}
    weighted: dict[str, Any] = {"average": "weighted", "zero_division": 0, "sample_weight": w}
    _collect(out, "accuracy", lambda: skm.accuracy_score(y_true, y_pred, sample_weight=w))
    _collect(out, "precision", lambda: skm.precision_score(y_true, y_pred, **weighted))
    _collect(out, "recall", lambda: skm.recall_score(y_true, y_pred, **weighted))
    _collect(out, "f1", lambda: skm.f1_score(y_true, y_pred, **weighted))
    if not hasattr(estimator, "predict_proba"):
        return out
    try:
        proba = np.asarray(estimator.predict_proba(X))
        classes = list(estimator.classes_)
    except Exception as exc:
        log.debug("mloop autolog: no probabilities: %s", exc)
        return out
    _collect(out, "log_loss", lambda: skm.log_loss(y_true, proba, labels=classes, sample_weight=w))
    if len(classes) == 2:
        positive = y_true == classes[1]
        _collect(out, "roc_auc", lambda: skm.roc_auc_score(positive, proba[:, 1], sample_weight=w))
    else:
        _collect(
            out,
            "roc_auc",
            lambda: skm.roc_auc_score(
                y_true,
                proba,
                multi_class="ovr",
                average="weighted",
                labels=classes,
                sample_weight=w,
            ),
        )
    return out


def regression(estimator: Any, X: Any, y: Any, sample_weight: Any = None) -> dict[str, float]:
    from sklearn import metrics as skm

    y_true = np.asarray(y)
    y_pred = estimator.predict(X)
    w = sample_weight
    out: dict[str, float] = {}
    _collect(out, "mse", lambda: skm.mean_squared_error(y_true, y_pred, sample_weight=w))
    if "mse" in out:
        out["rmse"] = math.sqrt(out["mse"])
    _collect(out, "mae", lambda: skm.mean_absolute_error(y_true, y_pred, sample_weight=w))
    if len(y_true) >= 2:
        _collect(out, "r2", lambda: skm.r2_score(y_true, y_pred, sample_weight=w))
    return out


def metric_family(
    estimator: Any, X: Any, y: Any, prefix: str, sample_weight: Any = None
) -> dict[str, float]:
    """The metrics of ``estimator``'s task on ``(X, y)``, each key prefixed."""
    if y is None or not hasattr(estimator, "predict"):
        return {}
    task = task_of(estimator)
    with warnings.catch_warnings():
        # an undefined metric is left out, not warned about: the user did not ask for it
        warnings.simplefilter("ignore")
        if task == "classification":
            values = classification(estimator, X, y, sample_weight)
        elif task == "regression":
            values = regression(estimator, X, y, sample_weight)
        else:
            values = {}
    return {f"{prefix}{k}": v for k, v in values.items()}
