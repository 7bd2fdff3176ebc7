"""The closed loop over REST: policies, status, passes, a pass started by hand."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from mloop.api.deps import workspace
from mloop.loop import LoopPolicy, LoopRun, LoopStatus
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1/loop", tags=["loop"])
WS = Annotated[Workspace, Depends(workspace)]


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="asked over the API", min_length=1, max_length=10_000)


@router.get("", summary="Each model with a loop policy: its state, champion, last pass")
def loop_status(ws: WS) -> list[LoopStatus]:
    return ws.loop.status()


@router.get("/runs", summary="Passes of the loop, newest first")
def loop_runs(
    ws: WS,
    model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[LoopRun]:
    return ws.loop.runs(model, limit=limit)


@router.get("/runs/{run_id}", summary="One pass of the loop")
def loop_run(ws: WS, run_id: str) -> LoopRun:
    return ws.loop.get_run(run_id)


@router.get("/{model}/policy", summary="A model's loop policy")
def get_loop_policy(ws: WS, model: str) -> LoopPolicy:
    return ws.loop.get_policy(model)


@router.put("/{model}/policy", summary="Set a model's loop policy (everything it names is checked)")
def set_loop_policy(ws: WS, model: str, body: Annotated[dict[str, Any], Body()]) -> LoopPolicy:
    return ws.loop.set_policy(model, body)


@router.delete("/{model}/policy", status_code=204, summary="Remove a model's loop policy")
def delete_loop_policy(ws: WS, model: str) -> Response:
    ws.loop.delete_policy(model)
    return Response(status_code=204)


@router.post(
    "/{model}/trigger",
    summary="Start a pass now (trains, gates, starts the canary: may take a while)",
)
def trigger_loop(ws: WS, model: str, body: TriggerBody | None = None) -> LoopRun:
    return ws.loop.trigger(model, (body or TriggerBody()).reason)
