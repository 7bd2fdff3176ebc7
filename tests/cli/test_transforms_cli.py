"""``mloop transforms register/list/show/run``, as a user types them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import polars as pl
import pytest

from helpers import run_cli
from mloop.workspace import Workspace

STEPS = '''
import polars as pl
from mloop import transform


@transform(inputs=["raw"], output="big")
def big(raw):
    """Rows with x above 1."""
    return raw.filter(pl.col("x") > 1)


def doubled(raw):
    return raw.with_columns(pl.col("x") * 2)
'''


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    ws.datasets.ingest(pl.DataFrame({"x": [1, 2, 3], "c": ["a", "b", "a"]}), name="raw")
    return ws


def flat(text: str) -> str:
    return " ".join(text.split())


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_register_run_and_run_again(cli: Workspace, tmp_path: Path) -> None:
    steps = write(tmp_path / "steps.py", STEPS)
    code, out, err = run_cli(cli, "transforms", "register", f"{steps}:big")
    assert (code, err) == (0, "")
    assert "registered big@1 (python): raw → big" in flat(out)
    code, out, _ = run_cli(cli, "transforms", "register", str(steps))  # its one @transform
    assert code == 0
    assert "unchanged: same code as big@1" in flat(out)

    code, out, _ = run_cli(cli, "transforms", "run", "big")
    assert code == 0
    assert "computed big@1: raw@1 → big@1" in flat(out)
    files = sorted(p for p in cli.artifacts.root.rglob("*") if p.is_file())
    code, out, _ = run_cli(cli, "transforms", "run", "big@1")
    assert code == 0
    assert "cached: nothing changed" in flat(out)
    assert sorted(p for p in cli.artifacts.root.rglob("*") if p.is_file()) == files
    assert cli.datasets.load_polars("big@1")["x"].to_list() == [2, 3]


def test_register_a_plain_function_and_sql_with_options(cli: Workspace, tmp_path: Path) -> None:
    steps = write(tmp_path / "steps.py", STEPS)
    code, out, _ = run_cli(
        cli,
        "transforms",
        "register",
        f"{steps}:doubled",
        "--input",
        "raw",
        "--output",
        "twice",
        "--description",
        "x doubled",
    )
    assert code == 0
    assert "registered doubled@1 (python): raw → twice" in flat(out)
    sql = write(tmp_path / "per_c.sql", "SELECT c, sum(x) AS x FROM raw GROUP BY c ORDER BY c;\n")
    code, out, _ = run_cli(
        cli, "transforms", "register", str(sql), "-i", "raw", "-o", "per_c", "--json"
    )
    assert code == 0
    registered = json.loads(out)
    assert (registered["name"], registered["kind"], registered["version"]) == ("per_c", "sql", 1)

    code, out, _ = run_cli(cli, "transforms", "run", "per_c", "--json")
    assert code == 0
    run = json.loads(out)
    assert (run["cached"], run["inputs"], run["output"]) == (False, ["raw@1"], "per_c@1")
    assert cli.datasets.load_polars("per_c").to_dicts() == [
        {"c": "a", "x": 4},
        {"c": "b", "x": 2},
    ]

    code, out, _ = run_cli(cli, "transforms", "list", "--json")
    assert [t["name"] for t in json.loads(out)] == ["doubled", "per_c"]
    code, out, _ = run_cli(cli, "transforms", "list")
    assert "doubled@1" in out
    assert "per_c@1" in out

    code, out, _ = run_cli(cli, "transforms", "show", "per_c")
    assert code == 0
    text = flat(out)
    assert "per_c@1 (sql) raw → per_c" in text
    assert "SELECT c, sum(x) AS x FROM raw" in text
    assert run["id"] in text
    code, out, _ = run_cli(cli, "transforms", "show", "doubled@1", "--json")
    shown = json.loads(out)
    assert shown["transform"]["description"] == "x doubled"
    assert (shown["versions"], shown["runs"]) == (["doubled@1"], [])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_run_with_a_pinned_input(cli: Workspace, tmp_path: Path) -> None:
    steps = write(tmp_path / "steps.py", STEPS)
    run_cli(cli, "transforms", "register", f"{steps}:big")
    cli.datasets.ingest(pl.DataFrame({"x": [5, 6], "c": ["z", "z"]}), name="raw")
    code, out, _ = run_cli(cli, "transforms", "run", "big", "--input", "raw@1")
    assert code == 0
    assert "raw@1 → big@1" in flat(out)
    code, out, _ = run_cli(cli, "transforms", "run", "big")
    assert "raw@2 → big@2" in flat(out)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["register", "missing.py:f"], "error: file 'missing.py' does not exist"),
        (["register", "steps.py:nope"], "error: steps.py defines no function 'nope'"),
        (["register", "steps.txt"], "error: 'steps.txt' is neither FILE.py:FUNCTION nor FILE.sql"),
        (["register", "bad.sql", "-i", "raw", "-o", "o"], "error: the SQL of transform 'bad'"),
        (["register", "broken.py:f"], "error: importing broken.py failed: ZeroDivisionError"),
        (["run", "nope"], "error: transform 'nope' does not exist"),
        (["run", "big", "--input", "raw"], "error: --input 'raw': write NAME@VERSION"),
        (["run", "fails"], "error: transform fails@1 failed"),
        (["show", "nope@2"], "error: transform 'nope' does not exist"),
    ],
)
def test_mistakes_fail_with_one_error_line(
    cli: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "steps.py", STEPS)
    write(tmp_path / "bad.sql", "SELEC x FROM raw")
    write(tmp_path / "broken.py", "x = 1 / 0\n")
    write(
        tmp_path / "fails.py",
        """
        def fails(raw):
            raise RuntimeError("no")
        """,
    )
    run_cli(cli, "transforms", "register", "steps.py:big")
    run_cli(cli, "transforms", "register", "fails.py:fails", "-i", "raw", "-o", "f")
    versions = len(cli.datasets.list())
    code, out, err = run_cli(cli, "transforms", *args)
    assert code == 2
    assert out == ""
    assert err.startswith(message), err
    assert len(cli.datasets.list()) == versions
