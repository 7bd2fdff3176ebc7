"""Prometheus metrics of one server, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mloop.serving.prediction_log import PredictionLogger

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    def __init__(self, logger: PredictionLogger | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mloop_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mloop_request_latency_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "mloop_predictions",
            "Rows predicted, by model and version.",
            ["model", "version"],
            registry=self.registry,
        )
        self.prediction_errors = Counter(
            "mloop_prediction_errors",
            "Predict requests refused or failed, by model and error code.",
            ["model", "code"],
            registry=self.registry,
        )
        if logger is not None:
            queued = Gauge(
                "mloop_prediction_log_queued",
                "Prediction records waiting to be written.",
                registry=self.registry,
            )
            queued.set_function(lambda: logger.queued)
            written = Gauge(
                "mloop_prediction_log_written",
                "Prediction records written since the server started.",
                registry=self.registry,
            )
            written.set_function(lambda: logger.written)
            dropped = Gauge(
                "mloop_prediction_log_dropped",
                "Prediction records lost (queue full or database down) since the server started.",
                registry=self.registry,
            )
            dropped.set_function(lambda: logger.dropped)

    def render(self) -> bytes:
        return generate_latest(self.registry)
