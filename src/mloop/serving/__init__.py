"""Online inference: prediction, the prediction log, serving metrics."""

from mloop.serving.metrics import ServingMetrics
from mloop.serving.prediction_log import PredictionLogger, PredictionRecord
from mloop.serving.predictor import MAX_ROWS_PER_REQUEST, PredictionResult, Predictor

__all__ = [
    "MAX_ROWS_PER_REQUEST",
    "PredictionLogger",
    "PredictionRecord",
    "PredictionResult",
    "Predictor",
    "ServingMetrics",
]
