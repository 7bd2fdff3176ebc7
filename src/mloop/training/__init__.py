"""Fit, evaluate and package models; train → track → register in one call."""

from mloop.training.estimators import (
    DEFAULT_ESTIMATOR,
    build_pipeline,
    make_estimator,
    parse_param,
    resolve_estimator,
)
from mloop.training.metrics import classification_metrics, regression_metrics
from mloop.training.trainer import REFERENCE_PREDICTIONS, TrainingResult, TrainingService

__all__ = [
    "DEFAULT_ESTIMATOR",
    "REFERENCE_PREDICTIONS",
    "TrainingResult",
    "TrainingService",
    "build_pipeline",
    "classification_metrics",
    "make_estimator",
    "parse_param",
    "regression_metrics",
    "resolve_estimator",
]
