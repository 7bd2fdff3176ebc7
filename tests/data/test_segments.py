"""Versions made of segments: appends share what came before, refuse rows of another schema and
save their source's position with the data; time travel, diffs and the PII policy."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
import sqlalchemy as sa

from mloop.core.errors import InvalidInput, NotFound
from mloop.data import (
    AppendPart,
    DatasetService,
    SchemaChanged,
    SourceState,
    merge_profiles,
    profile_frame,
)
from mloop.storage import tables
from mloop.workspace import Workspace


def _blob_bytes(ws: Workspace) -> int:
    return sum(p.stat().st_size for p in ws.artifacts.root.rglob("*") if p.is_file())


def test_append_shares_every_earlier_segment_and_stores_only_the_new_rows(
    ws: Workspace, make_sales: Callable[[int], pl.DataFrame]
) -> None:
    base = make_sales(5000)
    v1 = ws.datasets.write_version("sales", base.to_arrow())
    before = _blob_bytes(ws)
    new_rows = make_sales(5100).slice(5000).to_arrow()
    v2 = ws.datasets.append("sales", new_rows, source="test://batch-2")

    assert (v2.version, v2.row_count, v2.kind) == (2, 5100, "append")
    assert v2.base_version_id == v1.id
    assert v2.segments == [(1, 2)]
    segments = ws.datasets.segments(v2)
    assert [s["rows"] for s in segments] == [5000, 100]
    # the first segment is the very blob of v1; the store grew by the new segment only
    assert segments[0]["data_digest"] == ws.datasets.segments(v1)[0]["data_digest"]
    assert _blob_bytes(ws) - before == segments[1]["bytes"]
    assert segments[1]["bytes"] < segments[0]["bytes"] / 4

    assert pl.from_arrow(ws.datasets.load(v2)).equals(make_sales(5100))  # type: ignore[union-attr]
    assert ws.datasets.load(v1).num_rows == 5000  # the old version is unchanged
    downstream = ws.lineage.downstream("dataset_version", v1.id)
    assert [(e.dst.id, e.relation) for e in downstream] == [(v2.id, "appended")]


def test_append_to_a_new_dataset_makes_its_first_version(ws: Workspace) -> None:
    v = ws.datasets.append("fresh", pa.table({"a": [1, 2]}))
    assert (v.version, v.segments, v.base_version_id) == (1, [(1, 1)], None)
    with pytest.raises(InvalidInput, match="no rows"):
        ws.datasets.append("fresh", pa.table({"a": pa.array([], pa.int64())}))


def _metadata(ws: Workspace) -> str:
    """Every row of the tables a version is written to, as text (blobs may be written before
    a transaction fails: unreferenced, they are not part of any version)."""
    parts = [
        tables.datasets,
        tables.dataset_versions,
        tables.dataset_segments,
        tables.source_states,
        tables.lineage_edges,
        tables.audit_log,
    ]
    with ws.db.read() as conn:
        return json.dumps([sorted(map(str, conn.execute(sa.select(t)).all())) for t in parts])


def test_append_together_commits_every_part_in_one_transaction(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = "test://stream/clicks"
    ws.datasets.write_version("clicks", pa.table({"id": [1, 2], "x": [0.5, 1.5]}))
    clicks, rejected = ws.datasets.append_together(
        [
            AppendPart(
                "clicks",
                pa.table({"x": [2.5], "id": pa.array([3], pa.int32())}),
                source=src,
                kind="stream",
                state=SourceState(src, {"offsets": {"0": 3}}),
            ),
            AppendPart(
                "clicks.quarantine",
                pa.table({"_mloop_reason": ["x: not null"], "_mloop_offset": [4]}),
                source=src,
                kind="quarantine",
                state=SourceState(src, {"offsets": {"0": 4}}),
            ),
        ]
    )
    assert (clicks.ref, clicks.row_count, clicks.segments, clicks.kind) == (
        "clicks@2",
        3,
        [(1, 2)],
        "stream",
    )
    loaded = ws.datasets.load(clicks)  # conformed to the dataset's order and types
    assert (loaded.column_names, loaded.column("id").type) == (["id", "x"], pa.int64())
    assert (rejected.ref, rejected.row_count, rejected.base_version_id) == (
        "clicks.quarantine@1",
        1,
        None,
    )
    assert ws.datasets.source_state("clicks", src) == {"offsets": {"0": 3}}
    assert ws.datasets.source_state("clicks.quarantine", src) == {"offsets": {"0": 4}}

    def parts(offset: int) -> list[AppendPart]:
        return [
            AppendPart(
                "clicks",
                pa.table({"id": [offset], "x": [9.0]}),
                source=src,
                state=SourceState(src, {"offsets": {"0": offset}}),
            ),
            AppendPart(
                "clicks.quarantine",
                pa.table({"_mloop_reason": ["bad"], "_mloop_offset": [offset + 1]}),
                source=src,
                state=SourceState(src, {"offsets": {"0": offset + 1}}),
            ),
        ]

    # a failure while committing the second part: neither dataset changes
    before = _metadata(ws)
    real = DatasetService._insert_version
    reached: list[str] = []

    def failing(self: DatasetService, conn: Any, write: Any, *args: Any, **kw: Any) -> Any:
        reached.append(write.name)
        if write.name == "clicks.quarantine":
            raise RuntimeError("injected failure")
        return real(self, conn, write, *args, **kw)

    monkeypatch.setattr(DatasetService, "_insert_version", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        ws.datasets.append_together(parts(10))
    monkeypatch.undo()
    assert reached == ["clicks", "clicks.quarantine"]  # the first part was written, then undone
    assert _metadata(ws) == before
    assert ws.datasets.get("clicks").id == clicks.id
    assert ws.datasets.source_state("clicks", src) == {"offsets": {"0": 3}}

    # rows of another schema in the second part: refused before anything is written
    bad = parts(20)
    bad[1] = AppendPart("clicks.quarantine", pa.table({"other": [1]}), source=src)
    with pytest.raises(SchemaChanged, match="'other'"):
        ws.datasets.append_together(bad)
    assert _metadata(ws) == before
    with pytest.raises(InvalidInput, match="more than one part"):
        ws.datasets.append_together([parts(30)[0], parts(31)[0]])
    with pytest.raises(InvalidInput, match="no rows"):
        ws.datasets.append_together(
            [AppendPart("clicks", pa.table({"id": pa.array([], pa.int64())}))]
        )
    assert _metadata(ws) == before

    done = ws.datasets.append_together(parts(40))
    assert [v.ref for v in done] == ["clicks@3", "clicks.quarantine@2"]
    assert ws.datasets.source_state("clicks.quarantine", src) == {"offsets": {"0": 41}}


def test_concurrent_first_appends_both_land(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two writers both see no version, then commit one after the other: the second appends to
    the first's version (conforming to the schema it made) instead of replacing it."""
    ready = threading.Barrier(2)
    waited = threading.local()
    real = DatasetService._segment_and_profile

    def in_step(self: DatasetService, table: pa.Table, digest: str) -> Any:
        if not getattr(waited, "done", False):  # once per thread: both have read "no version"
            waited.done = True
            ready.wait(timeout=30)
        return real(self, table, digest)

    monkeypatch.setattr(DatasetService, "_segment_and_profile", in_step)
    errors: list[BaseException] = []

    def append(table: pa.Table) -> None:
        try:
            ws.datasets.append("fresh", table)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=append, args=(pa.table({"id": [1, 2]}),)),
        threading.Thread(target=append, args=(pa.table({"id": pa.array([3], pa.int32())}),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    latest = ws.datasets.get("fresh")
    assert (latest.version, latest.row_count, latest.segments) == (2, 3, [(1, 2)])
    # whichever committed first set the type; the other's rows were conformed to it
    ids = ws.datasets.load(latest).column("id")
    assert sorted(ids.to_pylist()) == [1, 2, 3]
    assert str(ids.type) == latest.schema_.columns[0].physical


def test_an_append_conforms_to_the_schema_latest_when_it_commits(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.datasets.write_version("t", pa.table({"id": [1, 2]}))
    real = DatasetService._segment_and_profile
    raced: list[int] = []

    def racing(self: DatasetService, table: pa.Table, digest: str) -> Any:
        if not raced:  # while the append's segment is written, another writer retypes the data
            raced.append(1)
            ws.datasets.write_version("t", pa.table({"id": [0.5]}))
        return real(self, table, digest)

    monkeypatch.setattr(DatasetService, "_segment_and_profile", racing)
    with pytest.raises(SchemaChanged, match="'id' changed type float → integer"):
        ws.datasets.append("t", pa.table({"id": [3]}))
    assert [v.row_count for v in ws.datasets.versions("t")] == [2, 1]


def test_appended_rows_take_the_datasets_column_order_and_physical_types(
    ws: Workspace,
) -> None:
    ws.datasets.write_version("t", pa.table({"id": [1, 2], "x": [0.5, 1.5]}))
    v = ws.datasets.append(
        "t",
        pa.table(
            {
                "x": pa.array([2.5, None], pa.float32()),
                "id": pa.array([3, 4], pa.int32()),
            }
        ),
    )
    table = ws.datasets.load(v)
    assert table.column_names == ["id", "x"]
    assert table.schema.field("id").type == pa.int64()
    assert table.column("x").to_pylist() == [0.5, 1.5, 2.5, None]
    assert v.schema_.column("x").nullable  # type: ignore[union-attr]
    # a column with no values at all takes the dataset's type
    v3 = ws.datasets.append("t", pa.table({"id": [5], "x": pa.nulls(1)}))
    assert ws.datasets.load(v3).column("x").to_pylist()[-1] is None


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ({"id": [3], "x": [1.0], "extra": ["new"]}, "column 'extra' (string) added"),
        ({"id": [3]}, "column 'x' (float) removed"),
        ({"id": [3], "x": ["text"]}, "column 'x' changed type float → string"),
    ],
)
def test_rows_of_another_schema_are_refused_with_the_reason_and_nothing_written(
    ws: Workspace,
    state: Callable[[Workspace], Any],
    rows: dict[str, list[object]],
    expected: str,
) -> None:
    ws.datasets.write_version("t", pa.table({"id": [1, 2], "x": [0.5, 1.5]}))
    before = state(ws)
    with pytest.raises(SchemaChanged, match=re.escape(expected)) as caught:
        ws.datasets.append("t", pa.table(rows), state=SourceState("test://src", {"offset": 9}))
    assert caught.value.changes
    assert all("column" in c for c in caught.value.changes)
    assert state(ws) == before
    assert ws.datasets.source_state("t", "test://src") is None


def test_a_lossy_cast_is_refused_not_coerced(ws: Workspace) -> None:
    ws.datasets.write_version("t", pa.table({"n": pa.array([1, 2], pa.int8())}))
    with pytest.raises(SchemaChanged, match="does not fit"):
        ws.datasets.append("t", pa.table({"n": pa.array([300], pa.int64())}))
    assert ws.datasets.get("t").version == 1


def test_a_cast_that_would_change_values_is_refused(ws: Workspace) -> None:
    """A safe cast still rounds float64 to float32 and drops or invents a time zone: such rows
    are refused with the reason, not narrowed."""
    day = datetime(2026, 1, 1, 12)
    ws.datasets.write_version(
        "t",
        pa.table(
            {
                "x": pa.array([0.5], pa.float32()),
                "at": pa.array([day], pa.timestamp("us")),
                "z": pa.array([day.replace(tzinfo=UTC)], pa.timestamp("us", "UTC")),
            }
        ),
    )
    paris = pa.array([day.replace(tzinfo=UTC)], pa.timestamp("us", "Europe/Paris"))
    fine = ws.datasets.append(  # exact in float32; another zone: the same instants
        "t", pa.table({"x": [0.25], "at": pa.array([day], pa.timestamp("ms")), "z": paris})
    )
    assert ws.datasets.load(fine).column("z").to_pylist()[-1] == day.replace(tzinfo=UTC)
    naive, aware = pa.array([day], pa.timestamp("us")), pa.array([day], pa.timestamp("us", "UTC"))
    for rows, reason in [
        ({"x": [0.1], "at": naive, "z": aware}, "'x' .*: double values would lose precision"),
        ({"x": [0.5], "at": aware, "z": aware}, "'at' .*: its times have a zone .UTC."),
        ({"x": [0.5], "at": naive, "z": naive}, "'z' .*: its times have no zone"),
    ]:
        with pytest.raises(SchemaChanged, match=reason):
            ws.datasets.append("t", pa.table(rows))
    assert ws.datasets.get("t").version == 2
    # columns with no values lose nothing: they take the dataset's types
    nulls = {"x": pa.nulls(1, pa.float64()), "at": pa.nulls(1, pa.timestamp("us", "UTC"))}
    assert ws.datasets.append("t", pa.table({**nulls, "z": aware})).version == 3


def test_source_state_is_saved_with_the_version_and_moves_on(ws: Workspace) -> None:
    src = "postgresql://db/orders#cursor=updated_at"
    v1 = ws.datasets.append("orders", pa.table({"id": [1]}), state=SourceState(src, {"c": 1}))
    assert ws.datasets.source_state("orders", src) == {"c": 1}
    v2 = ws.datasets.append("orders", pa.table({"id": [2]}), state=SourceState(src, {"c": 2}))
    assert ws.datasets.source_state("orders", src) == {"c": 2}
    assert ws.datasets.source_state("orders", "other://") is None
    [entry] = ws.datasets.source_states("orders")
    assert (entry["source"], entry["state"], entry["version_id"]) == (src, {"c": 2}, v2.id)
    assert v1.id != v2.id
    # the same content written whole again is the same version, yet the position still moves
    again = ws.datasets.write_version(
        "orders", ws.datasets.load(v2), state=SourceState(src, {"c": 3})
    )
    assert again.id != v2.id or again.version == 2
    assert ws.datasets.source_state("orders", src) == {"c": 3}


def test_time_travel_resolves_the_version_latest_at_that_time(ws: Workspace) -> None:
    v1 = ws.datasets.write_version("t", pa.table({"a": [1]}))
    time.sleep(0.02)
    between = datetime.now(UTC)
    time.sleep(0.02)
    v2 = ws.datasets.append("t", pa.table({"a": [2]}))
    assert ws.datasets.get(f"t@{between.isoformat()}").id == v1.id
    stamp = between.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert ws.datasets.get(f"t@{stamp}").id == v1.id
    assert ws.datasets.get(f"t@{(datetime.now(UTC) + timedelta(days=1)).date()}").id == v2.id
    with pytest.raises(NotFound, match="no version at or before 2000-01-01"):
        ws.datasets.get("t@2000-01-01T00:00:00Z")
    with pytest.raises(InvalidInput, match="not an ISO 8601 time"):
        ws.datasets.get("t@2026-13-45T99:00:00Z")


def test_diff_reports_rows_schema_segments_and_profile_changes(ws: Workspace) -> None:
    ws.datasets.write_version("t", pa.table({"id": [1, 2], "x": [1.0, 3.0]}))
    ws.datasets.append("t", pa.table({"id": [3], "x": [8.0]}))
    d = ws.datasets.diff("t@1", "t@2")
    assert d["rows"] == {"from": 2, "to": 3, "delta": 1}
    assert (d["schema"], d["shared_segments"], d["new_segments"]) == ([], 1, 1)
    assert d["profile"]["x"]["max"] == {"from": 3.0, "to": 8.0, "delta": 5.0}
    assert d["profile"]["x"]["mean"]["to"] == pytest.approx(4.0)

    ws.datasets.write_version("t", pa.table({"id": [1], "y": ["a"]}))
    d = ws.datasets.diff("t@2", "t@3")
    assert {(c["column"], c["change"]) for c in d["schema"]} == {("y", "added"), ("x", "removed")}
    assert d["shared_segments"] == 0


def test_merged_profiles_are_exact_for_counts_and_moments() -> None:
    a = pl.DataFrame({"x": [1.0, 2.0, None, 4.0], "c": ["a", "b", "a", None]})
    b = pl.DataFrame({"x": [10.0, float("nan"), 3.0], "c": ["b", "b", "z"]})
    merged = merge_profiles(profile_frame(a), profile_frame(b))
    whole = profile_frame(pl.concat([a, b]))
    for key in ("count", "null_count", "min", "max", "nan_count"):
        assert merged["x"][key] == whole["x"][key], key
    assert merged["x"]["mean"] == pytest.approx(whole["x"]["mean"])
    assert merged["x"]["std"] == pytest.approx(whole["x"]["std"])
    assert merged["x"]["approximate"] is True
    tops = {t["value"]: t["count"] for t in merged["c"]["top_values"]}
    assert tops == {"b": 3, "a": 2, "z": 1}


RAW = ["alice@example.com", "bob@example.org", "carol.smith@example.net"]


def test_pii_columns_are_protected_before_anything_is_stored(ws: Workspace) -> None:
    public = ws.datasets.set_policy("people", {"email": "hash", "phone": "mask", "ssn": "drop"})
    assert public == {"pii": {"email": "hash", "phone": "mask", "ssn": "drop"}}  # no key
    rows = pa.table(
        {
            "id": [1, 2, 3],
            "email": RAW,
            "phone": ["+1 555 0100", "0123", None],
            "ssn": ["078-05-1120", "219-09-9999", "457-55-5462"],
        }
    )
    v1 = ws.datasets.write_version("people", rows)
    v2 = ws.datasets.append("people", rows.slice(0, 1))
    data = ws.datasets.load(v2)
    emails = data.column("email").to_pylist()
    assert all(len(e) == 64 and e not in RAW for e in emails)
    assert emails[3] == emails[0]  # keyed hash: equal values stay equal, so joins still work
    assert data.column("phone").to_pylist()[:3] == ["*******0100", "****", None]
    assert data.column("ssn").null_count == 4

    # no raw value anywhere: the database (profiles, audit, lineage) or the stored blobs
    with ws.db.read() as conn:
        dump = json.dumps(
            [
                [list(map(str, row)) for row in conn.execute(sa.select(table)).all()]
                for table in tables.metadata.sorted_tables
            ]
        )
    blobs = b"".join(p.read_bytes() for p in ws.artifacts.root.rglob("*") if p.is_file())
    for secret in [*RAW, "078-05-1120", "+1 555 0100"]:
        assert secret not in dump
        assert secret.encode() not in blobs
    assert v1.profile["email"]["kind"] == "categorical"
    assert ws.datasets.policy("people")["pii"]["email"] == "hash"  # type: ignore[index]


def test_a_bad_policy_is_refused(ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="not one of hash, mask, drop"):
        ws.datasets.set_policy("people", {"email": "encrypt"})
    with pytest.raises(InvalidInput, match="at least one PII column"):
        ws.datasets.set_policy("people", {})
    with pytest.raises(NotFound):
        ws.datasets.policy("nobody")
