"""MLflow's tracking endpoints: experiments, runs, metrics, params, tags, inputs and outputs.

Each route reads MLflow's request, calls the tracking service and answers MLflow's message.
A run's name travels as ``run_name`` or as the tag ``mlflow.runName``; a nested run names its
parent in the tag ``mlflow.parentRunId``. Both are stored as given and also become the run's
name and parent, so the run reads the same through mloop's own API.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends
from pydantic import ValidationError

from mloop.api.deps import workspace
from mloop.api.mlflow.protocol import (
    MlflowJSONResponse,
    MlflowRoute,
    Params,
    key_values,
    ms,
    params,
    reply,
)
from mloop.core.errors import InvalidInput
from mloop.tracking import (
    DEFAULT_EXPERIMENT_ID,
    Experiment,
    LogBatch,
    MetricValue,
    Operation,
    Run,
    RunInput,
    RunOutput,
    RunStatus,
    UpdateRun,
    artifact_uri,
)
from mloop.workspace import Workspace

router = APIRouter(route_class=MlflowRoute, default_response_class=MlflowJSONResponse)
WS = Annotated[Workspace, Depends(workspace)]
P = Annotated[Params, Depends(params)]

RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"
DATA_CONTEXT_TAG = "mlflow.data.context"
RUN_STATUSES = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}
VIEW_TYPES = {"ACTIVE_ONLY": 1, "DELETED_ONLY": 2, "ALL": 3}
VIEWS = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all"}


# -- messages ----------------------------------------------------------------------------------


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "artifact_location": f"mlflow-artifacts:/{experiment.id}",
        "lifecycle_stage": experiment.lifecycle_stage,
        "creation_time": ms(experiment.created_at),
        "last_update_time": ms(experiment.updated_at or experiment.created_at),
        "tags": key_values(experiment.tags),
    }


def run_info_json(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": run.experiment_id,
        "user_id": run.user or "",
        "status": run.status,
        "start_time": ms(run.start_time),
        "end_time": ms(run.end_time),
        "artifact_uri": artifact_uri(run.experiment_id, run.id),
        "lifecycle_stage": run.lifecycle_stage,
    }


def run_json(run: Run, outputs: list[RunOutput]) -> dict[str, Any]:
    tags = dict(run.tags)
    tags[RUN_NAME_TAG] = run.name  # the name, even after a rename or for a run mloop made
    if run.parent_run_id and PARENT_TAG not in tags:
        tags[PARENT_TAG] = run.parent_run_id
    return {
        "info": run_info_json(run),
        "data": {
            "metrics": [{"key": k, "value": v} for k, v in run.metrics.items()],
            "params": key_values(run.params),
            "tags": key_values(tags),
        },
        "inputs": {
            "dataset_inputs": [
                {
                    "tags": [{"key": DATA_CONTEXT_TAG, "value": item.context}],
                    "dataset": {
                        "name": item.name,
                        "digest": item.digest,
                        "source_type": item.source_type or "",
                        "source": item.source or "",
                        "schema": item.schema_,
                        "profile": item.profile,
                    },
                }
                for item in run.inputs
            ]
        },
        "outputs": {"model_outputs": [{"model_id": o.model_id, "step": o.step} for o in outputs]},
    }


def _run_id(p: Params) -> str:
    run_id = p.text("run_id") or p.text("run_uuid")
    if run_id is None:
        raise InvalidInput("missing value for required parameter 'run_id'")
    return run_id


def _metric(p: Params) -> MetricValue:
    key = p.required("key")
    try:
        return MetricValue(
            key=key,
            value=p.raw("value"),
            step=p.integer("step") or 0,
            timestamp=p.integer("timestamp"),
        )
    except ValidationError as exc:
        raise InvalidInput(f"metric {key!r}: {exc.errors()[0]['msg']}") from None


def _log(ws: Workspace, run_id: str, batch: LogBatch) -> None:
    """Apply a batch; a ``mlflow.runName`` tag renames the run in the same transaction."""
    operations: list[Operation] = [batch]
    if RUN_NAME_TAG in batch.tags:
        operations.append(UpdateRun(run_id=run_id, name=batch.tags[RUN_NAME_TAG]))
    ws.tracking.apply(operations)


# -- experiments -------------------------------------------------------------------------------


@router.post("/experiments/create")
def create_experiment(ws: WS, p: P) -> MlflowJSONResponse:
    experiment = ws.tracking.create_experiment(p.required("name"), p.key_values("tags"))
    return reply({"experiment_id": experiment.id})


@router.get("/experiments/get")
def get_experiment(ws: WS, p: P) -> MlflowJSONResponse:
    experiment = ws.tracking.get_experiment(p.required("experiment_id"))
    return reply({"experiment": experiment_json(experiment)})


@router.get("/experiments/get-by-name")
def get_experiment_by_name(ws: WS, p: P) -> MlflowJSONResponse:
    experiment = ws.tracking.get_experiment_by_name(p.required("experiment_name"))
    return reply({"experiment": experiment_json(experiment)})


@router.post("/experiments/search")
@router.get("/experiments/search")
def search_experiments(ws: WS, p: P) -> MlflowJSONResponse:
    view = p.enum("view_type", VIEW_TYPES) or "ACTIVE_ONLY"
    page = ws.tracking.search_experiments(
        view=VIEWS[view],
        filter_string=p.text("filter"),
        order_by=p.strings("order_by"),
        max_results=p.integer("max_results"),
        page_token=p.text("page_token"),
    )
    return reply(
        {
            "experiments": [experiment_json(e) for e in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.post("/experiments/delete")
def delete_experiment(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.delete_experiment(p.required("experiment_id"))
    return reply()


@router.post("/experiments/restore")
def restore_experiment(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.restore_experiment(p.required("experiment_id"))
    return reply()


@router.post("/experiments/update")
def update_experiment(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.rename_experiment(p.required("experiment_id"), p.required("new_name"))
    return reply()


@router.post("/experiments/set-experiment-tag")
def set_experiment_tag(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.set_experiment_tag(
        p.required("experiment_id"), p.required("key"), p.text("value") or ""
    )
    return reply()


@router.post("/experiments/delete-experiment-tag")
def delete_experiment_tag(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.delete_experiment_tag(p.required("experiment_id"), p.required("key"))
    return reply()


# -- runs --------------------------------------------------------------------------------------


@router.post("/runs/create")
def create_run(ws: WS, p: P) -> MlflowJSONResponse:
    tags = p.key_values("tags")
    name = p.text("run_name") or tags.get(RUN_NAME_TAG)
    if name is not None:
        tags[RUN_NAME_TAG] = name
    run = ws.tracking.create_run(
        p.text("experiment_id") or DEFAULT_EXPERIMENT_ID,
        name=name,
        tags=tags,
        parent_run_id=tags.get(PARENT_TAG),
        start_time=p.integer("start_time"),
        user=p.text("user_id") or tags.get(USER_TAG),
    )
    return reply({"run": run_json(run, [])})


@router.post("/runs/update")
def update_run(ws: WS, p: P) -> MlflowJSONResponse:
    run = ws.tracking.update_run(
        _run_id(p),
        status=cast(RunStatus | None, p.enum("status", RUN_STATUSES)),
        end_time=p.integer("end_time"),
        name=p.text("run_name"),
    )
    return reply({"run_info": run_info_json(run)})


@router.post("/runs/delete")
def delete_run(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.delete_run(_run_id(p))
    return reply()


@router.post("/runs/restore")
def restore_run(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.restore_run(_run_id(p))
    return reply()


@router.get("/runs/get")
def get_run(ws: WS, p: P) -> MlflowJSONResponse:
    run = ws.tracking.get_run(_run_id(p))
    outputs = ws.logged_models.outputs([run.id])[run.id]
    return reply({"run": run_json(run, outputs)})


@router.post("/runs/log-metric")
def log_metric(ws: WS, p: P) -> MlflowJSONResponse:
    run_id = _run_id(p)
    ws.tracking.apply([LogBatch(run_id=run_id, metrics=[_metric(p)])])
    return reply()


@router.post("/runs/log-parameter")
def log_param(ws: WS, p: P) -> MlflowJSONResponse:
    run_id = _run_id(p)
    value = p.raw("value")
    ws.tracking.apply(
        [LogBatch(run_id=run_id, params={p.required("key"): "" if value is None else str(value)})]
    )
    return reply()


@router.post("/runs/set-tag")
def set_tag(ws: WS, p: P) -> MlflowJSONResponse:
    run_id = _run_id(p)
    value = p.raw("value")
    tags = {p.required("key"): "" if value is None else str(value)}
    _log(ws, run_id, LogBatch(run_id=run_id, tags=tags))
    return reply()


@router.post("/runs/delete-tag")
def delete_tag(ws: WS, p: P) -> MlflowJSONResponse:
    ws.tracking.delete_tag(_run_id(p), p.required("key"))
    return reply()


@router.post("/runs/log-batch")
def log_batch(ws: WS, p: P) -> MlflowJSONResponse:
    run_id = _run_id(p)
    params_: dict[str, str] = {}
    for item in p.objects("params"):
        value = item.raw("value")
        params_[item.required("key")] = "" if value is None else str(value)
    batch = LogBatch(
        run_id=run_id,
        metrics=[_metric(m) for m in p.objects("metrics")],
        params=params_,
        tags=p.key_values("tags"),
    )
    _log(ws, run_id, batch)
    return reply()


@router.post("/runs/log-model")
def log_model(ws: WS, p: P) -> MlflowJSONResponse:
    """MLflow 2's record of a model logged into the run's artifacts: kept, as MLflow keeps it,
    in the tag ``mlflow.log-model.history`` (a JSON list)."""
    run_id = _run_id(p)
    try:
        model = json.loads(p.required("model_json"))
    except ValueError as exc:
        raise InvalidInput(f"model_json is not JSON: {exc}") from None
    current = ws.tracking.get_run(run_id).tags.get(LOG_MODEL_HISTORY_TAG)
    history = json.loads(current) if current else []
    history.append(model)
    ws.tracking.set_tag(run_id, LOG_MODEL_HISTORY_TAG, json.dumps(history))
    return reply()


@router.post("/runs/log-inputs")
def log_inputs(ws: WS, p: P) -> MlflowJSONResponse:
    """Datasets the run read. (Logged models given as inputs are not recorded.)"""
    run_id = _run_id(p)
    inputs = []
    for item in p.objects("datasets"):
        dataset = item.message("dataset")
        context = item.key_values("tags").get(DATA_CONTEXT_TAG) or "training"
        inputs.append(
            RunInput(
                name=dataset.required("name"),
                digest=dataset.required("digest"),
                context=context,
                source_type=dataset.text("source_type"),
                source=dataset.text("source"),
                schema=dataset.text("schema"),
                profile=dataset.text("profile"),
            )
        )
    if inputs:
        ws.tracking.log_inputs(run_id, inputs)
    else:
        ws.tracking.get_run(run_id)  # an unknown run is still an error
    return reply()


@router.post("/runs/outputs")
def log_outputs(ws: WS, p: P) -> MlflowJSONResponse:
    outputs = [
        RunOutput(model_id=m.required("model_id"), step=m.integer("step") or 0)
        for m in p.objects("models")
    ]
    ws.logged_models.log_outputs(_run_id(p), outputs)
    return reply()


@router.post("/runs/search")
@router.get("/runs/search")
def search_runs(ws: WS, p: P) -> MlflowJSONResponse:
    view = p.enum("run_view_type", VIEW_TYPES) or "ACTIVE_ONLY"
    page = ws.tracking.search_runs(
        p.strings("experiment_ids"),
        p.text("filter"),
        p.strings("order_by"),
        p.integer("max_results"),
        p.text("page_token"),
        view=VIEWS[view],
    )
    outputs = ws.logged_models.outputs([r.id for r in page.items])
    return reply(
        {
            "runs": [run_json(r, outputs[r.id]) for r in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.get("/metrics/get-history")
def metric_history(ws: WS, p: P) -> MlflowJSONResponse:
    points = ws.tracking.metric_history(_run_id(p), p.required("metric_key"))
    return reply(
        {
            "metrics": [
                {"key": x.key, "value": x.value, "timestamp": ms(x.timestamp), "step": x.step}
                for x in points
            ]
        }
    )


@router.get("/artifacts/list")
def list_artifacts(ws: WS, p: P) -> MlflowJSONResponse:
    """A run's files and folders under ``path``, relative to the run's artifact root."""
    run_id = _run_id(p)
    run = ws.tracking.get_run(run_id)
    entries = ws.tracking.list_artifacts(run_id, p.text("path"))
    return reply(
        {
            "root_uri": artifact_uri(run.experiment_id, run.id),
            "files": [
                {"path": e.path, "is_dir": e.is_dir, "file_size": e.size_bytes} for e in entries
            ],
        }
    )
