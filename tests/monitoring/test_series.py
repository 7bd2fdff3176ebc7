"""Named series over windows of the prediction log: latency, errors, volume, drift, nulls,
live metrics; the registry of series and its parser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from alert_helpers import BASE, MODEL, log_rows, train
from helpers import drift_frame
from mloop.core.clock import to_ms
from mloop.core.errors import InvalidInput
from mloop.monitoring import SeriesPoint, SeriesService
from mloop.monitoring.series import SeriesQuery
from mloop.workspace import Workspace

MINUTE = timedelta(minutes=1)


@pytest.fixture
def ws(sqlite_ws: Workspace) -> Workspace:
    train(sqlite_ws)
    return sqlite_ws


def test_latency_errors_and_volume_per_window(ws: Workspace) -> None:
    first = np.arange(1, 101, dtype=float)  # 1..100 ms
    second = np.linspace(10, 500, 200)
    log_rows(ws, BASE, drift_frame(100, 2, labelled=False), latencies=first.tolist())
    log_rows(
        ws, BASE + MINUTE, drift_frame(200, 3, labelled=False), latencies=second.tolist(), errors=5
    )
    until = BASE + 2 * MINUTE
    p99 = ws.series.compute(MODEL, "latency_p99", width=MINUTE, until=until)
    assert [p.start for p in p99] == [BASE, BASE + MINUTE]
    assert all(p.end - p.start == MINUTE for p in p99)
    with_errors = np.concatenate([second, np.ones(5)])  # a failed request's latency counts
    assert p99[0].value == pytest.approx(np.percentile(first, 99))
    assert p99[1].value == pytest.approx(np.percentile(with_errors, 99))
    p50 = ws.series.compute(MODEL, "latency_p50", width=MINUTE, until=until)
    assert [p.value for p in p50] == pytest.approx([50.5, np.percentile(with_errors, 50)])
    volume = ws.series.compute(MODEL, "volume", width=MINUTE, until=until)
    assert [p.value for p in volume] == [100, 205]
    errors = ws.series.compute(MODEL, "error_rate", width=MINUTE, until=until)
    assert [p.value for p in errors] == pytest.approx([0.0, 5 / 205])
    # only what was logged before `until`
    early = ws.series.compute(MODEL, "volume", width=MINUTE, until=BASE + MINUTE)
    assert [p.value for p in early] == [100]
    # with `last`, a window without traffic is there: volume 0, and no latency
    later = BASE + 4 * MINUTE
    quiet = ws.series.compute(MODEL, "volume", width=MINUTE, until=later, last=3)
    assert [(p.start, p.value) for p in quiet] == [
        (BASE + MINUTE, 205),
        (BASE + 2 * MINUTE, 0),
        (BASE + 3 * MINUTE, 0),
    ]
    assert len(ws.series.compute(MODEL, "latency_p99", width=MINUTE, until=later, last=3)) == 1
    # trailing: the newest window is the minute before `until`, wherever it falls
    half = BASE + MINUTE + timedelta(seconds=30)
    trailing = ws.series.compute(MODEL, "volume", width=MINUTE, until=half, last=1, trailing=True)
    assert trailing[0].start == BASE + timedelta(seconds=30)
    assert trailing[0].end == half
    # rows 0..99 land in the first 10 s of each minute: the second minute's rows and errors
    assert trailing[0].value == 200 + 5


def test_drift_per_window(ws: Workspace) -> None:
    log_rows(ws, BASE, drift_frame(1500, 4, labelled=False))
    log_rows(ws, BASE + MINUTE, drift_frame(1500, 5, shifted=True, labelled=False))
    until = BASE + 2 * MINUTE
    share = ws.series.compute(MODEL, "drift_share", width=MINUTE, until=until)
    assert [p.start for p in share] == [BASE, BASE + MINUTE]
    assert share[0].value < share[1].value
    assert share[1].value > 0
    x = ws.series.compute(MODEL, "drift:x", width=MINUTE, until=until)
    y = ws.series.compute(MODEL, "drift:y", width=MINUTE, until=until)
    assert x[1].value > 0.1 > x[0].value  # Wasserstein ÷ std at 1500 rows
    assert y[1].value < 0.1
    only_last = ws.series.compute(MODEL, "drift:x", width=MINUTE, until=until, last=1)
    assert [p.start for p in only_last] == [BASE + MINUTE]
    with pytest.raises(InvalidInput, match="no column 'nope'"):
        ws.series.compute(MODEL, "drift:nope", width=MINUTE, until=until)


def test_null_rate_per_window(ws: Workspace) -> None:
    frame = drift_frame(200, 6, labelled=False)
    nulled = (
        frame.with_row_index()
        .with_columns(x=pl_when_index_below(50, "x"), cat=pl_when_index_below(20, "cat"))
        .drop("index")
    )
    log_rows(ws, BASE, frame)
    log_rows(ws, BASE + MINUTE, nulled)
    until = BASE + 2 * MINUTE
    x = ws.series.compute(MODEL, "null_rate:x", width=MINUTE, until=until)
    assert [p.value for p in x] == pytest.approx([0.0, 50 / 200])
    cat = ws.series.compute(MODEL, "null_rate:cat", width=MINUTE, until=until)
    assert [p.value for p in cat] == pytest.approx([0.0, 20 / 200])
    with pytest.raises(InvalidInput, match="no monitored input 'nope'"):
        ws.series.compute(MODEL, "null_rate:nope", width=MINUTE, until=until)


def pl_when_index_below(n: int, column: str) -> Any:
    import polars as pl

    return pl.when(pl.col("index") < n).then(None).otherwise(pl.col(column))


def test_metric_series_reads_live_performance(ws: Workspace) -> None:
    # two windows of logged predictions; labels arrive for the first only
    first = drift_frame(120, 4)
    log_rows(ws, BASE, first.drop("label"))
    log_rows(ws, BASE + MINUTE, drift_frame(80, 5, labelled=False))
    truth = first.get_column("label").to_list()
    begin = to_ms(BASE)
    ws.performance.record(
        [{"request_id": f"r{begin}-{i}", "label": label} for i, label in enumerate(truth)]
    )
    predicted = ws.predict(MODEL, first.drop("label").to_dicts()).predictions
    points = ws.series.compute(MODEL, "metric:accuracy", width=MINUTE, until=BASE + 3 * MINUTE)
    assert points == [
        SeriesPoint(BASE, BASE + MINUTE, pytest.approx(accuracy_score(truth, predicted)))
    ]  # the unlabeled window has no point
    baseline = ws.tracking.get_run(ws.registry.resolve(MODEL).run_id or "").metrics["accuracy"]
    drops = ws.series.compute(MODEL, "metric_drop:accuracy", width=MINUTE, until=BASE + 3 * MINUTE)
    assert [p.value for p in drops] == pytest.approx(
        [(baseline - accuracy_score(truth, predicted)) / baseline]
    )
    with pytest.raises(InvalidInput, match="unknown metric 'nope'"):
        ws.series.compute(MODEL, "metric_drop:nope", width=MINUTE)
    missing = SeriesService(ws.db, ws.monitoring, ws.registry, performance=lambda: None)
    with pytest.raises(InvalidInput, match="needs live performance"):
        missing.compute(MODEL, "metric:accuracy", width=MINUTE)


def test_the_parser_names_what_exists(sqlite_ws: Workspace) -> None:
    series = sqlite_ws.series
    assert series.parse("latency_p99").name == "latency_p99"
    assert series.parse(" drift:amount ").argument == "amount"
    with pytest.raises(InvalidInput, match=r"unknown series 'latency_p95'; one of: .*latency_p99"):
        series.parse("latency_p95")
    with pytest.raises(InvalidInput, match="needs a column"):
        series.parse("drift:")
    with pytest.raises(InvalidInput, match="takes no argument"):
        series.parse("volume:x")
    with pytest.raises(InvalidInput, match="empty series"):
        series.parse(" ")
    with pytest.raises(InvalidInput, match="at least 1 second"):
        series.compute(MODEL, "volume", width=timedelta(milliseconds=10))
    with pytest.raises(InvalidInput, match="last must be"):
        series.compute(MODEL, "volume", width=MINUTE, last=0)


def test_more_series_plug_in_by_name(sqlite_ws: Workspace) -> None:
    seen: list[SeriesQuery] = []

    def constant(_service: SeriesService, query: SeriesQuery) -> list[SeriesPoint]:
        seen.append(query)
        return [
            SeriesPoint(query.until - query.width, query.until, float(query.spec.argument or 0))
        ]

    sqlite_ws.series.register("constant", constant, argument="value", description="a number")
    assert sqlite_ws.series.names()["constant:VALUE"] == "a number"
    points = sqlite_ws.series.compute("any", "constant:7", width=MINUTE, until=BASE)
    assert points == [SeriesPoint(BASE - MINUTE, BASE, 7.0)]
    assert seen[0].model == "any"
    with pytest.raises(InvalidInput, match="registered already"):
        sqlite_ws.series.register("constant", constant)
    with pytest.raises(InvalidInput, match="lower-case"):
        sqlite_ws.series.register("Bad-Name", constant)
