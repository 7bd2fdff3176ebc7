"""The registry, prediction and drift."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from mloop.api.deps import metrics, predictor, workspace
from mloop.core.clock import parse_time
from mloop.core.errors import InvalidInput, MloopError, NotFound
from mloop.monitoring import DriftReport
from mloop.registry import (
    DEFAULT_LATENCY_ROWS,
    AliasChange,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
    parse_model_ref,
)
from mloop.serving import Predictor, ServingMetrics
from mloop.training import Evaluation, PromotionResult
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


class PolicyRequest(BaseModel):
    gates: list[str] = Field(
        description="Expressions over evaluation results; champion.NAME reads the champion's",
        examples=[["roc_auc >= champion.roc_auc - 0.005", "latency_p99_ms <= 5"]],
    )
    dataset: str = Field(description="The evaluation dataset, NAME or NAME@VERSION")
    alias: str = "champion"
    sensitive: list[str] = Field(default_factory=list)
    slices: list[str] = Field(default_factory=list)
    latency_rows: int = DEFAULT_LATENCY_ROWS
    reason: str | None = None


@router.put("/models/{name}/policy", summary="Set a model's promotion policy")
def set_policy(ws: WS, name: str, body: PolicyRequest) -> PromotionPolicy:
    return ws.registry.set_policy(name, **body.model_dump())


@router.get("/models/{name}/policy", summary="A model's promotion policy")
def get_policy(ws: WS, name: str) -> PromotionPolicy:
    policy = ws.registry.get_policy(name)
    if policy is None:
        raise NotFound(f"model {name!r} has no promotion policy")
    return policy


class EvaluateRequest(BaseModel):
    dataset: str
    sensitive: list[str] = Field(default_factory=list)
    slices: list[str] = Field(default_factory=list)
    latency_rows: int = DEFAULT_LATENCY_ROWS


@router.post("/models/{ref}/evaluate", summary="Evaluate a version on a dataset")
def evaluate(ws: WS, ref: str, body: EvaluateRequest) -> Evaluation:
    return ws.evaluation.evaluate(ref, **body.model_dump())


class PromoteRequest(BaseModel):
    version: int = Field(ge=1)
    reason: str | None = None
    force: bool = False
    alias: str | None = None


@router.post(
    "/models/{name}/promote",
    summary="Promote a version through the model's gates",
    responses={409: {"description": "A gate failed (details.failed lists them)"}},
)
def promote(ws: WS, name: str, body: PromoteRequest) -> PromotionResult:
    return ws.promotion.promote(name, **body.model_dump())


class RollbackRequest(BaseModel):
    alias: str = "champion"
    reason: str | None = None


@router.post("/models/{name}/rollback", summary="Point an alias back at its previous version")
def rollback(ws: WS, name: str, body: RollbackRequest) -> ModelVersion:
    return ws.promotion.rollback(name, body.alias, reason=body.reason)


@router.get("/models/{name}/history", summary="Every move of a model's aliases")
def history(ws: WS, name: str, alias: str | None = None) -> list[AliasChange]:
    return ws.registry.alias_history(name, alias)


@router.get(
    "/models/{ref}/card",
    summary="A version's model card (made by mloop models card)",
    response_class=Response,
    responses={200: {"content": {"text/html": {}, "text/markdown": {}}}},
)
def get_card(ws: WS, ref: str, format: str = "html") -> Response:
    if format not in ("html", "md"):
        raise InvalidInput(f"format {format!r}: use html or md")
    version = ws.registry.resolve(ref)
    data = ws.registry.attachment(version, f"card.{format}")
    if data is None:
        raise NotFound(
            f"{version.ref} has no model card yet: mloop models card {version.ref} --dataset D"
        )
    media = "text/html" if format == "html" else "text/markdown"
    return Response(content=data, media_type=f"{media}; charset=utf-8")


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
