"""A model fitted on a bare array, served from named columns.

An mloop model takes named, typed columns (its signature). An estimator fitted on a NumPy
array has no column names, so autologging names them ``f0``…``fn`` and packages the estimator
inside :class:`ArrayInputModel`, which hands the estimator the frame's values in that order:
the estimator sees at serving time what it saw at fit time, and scikit-learn has no feature
names to complain about.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_DELEGATED = frozenset({"predict", "predict_proba", "predict_log_proba", "decision_function"})


class ArrayInputModel:
    """``estimator``, taking a frame (or an array) whose columns are in the order it was fitted
    on. Every other attribute (``classes_``, ``feature_importances_``…) is the estimator's.

    ``one_column``: the estimator was fitted on a 1-D sequence (texts for a vectorizer, say),
    so it is handed the frame's single column, not a table of one column."""

    def __init__(self, estimator: Any, one_column: bool = False) -> None:
        self.estimator = estimator
        self.one_column = one_column

    def _values(self, X: Any) -> Any:
        values = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        if self.one_column and values.ndim == 2:
            return values[:, 0]
        return values

    def __getattr__(self, name: str) -> Any:
        if name in ("estimator", "one_column") or name.startswith("__"):
            raise AttributeError(name)  # while unpickling, before __dict__ is filled
        attribute = getattr(self.estimator, name)
        if name in _DELEGATED:
            return lambda X, *args, **kwargs: attribute(self._values(X), *args, **kwargs)
        return attribute

    def __repr__(self) -> str:
        return f"ArrayInputModel({self.estimator!r})"
