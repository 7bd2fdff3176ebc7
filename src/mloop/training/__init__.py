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
from mloop.training.tuning import TuningResult, TuningService, load_space, validate_space

__all__ = [
    "DEFAULT_ESTIMATOR",
    "REFERENCE_PREDICTIONS",
    "TrainingResult",
    "TrainingService",
    "TuningResult",
    "TuningService",
    "build_pipeline",
    "classification_metrics",
    "load_space",
    "make_estimator",
    "parse_param",
    "regression_metrics",
    "resolve_estimator",
    "validate_space",
]
