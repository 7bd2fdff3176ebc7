"""The REST application: every domain router behind one auth dependency and one error shape."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI

from mloop import __version__
from mloop.api import errors, mlflow
from mloop.api.auth import authenticate
from mloop.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from mloop.api.routers import datasets, features, health, lineage, models, runs, transforms
from mloop.serving import PredictionLogger, Predictor, ServingMetrics
from mloop.workspace import Workspace


def create_app(ws: Workspace, *, log_predictions: bool = True) -> FastAPI:
    """The app for ``ws``. Predictions are logged to the workspace unless told otherwise."""
    settings = ws.settings
    logger = (
        PredictionLogger(
            ws.db,
            flush_seconds=settings.prediction_log_flush_seconds,
            batch_size=settings.prediction_log_batch_size,
            queue_size=settings.prediction_log_queue_size,
        )
        if log_predictions
        else None
    )
    metrics = ServingMetrics(logger)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if logger is not None:
            logger.start()
        try:
            yield
        finally:
            if logger is not None:
                logger.close()

    app = FastAPI(
        title="mloop",
        version=__version__,
        description="The production ML loop: datasets, validation, runs, models, "
        "prediction and monitoring.",
        lifespan=lifespan,
    )
    app.state.workspace = ws
    app.state.metrics = metrics
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
    app.include_router(datasets.router, dependencies=secured)
    app.include_router(transforms.router, dependencies=secured)
    app.include_router(lineage.router, dependencies=secured)
    app.include_router(runs.router, dependencies=secured)
    app.include_router(models.router, dependencies=secured)
    app.include_router(features.router, dependencies=secured)
    mlflow.install(app, secured)  # MLflow's REST API, for the unmodified mlflow client
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware)
    return app
