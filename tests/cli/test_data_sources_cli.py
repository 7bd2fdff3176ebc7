"""``mloop data ingest`` from globs, URLs and SQL (incremental), ``--append``, ``--pii``;
``mloop data versions / show / diff / policy``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from mloop.cli import app
from mloop.workspace import Workspace

Run = Callable[..., Result]
embedded = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def cli(ws: Workspace, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("MLOOP_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, ["--workspace", str(ws.home), "data", *args])

    return run


def text(result: Result) -> str:
    return " ".join(result.output.split())


def sales(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "email": [f"person{i}@example.com" for i in range(n)],
            "amount": [float(i % 50) + 1.0 for i in range(n)],
        }
    )


def test_ingest_a_glob_then_append_then_diff_and_show(
    cli: Run, ws: Workspace, tmp_path: Path
) -> None:
    frame = sales(60)
    for i in range(3):
        frame.slice(i * 20, 20).write_csv(tmp_path / f"part{i}.csv")
    frame.slice(0, 5).write_csv(tmp_path / "extra.csv")

    r = cli("ingest", str(tmp_path / "part*.csv"), "--name", "s", "--pii", "email=hash")
    assert r.exit_code == 0, r.output
    assert "new version s@1: 60 rows × 3 columns in 1 segment" in text(r)
    assert "person1@example.com" not in r.output  # the profile shows hashes
    time.sleep(0.01)
    between = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    time.sleep(0.01)

    r = cli("ingest", str(tmp_path / "extra.csv"), "--name", "s", "--append")
    assert r.exit_code == 0, r.output
    assert "new version (+5 rows appended) s@2: 65 rows × 3 columns in 2 segments" in text(r)

    r = cli("versions", "s")
    assert r.exit_code == 0
    assert "segments" in r.output

    r = cli("show", f"s@{between}")
    assert r.exit_code == 0, r.output
    assert "s@1 60 rows" in text(r)
    assert "PII policy: email=hash" in text(r)
    r = cli("show", "s@2", "--json")
    shown = json.loads(r.output)
    assert [s["rows"] for s in shown["segment_list"]] == [60, 5]
    assert shown["policy"] == {"pii": {"email": "hash"}}
    assert "key" not in json.dumps(shown["policy"])

    r = cli("diff", "s@1", "s@2")
    assert r.exit_code == 0, r.output
    out = text(r)
    assert "s@1 → s@2: rows 60 → 65 (+5); 1 segments shared, 1 new" in out
    assert "schema: unchanged" in out
    r = cli("diff", f"s@{between}", "s", "--json")
    body = json.loads(r.output)
    assert (body["from"], body["to"], body["rows"]["delta"]) == ("s@1", "s@2", 5)

    frame.slice(0, 2).drop("amount").write_csv(tmp_path / "bad.csv")
    r = cli("ingest", str(tmp_path / "bad.csv"), "--name", "s", "--append")
    assert r.exit_code == 2
    assert "column 'amount' (float) removed" in text(r)
    assert [v.version for v in ws.datasets.versions("s")] == [1, 2]

    # a shell-expanded glob: several files, one version; s@1's content again becomes the
    # latest, sharing s@1's segment; once more, it is unchanged
    files = [str(tmp_path / f"part{i}.csv") for i in range(3)]
    r = cli("ingest", *files, "--name", "s")
    assert "new version (the content of s@1, sharing its segments) s@3: 60 rows" in text(r)
    r = cli("ingest", *files, "--name", "s")
    assert "unchanged: same content as s@3" in text(r)


def test_ingest_sql_incrementally(cli: Run, ws: Workspace, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ev (id INTEGER PRIMARY KEY, email TEXT, x REAL)")
        conn.exec_driver_sql(
            "INSERT INTO ev VALUES " + ",".join(f"({i}, 'u{i}@x.io', {i}.5)" for i in range(30))
        )
    args = ("ingest", "--sql", url, "--table", "ev", "--cursor", "id", "--name", "ev")
    r = cli(*args, "--pii", "email=mask")
    assert r.exit_code == 0, r.output
    assert "new version ev@1: 30 rows" in text(r)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO ev VALUES (30, 'late@x.io', 1.0)")
    r = cli(*args)
    assert "new version (+1 rows appended) ev@2: 31 rows × 3 columns in 2 segments" in text(r)
    r = cli(*args)
    assert "no new rows: still ev@2" in text(r)
    r = cli("show", "ev", "--json")
    states = json.loads(r.output)["source_states"]
    assert states[0]["state"]["cursor"]["value"] == 30
    assert ws.datasets.load("ev").column("email").to_pylist()[-1] == "*****x.io"

    r = cli(
        "ingest",
        "--sql",
        url,
        "--query",
        "SELECT id, x FROM ev WHERE id < 10",
        "--name",
        "q",
        "--json",
    )
    assert json.loads(r.output)["row_count"] == 10
    engine.dispose()


@embedded
def test_policy_command_and_bad_arguments(cli: Run, ws: Workspace, tmp_path: Path) -> None:
    r = cli("policy", "people", "--pii", "email=hash", "--pii", "phone=mask")
    assert r.exit_code == 0, r.output
    assert "email" in r.output
    assert "mask" in r.output
    r = cli("policy", "people", "--json")
    assert json.loads(r.output) == {"pii": {"email": "hash", "phone": "mask"}}
    stored = ws.datasets._stored_policy("people")
    assert stored is not None
    assert stored["key"] not in r.output

    for args, message in [
        (("policy", "people", "--pii", "email"), "write COLUMN=ACTION"),
        (("policy", "people", "--pii", "email=encrypt"), "not one of hash, mask, drop"),
        (("policy", "nobody"), "dataset 'nobody' does not exist"),
        (("ingest", "--name", "x"), "give a file, a glob or a URL"),
        (("ingest", "a.csv"), "give the dataset a name"),
        (("ingest", "a.csv", "--sql", "sqlite://", "--name", "x"), "either files or --sql"),
        (("ingest", "a.csv", "--cursor", "id", "--name", "x"), "go with --sql"),
        (("ingest", str(tmp_path / "*.csv"), "--name", "x"), "no file matches"),
        (("diff", "people@1", "people@2"), "no version 1"),
    ]:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert message in text(r), (args, r.output)
