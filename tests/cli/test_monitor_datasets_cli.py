"""``mloop monitor drift --reference A --current B``: dataset against dataset, as a table, JSON
and an HTML report; thresholds per column; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner, Result

from mloop.cli import app
from mloop.workspace import Workspace


def _frame(rows: int, seed: int, shifted: bool) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "amount": rng.lognormal(3, 0.5, rows) * (1.5 if shifted else 1.0),
            "age": rng.normal(40, 10, rows),
            "visits": rng.poisson(3, rows),
            "city": rng.choice(
                ["a", "b", "c"], rows, p=[0.2, 0.3, 0.5] if shifted else [0.6, 0.3, 0.1]
            ),
            "plan": rng.choice(["free", "pro"], rows),
            "seen": [f"2026-01-{1 + i % 28:02d}" for i in range(rows)],
        }
    ).with_columns(seen=pl.col("seen").str.to_date())


@pytest.fixture
def home(sqlite_ws: Workspace) -> Path:
    sqlite_ws.datasets.ingest(_frame(5_000, 1, False), name="jan")
    sqlite_ws.datasets.ingest(_frame(4_000, 2, True), name="feb")
    sqlite_ws.datasets.ingest(_frame(4_000, 3, False), name="feb")  # feb@2: like jan
    return sqlite_ws.home


def mloop(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["--workspace", str(home), *args])


def test_json_names_the_shifted_columns(home: Path) -> None:
    result = mloop(home, "monitor", "drift", "--reference", "jan", "--current", "feb@1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["drifted_columns"]) == ["amount", "city"]
    assert report["reference"] == "jan@1"
    assert report["current"] == "feb@1"
    assert report["skipped_columns"] == ["seen"]  # dates are not measured
    assert {c["method"] for c in report["columns"]} == {"wasserstein_std", "jensen_shannon"}
    same = mloop(home, "monitor", "drift", "--reference", "jan", "--current", "feb", "--json")
    assert json.loads(same.stdout)["drifted_columns"] == []  # feb@2, the latest


def test_table_html_and_fail_on_drift(home: Path, tmp_path: Path) -> None:
    page = tmp_path / "drift.html"
    result = mloop(
        home, "monitor", "drift", "--reference", "jan@1", "--current", "feb@1",
        "--html", str(page), "--fail-on-drift", "--multivariate",
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # drift found: the CI exit code
    text = " ".join(result.stdout.split())
    assert "drifted columns amount, city" in text
    assert "domain classifier ROC AUC" in text
    assert f"report:{page}" in "".join(result.stdout.split())  # Rich may wrap the path
    html = page.read_text()
    assert "2 of 5</b> columns drifted" in html
    assert "Domain classifier ROC AUC" in html
    calm = mloop(home, "monitor", "drift", "--reference", "jan", "--current", "feb@2",
                 "--fail-on-drift")  # fmt: skip
    assert calm.exit_code == 0, calm.output


def test_per_column_thresholds_and_a_column_subset(home: Path) -> None:
    result = mloop(
        home, "monitor", "drift", "--reference", "jan", "--current", "feb@1", "--json",
        "--threshold", "amount=10", "-c", "amount", "-c", "city", "-c", "age",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [c["column"] for c in report["columns"]] == ["amount", "city", "age"]
    assert report["drifted_columns"] == ["city"]
    assert report["thresholds"]["columns"] == {"amount": {"effect_size": 10.0}}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reference", "jan"], "--reference and --current go together"),
        (["--reference", "jan", "--current", "nope"], "dataset 'nope'"),
        (["--reference", "jan", "--current", "feb@9"], "has no version 9"),
        (["--reference", "jan", "--current", "feb", "-c", "zip"], "no column(s) ['zip']"),
        (["--reference", "jan", "--current", "feb", "-c", "seen"], "cannot be compared"),
        (["--reference", "jan", "--current", "feb", "--threshold", "amount"], "COLUMN=EFFECT_SIZE"),
        (["--reference", "jan", "--current", "feb", "--threshold", "amount=x"], "not a number"),
        (["--reference", "jan", "--current", "feb", "--threshold", "zip=0.2"], "not compared"),
        (["--reference", "jan", "--current", "feb", "-m", "m"], "not both"),
        (["-m", "m", "--html", "x.html"], "apply to --reference/--current"),
        ([], "give --model NAME"),
    ],
)
def test_bad_input_exits_2_with_one_line(home: Path, args: list[str], message: str) -> None:
    result = mloop(home, "monitor", "drift", *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
