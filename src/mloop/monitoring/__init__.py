"""Drift and data quality of served traffic."""

from mloop.monitoring.drift import (
    EFFECT_SIZE,
    P_VALUE,
    SMALL_SAMPLE,
    ColumnDrift,
    categorical_drift,
    numeric_drift,
)
from mloop.monitoring.service import DriftReport, MonitoringService, window_label

__all__ = [
    "EFFECT_SIZE",
    "P_VALUE",
    "SMALL_SAMPLE",
    "ColumnDrift",
    "DriftReport",
    "MonitoringService",
    "categorical_drift",
    "numeric_drift",
    "window_label",
]
