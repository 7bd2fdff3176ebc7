"""Alert rules: create, list, change, delete, evaluate; their history; Prometheus rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from mloop.api.deps import workspace
from mloop.core.clock import parse_time
from mloop.monitoring import Alert, AlertEvent, AlertRule
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
WS = Annotated[Workspace, Depends(workspace)]


class AlertChange(BaseModel):
    """The fields to change; the others stay."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = None
    series: str | None = None
    op: str | None = None
    threshold: float | None = None
    window: str | None = None
    for_: str | None = Field(default=None, alias="for")
    cooldown: str | None = None
    destinations: list[str] | None = None
    severity: str | None = None
    description: str | None = None
    enabled: bool | None = None


class Evaluation(BaseModel):
    at: datetime | None = Field(default=None, description="Evaluate as if now (default: now)")


@router.get("", summary="Every alert rule and its state")
def list_alerts(ws: WS) -> list[Alert]:
    return ws.alerts.list()


_RULE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": AlertRule.model_json_schema(by_alias=True)}},
    }
}


@router.post("", status_code=201, summary="Add an alert rule", openapi_extra=_RULE_BODY)
def add_alert(ws: WS, body: Annotated[dict[str, Any], Body()]) -> Alert:
    # validated by the service, so that the API and the CLI refuse a rule in the same words
    return ws.alerts.add(body)


@router.get(
    "/prometheus-rules",
    response_class=PlainTextResponse,
    summary="Prometheus alerting rules (YAML) for the enabled rules",
)
def prometheus_rules(ws: WS) -> PlainTextResponse:
    return PlainTextResponse(ws.alerts.prometheus_rules(), media_type="application/yaml")


@router.get("/history", summary="Events of every rule, newest first")
def all_history(
    ws: WS, since: str | None = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> list[AlertEvent]:
    return ws.alerts.history(since=parse_time(since) if since else None, limit=limit)


@router.post("/evaluate", summary="Evaluate every enabled rule once")
def evaluate(ws: WS, body: Evaluation | None = None) -> list[AlertEvent]:
    return ws.alerts.evaluate(body.at if body else None)


@router.get("/{name}", summary="An alert rule and its state")
def get_alert(ws: WS, name: str) -> Alert:
    return ws.alerts.get(name)


@router.patch("/{name}", summary="Change an alert rule (its state is kept)")
def change_alert(ws: WS, name: str, body: AlertChange) -> Alert:
    changes = body.model_dump(exclude_unset=True, exclude={"enabled"})
    if changes:
        ws.alerts.update(name, **changes)
    if body.enabled is not None:
        ws.alerts.enable(name, body.enabled)
    return ws.alerts.get(name)


@router.delete("/{name}", status_code=204, summary="Delete an alert rule (its history stays)")
def delete_alert(ws: WS, name: str) -> Response:
    ws.alerts.delete(name)
    return Response(status_code=204)


@router.get("/{name}/history", summary="Events of one rule, newest first")
def history(
    ws: WS,
    name: str,
    since: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AlertEvent]:
    return ws.alerts.history(name, since=parse_time(since) if since else None, limit=limit)
