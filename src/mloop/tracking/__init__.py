"""Experiments, runs, params, metrics, tags and artifacts."""

from mloop.tracking.runs import (
    DEFAULT_EXPERIMENT,
    ArtifactInfo,
    Experiment,
    MetricPoint,
    Run,
    RunStatus,
    TrackingService,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "ArtifactInfo",
    "Experiment",
    "MetricPoint",
    "Run",
    "RunStatus",
    "TrackingService",
]
