"""The feature store: online reads (the hot path), definitions, status, materializations and
materializing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from mloop.api.deps import workspace
from mloop.api.routers.datasets import PayloadTooLarge
from mloop.core.errors import NotFound
from mloop.features import Entity, FeatureView, Materialization, OnDemandFeatureView
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1/features", tags=["features"])
WS = Annotated[Workspace, Depends(workspace)]

MAX_ONLINE_ROWS = 10_000


class OnlineRequest(BaseModel):
    features: list[str] = Field(
        description="Features as VIEW:FEATURE (a feature view's or an on-demand view's)",
        examples=[["driver_stats:rate", "driver_stats:trips"]],
    )
    entities: list[dict[str, Any]] = Field(
        description="One object per entity row: its join keys (and the request fields "
        "on-demand features read)",
        examples=[[{"driver_id": 5}, {"driver_id": 6}]],
    )


class OnlineResponse(BaseModel):
    features: list[str]
    rows: list[dict[str, Any]] = Field(description="Each row's join keys and feature values")
    statuses: list[dict[str, str]] = Field(
        description="Per row, per feature: present, missing (never materialized for that key) "
        "or expired (older than the view's TTL; its value is null)"
    )


@router.post(
    "/online",
    summary="The latest materialized feature values for entity rows",
    response_model=OnlineResponse,
    responses={
        400: {
            "description": "unknown view or feature, a missing or mistyped join key, no "
            "entity rows, or a view never materialized"
        },
        413: {"description": f"more than {MAX_ONLINE_ROWS:,} entity rows"},
        422: {"description": "a body that is not {features: [...], entities: [{...}]}"},
    },
)
def online(ws: WS, body: OnlineRequest) -> Response:
    # the hot path: one service call (its plan is cached), no other read, and the answer
    # written as JSON in one step (a NaN as null), not validated again
    if len(body.entities) > MAX_ONLINE_ROWS:
        raise PayloadTooLarge(
            f"{len(body.entities):,} entity rows in one request; the limit is "
            f"{MAX_ONLINE_ROWS:,}: send fewer rows per request"
        )
    result = ws.features.online(body.entities, body.features)
    payload = {"features": result.features, "rows": result.rows, "statuses": result.statuses}
    return Response(to_json(payload, inf_nan_mode="null"), media_type="application/json")


def _entry(definition: Entity | FeatureView | OnDemandFeatureView) -> dict[str, Any]:
    """A definition's spec with its version (which the spec itself leaves out)."""
    kind = (
        "entity"
        if isinstance(definition, Entity)
        else "feature_view"
        if isinstance(definition, FeatureView)
        else "ondemand_view"
    )
    return {
        "kind": kind,
        "ref": f"{definition.name}@{definition.version}",
        "version": definition.version,
        "created_at": definition.created_at.isoformat() if definition.created_at else None,
        **definition.spec(),
    }


@router.get("/views", summary="Entities, feature views and on-demand views (latest versions)")
def list_views(ws: WS) -> dict[str, list[dict[str, Any]]]:
    return {
        "entities": [_entry(e) for e in ws.features.list_entities()],
        "views": [_entry(v) for v in ws.features.list_views()],
        "ondemand": [_entry(v) for v in ws.features.list_ondemand()],
    }


@router.get(
    "/views/{ref}",
    summary="A feature view or on-demand view: NAME (latest) or NAME@N",
    responses={404: {"description": "no view of that name (or version)"}},
)
def get_view(ws: WS, ref: str) -> dict[str, Any]:
    try:
        return _entry(ws.features.get_view(ref))
    except NotFound as exc:
        try:
            return _entry(ws.features.get_ondemand(ref))
        except NotFound:
            raise exc from None


@router.get(
    "/status",
    summary="Per feature view: version, last materialization and freshness",
)
def status(ws: WS) -> list[dict[str, Any]]:
    return ws.features.status()


def _run(m: Materialization) -> dict[str, Any]:
    return {**m.model_dump(mode="json"), "seconds": m.seconds}


@router.get("/materializations", summary="The latest materializations, newest first")
def materializations(
    ws: WS,
    view: Annotated[str | None, Query(description="Only this view's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    if view is not None:
        ws.features.get_view(view)  # NotFound (404) for a view that does not exist
    return [_run(m) for m in ws.features.materializations(view, limit=limit)]


class MaterializeRequest(BaseModel):
    views: list[str] | None = Field(default=None, description="Views to materialize (all: none)")
    start: str | None = Field(default=None, description="ISO time; default: the beginning")
    end: str | None = Field(default=None, description="ISO time; default: now")
    incremental: bool = Field(
        default=False, description="Only what came since each view's last materialization"
    )


@router.post(
    "/materialize",
    summary="Materialize feature views into the online store (one record per view)",
)
async def materialize(ws: WS, body: MaterializeRequest | None = None) -> list[dict[str, Any]]:
    body = body or MaterializeRequest()
    # reading the sources and writing the store is disk and CPU work: off the event loop
    runs = await run_in_threadpool(
        ws.features.materialize,
        body.views or None,
        start=body.start,
        end=body.end,
        incremental=body.incremental,
    )
    return [_run(m) for m in runs]
