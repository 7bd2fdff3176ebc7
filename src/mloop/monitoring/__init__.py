"""Drift and data quality of served traffic."""

from mloop.monitoring.drift import (
    EFFECT_SIZE,
    P_VALUE,
    SMALL_SAMPLE,
    ColumnDrift,
    categorical_drift,
    numeric_drift,
)
from mloop.monitoring.report import DatasetDriftReport, MultivariateDrift, compare_frames
from mloop.monitoring.service import (
    DriftReport,
    MonitoringService,
    WindowDrift,
    WindowUpdate,
    window_label,
)
from mloop.monitoring.summary import Profile, Summary, Thresholds, compare

__all__ = [
    "EFFECT_SIZE",
    "P_VALUE",
    "SMALL_SAMPLE",
    "ColumnDrift",
    "DatasetDriftReport",
    "DriftReport",
    "MonitoringService",
    "MultivariateDrift",
    "Profile",
    "Summary",
    "Thresholds",
    "WindowDrift",
    "WindowUpdate",
    "categorical_drift",
    "compare",
    "compare_frames",
    "numeric_drift",
    "window_label",
]
