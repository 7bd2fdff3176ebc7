"""Experiments, runs, tracking batches, search, artifacts, and training."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from mloop.api.deps import workspace
from mloop.tracking import (
    ArtifactInfo,
    Comparison,
    Experiment,
    MetricPoint,
    Operations,
    Page,
    Run,
    RunInput,
    RunStatus,
)
from mloop.training import DEFAULT_ESTIMATOR, TrainingResult
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["runs"])
WS = Annotated[Workspace, Depends(workspace)]


# -- experiments -------------------------------------------------------------------------------


class CreateExperiment(BaseModel):
    name: str
    tags: dict[str, str] = {}


class SearchExperiments(BaseModel):
    view: str = "active"
    filter: str | None = None
    order_by: list[str] | None = None
    max_results: int | None = None
    page_token: str | None = None


class RenameExperiment(BaseModel):
    name: str


class TagValue(BaseModel):
    value: str


@router.get("/experiments", tags=["experiments"], summary="Active experiments, oldest first")
def list_experiments(ws: WS) -> list[Experiment]:
    return ws.tracking.list_experiments()


@router.post("/experiments", status_code=201, tags=["experiments"], summary="Create")
def create_experiment(ws: WS, body: CreateExperiment) -> Experiment:
    return ws.tracking.create_experiment(body.name, body.tags)


@router.post("/experiments/search", tags=["experiments"], summary="Search (MLflow grammar)")
def search_experiments(ws: WS, body: SearchExperiments) -> Page[Experiment]:
    return ws.tracking.search_experiments(
        view=body.view,
        filter_string=body.filter,
        order_by=body.order_by,
        max_results=body.max_results,
        page_token=body.page_token,
    )


@router.get("/experiments/by-name/{name}", tags=["experiments"], summary="One, by name")
def get_experiment_by_name(ws: WS, name: str) -> Experiment:
    return ws.tracking.get_experiment_by_name(name)


@router.get("/experiments/{experiment_id}", tags=["experiments"], summary="One, by id")
def get_experiment(ws: WS, experiment_id: str) -> Experiment:
    return ws.tracking.get_experiment(experiment_id)


@router.patch("/experiments/{experiment_id}", tags=["experiments"], summary="Rename")
def rename_experiment(ws: WS, experiment_id: str, body: RenameExperiment) -> Experiment:
    return ws.tracking.rename_experiment(experiment_id, body.name)


@router.delete("/experiments/{experiment_id}", tags=["experiments"], summary="Delete (restorable)")
def delete_experiment(ws: WS, experiment_id: str) -> Experiment:
    return ws.tracking.delete_experiment(experiment_id)


@router.post("/experiments/{experiment_id}/restore", tags=["experiments"], summary="Restore")
def restore_experiment(ws: WS, experiment_id: str) -> Experiment:
    return ws.tracking.restore_experiment(experiment_id)


@router.put(
    "/experiments/{experiment_id}/tags/{key:path}", tags=["experiments"], summary="Set a tag"
)
def set_experiment_tag(ws: WS, experiment_id: str, key: str, body: TagValue) -> Response:
    ws.tracking.set_experiment_tag(experiment_id, key, body.value)
    return Response(status_code=204)


# -- runs --------------------------------------------------------------------------------------


@router.post(
    "/tracking/batch",
    status_code=204,
    summary="Apply create-run, log and update-run operations in one transaction",
)
def apply(ws: WS, body: Operations) -> Response:
    ws.tracking.apply(body.operations, batch_id=body.batch_id)
    return Response(status_code=204)


@router.get("/runs", summary="Runs, newest first")
def list_runs(
    ws: WS,
    experiment: str | None = None,
    status: str | None = None,
    filter: str | None = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 50,
) -> list[Run]:
    return ws.tracking.list_runs(experiment, status=status, limit=limit, filter_string=filter)


class SearchRuns(BaseModel):
    experiment_ids: list[str] | None = None
    filter: str | None = Field(
        default=None, examples=["metrics.auc > 0.9 and params.model = 'xgb'"]
    )
    order_by: list[str] | None = Field(default=None, examples=[["metrics.auc DESC"]])
    max_results: int | None = None
    page_token: str | None = None
    view: str = "active"


@router.post(
    "/runs/search", summary="Search runs with MLflow's filter grammar", response_model=Page[Run]
)
def search_runs(ws: WS, body: SearchRuns) -> Response:
    page = ws.tracking.search_runs(
        body.experiment_ids,
        body.filter,
        body.order_by,
        body.max_results,
        body.page_token,
        view=body.view,
    )
    # serialized straight from the records the store built (no second validation pass)
    return Response(page.model_dump_json(), media_type="application/json")


class CompareRuns(BaseModel):
    run_ids: list[str]


@router.post("/runs/compare", summary="Params and metrics of several runs side by side")
def compare_runs(ws: WS, body: CompareRuns) -> Comparison:
    return ws.tracking.compare_runs(body.run_ids)


@router.get("/runs/{run_id}", summary="One run, with its artifacts and inputs")
def get_run(ws: WS, run_id: str) -> Run:
    return ws.tracking.get_run(run_id)


class UpdateRunBody(BaseModel):
    status: RunStatus | None = None
    end_time: int | None = None
    name: str | None = None


@router.patch("/runs/{run_id}", summary="Rename, end or resume a run")
def update_run(ws: WS, run_id: str, body: UpdateRunBody) -> Run:
    return ws.tracking.update_run(
        run_id, status=body.status, end_time=body.end_time, name=body.name
    )


@router.delete("/runs/{run_id}", summary="Delete a run (restorable)")
def delete_run(ws: WS, run_id: str) -> Run:
    return ws.tracking.delete_run(run_id)


@router.post("/runs/{run_id}/restore", summary="Restore a deleted run")
def restore_run(ws: WS, run_id: str) -> Run:
    return ws.tracking.restore_run(run_id)


@router.delete("/runs/{run_id}/tags/{key:path}", status_code=204, summary="Remove a tag")
def delete_tag(ws: WS, run_id: str, key: str) -> Response:
    ws.tracking.delete_tag(run_id, key)
    return Response(status_code=204)


@router.post("/runs/{run_id}/inputs", status_code=204, summary="Record datasets the run read")
def log_inputs(ws: WS, run_id: str, body: Annotated[list[RunInput], Body()]) -> Response:
    ws.tracking.log_inputs(run_id, body)
    return Response(status_code=204)


@router.get("/runs/{run_id}/metrics/{key:path}", summary="A metric's history")
def metric_history(ws: WS, run_id: str, key: str) -> list[MetricPoint]:
    return ws.tracking.metric_history(run_id, key)


@router.get("/runs/{run_id}/artifacts", summary="The files and folders under a path")
def list_artifacts(ws: WS, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
    return ws.tracking.list_artifacts(run_id, path)


@router.get("/runs/{run_id}/artifacts/{path:path}", summary="Download a run artifact")
def artifact(ws: WS, run_id: str, path: str) -> Response:
    return Response(ws.tracking.read_artifact(run_id, path), media_type="application/octet-stream")


@router.put(
    "/runs/{run_id}/artifacts/{path:path}",
    summary="Upload a run artifact (the body is the file)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_artifact(ws: WS, run_id: str, path: str, request: Request) -> ArtifactInfo:
    data = await request.body()
    return await run_in_threadpool(ws.tracking.log_artifact_bytes, run_id, path, data)


# -- training ----------------------------------------------------------------------------------


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
