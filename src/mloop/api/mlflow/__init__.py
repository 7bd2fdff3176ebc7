"""MLflow's REST API over mloop's services, so the unmodified ``mlflow`` client works against
``mloop serve`` (``MLFLOW_TRACKING_URI=http://HOST:PORT``).

Mounted under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow`` (tracking, logged models,
registry), ``/api/2.0/mlflow-artifacts`` (the artifact proxy) and ``/api/3.0/mlflow/server-info``.
One module per area; ``protocol`` holds MLflow's error shape, JSON and request conventions.
None of it imports ``mlflow``: the server speaks the protocol without the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI

from mloop.api.mlflow import artifacts, logged_models, registry, tracking
from mloop.api.mlflow.protocol import (
    EndpointNotFound,
    MlflowJSONResponse,
    MlflowRoute,
    reply,
)

PREFIXES = ("/api/2.0", "/ajax-api/2.0")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

server = APIRouter(route_class=MlflowRoute, default_response_class=MlflowJSONResponse)


@server.get("/server-info")
def server_info() -> MlflowJSONResponse:
    """What MLflow 3 clients probe before moving artifacts: no multipart uploads or
    downloads (files go through the proxy whole), no workspaces."""
    return reply(
        {
            "store_type": "mloop",
            "workspaces_enabled": False,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
        }
    )


unknown = APIRouter(route_class=MlflowRoute, default_response_class=MlflowJSONResponse)


@unknown.api_route("/{path:path}", methods=METHODS)
def not_implemented(path: str) -> MlflowJSONResponse:
    raise EndpointNotFound(f"this server does not implement the MLflow endpoint {path!r}")


def install(app: FastAPI, dependencies: Sequence[Any]) -> None:
    """Mount the MLflow-compatible routes on ``app``, each behind ``dependencies``."""
    deps = list(dependencies)
    for prefix in PREFIXES:
        for module in (tracking, logged_models, registry):
            app.include_router(
                module.router, prefix=f"{prefix}/mlflow", dependencies=deps, include_in_schema=False
            )
        app.include_router(
            artifacts.router,
            prefix=f"{prefix}/mlflow-artifacts",
            dependencies=deps,
            include_in_schema=False,
        )
    app.include_router(server, prefix="/api/3.0/mlflow", dependencies=deps, include_in_schema=False)
    for prefix in (*PREFIXES, "/api/3.0"):  # last: what no route above matched
        for area in ("mlflow", "mlflow-artifacts"):
            app.include_router(
                unknown, prefix=f"{prefix}/{area}", dependencies=deps, include_in_schema=False
            )


__all__ = ["install"]
