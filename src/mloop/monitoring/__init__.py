"""Drift and data quality of served traffic."""

from mloop.monitoring.alerts import Alert, AlertEvent, AlertRule, AlertService
from mloop.monitoring.drift import (
    EFFECT_SIZE,
    P_VALUE,
    SMALL_SAMPLE,
    ColumnDrift,
    categorical_drift,
    numeric_drift,
)
from mloop.monitoring.feedback_stream import FeedbackStream, FeedbackStreamStats
from mloop.monitoring.performance import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    DecayReport,
    FeedbackResult,
    PerformanceService,
    PerformanceWindow,
    VersionPerformance,
)
from mloop.monitoring.prometheus import MonitoringCollector, prometheus_rules
from mloop.monitoring.quality import ColumnQuality, QualityThresholds, WindowQuality
from mloop.monitoring.report import DatasetDriftReport, MultivariateDrift, compare_frames
from mloop.monitoring.series import SeriesPoint, SeriesService, SeriesSpec
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
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "P_VALUE",
    "SMALL_SAMPLE",
    "Alert",
    "AlertEvent",
    "AlertRule",
    "AlertService",
    "ColumnDrift",
    "ColumnQuality",
    "DatasetDriftReport",
    "DecayReport",
    "DriftReport",
    "FeedbackResult",
    "FeedbackStream",
    "FeedbackStreamStats",
    "MonitoringCollector",
    "MonitoringService",
    "MultivariateDrift",
    "PerformanceService",
    "PerformanceWindow",
    "Profile",
    "QualityThresholds",
    "SeriesPoint",
    "SeriesService",
    "SeriesSpec",
    "Summary",
    "Thresholds",
    "VersionPerformance",
    "WindowDrift",
    "WindowQuality",
    "WindowUpdate",
    "categorical_drift",
    "compare",
    "compare_frames",
    "numeric_drift",
    "prometheus_rules",
    "window_label",
]
