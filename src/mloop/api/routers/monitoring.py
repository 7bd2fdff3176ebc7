"""Monitoring of served traffic per window — drift, data quality, the HTML report — and live
performance: labels sent back for served predictions, metrics per window, decay."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

from mloop.api.deps import workspace
from mloop.core.errors import InvalidInput
from mloop.data import parse_duration
from mloop.monitoring import (
    DecayReport,
    FeedbackResult,
    PerformanceWindow,
    WindowDrift,
    WindowQuality,
)
from mloop.serving import PredictionLogger
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["monitoring"])
WS = Annotated[Workspace, Depends(workspace)]


class Label(BaseModel):
    """The true value of one served row: ``request_id`` is what the predict response carried,
    ``row_index`` the row's place in that request (default 0). Or ``labels``: one per row of
    the request, in order."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1)
    row_index: int | None = Field(default=None, ge=0, le=2**31 - 1)
    label: Any = None
    labels: list[Any] | None = None


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[Label] = Field(min_length=1)


def _items(body: FeedbackRequest) -> list[dict[str, Any]]:
    """The labels as the service takes them (only the fields that were sent)."""
    return [label.model_dump(exclude_unset=True) for label in body.labels]


def _width(window: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(window))
    except ValueError:
        raise InvalidInput(f"window {window!r} is not a duration such as 15m, 1h or 1d") from None


@router.post("/feedback", summary="Record labels of served predictions (late ground truth)")
def feedback(ws: WS, request: Request, body: FeedbackRequest) -> FeedbackResult:
    logger: PredictionLogger | None = getattr(request.app.state, "prediction_logger", None)
    return ws.performance.record(
        _items(body), source="api", flush=logger.flush if logger is not None else None
    )


@router.get("/models/{name}/performance", summary="Live metrics per window and version")
def performance(
    ws: WS,
    name: str,
    window: Annotated[str, Query(description="Tumbling window width: 15m, 1h, 1d.")] = "1h",
    last: Annotated[int | None, Query(ge=1, description="Only the newest N windows.")] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> list[PerformanceWindow]:
    return ws.performance.windows(name, width=_width(window), last=last, version=version)


@router.get("/models/{ref}/decay", summary="Has the model got worse than at training time?")
def decay(
    ws: WS,
    ref: str,
    window: str = "1h",
    metric: str | None = None,
    tolerance: Annotated[float, Query(ge=0)] = 0.05,
    min_labels: Annotated[int, Query(ge=1)] = 50,
) -> DecayReport:
    return ws.performance.decay(
        ref, width=_width(window), metric=metric, tolerance=tolerance, min_labels=min_labels
    )


Window = Annotated[str, Query(description="Tumbling window width: 15m, 1h, 1d.")]
Sliding = Annotated[int, Query(ge=1, le=1000, description="Merge this many windows (sliding).")]
Last = Annotated[int | None, Query(ge=1, description="Only the newest N windows.")]


@router.get("/models/{ref}/windows/drift", summary="Drift per window of served traffic")
def window_drift(
    ws: WS,
    ref: str,
    window: Window = "1h",
    sliding: Sliding = 1,
    against: Annotated[str, Query(pattern="^(training|previous)$")] = "training",
    last: Last = None,
) -> list[WindowDrift]:
    return ws.monitoring.window_drift(
        ref, width=_width(window), sliding=sliding, against=against, last=last
    )


@router.get("/models/{ref}/windows/quality", summary="Data quality per window of served inputs")
def window_quality(
    ws: WS, ref: str, window: Window = "1h", sliding: Sliding = 1, last: Last = None
) -> list[WindowQuality]:
    return ws.monitoring.window_quality(ref, width=_width(window), sliding=sliding, last=last)


@router.get(
    "/models/{ref}/windows/report",
    summary="The HTML report per window: drift, quality, live performance",
    response_class=HTMLResponse,
)
def window_report(
    ws: WS,
    ref: str,
    window: Window = "1h",
    sliding: Sliding = 1,
    last: Annotated[int, Query(ge=1, le=1000)] = 24,
) -> HTMLResponse:
    width = _width(window)
    performance = ws.performance.windows(ref, width=width, last=last)
    html = ws.monitoring.window_report(
        ref, width=width, sliding=sliding, last=last, performance=performance
    )
    return HTMLResponse(html)
