"""The per-window HTML report: drift per feature and for the predictions with a chart each,
quality per feature, live performance when given; its size does not depend on the rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mloop.cli import app
from mloop.core.errors import InvalidInput
from mloop.monitoring import Profile, WindowDrift, compare
from mloop.monitoring.quality import QualityThresholds, WindowQuality, assess
from mloop.monitoring.report import WindowSection, render_window_report
from mloop.workspace import Workspace
from window_helpers import MODEL, SECOND, clean, log, replaced, trained, window_start


@pytest.fixture
def ws(sqlite_ws: Workspace) -> Workspace:
    return trained(sqlite_ws)


@pytest.fixture
def base() -> int:
    return window_start()


def test_a_report_per_window_with_drift_quality_and_performance(ws: Workspace, base: int) -> None:
    log(ws, clean(1500, 5), base)
    log(ws, replaced(clean(1500, 6, shifted=True), "cat", 10, "<b>zzz</b>"), base + 1000)
    start = datetime.fromtimestamp(base / 1000 + 1, UTC)
    performance = [
        {
            "start": start,
            "end": start + SECOND,
            "version": 1,
            "labeled": 40,
            "metrics": {"accuracy": 0.625},
        },
        {
            "start": start,
            "end": start + SECOND,
            "version": 2,
            "labeled": 9,
            "metrics": {"accuracy": 0.111},
        },
    ]
    page = ws.monitoring.window_report(MODEL, width=SECOND, performance=performance)
    assert page.startswith("<!doctype html>")
    # newest first; its drift, the predictions', quality and performance
    first = datetime.fromtimestamp(base / 1000, UTC)
    newest = page.index(f"<h2>{start:%Y-%m-%d %H:%M:%S} →")
    oldest = page.index(f"<h2>{first:%Y-%m-%d %H:%M:%S} →")
    assert newest < oldest
    section = page[newest:oldest]
    assert "Prediction drift" in section
    assert "drifted: x, cat" in section or "drifted: cat, x" in section
    # the log's outputs are all class 1: far from the hold-out predictions in both
    assert "predictions drifted: prediction, prediction_score" in page[oldest:]
    assert "drifted: x" not in page[oldest:]
    assert "quality failed: cat" in page
    assert "&lt;b&gt;zzz&lt;/b&gt;" in page  # a logged value is escaped, never markup
    assert "<b>zzz</b>" not in page
    assert "accuracy 0.625" in page
    assert "0.111" not in page  # another version's window
    assert page.count("<svg") == 2 * 5  # a chart per input and output, per window
    # against the previous window: the first has none
    previous = ws.monitoring.window_report(MODEL, width=SECOND, against="previous", update=False)
    assert "no window before this one" in previous
    with pytest.raises(InvalidInput, match="against"):
        ws.monitoring.window_report(MODEL, width=SECOND, against="tomorrow")


def test_the_size_does_not_depend_on_the_rows(ws: Workspace, base: int) -> None:
    log(ws, clean(100, 5), base)
    log(ws, clean(30_000, 6), base + 1000)
    small = ws.monitoring.window_report(MODEL, width=SECOND, last=2)
    one = small.split("<h2>")
    assert len(one) == 3  # the heading, then a section per window
    big_section, small_section = one[1], one[2]
    assert len(big_section) < 1.25 * len(small_section)
    assert len(small) < 100_000


def test_twenty_five_columns_of_a_million_rows_stay_small() -> None:
    rng = np.random.default_rng(0)

    def frame(rows: int, shift: float) -> pl.DataFrame:
        cols: dict[str, object] = {f"n{i}": rng.normal(shift, 1, rows) for i in range(20)}
        for j in range(5):
            cols[f"c{j}"] = rng.choice([f"v{k}" for k in range(40)], rows)
        return pl.DataFrame(cols)

    profile = Profile.from_frame(frame(50_000, 0))
    sections = []
    for rows in (1_000, 1_000_000):
        current = profile.summarize(frame(rows, 0.5))
        results = compare(profile, current)
        drift = WindowDrift(
            model="m",
            version=1,
            start=datetime(2026, 1, 1, tzinfo=UTC),
            end=datetime(2026, 1, 1, 1, tzinfo=UTC),
            rows=rows,
            against="training data",
            columns=results,
            drifted_columns=[r.column for r in results if r.drifted],
            share_drifted=0.8,
        )
        columns = assess(profile, current, list(profile.columns), {}, QualityThresholds())
        quality = WindowQuality(
            model="m",
            version=1,
            start=drift.start,
            end=drift.end,
            rows=rows,
            bounds="training data",
            columns=columns,
            failed_columns=[],
            failed=False,
            thresholds={},
        )
        sections.append(
            WindowSection(drift.start, drift.end, rows, drift, quality, profile, current)
        )
    small = render_window_report("t", sections[:1])
    large = render_window_report("t", sections[1:])
    assert len(large) < 1.1 * len(small)
    assert len(large) < 300_000


def test_the_cli_writes_the_report(ws: Workspace, base: int, tmp_path: Path) -> None:
    log(ws, clean(500, 5), base)
    out = tmp_path / "report.html"
    runner = CliRunner()
    cmd = ["--workspace", str(ws.home), "monitor", "report", "-m", MODEL, "-w", "1s"]
    result = runner.invoke(app, [*cmd, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Data quality" in out.read_text()
    unknown = runner.invoke(app, [*cmd[:5], "nobody", "-w", "1s", "-o", str(out)])
    assert unknown.exit_code == 2
    assert unknown.stderr.count("\n") == 1
    bad = runner.invoke(app, [*cmd[:-2], "-w", "soon", "-o", str(out)])
    assert bad.exit_code == 2
    assert "is not a duration" in bad.stderr
    unwritable = runner.invoke(app, [*cmd, "-o", str(tmp_path / "no" / "such" / "dir.html")])
    assert unwritable.exit_code == 2
    assert "cannot write" in unwritable.stderr
