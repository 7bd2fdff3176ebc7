"""Data quality per window of served inputs: null rates, out-of-range values and unseen
categories flagged exactly where they were injected, the training data's suite applied when
it has one, thresholds overridable, bad input refused; and the CLI over it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from helpers import drift_frame
from mloop.cli import app
from mloop.core.errors import InvalidInput, NotFound
from mloop.monitoring.quality import QualityThresholds
from mloop.workspace import Workspace
from window_helpers import MODEL, SECOND, clean, log, replaced, trained, window_start, with_nulls


@pytest.fixture
def ws(sqlite_ws: Workspace) -> Workspace:
    return trained(sqlite_ws)


@pytest.fixture
def base() -> int:
    return window_start()


def test_each_problem_is_flagged_in_its_column_only(ws: Workspace, base: int) -> None:
    log(ws, clean(2000, 5), base)
    log(ws, with_nulls(clean(2000, 6), "x", 5), base + 1000)  # 20% nulls in x
    log(ws, replaced(clean(2000, 7), "y", 10, 1000.0), base + 2000)  # 10% far above y's max
    log(ws, replaced(clean(2000, 8), "cat", 10, "zzz"), base + 3000)  # 10% unseen in cat
    log(ws, replaced(clean(2000, 9), "x", 20, -1e6), base + 4000)  # 5% far below x's min
    # a failed request and a shadow are not served inputs: left out
    log(ws, with_nulls(clean(500, 10), "y", 1), base + 4000, error="model_error")
    log(ws, with_nulls(clean(500, 11), "y", 1), base + 4000, shadow=True)
    windows = ws.monitoring.window_quality(MODEL, width=SECOND)
    assert [w.rows for w in windows] == [2000] * 5
    assert [w.failed_columns for w in windows] == [[], ["x"], ["y"], ["cat"], ["x"]]
    assert [w.failed for w in windows] == [False, True, True, True, True]
    assert all(w.bounds == "training data" for w in windows)
    by = [{c.column: c for c in w.columns} for w in windows]
    assert {c.kind for c in by[0].values()} == {"numeric", "categorical"}
    assert by[1]["x"].null_rate == pytest.approx(0.2)
    assert by[1]["x"].training_null_rate == 0.0
    assert by[1]["y"].null_rate == 0.0
    # the injected 200, and the odd fresh value beyond a training extreme
    assert by[2]["y"].out_of_range_rate == pytest.approx(0.1, abs=0.003)
    assert 200 <= by[2]["y"].above <= 206  # type: ignore[operator]
    assert by[2]["y"].high is not None
    assert by[2]["y"].high < 1000
    assert by[3]["cat"].unseen_category_rate == pytest.approx(0.1)
    assert by[3]["cat"].unseen_categories == [{"value": "zzz", "count": 200}]
    assert by[3]["x"].unseen_category_rate is None  # numbers have ranges, not categories
    assert 100 <= by[4]["x"].below <= 106  # type: ignore[operator]
    assert any("out of range" in issue for issue in by[4]["x"].issues)
    assert not any(c.estimated for w in windows for c in w.columns)
    # a sliding window of two merges the counters
    sliding = ws.monitoring.window_quality(MODEL, width=SECOND, sliding=2, last=1, update=False)
    x = next(c for c in sliding[0].columns if c.column == "x")
    assert sliding[0].rows == 4000
    assert x.below == by[3]["x"].below + by[4]["x"].below  # type: ignore[operator]


def test_thresholds_are_tolerances_and_can_be_overridden(ws: Workspace, base: int) -> None:
    log(ws, with_nulls(clean(2000, 6), "x", 25), base)  # 4% nulls: within the 5% tolerance
    log(ws, with_nulls(clean(2000, 7), "x", 5), base + 1000)  # 20%
    default = ws.monitoring.window_quality(MODEL, width=SECOND)
    assert [w.failed_columns for w in default] == [[], ["x"]]
    assert default[0].thresholds["null_rate"] == 0.05
    loose = QualityThresholds(columns={"x": {"null_rate": 0.25}})
    assert [
        w.failed_columns
        for w in ws.monitoring.window_quality(MODEL, width=SECOND, thresholds=loose)
    ] == [[], []]
    strict = QualityThresholds(null_rate=0.0)
    assert [
        w.failed_columns
        for w in ws.monitoring.window_quality(MODEL, width=SECOND, thresholds=strict)
    ] == [["x"], ["x"]]
    with pytest.raises(InvalidInput, match="not checked"):
        ws.monitoring.window_quality(
            MODEL, width=SECOND, thresholds=QualityThresholds(columns={"nope": {"null_rate": 0.1}})
        )
    with pytest.raises(InvalidInput, match="unknown quality threshold"):
        QualityThresholds(columns={"x": {"nulls": 0.1}})
    with pytest.raises(InvalidInput, match="between 0 and 1"):
        QualityThresholds(out_of_range_rate=2)


def test_the_training_datas_suite_sets_the_limits(ws: Workspace, base: int) -> None:
    reference = drift_frame(4000, 1)
    y_max = float(reference.get_column("y").max())
    y_min = float(reference.get_column("y").min())
    # 10% just above the training maximum, inside the suite's 10% margin
    just_above = y_max + 0.05 * (y_max - y_min)
    log(ws, replaced(clean(2000, 6), "y", 10, just_above), base)
    without = ws.monitoring.window_quality(MODEL, width=SECOND)
    assert without[0].failed_columns == ["y"]
    suite = ws.validation.infer_suite("ref")
    log(ws, replaced(clean(2000, 7), "y", 10, just_above), base + 1000)
    log(ws, replaced(clean(2000, 8), "cat", 10, "zzz"), base + 2000)
    windows = ws.monitoring.window_quality(MODEL, width=SECOND)
    assert windows[-1].bounds == f"suite {suite.name}@{suite.version}"
    # the first window was counted against the training range: unknown against the suite
    first_y = next(c for c in windows[0].columns if c.column == "y")
    assert first_y.out_of_range_rate is None
    assert [w.failed_columns for w in windows[1:]] == [[], ["cat"]]
    y = next(c for c in windows[1].columns if c.column == "y")
    assert y.out_of_range_rate == 0.0
    assert y.high is not None
    assert y.high > just_above
    # a suite that allows 15% out of its range, reported as a warning only for cat
    body = suite.model_dump(mode="json")
    for check in body["expectations"]:
        if check["type"] == "between" and check["column"] == "y":
            check["max"] = y_max
            check["mostly"] = 0.85
        if check["type"] == "in_set":
            check["severity"] = "warn"
    from mloop.data import Suite

    edited = ws.validation.save_suite(Suite.parse({**body, "version": None}))
    log(ws, replaced(clean(2000, 9), "y", 10, just_above), base + 3000)
    log(ws, replaced(clean(2000, 10), "cat", 10, "zzz"), base + 4000)
    last = ws.monitoring.window_quality(MODEL, width=SECOND, last=2)
    assert all(w.bounds == f"suite {edited.name}@{edited.version}" for w in last)
    assert [w.failed_columns for w in last] == [[], []]
    cat = next(c for c in last[1].columns if c.column == "cat")
    assert "(warn)" in cat.issues[0]
    assert not cat.failed


def test_bad_input_is_refused(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="no predictions"):
        ws.monitoring.window_quality(MODEL, width=SECOND)
    with pytest.raises(NotFound):
        ws.monitoring.window_quality("nobody", width=SECOND)
    with pytest.raises(InvalidInput, match="sliding"):
        ws.monitoring.window_quality(MODEL, sliding=0)
    with pytest.raises(InvalidInput, match="last"):
        ws.monitoring.window_quality(MODEL, last=0)
    with pytest.raises(InvalidInput, match="at least 1 second"):
        ws.monitoring.window_quality(MODEL, width=timedelta(milliseconds=5))


def test_the_cli_lists_quality_and_fails_on_an_issue(ws: Workspace, base: int) -> None:
    log(ws, clean(1000, 5), base)
    log(ws, replaced(clean(1000, 6), "cat", 4, "zzz"), base + 1000)
    runner = CliRunner()
    cmd = ["--workspace", str(ws.home), "monitor", "quality", "-m", MODEL, "-w", "1s"]
    as_json = runner.invoke(app, [*cmd, "--json"])
    assert as_json.exit_code == 0, as_json.output
    windows = json.loads(as_json.stdout)
    assert [w["failed_columns"] for w in windows] == [[], ["cat"]]
    table = runner.invoke(app, [*cmd, "--fail-on-issue"])
    assert table.exit_code == 1, table.output
    assert "zzz" in table.stdout
    assert "FAILED" in table.stdout
    calm = runner.invoke(app, [*cmd, "--last", "1", "--fail-on-issue"])
    assert calm.exit_code == 1  # the newest is the failing one
    unknown = runner.invoke(app, [*cmd[:5], "nobody", "-w", "1s"])
    assert unknown.exit_code == 2
    assert unknown.stderr.count("\n") == 1
    assert "error:" in unknown.stderr
    bad = runner.invoke(app, [*cmd[:-2], "-w", "soon"])
    assert bad.exit_code == 2
    assert "is not a duration" in bad.stderr
