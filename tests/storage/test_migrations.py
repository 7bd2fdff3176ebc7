"""Alembic migrations: a workspace made by an older mloop upgrades in place, and the migrated
schema is exactly ``mloop.storage.tables.metadata`` on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mloop.core.hashing import sha256_bytes
from mloop.core.ids import new_id
from mloop.security import AuditLog
from mloop.storage import HEAD_REVISION, Database, LocalArtifactStore, tables
from mloop.storage.db import MIGRATIONS
from mloop.workspace import Workspace


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database; on SQLite, where an older mloop would have put it."""
    if backend == "postgres":
        return str(request.getfixturevalue("empty_pg_url"))
    return f"sqlite:///{tmp_path / 'ws' / 'mloop.db'}"


@pytest.fixture
def at_0001(fresh_url: str) -> Iterator[Database]:
    db = Database(fresh_url)
    db.upgrade("0001")
    try:
        yield db
    finally:
        db.close()


def test_head_revision_is_the_head_of_the_migration_scripts() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_revision_0001_has_no_0002_tables(at_0001: Database) -> None:
    assert at_0001.current_revision() == "0001"
    names = set(sa.inspect(at_0001.engine).get_table_names())
    assert {"datasets", "dataset_versions", "runs", "lineage_edges"} <= names
    assert not names & {"audit_log", "predictions"}


def _old_workspace_rows(db: Database, store: LocalArtifactStore) -> dict[str, str]:
    """What an mloop at revision 0001 wrote: a dataset with two versions (one with real
    Parquet data in the artifact store), an experiment with a finished run, its lineage."""
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1, 2, 3], "y": [0.5, 1.5, 2.5]}), sink)
    parquet = sink.getvalue().to_pybytes()
    digest = store.put_bytes(parquet)
    ids = {"dataset": new_id(), "v1": new_id(), "v2": new_id(), "exp": new_id(), "run": new_id()}
    schema = {
        "columns": [
            {"name": "x", "type": "integer", "nullable": True, "physical": "int64"},
            {"name": "y", "type": "float", "nullable": True, "physical": "double"},
        ]
    }
    with db.write() as conn:
        conn.execute(
            tables.datasets.insert().values(
                id=ids["dataset"], name="iris", description="old", created_at=1_700_000_000_000
            )
        )
        for version, vid in ((1, ids["v1"]), (2, ids["v2"])):
            conn.execute(
                tables.dataset_versions.insert().values(
                    id=vid,
                    dataset_id=ids["dataset"],
                    version=version,
                    content_hash=sha256_bytes(f"content {version}".encode()),
                    data_digest=digest,
                    row_count=3,
                    size_bytes=len(parquet),
                    schema=schema,
                    profile={"x": {"min": 1, "max": 3}},
                    source="file:///data/iris.csv",
                    kind="table",
                    created_at=1_700_000_000_000 + version,
                    created_by="old-mloop",
                )
            )
        conn.execute(
            tables.experiments.insert().values(
                id=ids["exp"], name="baseline", lifecycle_stage="active", created_at=1
            )
        )
        conn.execute(
            tables.runs.insert().values(
                id=ids["run"],
                experiment_id=ids["exp"],
                name="first",
                status="FINISHED",
                start_time=1_700_000_000_000,
                end_time=1_700_000_060_000,
                user="old-mloop",
                lifecycle_stage="active",
            )
        )
        conn.execute(tables.params.insert().values(run_id=ids["run"], key="C", value="0.1"))
        conn.execute(
            tables.metrics.insert(),
            [
                {"run_id": ids["run"], "key": "acc", "value": v, "step": s, "timestamp": 1 + s}
                for s, v in enumerate([0.7, 0.8, 0.9])
            ],
        )
        conn.execute(
            tables.lineage_edges.insert().values(
                src_type="dataset_version",
                src_id=ids["v2"],
                dst_type="run",
                dst_id=ids["run"],
                relation="trained_on",
                created_at=1,
            )
        )
    return ids


def test_a_workspace_made_by_an_older_version_upgrades_in_place(
    at_0001: Database, fresh_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "ws"
    ids = _old_workspace_rows(at_0001, LocalArtifactStore(home / "artifacts"))
    old = sa.MetaData()
    with at_0001.read() as conn:
        old.reflect(conn)  # the tables as revision 0001 made them, not as the code has them now
        before = {
            name: conn.execute(sa.select(table).order_by(*table.primary_key)).all()
            for name, table in old.tables.items()
            if name != "alembic_version"
        }
    at_0001.close()

    with Workspace.open(home, database_url=fresh_url) as ws:
        assert ws.db.current_revision() == HEAD_REVISION
        with ws.db.read() as conn:
            for name, rows in before.items():
                table = tables.metadata.tables[name]
                old_columns = [table.c[c.name] for c in old.tables[name].columns]
                after = conn.execute(sa.select(*old_columns).order_by(*table.primary_key)).all()
                if name == "experiments":  # 0003 adds MLflow's Default experiment, id "0"
                    assert [r for r in after if r.id != "0"] == rows
                    assert [r.name for r in after if r.id == "0"] == ["Default"]
                else:
                    assert after == rows, name

        # the services read the old rows
        version = ws.datasets.get("iris@2")
        assert version.id == ids["v2"]
        assert version.schema_.names == ["x", "y"]
        assert ws.datasets.load("iris@1").column("y").to_pylist() == [0.5, 1.5, 2.5]
        # 0004: each old version became one segment, numbered in version order; appends share it
        assert version.segments == [(2, 2)]
        run = ws.tracking.get_run(ids["run"])
        assert run.params == {"C": "0.1"}
        assert run.metrics == {"acc": 0.9}
        assert [e.dst.id for e in ws.lineage.downstream("dataset_version", ids["v2"])] == [
            ids["run"]
        ]
        grown = ws.datasets.append("iris", pa.table({"x": [9], "y": [9.5]}))
        assert grown.segments == [(2, 3)]
        assert grown.base_version_id == ids["v2"]
        assert ws.datasets.load(grown).num_rows == ws.datasets.load(version).num_rows + 1

        # and the tables of revision 0002 work
        with ws.db.write() as conn:
            AuditLog.record(conn, "dataset.upgrade", "dataset", "iris", {"from": "0001"})
            conn.execute(
                tables.predictions.insert().values(
                    request_id=new_id(),
                    row_index=0,
                    model_name="m",
                    model_version=1,
                    ts=1,
                    latency_ms=0.25,
                    inputs='{"x": 1}',
                    outputs='{"y": 0}',
                )
            )
        [record] = ws.audit.list(object_type="dataset")
        assert (record.action, record.detail) == ("dataset.upgrade", {"from": "0001"})
        with ws.db.read() as conn:
            assert conn.execute(sa.select(tables.predictions.c.latency_ms)).scalar_one() == 0.25


def _schema_differences(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, tables.metadata))


@pytest.mark.parametrize("path", [["head"], ["0001", "head"]], ids=["direct", "via-0001"])
def test_the_migrated_schema_matches_the_tables(fresh_url: str, path: list[str]) -> None:
    db = Database(fresh_url)
    try:
        for revision in path:
            db.upgrade(revision)
        assert db.current_revision() == HEAD_REVISION
        assert _schema_differences(db) == []
    finally:
        db.close()


def test_the_comparison_would_notice_a_difference(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        db.upgrade()
        with db.write() as conn:
            conn.exec_driver_sql("DROP INDEX ix_audit_log_ts")
        differences = _schema_differences(db)
        assert differences
        assert "ix_audit_log_ts" in repr(differences)
    finally:
        db.close()
