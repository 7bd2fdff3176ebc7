"""A classifier wrapper for estimators that take only the labels 0..k-1 (XGBoost's): it fits
the inner estimator on the labels' codes and answers in the labels, with ``classes_`` the
sorted labels, as scikit-learn's own classifiers do. Kept in its own module so a pickled
pipeline names a stable import path."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.preprocessing import LabelEncoder


class LabelEncodedClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):  # type: ignore[misc]
    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelEncodedClassifier:
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        self.estimator_ = clone(self.estimator).fit(X, self.encoder_.transform(y), **fit_params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        codes = np.asarray(self.estimator_.predict(X)).astype(np.int64)
        decoded: np.ndarray = self.encoder_.inverse_transform(codes)
        return decoded

    def predict_proba(self, X: Any) -> np.ndarray:
        found: np.ndarray = self.estimator_.predict_proba(X)
        return found

    @property
    def feature_importances_(self) -> Any:
        return self.estimator_.feature_importances_
