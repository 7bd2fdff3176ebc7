"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from mloop.api.deps import metrics, workspace
from mloop.serving import ServingMetrics
from mloop.workspace import Workspace

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The metadata database answers")
def readyz(ws: Annotated[Workspace, Depends(workspace)]) -> Any:
    try:
        revision = ws.db.current_revision()
    except Exception as exc:  # any failure here means not ready
        return JSONResponse(
            {"status": "unavailable", "error": "STORAGE_ERROR", "message": str(exc)},
            status_code=503,
        )
    return {"status": "ready", "schema_revision": revision}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus(m: Annotated[ServingMetrics, Depends(metrics)]) -> Response:
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
