"""Named series of a model's monitoring, one value per window of its prediction log.

A series is named by a spec: ``latency_p99``, ``latency_p50`` (milliseconds), ``error_rate``
(failed rows ÷ all rows), ``volume`` (rows), ``drift_share`` (share of drifted inputs),
``drift:COLUMN`` (that input's drift statistic), ``null_rate:COLUMN``, ``metric:NAME`` (a
live performance metric, once labels arrive) and ``metric_drop:NAME`` (how much worse than the
training run's hold-out value, relative: 0.1 is 10 % worse). Each gives a list of
:class:`SeriesPoint` — (window start, window end, value) — oldest first. More series are
added by name prefix with :meth:`SeriesService.register`.

Windows are ``width`` wide and aligned on the Unix epoch, like the drift windows of
:meth:`MonitoringService.window_drift`; with ``trailing=True`` the log-based series
(latency, errors, volume) align their windows on ``until`` instead, so the newest window is
exactly the ``width`` before it (what an alert evaluated at that moment looks at).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import sqlalchemy as sa

from mloop.core.clock import from_ms, now, to_ms
from mloop.core.errors import InvalidInput, NotFound
from mloop.core.lazy import lazy_module
from mloop.monitoring.drift import NULL_CATEGORY
from mloop.registry import ModelVersion, RegistryService
from mloop.storage import Database, tables

if TYPE_CHECKING:
    import polars as pl

    from mloop.monitoring.service import MonitoringService
else:
    pl = lazy_module("polars")


class SeriesPoint(NamedTuple):
    start: datetime
    end: datetime
    value: float


@dataclass(frozen=True)
class SeriesSpec:
    """A parsed series name: ``kind`` (the registered prefix) and its ``argument`` (the text
    after ``:``, for series that take one)."""

    kind: str
    argument: str | None = None

    @property
    def name(self) -> str:
        return self.kind if self.argument is None else f"{self.kind}:{self.argument}"


@dataclass(frozen=True)
class SeriesQuery:
    model: str
    spec: SeriesSpec
    width: timedelta
    until: datetime
    last: int | None
    trailing: bool


SeriesFunction = Callable[["SeriesService", SeriesQuery], list[SeriesPoint]]


@dataclass(frozen=True)
class _Entry:
    function: SeriesFunction
    argument: str | None  # what the argument names ("column", "metric"), None: takes none
    description: str


_KIND = re.compile(r"[a-z][a-z0-9_]*")
_ARGUMENT = re.compile(r"[A-Za-z0-9_.\-/ ]+")


class SeriesService:
    """Computes named series; ``performance`` returns the live-performance service when the
    workspace has one (``metric:NAME`` series need it)."""

    def __init__(
        self,
        db: Database,
        monitoring: MonitoringService,
        registry: RegistryService,
        *,
        performance: Callable[[], Any] | None = None,
    ) -> None:
        self.db = db
        self.monitoring = monitoring
        self.registry = registry
        self._performance = performance or (lambda: None)
        self._entries: dict[str, _Entry] = {}
        for kind, entry in _BUILTIN.items():
            self._entries[kind] = entry

    # -- the registry of series ------------------------------------------------------------

    def register(
        self,
        kind: str,
        function: SeriesFunction,
        *,
        argument: str | None = None,
        description: str = "",
        replace: bool = False,
    ) -> None:
        """Add a series named ``kind`` (or ``kind:ARG`` when ``argument`` names what ARG is):
        ``function(service, query)`` returns its points, oldest first."""
        if not _KIND.fullmatch(kind):
            raise InvalidInput(
                f"a series name must be lower-case letters, digits and _, got {kind!r}"
            )
        if kind in self._entries and not replace:
            raise InvalidInput(f"a series named {kind!r} is registered already")
        self._entries[kind] = _Entry(function, argument, description)

    def names(self) -> dict[str, str]:
        """Every series spec form (``drift:COLUMN``...) and what it is."""
        return {
            (kind if e.argument is None else f"{kind}:{e.argument.upper()}"): e.description
            for kind, e in sorted(self._entries.items())
        }

    def parse(self, text: str) -> SeriesSpec:
        """``latency_p99``, ``drift:amount``... into a spec, or InvalidInput saying why not."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"empty series name; one of: {self._choices()}")
        kind, sep, argument = text.strip().partition(":")
        entry = self._entries.get(kind)
        if entry is None:
            raise InvalidInput(f"unknown series {text!r}; one of: {self._choices()}")
        if entry.argument is None:
            if sep:
                raise InvalidInput(f"series {kind!r} takes no argument, got {text!r}")
            return SeriesSpec(kind)
        if not argument or not _ARGUMENT.fullmatch(argument):
            raise InvalidInput(
                f"series {kind!r} needs a {entry.argument}: {kind}:{entry.argument.upper()}"
            )
        return SeriesSpec(kind, argument)

    def _choices(self) -> str:
        return ", ".join(self.names())

    # -- computing ---------------------------------------------------------------------------

    def compute(
        self,
        model: str,
        series: str | SeriesSpec,
        *,
        width: timedelta,
        until: datetime | None = None,
        last: int | None = None,
        trailing: bool = False,
    ) -> list[SeriesPoint]:
        """The points of ``series`` for ``model`` (``NAME``, ``NAME@ALIAS``, ``NAME@N``) over
        windows ``width`` wide ending before ``until`` (default: now); ``last``: only the
        newest so many windows."""
        spec = series if isinstance(series, SeriesSpec) else self.parse(series)
        if width.total_seconds() < 1:
            raise InvalidInput(f"a window must be at least 1 second wide, got {width}")
        if last is not None and last < 1:
            raise InvalidInput(f"last must be at least 1, got {last}")
        entry = self._entries.get(spec.kind)
        if entry is None:
            raise InvalidInput(f"unknown series {spec.name!r}; one of: {self._choices()}")
        query = SeriesQuery(model, spec, width, until or now(), last, trailing)
        points = entry.function(self, query)
        return points[-last:] if last is not None else points

    def performance(self) -> Any:
        return self._performance()

    # -- the prediction log ------------------------------------------------------------------

    def log_windows(
        self,
        version: ModelVersion,
        width: timedelta,
        until: datetime,
        last: int | None,
        *,
        trailing: bool,
    ) -> pl.DataFrame:
        """Per window of the version's prediction log (shadow rows left out): ``start`` (ms),
        ``rows``, ``failed``, ``p50`` and ``p99`` of latency_ms — one query, one group-by. With
        ``last``, windows without a row are there too (0 rows, null latencies)."""
        width_ms = int(width.total_seconds() * 1000)
        until_ms = to_ms(until)
        offset = until_ms % width_ms if trailing else 0
        # the window holding until - 1 ms is the newest: a window ending at until is complete
        newest = (until_ms - 1 - offset) // width_ms * width_ms + offset
        since_ms = newest - (last - 1) * width_ms if last is not None else None
        p = tables.predictions
        query = sa.select(p.c.ts, p.c.latency_ms, p.c.error.is_not(None).label("failed")).where(
            p.c.model_name == version.name,
            p.c.model_version == version.version,
            p.c.ts < until_ms,
            tables.NOT_SHADOW,
        )
        if since_ms is not None:
            query = query.where(p.c.ts >= since_ms)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        frame = pl.DataFrame(
            rows,
            schema={"ts": pl.Int64, "latency_ms": pl.Float64, "failed": pl.Boolean},
            orient="row",
        )
        grouped = (
            frame.with_columns(start=(pl.col("ts") - offset) // width_ms * width_ms + offset)
            .group_by("start")
            .agg(
                rows=pl.len(),
                failed=pl.col("failed").sum(),
                p50=pl.col("latency_ms").quantile(0.5, "linear"),
                p99=pl.col("latency_ms").quantile(0.99, "linear"),
            )
            .with_columns(pl.col("rows").cast(pl.Int64), pl.col("failed").cast(pl.Int64))
        )
        if since_ms is not None:
            grid = pl.DataFrame(
                {"start": pl.int_range(since_ms, newest + 1, width_ms, eager=True)},
                schema={"start": pl.Int64},
            )
            grouped = grid.join(grouped, on="start", how="left").with_columns(
                pl.col("rows").fill_null(0), pl.col("failed").fill_null(0)
            )
        return grouped.sort("start")


def _points(frame: pl.DataFrame, width: timedelta, value: str) -> list[SeriesPoint]:
    width_ms = int(width.total_seconds() * 1000)
    kept = frame.filter(pl.col(value).is_not_null() & pl.col(value).is_not_nan())
    return [
        SeriesPoint(from_ms(start), from_ms(start + width_ms), float(v))
        for start, v in zip(kept.get_column("start"), kept.get_column(value), strict=True)
    ]


def _log_series(column: str) -> SeriesFunction:
    def compute(service: SeriesService, q: SeriesQuery) -> list[SeriesPoint]:
        version = service.registry.resolve(q.model)
        frame = service.log_windows(version, q.width, q.until, q.last, trailing=q.trailing)
        if column == "volume":
            frame = frame.with_columns(volume=pl.col("rows").cast(pl.Float64))
        elif column == "error_rate":
            frame = frame.with_columns(
                error_rate=pl.when(pl.col("rows") > 0).then(pl.col("failed") / pl.col("rows"))
            )
        return _points(frame, q.width, column)

    return compute


def _drift(service: SeriesService, q: SeriesQuery) -> list[SeriesPoint]:
    try:
        windows = service.monitoring.window_drift(q.model, width=q.width, last=q.last)
    except NotFound as exc:
        if "no predictions" in exc.message:
            return []
        raise
    until = q.until
    out = []
    for w in windows:
        if w.start >= until:
            continue
        if q.spec.argument is None:
            out.append(SeriesPoint(w.start, w.end, w.share_drifted))
            continue
        column = next((c for c in w.columns if c.column == q.spec.argument), None)
        if column is None:
            known = ", ".join(c.column for c in w.columns)
            raise InvalidInput(f"drift has no column {q.spec.argument!r}; columns: {known}")
        if column.statistic is not None:
            out.append(SeriesPoint(w.start, w.end, float(column.statistic)))
    return out


def _null_rate(service: SeriesService, q: SeriesQuery) -> list[SeriesPoint]:
    """From the window summaries drift keeps (they count each input's nulls)."""
    column = q.spec.argument
    service.monitoring.update_windows(q.model, width=q.width)
    version = service.registry.resolve(q.model)
    width_ms = int(q.width.total_seconds() * 1000)
    w = tables.monitor_windows
    query = (
        sa.select(w.c.start_ms, w.c.rows, w.c.summary)
        .where(
            w.c.model_name == version.name,
            w.c.model_version == version.version,
            w.c.width_ms == width_ms,
            w.c.start_ms < to_ms(q.until),
        )
        .order_by(w.c.start_ms.desc())
    )
    if q.last is not None:
        query = query.limit(q.last)
    with service.db.read() as conn:
        stored = conn.execute(query).all()
    out = []
    for start, rows, text in reversed(stored):
        columns = orjson.loads(text)["columns"]
        summary = columns.get(column)
        if summary is None:
            raise InvalidInput(
                f"{version.ref} has no monitored input {column!r}; inputs: {', '.join(columns)}"
            )
        if summary["kind"] == "numeric":
            nulls = int(summary["nulls"])
        else:
            nulls = int(summary["counts"].get(NULL_CATEGORY, 0))
        if rows:
            out.append(SeriesPoint(from_ms(start), from_ms(start + width_ms), nulls / rows))
    return out


def _metric(service: SeriesService, q: SeriesQuery) -> list[SeriesPoint]:
    performance = service.performance()
    if performance is None:
        raise InvalidInput(
            f"series {q.spec.name!r} needs live performance (ws.performance), which this "
            "installation does not have yet"
        )
    name = q.spec.argument
    version = service.registry.resolve(q.model)  # NAME alone: its champion, as elsewhere
    out = []
    for window in performance.windows(version.ref, width=q.width, last=q.last):
        value = window.metrics.get(name)
        if window.start < q.until and value is not None:
            out.append(SeriesPoint(window.start, window.end, float(value)))
    return out


def _metric_drop(service: SeriesService, q: SeriesQuery) -> list[SeriesPoint]:
    """How much worse than at training time, relative: (baseline - live) / |baseline| for a
    score, (live - baseline) / |baseline| for an error; 0.1 is 10 % worse."""
    performance = service.performance()
    if performance is None:
        raise InvalidInput(
            f"series {q.spec.name!r} needs live performance (ws.performance), which this "
            "installation does not have yet"
        )
    name = q.spec.argument
    assert name is not None
    version = service.registry.resolve(q.model)
    baseline, higher = performance.baseline(version, name)
    out = []
    for window in performance.windows(version.ref, width=q.width, last=q.last):
        value = window.metrics.get(name)
        if window.start < q.until and value is not None:
            worse = (baseline - value) if higher else (value - baseline)
            drop = worse / abs(baseline) if baseline else (math.inf if worse > 0 else 0.0)
            out.append(SeriesPoint(window.start, window.end, float(drop)))
    return out


_BUILTIN: dict[str, _Entry] = {
    "latency_p99": _Entry(_log_series("p99"), None, "99th percentile of latency_ms"),
    "latency_p50": _Entry(_log_series("p50"), None, "median latency_ms"),
    "error_rate": _Entry(_log_series("error_rate"), None, "failed rows ÷ all rows"),
    "volume": _Entry(_log_series("volume"), None, "rows logged"),
    "drift_share": _Entry(_drift, None, "share of drifted inputs (against training data)"),
    "drift": _Entry(_drift, "column", "an input's drift statistic"),
    "null_rate": _Entry(_null_rate, "column", "share of null values of an input"),
    "metric": _Entry(_metric, "metric", "a live performance metric (needs labels)"),
    "metric_drop": _Entry(
        _metric_drop, "metric", "relative drop of a live metric from its training value"
    ),
}

__all__ = ["SeriesFunction", "SeriesPoint", "SeriesQuery", "SeriesService", "SeriesSpec"]
