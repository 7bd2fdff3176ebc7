"""Drift from compact summaries: the same verdicts as on the raw data, exactly the shifted
columns flagged, mergeable windows, bounded memory, and bad input refused."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from mloop.core.errors import InvalidInput
from mloop.monitoring import Profile, Thresholds, compare, compare_frames
from mloop.monitoring.drift import categorical_drift, numeric_drift
from mloop.monitoring.summary import MAX_CATEGORIES, OTHER, jensen_shannon

SHIFTED = ["n0", "n1", "n2", "n3", "n4", "c0", "c1"]


def frame(rows: int, seed: int, shifted: bool = False) -> pl.DataFrame:
    """12 numeric columns (normal, log-normal, integer counts) and 4 categorical ones; when
    ``shifted``, the columns in SHIFTED move by a margin well past the 0.1 thresholds."""
    rng = np.random.default_rng(seed)
    cols: dict[str, object] = {}
    for i in range(12):
        if i % 3 == 0:
            x = rng.lognormal(0, 0.7, rows)
        elif i % 3 == 1:
            x = rng.normal(10, 2, rows)
        else:
            x = rng.poisson(4, rows).astype(np.float64)
        if shifted and f"n{i}" in SHIFTED:
            x = x + 0.4 * x.std() if i != 4 else x * 1.6  # location; and scale for n4
        cols[f"n{i}"] = x
    shares = np.array([0.5, 0.3, 0.15, 0.05])
    for j in range(4):
        p = np.array([0.2, 0.2, 0.3, 0.3]) if shifted and f"c{j}" in SHIFTED else shares
        cols[f"c{j}"] = rng.choice(["a", "b", "c", "d"], rows, p=p)
    return pl.DataFrame(cols)


@pytest.fixture(scope="module")
def reference() -> pl.DataFrame:
    return frame(60_000, seed=1)


def test_exactly_the_shifted_columns_drift(reference: pl.DataFrame) -> None:
    report = compare_frames(reference, frame(60_000, seed=2, shifted=True))
    assert sorted(report.drifted_columns) == sorted(SHIFTED)
    assert {c.method for c in report.columns} == {"wasserstein_std", "jensen_shannon"}
    assert report.share_drifted == pytest.approx(7 / 16)
    assert not report.dataset_drift  # fewer than half


def test_unshifted_data_raises_no_alarm(reference: pl.DataFrame) -> None:
    # ten fresh samples of the same distributions: the effect-size path flags none of 160
    alarms = sum(
        len(compare_frames(reference, frame(20_000, seed=100 + k)).drifted_columns)
        for k in range(10)
    )
    assert alarms == 0


def test_small_samples_use_the_tests_and_their_false_positive_rate(
    reference: pl.DataFrame,
) -> None:
    # ≤ 1,000 rows: KS / chi-square at p < 0.05, so about 5 % false alarms by construction
    reports = [compare_frames(reference, frame(300, seed=200 + k)) for k in range(25)]
    assert {c.method for r in reports for c in r.columns} == {"ks", "chi_square"}
    alarms = sum(len(r.drifted_columns) for r in reports)
    assert alarms <= 0.10 * 25 * 16  # documented: 5 %; allow the binomial tail
    shifted = compare_frames(reference, frame(800, seed=3, shifted=True))
    assert set(SHIFTED) <= set(shifted.drifted_columns)


def test_summaries_agree_with_the_exact_statistics(reference: pl.DataFrame) -> None:
    current = frame(50_000, seed=4, shifted=True)
    profile = Profile.from_frame(reference)
    results = {r.column: r for r in compare(profile, profile.summarize(current))}
    for name in ("n0", "n1", "n2", "n4", "n5", "n7"):
        exact = numeric_drift(name, reference[name].to_numpy(), current[name].to_numpy())
        assert exact.statistic is not None
        assert results[name].statistic == pytest.approx(exact.statistic, rel=0.05, abs=0.003)
        assert results[name].drifted == exact.drifted
    for name in ("c0", "c2"):
        exact = categorical_drift(name, reference[name], current[name])
        assert results[name].statistic == pytest.approx(exact.statistic, abs=1e-9)
        assert results[name].psi == pytest.approx(exact.psi, abs=1e-9)


def test_jensen_shannon_matches_scipy() -> None:
    from scipy.spatial.distance import jensenshannon

    p, q = np.array([5.0, 3, 2, 0]), np.array([1.0, 1, 4, 4])
    assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-12)


def test_windows_merge_into_the_summary_of_their_union(reference: pl.DataFrame) -> None:
    current = frame(30_000, seed=5, shifted=True)
    profile = Profile.from_frame(reference)
    whole = profile.summarize(current)
    merged = profile.window()
    for start in range(0, current.height, 7_000):  # tumbling windows of a stream
        part = profile.window()
        part.update(current.slice(start, 7_000))
        merged.merge(part)
    assert merged.rows == whole.rows == current.height
    for name, column in whole.columns.items():
        other = merged.columns[name]
        if hasattr(column, "edges"):
            assert np.array_equal(column.counts, other.counts)  # type: ignore[union-attr]
            assert column.total == pytest.approx(other.total)  # type: ignore[union-attr]
        else:
            assert column.counts == other.counts
    a = {r.column: r.statistic for r in compare(profile, whole)}
    b = {r.column: r.statistic for r in compare(profile, merged)}
    assert a == pytest.approx(b)


def test_a_summary_survives_json(reference: pl.DataFrame) -> None:
    profile = Profile.from_frame(reference)
    window = profile.summarize(frame(500, seed=6))
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    window_again = again.summary_from_dict(json.loads(json.dumps(window.to_dict())))
    first = [(r.column, r.method, r.statistic) for r in compare(profile, window)]
    second = [(r.column, r.method, r.statistic) for r in compare(again, window_again)]
    assert first == second
    assert first[0][1] == "ks"  # the small window kept its values, so the exact test ran


def test_memory_stays_bounded_over_unbounded_traffic() -> None:
    profile = Profile.from_frame(pl.DataFrame({"x": np.arange(5_000.0), "k": ["a"] * 5_000}))
    window = profile.window()
    for i in range(5):
        window.update(
            pl.DataFrame(
                {"x": np.random.default_rng(i).normal(0, 1e6, 10_000)},
            ).with_columns(k=pl.Series([f"user-{i}-{j}" for j in range(10_000)]))
        )
    x, k = window.columns["x"], window.columns["k"]
    assert x.counts.size == profile.columns["x"].counts.size  # type: ignore[union-attr]
    assert x.values is None  # past the small-sample size the values are let go
    assert len(k.counts) <= MAX_CATEGORIES + 1
    assert k.counts[OTHER] == 50_000 - MAX_CATEGORIES  # type: ignore[union-attr]
    assert window.rows == 50_000


def test_values_beyond_the_reference_range_count_exactly() -> None:
    reference = pl.DataFrame({"x": np.linspace(0, 1, 10_001)})
    current = pl.DataFrame({"x": np.linspace(0, 1, 10_001) + 5})  # all past the max
    (result,) = compare_frames(reference, current).columns
    exact = numeric_drift("x", reference["x"].to_numpy(), current["x"].to_numpy())
    assert result.statistic == pytest.approx(exact.statistic, rel=1e-3)


def test_per_column_thresholds_override_the_defaults(reference: pl.DataFrame) -> None:
    current = frame(20_000, seed=7, shifted=True)
    loose = Thresholds(columns={"n0": {"effect_size": 5.0}, "c0": {"effect_size": 0.9}})
    report = compare_frames(reference, current, thresholds=loose)
    assert "n0" not in report.drifted_columns
    assert "c0" not in report.drifted_columns
    assert "n1" in report.drifted_columns
    (n0,) = [c for c in report.columns if c.column == "n0"]
    assert n0.threshold == 5.0
    assert report.thresholds["columns"] == {"n0": {"effect_size": 5.0}, "c0": {"effect_size": 0.9}}


def test_the_domain_classifier_sees_multivariate_drift(reference: pl.DataFrame) -> None:
    same = compare_frames(reference, frame(20_000, seed=8), multivariate=True)
    assert same.multivariate is not None
    assert same.multivariate.statistic < 0.55
    assert not same.multivariate.drifted
    moved = compare_frames(reference, frame(20_000, seed=9, shifted=True), multivariate=True)
    assert moved.multivariate is not None
    assert moved.multivariate.drifted
    assert moved.multivariate.top_columns[0]["column"] in SHIFTED


def test_the_html_report_is_light_and_names_the_drift(
    reference: pl.DataFrame, tmp_path: object
) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "drift.html"
    report = compare_frames(reference, frame(60_000, seed=10, shifted=True), html_path=out)
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert "7 of 16</b> columns drifted" in page
    assert page.count("<svg") == 16
    assert len(page) < 150_000  # summaries only: a few kB a column, whatever the rows
    assert report.drifted_columns


def test_bad_input_is_refused(reference: pl.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="no column"):
        compare_frames(reference, frame(100, seed=11), columns=["n0", "missing"])
    with pytest.raises(InvalidInput, match="share no column"):
        compare_frames(reference, pl.DataFrame({"other": [1.0, 2.0]}))
    with pytest.raises(InvalidInput, match="no rows"):
        compare_frames(reference, reference.head(0))
    with pytest.raises(InvalidInput, match="cannot be compared"):
        compare_frames(
            reference.select("n0"),
            pl.DataFrame({"n0": ["x", "y"]}),
            columns=["n0"],
        )
    with pytest.raises(InvalidInput, match="not compared"):
        compare_frames(
            reference, reference, thresholds=Thresholds(columns={"zz": {"p_value": 0.01}})
        )
    with pytest.raises(InvalidInput, match="unknown drift threshold"):
        compare_frames(reference, reference, thresholds=Thresholds(columns={"n0": {"effect": 0.2}}))
    with pytest.raises(InvalidInput, match="multiple of"):
        Profile.from_frame(reference, bins=15)


def test_a_window_counts_known_new_and_missing_categories() -> None:
    profile = Profile.from_frame(pl.DataFrame({"city": ["a", "b", "b", None, "c"] * 400}))
    window = profile.window()
    batch = pl.DataFrame({"city": ["b", "z", None, "a", "z", "q", "b"] * 300})
    window.update(batch)
    window.update(batch.head(3))
    counts = window.columns["city"].counts  # type: ignore[union-attr]
    assert {k: v for k, v in counts.items() if v} == {
        "a": 300,
        "b": 601,
        "z": 601,
        "<null>": 301,
        "q": 300,
    }
    assert window.rows == 2_103


def test_a_tall_batch_of_many_columns_gives_the_same_summary_on_two_threads(
    reference: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mloop.monitoring.summary as summary

    current = frame(8_000, seed=12, shifted=True)
    profile = Profile.from_frame(reference)
    monkeypatch.setattr(summary, "PARALLEL_BATCH", 10**9)
    serial = profile.summarize(current)
    monkeypatch.setattr(summary, "PARALLEL_BATCH", 1_000)
    threaded = profile.summarize(current)
    assert serial.to_dict() == threaded.to_dict()


def test_parquet_scans_are_read_a_column_at_a_time_with_the_same_verdicts(
    reference: pl.DataFrame, tmp_path: object
) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    current = frame(30_000, seed=13, shifted=True)
    reference.write_parquet(folder / "ref.parquet")
    current.write_parquet(folder / "cur.parquet")
    eager = compare_frames(reference, current, multivariate=True)
    lazy = compare_frames(
        pl.scan_parquet(folder / "ref.parquet"),
        pl.scan_parquet(folder / "cur.parquet"),
        multivariate=True,
    )
    assert (lazy.reference_rows, lazy.current_rows) == (60_000, 30_000)
    assert lazy.drifted_columns == eager.drifted_columns
    assert sorted(lazy.drifted_columns) == sorted(SHIFTED)
    assert [c.statistic for c in lazy.columns] == pytest.approx(
        [c.statistic for c in eager.columns]
    )
    assert lazy.multivariate is not None
    assert lazy.multivariate.drifted


def test_out_of_range_counters_merge_serialise_and_read_old_summaries() -> None:
    reference = pl.DataFrame({"v": np.linspace(0.0, 10.0, 1001), "c": ["a", "b"] * 500 + ["a"]})
    profile = Profile.from_frame(reference)
    batch = pl.DataFrame({"v": [-1.0, 0.0, 5.0, 10.0, 10.5, 11.0, None], "c": ["a"] * 7})
    window = profile.summarize(batch)
    v = window.columns["v"]
    assert (v.below, v.above, v.nulls) == (1, 2, 1)  # the extremes themselves are in range
    twice = profile.window()
    twice.merge(window)
    twice.merge(window)
    assert (twice.columns["v"].below, twice.columns["v"].above) == (2, 4)
    stored = json.loads(json.dumps(twice.to_dict()))
    loaded = profile.summary_from_dict(stored)
    assert (loaded.columns["v"].below, loaded.columns["v"].above) == (2, 4)
    # a summary stored before the counters: unknown, and unknown once merged
    for key in ("low", "high", "below", "above"):
        del stored["columns"]["v"][key]
    old = profile.summary_from_dict(stored)
    assert old.columns["v"].below is None
    old.merge(window)
    assert old.columns["v"].above is None
    assert old.columns["v"].n == 3 * window.columns["v"].n  # the bins still add up
    # limits set on the profile (a suite's range) apply to the windows made from it
    profile.set_limits("v", -2.0, None)
    wide = profile.summarize(batch).columns["v"]
    assert (wide.below, wide.above) == (0, 0)
    mixed = profile.window()
    mixed.merge(window)  # counted against other limits: not known
    assert mixed.columns["v"].below is None
    with pytest.raises(InvalidInput, match="no numeric column"):
        profile.set_limits("c", 0, 1)
