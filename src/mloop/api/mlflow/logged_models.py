"""MLflow 3's logged models (``/api/2.0/mlflow/logged-models``): what ``log_model`` creates,
fills through the artifact proxy and finalizes, before a version is registered from it."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends

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
from mloop.tracking import LoggedModel, LoggedModelStatus
from mloop.workspace import Workspace

router = APIRouter(route_class=MlflowRoute, default_response_class=MlflowJSONResponse)
WS = Annotated[Workspace, Depends(workspace)]
P = Annotated[Params, Depends(params)]

STATUSES = {
    "LOGGED_MODEL_STATUS_UNSPECIFIED": 0,
    "LOGGED_MODEL_PENDING": 1,
    "LOGGED_MODEL_READY": 2,
    "LOGGED_MODEL_UPLOAD_FAILED": 3,
}
TO_MLFLOW = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}
FROM_MLFLOW = {v: k for k, v in TO_MLFLOW.items()}


def logged_model_json(model: LoggedModel) -> dict[str, Any]:
    return {
        "info": {
            "model_id": model.id,
            "experiment_id": model.experiment_id,
            "name": model.name,
            "creation_timestamp_ms": ms(model.created_at),
            "last_updated_timestamp_ms": ms(model.updated_at),
            "artifact_uri": model.artifact_uri,
            "status": TO_MLFLOW.get(model.status, "LOGGED_MODEL_STATUS_UNSPECIFIED"),
            "model_type": model.model_type,
            "source_run_id": model.source_run_id,
            "status_message": model.status_message,
            "tags": key_values(model.tags),
        },
        "data": {"params": key_values(model.params), "metrics": []},
    }


def _params(p: Params) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in p.objects("params"):
        value = item.raw("value")
        found[item.required("key")] = "" if value is None else str(value)
    return found


@router.post("/logged-models")
def create(ws: WS, p: P) -> MlflowJSONResponse:
    model = ws.logged_models.create(
        p.required("experiment_id"),
        name=p.text("name"),
        source_run_id=p.text("source_run_id"),
        model_type=p.text("model_type"),
        params=_params(p),
        tags=p.key_values("tags"),
    )
    return reply({"model": logged_model_json(model)})


@router.post("/logged-models/search")
def search(ws: WS, p: P) -> MlflowJSONResponse:
    order = [
        (o.required("field_name"), o.flag("ascending") if "ascending" in o.fields else True)
        for o in p.objects("order_by")
    ]
    page = ws.logged_models.search(
        p.strings("experiment_ids"),
        p.text("filter"),
        order,
        p.integer("max_results"),
        p.text("page_token"),
    )
    return reply(
        {
            "models": [logged_model_json(m) for m in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.get("/logged-models/{model_id}")
def get(ws: WS, model_id: str, p: P) -> MlflowJSONResponse:
    model = ws.logged_models.get(model_id, allow_deleted=p.flag("allow_deleted"))
    return reply({"model": logged_model_json(model)})


@router.patch("/logged-models/{model_id}")
def finalize(ws: WS, model_id: str, p: P) -> MlflowJSONResponse:
    status = p.enum("status", STATUSES)
    if status not in ("LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"):
        raise InvalidInput(
            "a logged model is finalized with status LOGGED_MODEL_READY or "
            f"LOGGED_MODEL_UPLOAD_FAILED, not {status!r}"
        )
    model = ws.logged_models.finalize(model_id, cast(LoggedModelStatus, FROM_MLFLOW[status]))
    return reply({"model": logged_model_json(model)})


@router.delete("/logged-models/{model_id}")
def delete(ws: WS, model_id: str) -> MlflowJSONResponse:
    ws.logged_models.delete(model_id)
    return reply()


@router.patch("/logged-models/{model_id}/tags")
def set_tags(ws: WS, model_id: str, p: P) -> MlflowJSONResponse:
    ws.logged_models.set_tags(model_id, p.key_values("tags"))
    return reply()


@router.delete("/logged-models/{model_id}/tags/{key:path}")
def delete_tag(ws: WS, model_id: str, key: str) -> MlflowJSONResponse:
    ws.logged_models.delete_tag(model_id, key)
    return reply()


@router.post("/logged-models/{model_id}/params")
def log_params(ws: WS, model_id: str, p: P) -> MlflowJSONResponse:
    ws.logged_models.log_params(model_id, _params(p))
    return reply()


@router.get("/logged-models/{model_id}/artifacts/directories")
def list_artifacts(ws: WS, model_id: str, p: P) -> MlflowJSONResponse:
    entries = ws.logged_models.list_artifacts(model_id, p.text("artifact_directory_path"))
    return reply(
        {
            "root_uri": ws.logged_models.get(model_id).artifact_uri,
            "files": [
                {"path": e.path, "is_dir": e.is_dir, "file_size": e.size_bytes} for e in entries
            ],
        }
    )
