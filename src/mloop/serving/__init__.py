"""Online inference: deployments and their data plane (routing, micro-batching, hot swaps,
shadows), the request protocols, the prediction log, serving metrics."""

from mloop.serving import protocols
from mloop.serving.batch import BatchPrediction, BatchPredictionService
from mloop.serving.batching import MicroBatcher
from mloop.serving.deployments import (
    Batching,
    Deployment,
    DeploymentService,
    DeploymentSpec,
    Variant,
    check_spec,
    spec_from_options,
)
from mloop.serving.metrics import ServingMetrics
from mloop.serving.prediction_log import PredictionLogger, PredictionRecord
from mloop.serving.predictor import MAX_ROWS_PER_REQUEST, PredictionResult, Predictor
from mloop.serving.runtime import LiveDeployment, Served, ServingRuntime, route_point
from mloop.serving.served import ServedModel
from mloop.serving.streaming import (
    StreamPredictor,
    StreamPredictStats,
    predict_stream,
    stream_predictor,
)

__all__ = [
    "MAX_ROWS_PER_REQUEST",
    "BatchPrediction",
    "BatchPredictionService",
    "Batching",
    "Deployment",
    "DeploymentService",
    "DeploymentSpec",
    "LiveDeployment",
    "MicroBatcher",
    "PredictionLogger",
    "PredictionRecord",
    "PredictionResult",
    "Predictor",
    "Served",
    "ServedModel",
    "ServingMetrics",
    "ServingRuntime",
    "StreamPredictStats",
    "StreamPredictor",
    "Variant",
    "check_spec",
    "predict_stream",
    "protocols",
    "route_point",
    "spec_from_options",
    "stream_predictor",
]
