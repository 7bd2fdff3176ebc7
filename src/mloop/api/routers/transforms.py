"""Registered transforms: list, show, run. (Registering code is for the SDK and the CLI, on the
machine that holds the code.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from mloop.api.deps import workspace
from mloop.data import Transform, TransformRun
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["transforms"])
WS = Annotated[Workspace, Depends(workspace)]


@router.get("/transforms", summary="List transforms (their latest versions)")
def list_transforms(ws: WS) -> list[Transform]:
    return ws.transforms.list()


@router.get("/transforms/{ref}", summary="A transform version: NAME (latest) or NAME@N")
def get_transform(ws: WS, ref: str) -> Transform:
    return ws.transforms.get(ref)


@router.get("/transforms/{name}/versions", summary="Every version of a transform")
def list_versions(ws: WS, name: str) -> list[Transform]:
    return ws.transforms.versions(name)


@router.get("/transforms/{ref}/runs", summary="Runs of NAME@N, or of every version of NAME")
def list_runs(ws: WS, ref: str) -> list[TransformRun]:
    return ws.transforms.runs(ref)


class RunRequest(BaseModel):
    inputs: dict[str, str | int] = Field(
        default_factory=dict,
        description='Pinned input versions, e.g. {"raw": 3}; unpinned inputs use their latest',
    )


@router.post(
    "/transforms/{ref}/runs",
    status_code=201,
    summary="Run a transform (201: computed; 200: cached, the same inputs were run before)",
)
def run_transform(
    ws: WS, ref: str, response: Response, body: RunRequest | None = None
) -> TransformRun:
    result = ws.transforms.run(ref, inputs=(body.inputs if body else None))
    if result.cached:
        response.status_code = 200
    return result
