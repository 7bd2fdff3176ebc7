"""MLflow's model registry endpoints over mloop's registry.

An MLflow version is an ordinary mloop version: its files (those of the logged model or the
run's artifact folder it was registered from) are listed in its manifest, its aliases are
mloop's aliases. Its download URI points at the artifact proxy's ``model-versions/<id>``, so
``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` reads exactly the registered files. Stages
are not supported (use aliases); every version is READY as soon as it exists.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote, urlparse

from fastapi import APIRouter, Depends

from mloop.api.deps import workspace
from mloop.api.mlflow.artifacts import VERSIONS, locate
from mloop.api.mlflow.protocol import (
    MlflowJSONResponse,
    MlflowRoute,
    Params,
    key_values,
    ms,
    params,
    reply,
)
from mloop.core.errors import InvalidInput, NotFound
from mloop.registry import ModelVersion, RegisteredModel
from mloop.storage import safe_name
from mloop.workspace import Workspace

router = APIRouter(route_class=MlflowRoute, default_response_class=MlflowJSONResponse)
WS = Annotated[Workspace, Depends(workspace)]
P = Annotated[Params, Depends(params)]
PROXY_MARKER = "/mlflow-artifacts/artifacts/"


# -- messages ----------------------------------------------------------------------------------


def model_version_json(version: ModelVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version": str(version.version),
        "creation_timestamp": ms(version.created_at),
        "last_updated_timestamp": ms(version.created_at),
        "user_id": version.created_by or "",
        "current_stage": "None",
        "description": version.description or "",
        "source": version.source or f"models:/{version.name}/{version.version}",
        "run_id": version.run_id or "",
        "status": "READY",
        "tags": key_values(version.tags),
        "aliases": version.aliases,
        "model_id": version.logged_model_id,
    }


def registered_model_json(ws: Workspace, model: RegisteredModel) -> dict[str, Any]:
    latest = (
        [model_version_json(ws.registry.get_version(model.name, model.latest_version))]
        if model.latest_version
        else []
    )
    return {
        "name": model.name,
        "creation_timestamp": ms(model.created_at),
        "last_updated_timestamp": ms(model.updated_at),
        "description": model.description or "",
        "latest_versions": latest,
        "tags": key_values(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in model.aliases.items()],
    }


def _version(p: Params) -> int:
    number = p.integer("version", required=True)
    assert number is not None
    return number


# -- where a new version's files come from -----------------------------------------------------


def _under(files: dict[str, str], path: str) -> dict[str, str]:
    if not path:
        return dict(files)
    prefix = safe_name(path) + "/"
    return {k[len(prefix) :]: d for k, d in files.items() if k.startswith(prefix)}


def _run_files(ws: Workspace, run_id: str, path: str) -> dict[str, str]:
    run = ws.tracking.get_run(run_id)
    return _under({a.path: a.digest for a in run.artifacts if a.digest is not None}, path)


def source_files(
    ws: Workspace, source: str, run_id: str | None, model_id: str | None
) -> tuple[dict[str, str], str | None, str | None]:
    """The files a new version is made of, with the run and logged model they came from.

    Sources: ``models:/<logged model id>``, ``runs:/<run>/<path>``, the artifact URIs this
    server hands out (``mlflow-artifacts:/…``, or their http(s) form) and ``models:/NAME/N``
    (a copy of another version)."""
    parsed = urlparse(source)
    path = unquote(parsed.path)
    if model_id is not None or (parsed.scheme == "models" and path.lstrip("/").startswith("m-")):
        model_id = model_id or path.strip("/").split("/")[0]
        model = ws.logged_models.get(model_id)
        below = "/".join(path.strip("/").split("/")[1:]) if parsed.scheme == "models" else ""
        return (
            _under(ws.logged_models.files(model_id), below),
            run_id or model.source_run_id,
            model_id,
        )
    if parsed.scheme == "models":
        name, _, selector = path.strip("/").partition("/")
        version = ws.registry.resolve(f"{name}@{selector or 'latest'}")
        return ws.registry.files(version), run_id or version.run_id, version.logged_model_id
    if parsed.scheme == "runs":
        source_run, _, below = path.strip("/").partition("/")
        files = _run_files(ws, source_run, below)
        if files:
            return files, run_id or source_run, None
        run = ws.tracking.get_run(source_run)
        escaped = below.replace("'", "''")
        logged = [
            m
            for m in ws.logged_models.search([run.experiment_id], f"name = '{escaped}'").items
            if m.source_run_id == source_run
        ]
        if not logged:
            raise NotFound(f"run {source_run} has no artifacts and no logged model at {below!r}")
        return ws.logged_models.files(logged[0].id), run_id or source_run, logged[0].id
    if parsed.scheme == "mlflow-artifacts" or PROXY_MARKER in source:
        proxied = path.split(PROXY_MARKER, 1)[1] if PROXY_MARKER in path else path
        where = locate(proxied)
        if where is not None and where.kind == "run":
            return _run_files(ws, where.owner, where.path), run_id or where.owner, None
        if where is not None and where.kind == "model":
            model = ws.logged_models.get(where.owner)
            files = _under(ws.logged_models.files(where.owner), where.path)
            return files, run_id or model.source_run_id, where.owner
        if where is not None and where.kind == "version" and proxied.startswith(VERSIONS):
            version = ws.registry.get_version_by_id(where.owner)
            return _under(ws.registry.files(version), where.path), run_id, None
    raise InvalidInput(
        f"cannot register a version from {source!r}: mloop registers files it stores — give "
        "models:/<logged model id>, runs:/<run id>/<path> or an mlflow-artifacts: URI"
    )


# -- registered models -------------------------------------------------------------------------


@router.post("/registered-models/create")
def create_model(ws: WS, p: P) -> MlflowJSONResponse:
    model = ws.registry.create_model(
        p.required("name"), description=p.text("description"), tags=p.key_values("tags")
    )
    return reply({"registered_model": registered_model_json(ws, model)})


@router.get("/registered-models/get")
def get_model(ws: WS, p: P) -> MlflowJSONResponse:
    model = ws.registry.get_model(p.required("name"))
    return reply({"registered_model": registered_model_json(ws, model)})


@router.get("/registered-models/search")
def search_models(ws: WS, p: P) -> MlflowJSONResponse:
    page = ws.registry.search_models(
        p.text("filter"), p.strings("order_by"), p.integer("max_results"), p.text("page_token")
    )
    return reply(
        {
            "registered_models": [registered_model_json(ws, m) for m in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.patch("/registered-models/update")
def update_model(ws: WS, p: P) -> MlflowJSONResponse:
    name = p.required("name")
    model = (
        ws.registry.update_model(name, description=p.text("description") or "")
        if "description" in p.fields
        else ws.registry.get_model(name)
    )
    return reply({"registered_model": registered_model_json(ws, model)})


@router.post("/registered-models/rename")
def rename_model(ws: WS, p: P) -> MlflowJSONResponse:
    model = ws.registry.rename_model(p.required("name"), p.required("new_name"))
    return reply({"registered_model": registered_model_json(ws, model)})


@router.delete("/registered-models/delete")
def delete_model(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.delete_model(p.required("name"))
    return reply()


@router.post("/registered-models/set-tag")
def set_model_tag(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.set_model_tag(p.required("name"), p.required("key"), p.text("value") or "")
    return reply()


@router.delete("/registered-models/delete-tag")
def delete_model_tag(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.delete_model_tag(p.required("name"), p.required("key"))
    return reply()


@router.post("/registered-models/get-latest-versions")
@router.get("/registered-models/get-latest-versions")
def latest_versions(ws: WS, p: P) -> MlflowJSONResponse:
    """The latest version; mloop has no stages, so every version is in stage "None"."""
    model = ws.registry.get_model(p.required("name"))
    stages = [s.lower() for s in p.strings("stages")]
    found = []
    if model.latest_version and (not stages or "none" in stages):
        found.append(model_version_json(ws.registry.get_version(model.name, model.latest_version)))
    return reply({"model_versions": found})


@router.post("/registered-models/alias")
def set_alias(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.set_alias(p.required("name"), p.required("alias"), _version(p))
    return reply()


@router.delete("/registered-models/alias")
def delete_alias(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.delete_alias(p.required("name"), p.required("alias"))
    return reply()


@router.get("/registered-models/alias")
def get_by_alias(ws: WS, p: P) -> MlflowJSONResponse:
    name, alias = p.required("name"), p.required("alias")
    model = ws.registry.get_model(name)
    if alias not in model.aliases:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    version = ws.registry.get_version(name, model.aliases[alias])
    return reply({"model_version": model_version_json(version)})


# -- versions ----------------------------------------------------------------------------------


@router.post("/model-versions/create")
def create_version(ws: WS, p: P) -> MlflowJSONResponse:
    source = p.required("source")
    files, run_id, model_id = source_files(ws, source, p.text("run_id"), p.text("model_id"))
    version = ws.registry.create_version(
        p.required("name"),
        files,
        source=source,
        run_id=run_id,
        logged_model_id=model_id,
        description=p.text("description"),
        tags=p.key_values("tags"),
    )
    return reply({"model_version": model_version_json(version)})


@router.get("/model-versions/get")
def get_version(ws: WS, p: P) -> MlflowJSONResponse:
    version = ws.registry.get_version(p.required("name"), _version(p))
    return reply({"model_version": model_version_json(version)})


@router.get("/model-versions/search")
def search_versions(ws: WS, p: P) -> MlflowJSONResponse:
    page = ws.registry.search_versions(
        p.text("filter"), p.strings("order_by"), p.integer("max_results"), p.text("page_token")
    )
    return reply(
        {
            "model_versions": [model_version_json(v) for v in page.items],
            "next_page_token": page.next_page_token,
        }
    )


@router.patch("/model-versions/update")
def update_version(ws: WS, p: P) -> MlflowJSONResponse:
    name, number = p.required("name"), _version(p)
    version = (
        ws.registry.update_version(name, number, description=p.text("description") or "")
        if "description" in p.fields
        else ws.registry.get_version(name, number)
    )
    return reply({"model_version": model_version_json(version)})


@router.delete("/model-versions/delete")
def delete_version(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.delete_version(p.required("name"), _version(p))
    return reply()


@router.get("/model-versions/get-download-uri")
def download_uri(ws: WS, p: P) -> MlflowJSONResponse:
    version = ws.registry.get_version(p.required("name"), _version(p))
    return reply({"artifact_uri": f"mlflow-artifacts:/{VERSIONS}/{version.id}"})


@router.post("/model-versions/set-tag")
def set_version_tag(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.set_version_tag(
        p.required("name"), _version(p), p.required("key"), p.text("value") or ""
    )
    return reply()


@router.delete("/model-versions/delete-tag")
def delete_version_tag(ws: WS, p: P) -> MlflowJSONResponse:
    ws.registry.delete_version_tag(p.required("name"), _version(p), p.required("key"))
    return reply()


@router.post("/model-versions/transition-stage")
def transition_stage(p: P) -> MlflowJSONResponse:
    raise InvalidInput(
        "model stages are not supported by mloop: point an alias at the version instead "
        "(MlflowClient().set_registered_model_alias)"
    )
