"""The REST application: every domain router behind one auth dependency and one error shape."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp

from mloop import __version__
from mloop.api import errors, mlflow
from mloop.api.auth import authenticate
from mloop.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from mloop.api.routers import (
    alerts,
    datasets,
    deployments,
    features,
    health,
    lineage,
    loop,
    models,
    monitoring,
    runs,
    transforms,
)
from mloop.api.serving import ServingEndpoints, ServingMiddleware
from mloop.monitoring import MonitoringCollector
from mloop.serving import PredictionLogger, Predictor, ServingMetrics, ServingRuntime
from mloop.workspace import Workspace


def create_app(
    ws: Workspace,
    *,
    log_predictions: bool = True,
    default_deployment: str | None = None,
) -> FastAPI:
    """The app for ``ws``. Predictions are logged to the workspace unless told otherwise;
    ``default_deployment`` answers MLflow's ``POST /invocations`` (default: the only one)."""
    settings = ws.settings
    logger = (
        PredictionLogger(
            ws.db,
            flush_seconds=settings.prediction_log_flush_seconds,
            batch_size=settings.prediction_log_batch_size,
            queue_size=settings.prediction_log_queue_size,
            process=settings.prediction_log_process,
        )
        if log_predictions
        else None
    )
    metrics = ServingMetrics(logger)
    metrics.registry.register(MonitoringCollector(ws.db))  # alert rules' state
    runtime = ServingRuntime(
        ws.deployments,
        ws.registry,
        metrics,
        logger,
        features=ws.features,
        refresh_seconds=settings.alias_cache_seconds,
        max_concurrency=settings.serve_max_concurrency,
    )
    endpoints = ServingEndpoints(runtime, default_deployment)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if logger is not None:
            logger.start()
        await asyncio.to_thread(runtime.start)  # every deployment loaded before traffic
        # what is loaded now (libraries, models) lives as long as the server: move it out of
        # the collector's sight, so a full collection does not walk it in a request's time
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            # uvicorn has stopped accepting and waited for requests in flight: what they
            # queued for the prediction log is written before the process ends
            runtime.stop()
            if logger is not None:
                logger.close()

    app = _App(
        title="mloop",
        version=__version__,
        description="The production ML loop: datasets, validation, runs, models, "
        "prediction and monitoring.",
        lifespan=lifespan,
    )
    app.state.workspace = ws
    app.state.metrics = metrics
    app.state.serving = endpoints
    app.state.prediction_logger = logger
    app.state.predictor = Predictor(
        ws.registry,
        logger,
        alias_cache_seconds=settings.alias_cache_seconds,
        features=ws.features,
    )
    errors.install(app)
    secured = [Depends(authenticate)]
    app.include_router(health.router, dependencies=secured)
    app.include_router(alerts.router, dependencies=secured)
    app.include_router(datasets.router, dependencies=secured)
    app.include_router(transforms.router, dependencies=secured)
    app.include_router(lineage.router, dependencies=secured)
    app.include_router(runs.router, dependencies=secured)
    app.include_router(models.router, dependencies=secured)
    app.include_router(monitoring.router, dependencies=secured)
    app.include_router(loop.router, dependencies=secured)
    app.include_router(features.router, dependencies=secured)
    app.include_router(deployments.router, dependencies=secured)
    app.include_router(deployments.data_plane)
    mlflow.install(app, secured)  # MLflow's REST API, for the unmodified mlflow client
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware)
    # outside every other layer: predict requests skip FastAPI's middleware, routing and body
    # models (see api/serving.py)
    app.data_plane = (endpoints, settings.serve_max_body_bytes)
    return app


class _App(FastAPI):
    """FastAPI with the serving data plane in front of its whole middleware stack."""

    data_plane: tuple[ServingEndpoints, int] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.data_plane is None:
            return stack
        endpoints, limit = self.data_plane
        return ServingMiddleware(stack, endpoints, max_body_bytes=limit)
