"""The registry, prediction and drift."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from mloop.api.deps import metrics, predictor, workspace
from mloop.core.clock import parse_time
from mloop.core.errors import MloopError
from mloop.monitoring import DriftReport
from mloop.registry import ModelVersion, RegisteredModel, parse_model_ref
from mloop.serving import Predictor, ServingMetrics
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["models"])
WS = Annotated[Workspace, Depends(workspace)]


@router.get("/models", summary="List registered models")
def list_models(ws: WS) -> list[RegisteredModel]:
    return ws.registry.list_models()


@router.get("/models/{name}", summary="A registered model")
def get_model(ws: WS, name: str) -> RegisteredModel:
    return ws.registry.get_model(name)


@router.get("/models/{name}/versions", summary="A model's versions")
def list_versions(ws: WS, name: str) -> list[ModelVersion]:
    return ws.registry.versions(name)


@router.get("/models/{ref}/resolve", summary="Resolve NAME, NAME@ALIAS or NAME@N to a version")
def resolve(ws: WS, ref: str) -> ModelVersion:
    return ws.registry.resolve(ref)


class RegisterRequest(BaseModel):
    run_id: str
    artifact_path: str = "model"
    description: str | None = None


@router.post("/models/{name}/versions", status_code=201, summary="Register a run's model")
def register(ws: WS, name: str, body: RegisterRequest) -> ModelVersion:
    return ws.registry.register(
        body.run_id, name, artifact_path=body.artifact_path, description=body.description
    )


class AliasRequest(BaseModel):
    version: int = Field(ge=1)
    reason: str | None = None


@router.put("/models/{name}/aliases/{alias}", summary="Point an alias at a version")
def set_alias(ws: WS, name: str, alias: str, body: AliasRequest) -> ModelVersion:
    return ws.registry.set_alias(name, alias, body.version, reason=body.reason)


@router.delete("/models/{name}/aliases/{alias}", status_code=204, summary="Remove an alias")
def delete_alias(ws: WS, name: str, alias: str) -> Response:
    ws.registry.delete_alias(name, alias)
    return Response(status_code=204)


class PredictRequest(BaseModel):
    rows: list[dict[str, Any]] = Field(
        description="One object per row, mapping every input column to its value (null allowed)",
        examples=[[{"amount": 42.5, "merchant_category": "grocery"}]],
    )


class PredictResponse(BaseModel):
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    model: str
    version: int
    request_id: str


@router.post(
    "/models/{ref}/predict",
    summary="Predict with NAME (its champion), NAME@ALIAS or NAME@VERSION",
    responses={
        404: {"description": "unknown model, alias or version"},
        422: {"description": "rows that do not fit the model's signature"},
    },
)
def predict(
    ref: str,
    body: PredictRequest,
    p: Annotated[Predictor, Depends(predictor)],
    m: Annotated[ServingMetrics, Depends(metrics)],
) -> PredictResponse:
    try:
        result = p.predict(ref, body.rows)
    except MloopError as exc:
        m.prediction_errors.labels(p.model_label(ref), exc.code).inc()
        raise
    m.predictions.labels(result.model, str(result.version)).inc(len(result.predictions))
    return PredictResponse(
        predictions=result.predictions,
        probabilities=result.probabilities,
        model=result.model,
        version=result.version,
        request_id=result.request_id,
    )


@router.get("/models/{ref}/drift", tags=["monitoring"], summary="Drift of served traffic")
def drift(ws: WS, ref: str, since: str | None = None, until: str | None = None) -> DriftReport:
    parse_model_ref(ref)
    start: datetime | None = parse_time(since) if since else None
    end: datetime | None = parse_time(until) if until else None
    return ws.monitoring.drift(ref, since=start, until=end)
