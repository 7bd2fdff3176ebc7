"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts``): uploads, downloads and
listings, mapped onto mloop's content-addressed stores.

Paths name what the files belong to, in the shapes the MLflow client derives from the
artifact URIs this server hands out:

    <experiment>/<run>/artifacts/<path>              a run's artifacts (run.info.artifact_uri)
    <experiment>/models/<model id>/artifacts/<path>  a logged model's files
    model-versions/<version id>/<path>               a registered version's files (read only;
                                                     what get-download-uri points at)
"""

from __future__ import annotations

import mimetypes
import posixpath
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from mloop.api.deps import workspace
from mloop.api.mlflow.protocol import (
    MlflowJSONResponse,
    MlflowRoute,
    Params,
    params,
    reply,
)
from mloop.core.errors import InvalidInput, NotFound
from mloop.storage import safe_name
from mloop.tracking import ArtifactInfo, check_run_id
from mloop.workspace import Workspace

router = APIRouter(route_class=MlflowRoute, default_response_class=MlflowJSONResponse)
WS = Annotated[Workspace, Depends(workspace)]
P = Annotated[Params, Depends(params)]
VERSIONS = "model-versions"


@dataclass(frozen=True)
class Location:
    kind: Literal["run", "model", "version"]
    owner: str  # run id, logged model id or model version id
    path: str  # within the owner's files; "" for its root


def locate(path: str) -> Location | None:
    """What a proxy path names, or None for a path above every owner's root."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if len(parts) >= 2 and parts[0] == VERSIONS:
        return Location("version", parts[1], "/".join(parts[2:]))
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        return Location("model", parts[2], "/".join(parts[4:]))
    if len(parts) >= 3 and parts[2] == "artifacts":
        check_run_id(parts[1])
        return Location("run", parts[1], "/".join(parts[3:]))
    return None


def _version_entries(ws: Workspace, version_id: str, path: str) -> list[ArtifactInfo]:
    files = ws.registry.files(ws.registry.get_version_by_id(version_id))
    prefix = "" if not path else safe_name(path) + "/"
    entries: dict[str, ArtifactInfo] = {}
    for name, digest in sorted(files.items()):
        if not name.startswith(prefix):
            continue
        head, sep, _tail = name[len(prefix) :].partition("/")
        if sep:
            entries.setdefault(head, ArtifactInfo(path=prefix + head, is_dir=True))
        else:
            entries[head] = ArtifactInfo(
                path=name, digest=digest, size_bytes=ws.artifacts.size(digest)
            )
    return list(entries.values())


def _entries(ws: Workspace, where: Location) -> list[ArtifactInfo]:
    if where.kind == "run":
        return ws.tracking.list_artifacts(where.owner, where.path or None)
    if where.kind == "model":
        return ws.logged_models.list_artifacts(where.owner, where.path or None)
    return _version_entries(ws, where.owner, where.path)


@router.get("/artifacts")
def list_artifacts(ws: WS, p: P) -> MlflowJSONResponse:
    """The files and folders directly under ``?path=``, each named relative to it."""
    where = locate(p.text("path") or "")
    entries = [] if where is None else _entries(ws, where)
    return reply(
        {
            "files": [
                {
                    "path": posixpath.basename(e.path),
                    "is_dir": e.is_dir,
                    "file_size": None if e.is_dir else e.size_bytes,
                }
                for e in entries
            ]
        }
    )


@router.get("/artifacts/{path:path}")
def download(ws: WS, path: str) -> Response:
    where = locate(path)
    if where is None or not where.path:
        raise NotFound(f"there is no artifact at {path!r}")
    if where.kind == "run":
        data = ws.tracking.read_artifact(where.owner, where.path)
    elif where.kind == "model":
        data = ws.logged_models.read_artifact(where.owner, where.path)
    else:
        files = ws.registry.files(ws.registry.get_version_by_id(where.owner))
        name = safe_name(where.path)
        if name not in files:
            raise NotFound(f"model version {where.owner} has no file {name!r}")
        data = ws.artifacts.get_bytes(files[name])
    media_type = mimetypes.guess_type(where.path)[0] or "application/octet-stream"
    return Response(data, media_type=media_type)


def _store(ws: Workspace, path: str, data: bytes) -> None:
    where = locate(path)
    if where is None or not where.path:
        raise InvalidInput(
            f"cannot store an artifact at {path!r}: artifacts go under "
            "EXPERIMENT/RUN/artifacts/PATH or EXPERIMENT/models/MODEL/artifacts/PATH"
        )
    if where.kind == "run":
        ws.tracking.log_artifact_bytes(where.owner, where.path, data)
    elif where.kind == "model":
        ws.logged_models.log_artifact_bytes(where.owner, where.path, data)
    else:
        raise InvalidInput("a registered model version's files cannot change")


@router.put("/artifacts/{path:path}")
async def upload(ws: WS, path: str, request: Request) -> MlflowJSONResponse:
    data = await request.body()
    await run_in_threadpool(_store, ws, path, data)
    return reply()


@router.delete("/artifacts/{path:path}")
def delete(path: str) -> MlflowJSONResponse:
    raise InvalidInput(
        f"cannot delete {path!r}: mloop keeps artifacts (delete the run or the model instead)"
    )
