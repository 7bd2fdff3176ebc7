"""``mloop data ...``: ingest, list, versions, show, suite and validate, as a user types them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from mloop.cli import app
from mloop.storage import tables
from mloop.workspace import Workspace

Run = Callable[..., Result]

# tests whose subject is not the metadata backend run on SQLite only
embedded = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``cli("ingest", ...)`` runs ``mloop --workspace <ws> data ingest ...`` on ``ws``'s own
    metadata database and artifact store."""
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, ["--workspace", str(ws.home), "data", *args])

    return run


def text(result: Result) -> str:
    """All output, with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def state(ws: Workspace) -> tuple[frozenset[str], int, int]:
    root = ws.artifacts.root
    files = frozenset(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    with ws.db.read() as conn:
        versions = conn.execute(
            sa.select(sa.func.count()).select_from(tables.dataset_versions)
        ).scalar_one()
        datasets = conn.execute(
            sa.select(sa.func.count()).select_from(tables.datasets)
        ).scalar_one()
    return files, int(versions), int(datasets)


def sales(n: int = 120) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "amount": [float(i % 50) + 1.0 for i in range(n)],
            "city": [("NY", "LA", "SF")[i % 3] for i in range(n)],
        }
    )


def broken() -> pl.DataFrame:
    """``sales()`` with rows 0-2 negative and row 10 in an unknown city."""
    i = pl.int_range(pl.len())
    return sales().with_columns(
        pl.when(i < 3).then(-5.0).otherwise(pl.col("amount")).alias("amount"),
        pl.when(i == 10).then(pl.lit("XX")).otherwise(pl.col("city")).alias("city"),
    )


def as_json(result: Result) -> Any:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


# -- ingest ---------------------------------------------------------------------------------


def test_ingest_csv_parquet_and_json_lines(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    for k, (suffix, writer) in enumerate(
        [(".csv", "write_csv"), (".parquet", "write_parquet"), (".jsonl", "write_ndjson")]
    ):
        frame = sales(100 + k)
        path = tmp_path / f"sales{suffix}"
        getattr(frame, writer)(path)
        before = state(ws)

        result = cli("ingest", str(path), "--name", "sales")

        assert result.exit_code == 0, result.output
        assert f"new version sales@{k + 1}: {100 + k} rows × 3 columns" in text(result)
        assert "profile of" in text(result)
        version = ws.datasets.get(f"sales@{k + 1}")
        assert version.row_count == 100 + k
        assert version.source == path.resolve().as_uri()
        assert pl.from_arrow(ws.datasets.load(version)).equals(frame)  # type: ignore[union-attr]
        after = state(ws)
        assert after[0] - before[0] == {
            str(ws.artifacts.path(version.data_digest).relative_to(ws.artifacts.root))
        }
        assert after[1] == before[1] + 1

        # the same file again: the same version, nothing written
        again = cli("ingest", str(path), "--name", "sales")
        assert again.exit_code == 0, again.output
        assert f"unchanged: same content as sales@{k + 1}" in text(again)
        assert state(ws) == after


@embedded
def test_ingest_json_output_and_declared_format(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    sales().write_csv(path)
    result = cli("ingest", str(path), "--name", "sales", "--format", "csv", "--json")
    body = as_json(result)
    assert result.exit_code == 0
    assert body == json.loads(ws.datasets.get("sales@1").model_dump_json())
    assert body["row_count"] == 120
    assert [c["name"] for c in body["schema"]["columns"]] == ["id", "amount", "city"]
    assert body["profile"]["city"]["cardinality"] == 3
    assert body["profile"]["amount"]["max"] == 50.0


@embedded
def test_bad_input_exits_2_with_an_error_line_and_writes_nothing(
    ws: Workspace, cli: Run, tmp_path: Path
) -> None:
    sales().write_csv(tmp_path / "good.csv")
    (tmp_path / "folder.csv").mkdir()
    files = {
        "garbage.parquet": os.urandom(300),
        "empty.csv": b"",
        "header.csv": b"id,amount\n",
        "more.csv": b"id,amount\n1,2\n2,3,4\n",
        "fewer.csv": b"id,amount\n1,2\n2\n",
        "bad.jsonl": b'{"id": 1}\n{"id": \n',
        "dupes.csv": b"id,id\n1,2\n",
        "sheet.xlsx": b"id\n1\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cases = [
        (["missing.csv", "--name", "s"], "does not exist"),
        (["folder.csv", "--name", "s"], "is not a file"),
        (["garbage.parquet", "--name", "s"], "as parquet"),
        (["empty.csv", "--name", "s"], "is empty"),
        (["header.csv", "--name", "s"], "has a header but no rows"),
        (["more.csv", "--name", "s"], "Expected 2 columns, got 3"),
        (["fewer.csv", "--name", "s"], "Expected 2 columns, got 1"),
        (["bad.jsonl", "--name", "s"], "as jsonl"),
        (["dupes.csv", "--name", "s"], "repeats column names: id"),
        (["sheet.xlsx", "--name", "s"], "cannot tell the format"),
        (["good.csv", "--name", "bad name"], "name 'bad name' is not allowed"),
        (["good.csv", "--name", "s", "--format", "xlsx"], "unknown format 'xlsx'"),
    ]
    before = state(ws)
    for (file, *rest), message in cases:
        result = cli("ingest", str(tmp_path / file), *rest)
        assert result.exit_code == 2, (file, result.output)
        assert result.stdout == ""
        err = " ".join(result.stderr.split())
        assert err.startswith("error: "), err
        assert message in err, (file, err)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert state(ws) == before


@embedded
def test_a_missing_option_is_a_usage_error(cli: Run, tmp_path: Path) -> None:
    result = cli("ingest", str(tmp_path / "x.csv"))
    assert result.exit_code == 2
    assert "--name" in result.output


# -- list, versions, show -------------------------------------------------------------------


@embedded
def test_list_versions_and_show(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    for n in (10, 20, 30):
        ws.datasets.ingest(sales(n), name="sales")
    sales().write_csv(tmp_path / "other.csv")
    assert cli("ingest", str(tmp_path / "other.csv"), "--name", "other").exit_code == 0

    listed = as_json(cli("list", "--json"))
    assert [(d["name"], d["latest_version"], d["version_count"]) for d in listed] == [
        ("other", 1, 1),
        ("sales", 3, 3),
    ]
    assert "sales" in text(cli("list"))

    versions = as_json(cli("versions", "sales", "--json"))
    assert [(v["version"], v["row_count"]) for v in versions] == [(1, 10), (2, 20), (3, 30)]
    table = text(cli("versions", "other"))
    assert "other@1" in table
    assert "file://" in table

    for ref, version in [("sales", 3), ("sales@latest", 3), ("sales@2", 2)]:
        shown = as_json(cli("show", ref, "--json"))
        assert (shown["dataset"], shown["version"]) == ("sales", version)
        extras = {k: shown.pop(k) for k in ("segment_list", "policy", "source_states")}
        assert shown == json.loads(ws.datasets.get(ref).model_dump_json())
        assert [s["rows"] for s in extras["segment_list"]] == [shown["row_count"]]
        assert extras["policy"] == {"pii": {}}
        assert extras["source_states"] == []
    shown = text(cli("show", "sales@2"))
    assert "sales@2 20 rows kind=ingest" in shown
    assert ws.datasets.get("sales@2").content_hash in shown


UNKNOWN: list[tuple[list[str], str]] = [
    (["show", "nope"], "dataset 'nope' does not exist"),
    (["show", "sales@99"], "dataset 'sales' has no version 99 (latest is 1)"),
    (["show", "sales@abc"], "dataset 'sales' has no version 'abc'"),
    (["show", "sales@"], "empty version"),
    (["versions", "nope"], "dataset 'nope' does not exist"),
    (["suite", "nope@1"], "dataset 'nope' does not exist"),
    (["validate", "sales@1", "--suite", "nope"], "suite 'nope' does not exist"),
    (["validate", "nope@1", "--suite", "sales"], "dataset 'nope' does not exist"),
]


@embedded
def test_unknown_things_exit_2(ws: Workspace, cli: Run) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.validation.infer_suite("sales@1")
    for args, message in UNKNOWN:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ")
        assert message in " ".join(result.stderr.split()), args


# -- suite and validate --------------------------------------------------------------------


@embedded
def test_suite_validate_and_quarantine(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.datasets.ingest(broken(), name="sales")

    inferred = cli("suite", "sales@1")
    assert inferred.exit_code == 0, inferred.output
    assert "suite sales@1: 9 expectations inferred from sales@1" in text(inferred)
    suite = as_json(cli("suite", "sales@1", "--json"))  # the same body: the same version
    assert (suite["name"], suite["version"]) == ("sales", 1)
    assert {"type": "in_set", "column": "city", "values": ["LA", "NY", "SF"], "mostly": 1.0} in (
        suite["expectations"]
    )
    named = as_json(cli("suite", "sales@1", "--name", "strict", "--json"))
    assert named["name"] == "strict"

    passed = cli("validate", "sales@1", "--suite", "sales")
    assert passed.exit_code == 0, passed.output
    assert "passed — 0 failed checks, 0 failing rows" in text(passed)

    failing = cli("validate", "sales@2", "--suite", "sales@1")
    assert failing.exit_code == 1
    out = text(failing)
    assert "FAILED — 2 failed checks, 4 failing rows" in out
    assert "amount: between 0 and 54.9: 3 of 120 rows fail" in out
    assert "city: in {LA, NY, SF}: 1 of 120 rows fail" in out
    assert "sample failing rows" in out

    report = as_json(cli("validate", "sales@2", "--suite", "sales", "--json"))
    assert report["success"] is False
    assert {c["message"]: c["failing_rows"] for c in report["checks"] if not c["success"]} == {
        "amount: between 0 and 54.9: 3 of 120 rows fail": 3,
        "city: in {LA, NY, SF}: 1 of 120 rows fail": 1,
    }

    # a file is validated as it is, without ingesting it
    broken().write_parquet(tmp_path / "batch.parquet")
    before = state(ws)
    on_file = as_json(
        cli("validate", str(tmp_path / "batch.parquet"), "--suite", "sales", "--json")
    )
    assert (on_file["dataset"], on_file["failing_rows"]) == (str(tmp_path / "batch.parquet"), 4)
    assert state(ws) == before

    split = cli("validate", "sales@2", "--suite", "sales", "--quarantine")
    assert split.exit_code == 1  # the checks failed; the split is done
    out = text(split)
    assert "quarantined 4 rows → sales.quarantine@1" in out
    assert "passing 116 rows → sales@3" in out
    assert ws.datasets.get("sales.quarantine@1").row_count == 4
    after = state(ws)
    again = as_json(cli("validate", "sales@2", "--suite", "sales", "--quarantine", "--json"))
    assert (again["quarantined"]["version"], again["clean"]["version"]) == (1, 3)
    assert state(ws) == after

    clean = cli("validate", "sales@3", "--suite", "sales", "--quarantine")
    assert clean.exit_code == 0, clean.output
    assert state(ws) == after

    refused = cli("validate", str(tmp_path / "batch.parquet"), "--suite", "sales", "--quarantine")
    assert refused.exit_code == 2
    assert "ingest" in refused.stderr


@embedded
def test_user_text_is_printed_not_read_as_markup(ws: Workspace, cli: Run, tmp_path: Path) -> None:
    """Column names and values such as ``[/bold]`` are data; Rich must not parse them."""
    frame = pl.DataFrame({"[/bold]": ["[red]x", "[/]", "[red]x", "y"] * 30})
    path = tmp_path / "odd.csv"
    frame.write_csv(path)
    result = cli("ingest", str(path), "--name", "odd")
    assert result.exit_code == 0, result.output
    assert "[/bold]" in result.output
    assert "[red]x" in result.output
    assert cli("suite", "odd@1").exit_code == 0
    ws.datasets.ingest(pl.DataFrame({"[/bold]": ["[/oops]"]}), name="odd")
    failing = cli("validate", "odd@2", "--suite", "odd")
    assert failing.exit_code == 1, failing.output
    assert "[/oops]" in failing.output


@embedded
def test_validating_a_missing_file_says_the_file_is_missing(
    ws: Workspace, cli: Run, tmp_path: Path
) -> None:
    ws.datasets.ingest(sales(), name="sales")
    ws.validation.infer_suite("sales@1")
    result = cli("validate", str(tmp_path / "nope.csv"), "--suite", "sales")
    assert result.exit_code == 2
    assert "nope.csv does not exist" in " ".join(result.stderr.split())
    assert "dataset" not in result.stderr
