"""Fit, evaluate and package models; train → track → register in one call."""

from mloop.training.card import ModelCard, model_card
from mloop.training.estimators import (
    DEFAULT_ESTIMATOR,
    build_pipeline,
    classifier,
    make_estimator,
    parse_param,
    regressor,
    resolve_estimator,
)
from mloop.training.evaluation import FairnessReport, SliceResult, fairness_report, slice_metrics
from mloop.training.evaluator import Evaluation, EvaluationService
from mloop.training.explain import Explanation, RowExplanation, explain, explain_row
from mloop.training.metrics import calibration, classification_metrics, regression_metrics
from mloop.training.promotion import PromotionResult, PromotionService
from mloop.training.trainer import REFERENCE_PREDICTIONS, TrainingResult, TrainingService
from mloop.training.tuning import TuningResult, TuningService, load_space, validate_space

__all__ = [
    "DEFAULT_ESTIMATOR",
    "REFERENCE_PREDICTIONS",
    "Evaluation",
    "EvaluationService",
    "Explanation",
    "FairnessReport",
    "ModelCard",
    "PromotionResult",
    "PromotionService",
    "RowExplanation",
    "SliceResult",
    "TrainingResult",
    "TrainingService",
    "TuningResult",
    "TuningService",
    "build_pipeline",
    "calibration",
    "classification_metrics",
    "classifier",
    "explain",
    "explain_row",
    "fairness_report",
    "load_space",
    "make_estimator",
    "model_card",
    "parse_param",
    "regression_metrics",
    "regressor",
    "resolve_estimator",
    "slice_metrics",
    "validate_space",
]
