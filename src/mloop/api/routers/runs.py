"""Experiments, runs, and training."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from mloop.api.deps import workspace
from mloop.tracking import Experiment, MetricPoint, Run
from mloop.training import DEFAULT_ESTIMATOR, TrainingResult
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["runs"])
WS = Annotated[Workspace, Depends(workspace)]


@router.get("/experiments", summary="List experiments")
def list_experiments(ws: WS) -> list[Experiment]:
    return ws.tracking.list_experiments()


@router.get("/runs", summary="List runs, newest first")
def list_runs(
    ws: WS,
    experiment: str | None = None,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
) -> list[Run]:
    return ws.tracking.list_runs(experiment, status=status, limit=limit)


@router.get("/runs/{run_id}", summary="One run")
def get_run(ws: WS, run_id: str) -> Run:
    return ws.tracking.get_run(run_id)


@router.get("/runs/{run_id}/metrics/{key}", summary="A metric's history")
def metric_history(ws: WS, run_id: str, key: str) -> list[MetricPoint]:
    return ws.tracking.metric_history(run_id, key)


@router.get("/runs/{run_id}/artifacts/{path:path}", summary="Download a run artifact")
def artifact(ws: WS, run_id: str, path: str) -> Response:
    return Response(ws.tracking.read_artifact(run_id, path), media_type="application/octet-stream")


class TrainRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    dataset: str = Field(description="NAME or NAME@VERSION")
    target: str
    model: str = DEFAULT_ESTIMATOR
    params: dict[str, Any] = {}
    features: list[str] | None = None
    exclude: list[str] = []
    experiment: str = "Default"
    run_name: str | None = None
    test_size: float = 0.2
    seed: int = 42
    register_as: str | None = Field(
        default=None, alias="register", description="register the model under this name"
    )
    alias: str | None = None


@router.post(
    "/training-runs", status_code=201, summary="Train (synchronously) and optionally register"
)
def train(ws: WS, body: TrainRequest) -> TrainingResult:
    return ws.training.train(
        body.dataset,
        body.target,
        model=body.model,
        params=body.params,
        features=body.features,
        exclude=body.exclude,
        experiment=body.experiment,
        run_name=body.run_name,
        test_size=body.test_size,
        seed=body.seed,
        register=body.register_as,
        alias=body.alias,
    )
