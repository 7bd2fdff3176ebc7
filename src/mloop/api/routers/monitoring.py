"""Live performance: labels sent back for served predictions, metrics per window, decay."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mloop.api.deps import workspace
from mloop.core.errors import InvalidInput
from mloop.data import parse_duration
from mloop.monitoring import DecayReport, FeedbackResult, PerformanceWindow
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
    row_index: int | None = Field(default=None, ge=0)
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
