"""How a route reaches the workspace and the serving parts: through ``request.app.state``.

They are ``async``: FastAPI runs a plain ``def`` dependency in the thread pool, and a thread hop
per dependency per request is most of a small request's cost."""

from __future__ import annotations

from fastapi import Request

from mloop.serving import Predictor, ServingMetrics
from mloop.workspace import Workspace


async def workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


async def predictor(request: Request) -> Predictor:
    p: Predictor = request.app.state.predictor
    return p


async def metrics(request: Request) -> ServingMetrics:
    m: ServingMetrics = request.app.state.metrics
    return m
