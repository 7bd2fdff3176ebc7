"""Module-level model functions for the pyfunc tests (saved by reference, so importable)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mloop.training import classifier, regressor


class Rule:
    """Saved with the model, so defined at module level (picklable)."""

    def __init__(self, cutoff: float, upper: Any, lower: Any) -> None:
        self.cutoff, self.upper, self.lower = cutoff, upper, lower

    def predict(self, X: Any) -> np.ndarray:
        return np.where(np.asarray(X)[:, 0] > self.cutoff, self.upper, self.lower)


@classifier
def threshold(X: Any, y: Any, cutoff: float = 0.0) -> Any:
    """The label of the side of ``cutoff`` the first column is on: no probabilities."""
    above = np.asarray(y)[np.asarray(X)[:, 0] > cutoff].tolist()
    upper = max(set(above), key=above.count)
    lower = next(label for label in np.unique(y) if label != upper)
    return Rule(cutoff, upper, lower)


@classifier
def local_model(X: Any, y: Any) -> Any:
    """Returns an object of a local class: it cannot be saved."""

    class Local:
        def predict(self, X: Any) -> np.ndarray:
            return np.asarray(y)[: len(X)]

    return Local()


@classifier
def logistic(X: Any, y: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, y)


class Line:
    def __init__(self, coef: np.ndarray) -> None:
        self.coef = coef

    def predict(self, X: Any) -> np.ndarray:
        return np.c_[np.asarray(X), np.ones(len(X))] @ self.coef


@regressor
def least_squares(X: Any, y: Any) -> Any:
    coef, *_ = np.linalg.lstsq(np.c_[np.asarray(X), np.ones(len(X))], np.asarray(y), rcond=None)
    return Line(coef)


def unmarked(X: Any, y: Any) -> Any:
    return None


@classifier
def returns_nothing(X: Any, y: Any) -> Any:
    return None
