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
        # deployments (the serving data plane)
        self.deployment_requests = Counter(
            "mloop_deployment_requests",
            "Predict requests answered by deployments, by deployment, variant, model version "
            "and status code.",
            ["deployment", "variant", "version", "status"],
            registry=self.registry,
        )
        self.deployment_latency = Histogram(
            "mloop_deployment_latency_seconds",
            "Time from a predict request's body to its answer, by deployment and version.",
            ["deployment", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.deployment_errors = Counter(
            "mloop_deployment_errors",
            "Predict requests refused or failed, by deployment and error code.",
            ["deployment", "code"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "mloop_batch_rows",
            "Rows per model call of the micro-batcher, by deployment and variant.",
            ["deployment", "variant"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10_000),
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "mloop_batch_requests",
            "Requests per model call of the micro-batcher, by deployment and variant.",
            ["deployment", "variant"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "mloop_queue_depth",
            "Requests waiting for the model, by deployment and variant.",
            ["deployment", "variant"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "mloop_in_flight_requests",
            "Predict requests being served by this worker.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "mloop_rejected_requests",
            "Predict requests refused before reaching a model, by reason (overloaded, timeout).",
            ["reason"],
            registry=self.registry,
        )
        self.model_load_seconds = Gauge(
            "mloop_model_load_seconds",
            "Seconds the last load of each served model version took, by runtime.",
            ["model", "version", "runtime"],
            registry=self.registry,
        )
        self.shadow_predictions = Counter(
            "mloop_shadow_predictions",
            "Rows mirrored to shadow variants, by deployment, variant and outcome "
            "(ok, error, dropped).",
            ["deployment", "variant", "outcome"],
            registry=self.registry,
        )
        self.swaps = Counter(
            "mloop_deployment_swaps",
            "Times a deployment's models were swapped in (a spec change or an alias move).",
            ["deployment"],
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
