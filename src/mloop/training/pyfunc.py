"""Any Python function as a model: ``model="pyfunc:package.module.function"``.

The function takes the training rows after mloop's preprocessing (a NumPy matrix: imputed,
scaled numbers and one-hot categories, in the pipeline's column order), the labels and the
run's params, and returns a fitted object with ``predict`` (and ``predict_proba`` for class
probabilities)::

    import mloop.training

    @mloop.training.classifier
    def nearest_centroid(X, y, shrink=0.0):
        from sklearn.neighbors import NearestCentroid
        return NearestCentroid(shrink_threshold=shrink or None).fit(X, y)

    ws.training.train("loans", "defaulted", model="pyfunc:my_models.nearest_centroid",
                      params={"shrink": 0.2})

The decorator says the task (``classifier`` or ``regressor``). The function is saved by
reference, so it must be importable (a module-level function) where the model is loaded. The
wrapper follows scikit-learn's contract, so cross-validation, tuning, evaluation, gates and
serving treat it like any estimator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.metaestimators import available_if

from mloop.core.errors import InvalidInput
from mloop.training.estimators import TASK_ATTRIBUTE

PREFIX = "pyfunc:"


def _fitted(function: Callable[..., Any], params: Mapping[str, Any] | None, X: Any, y: Any) -> Any:
    try:
        model = function(X, y, **dict(params or {}))
    except TypeError as exc:
        raise InvalidInput(f"{function.__qualname__}: {exc}") from exc
    if not hasattr(model, "predict"):
        raise InvalidInput(
            f"{function.__qualname__} returned {type(model).__name__}, which has no predict()"
        )
    return model


class FunctionClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(
        self, function: Callable[..., Any], params: Mapping[str, Any] | None = None
    ) -> None:
        self.function = function
        self.params = params

    def fit(self, X: Any, y: Any) -> FunctionClassifier:
        self.classes_ = np.unique(y)
        self.model_ = _fitted(self.function, self.params, X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        found: np.ndarray = np.asarray(self.model_.predict(X))
        return found

    @available_if(lambda self: hasattr(self.model_, "predict_proba"))  # type: ignore[untyped-decorator]
    def predict_proba(self, X: Any) -> np.ndarray:
        found: np.ndarray = np.asarray(self.model_.predict_proba(X))
        return found


class FunctionRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(
        self, function: Callable[..., Any], params: Mapping[str, Any] | None = None
    ) -> None:
        self.function = function
        self.params = params

    def fit(self, X: Any, y: Any) -> FunctionRegressor:
        self.model_ = _fitted(self.function, self.params, X, y)
        return self

    def predict(self, X: Any) -> np.ndarray:
        found: np.ndarray = np.asarray(self.model_.predict(X), dtype=float)
        return found


def function_estimator(path: str, params: Mapping[str, Any]) -> Any:
    """The estimator for ``pyfunc:module.function``: checked before any compute."""
    dotted = path[len(PREFIX) :]
    module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise InvalidInput(f"{path!r}: give pyfunc:package.module.function")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"unknown function {dotted!r}: {exc}") from exc
    if not callable(function):
        raise InvalidInput(f"{dotted!r} is not a function")
    task = getattr(function, TASK_ATTRIBUTE, None)
    if task is None:
        raise InvalidInput(
            f"{dotted!r} does not say its task: decorate it with @mloop.training.classifier "
            "or @mloop.training.regressor"
        )
    kind = FunctionClassifier if task == "classification" else FunctionRegressor
    return kind(function=function, params=dict(params) or None)
