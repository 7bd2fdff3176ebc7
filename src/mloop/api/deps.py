"""How a route reaches the workspace and the serving parts: through ``request.app.state``."""

from __future__ import annotations

from fastapi import Request

from mloop.serving import Predictor, ServingMetrics
from mloop.workspace import Workspace


def workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


def predictor(request: Request) -> Predictor:
    p: Predictor = request.app.state.predictor
    return p


def metrics(request: Request) -> ServingMetrics:
    m: ServingMetrics = request.app.state.metrics
    return m
