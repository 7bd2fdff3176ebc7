"""Dataset versions: immutable, content-addressed, numbered, with lineage and an audit trail."""

from __future__ import annotations

import io
import os
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mloop.core.errors import IntegrityError, InvalidInput, MloopError, NotFound
from mloop.data import DatasetVersion, content_hash, read_file
from mloop.data.readers import check_table
from mloop.workspace import Workspace

State = Callable[[Workspace], Any]

# tests whose subject is not the metadata backend run on SQLite only
embedded = pytest.mark.parametrize("backend", ["sqlite"])


def write(frame: pl.DataFrame, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        frame.write_csv(path)
    elif suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_ndjson(path)
    return path


# -- one ingest ------------------------------------------------------------------------------


def test_ingest_makes_an_immutable_parquet_version(
    ws: Workspace, tmp_path: Path, state: State, sales_frame: pl.DataFrame
) -> None:
    for k, suffix in enumerate([".csv", ".parquet", ".jsonl"]):
        frame = sales_frame.head(120 - k)  # another content per format
        path = write(frame, tmp_path / f"sales{suffix}")
        name = f"sales-{suffix[1:]}"
        before = state(ws)

        version = ws.datasets.ingest(path, name=name)

        after = state(ws)
        assert (version.dataset, version.version, version.ref) == (name, 1, f"{name}@1")
        assert version.kind == "ingest"
        assert version.source == path.resolve().as_uri()
        assert version.row_count == frame.height
        assert version.created_at.utcoffset() == UTC.utcoffset(None)
        assert version.created_by
        # the content hash is over the table as read
        table, _ = read_file(path)
        assert version.content_hash == content_hash(table)
        assert len(version.content_hash) == 64
        assert [(c.name, c.type, c.nullable) for c in version.schema_.columns] == [
            ("id", "integer", False),
            ("amount", "float", False),
            ("city", "string", False),
            ("qty", "integer", False),
        ]
        # the data is one new Parquet blob in the content-addressed store, and one new row
        blob = ws.artifacts.path(version.data_digest)
        assert after.files - before.files == {str(blob.relative_to(ws.artifacts.root))}
        assert (after.datasets, after.versions) == (before.datasets + 1, before.versions + 1)
        assert version.size_bytes == blob.stat().st_size
        stored = pq.read_table(io.BytesIO(blob.read_bytes()))
        assert pl.from_arrow(stored).equals(frame)  # type: ignore[union-attr]
        assert ws.datasets.load_polars(version.ref).equals(frame)
        # the profile: numbers and categories
        amount = version.profile["amount"]
        assert amount["null_count"] == 0
        assert (amount["min"], amount["max"]) == (1.0, 50.0)
        assert amount["mean"] == pytest.approx(frame["amount"].mean())
        assert amount["std"] == pytest.approx(frame["amount"].std())
        assert amount["quantiles"]["0.5"] == pytest.approx(frame["amount"].median())
        city = version.profile["city"]
        assert city["cardinality"] == 3
        assert sorted((t["value"], t["count"]) for t in city["top_values"]) == sorted(
            Counter(frame["city"].to_list()).items()
        )
        # what the metadata database returns is what the ingest returned (JSON columns too)
        assert ws.datasets.get(version.ref) == version
        assert ws.datasets.get_by_id(version.id) == version


def test_identical_content_again_is_the_same_version_and_writes_nothing(
    ws: Workspace, tmp_path: Path, state: State, sales_frame: pl.DataFrame
) -> None:
    path = write(sales_frame, tmp_path / "sales.csv")
    first = ws.datasets.ingest(path, name="sales")
    before = state(ws)

    copy = tmp_path / "elsewhere" / "copy.csv"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    again = [
        ws.datasets.ingest(path, name="sales"),
        ws.datasets.ingest(copy, name="sales"),
        ws.datasets.ingest(write(sales_frame, tmp_path / "sales.parquet"), name="sales"),
        ws.datasets.ingest(sales_frame, name="sales"),
        ws.datasets.ingest(sales_frame.to_pandas(), name="sales"),
    ]

    assert all(v == first for v in again)
    assert state(ws) == before  # no blob, no version row, no lineage edge, no audit record
    assert [v.version for v in ws.datasets.versions("sales")] == [1]


def test_content_of_an_older_version_again_becomes_the_latest_sharing_its_segments(
    ws: Workspace, tmp_path: Path, state: State, sales_frame: pl.DataFrame
) -> None:
    """File A, then file B, then A again: the latest is A's content (not B), as a new version
    made of A's very segments; nothing new is stored but the version row."""
    a = ws.datasets.ingest(write(sales_frame, tmp_path / "a.csv"), name="sales")
    b = ws.datasets.ingest(write(sales_frame.head(10), tmp_path / "b.csv"), name="sales")
    blobs = {p for p in ws.artifacts.root.rglob("*") if p.is_file()}

    again = ws.datasets.ingest(tmp_path / "a.csv", name="sales")

    assert ws.datasets.get("sales") == again
    assert again.version == 3
    assert (again.content_hash, again.data_digest, again.segments, again.row_count) == (
        a.content_hash,
        a.data_digest,
        a.segments,
        a.row_count,
    )
    assert (again.schema_, again.profile) == (a.schema_, a.profile)
    assert ws.datasets.load(again).equals(ws.datasets.load(a))
    assert {p for p in ws.artifacts.root.rglob("*") if p.is_file()} == blobs  # no new blob
    assert ("dataset_version", a.id, "same_content") in {
        (e.src.type, e.src.id, e.relation) for e in ws.lineage.upstream("dataset_version", again.id)
    }
    assert b.version == 2
    # now it is the latest: the same version, nothing written
    before = state(ws)
    assert ws.datasets.ingest(sales_frame, name="sales") == again
    assert state(ws) == before


@embedded
def test_same_content_under_another_name_is_another_dataset_sharing_the_blob(
    ws: Workspace, state: State, sales_frame: pl.DataFrame
) -> None:
    a = ws.datasets.ingest(sales_frame, name="a")
    before = state(ws)
    b = ws.datasets.ingest(sales_frame, name="b")
    after = state(ws)
    assert b.ref == "b@1"
    assert b.content_hash == a.content_hash
    assert b.data_digest == a.data_digest
    assert after.files == before.files
    assert after.versions == before.versions + 1


@embedded
def test_csv_and_parquet_of_the_same_typed_table_are_one_version(
    ws: Workspace, tmp_path: Path
) -> None:
    """The content hash is over the canonical Arrow table (types included, file bytes not):
    a CSV and a Parquet file of the same typed table are one version, whichever tool wrote the
    Parquet (pyarrow writes ``string``, polars ``large_string``: both canonical ``string``)."""
    table = pa.table(
        {"id": pa.array([1, 2, 3]), "price": [1.5, 2.25, None], "city": ["NY", None, "LA"]}
    )
    pacsv.write_csv(table, tmp_path / "t.csv")
    pq.write_table(table, tmp_path / "arrow.parquet")
    pl.from_arrow(table).write_parquet(tmp_path / "polars.parquet")  # type: ignore[union-attr]
    assert pq.read_schema(tmp_path / "polars.parquet").field("city").type == pa.large_string()

    from_csv = ws.datasets.ingest(tmp_path / "t.csv", name="t")
    from_arrow = ws.datasets.ingest(tmp_path / "arrow.parquet", name="t")
    from_polars = ws.datasets.ingest(tmp_path / "polars.parquet", name="t")

    assert from_csv == from_arrow == from_polars
    assert [c.physical for c in from_csv.schema_.columns] == ["int64", "double", "string"]


@embedded
def test_different_types_order_or_rows_are_new_versions(ws: Workspace, tmp_path: Path) -> None:
    """Same values with another physical type, column order or row order: other content."""
    base = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "x": [0.5, 1.5, 2.5]})
    pq.write_table(base, tmp_path / "base.parquet")
    pq.write_table(
        base.cast(pa.schema([("id", pa.int32()), ("x", pa.float64())])), tmp_path / "i32.parquet"
    )
    pq.write_table(base.select(["x", "id"]), tmp_path / "order.parquet")
    pq.write_table(base.take([2, 1, 0]), tmp_path / "rows.parquet")
    refs = [
        ws.datasets.ingest(tmp_path / f"{n}.parquet", name="t").ref
        for n in ("base", "i32", "order", "rows")
    ]
    assert refs == ["t@1", "t@2", "t@3", "t@4"]
    assert ws.datasets.get("t@2").schema_.columns[0].physical == "int32"


# -- the content hash ------------------------------------------------------------------------

_ROW = st.fixed_dictionaries(
    {
        "i": st.none() | st.integers(-(2**62), 2**62),
        "f": st.none() | st.floats(allow_nan=False, width=64),
        "s": st.none() | st.text(max_size=5),
        "b": st.none() | st.booleans(),
    }
)
_ARROW_SCHEMA = pa.schema(
    [("i", pa.int64()), ("f", pa.float64()), ("s", pa.string()), ("b", pa.bool_())]
)
_POLARS_SCHEMA = {"i": pl.Int64, "f": pl.Float64, "s": pl.String, "b": pl.Boolean}


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_ROW, min_size=1, max_size=40), cut=st.integers(0, 40), extra=_ROW)
def test_the_content_hash_sees_values_not_buffers(
    rows: list[dict[str, Any]], cut: int, extra: dict[str, Any]
) -> None:
    """pyarrow, polars, a polars slice (offsets, spare buffer) and a re-chunked table of the same
    rows hash the same; and the hash is not blind to a changed cell."""
    by_arrow = pa.Table.from_pylist(rows, schema=_ARROW_SCHEMA)
    by_polars = pl.DataFrame(rows, schema=_POLARS_SCHEMA).to_arrow()
    sliced = pl.DataFrame([extra, *rows, extra], schema=_POLARS_SCHEMA)[1:-1].to_arrow()
    chunked = pa.concat_tables([by_arrow.slice(0, cut), by_arrow.slice(cut)])
    hashes = {content_hash(check_table(t, "t")) for t in (by_arrow, by_polars, sliced, chunked)}
    assert len(hashes) == 1
    changed = [*rows[:-1], {**rows[-1], "i": None if rows[-1]["i"] is not None else 1}]
    assert content_hash(pa.Table.from_pylist(changed, schema=_ARROW_SCHEMA)) not in hashes


# -- frames ---------------------------------------------------------------------------------


@embedded
def test_frames_and_rows_ingest_like_files(ws: Workspace) -> None:
    rows = [{"id": 1, "city": "NY"}, {"id": 2, "city": None}]
    from_rows = ws.datasets.ingest(rows, name="f")
    assert from_rows.source is None
    assert ws.datasets.ingest(pl.DataFrame(rows), name="f") == from_rows
    assert ws.datasets.ingest(pa.Table.from_pylist(rows), name="f") == from_rows
    frame = pd.DataFrame({"id": [1, 2], "city": ["NY", None]}, index=[10, 20])
    assert ws.datasets.ingest(frame, name="f") == from_rows  # the index is not a column
    assert [c.nullable for c in from_rows.schema_.columns] == [False, True]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "no rows given"),
        ([1, 2], "rows must be objects"),
        ([{"a": 1}, {"a": "x"}], "rows do not form a table"),
        (42, "cannot make a dataset from int"),
        (pl.DataFrame({"a": []}, schema={"a": pl.Int64}), "has a header but no rows"),
        (pl.DataFrame(), "has no columns"),
    ],
)
def test_frames_that_are_not_datasets_are_refused(
    sqlite_ws: Workspace, state: State, data: Any, message: str
) -> None:
    before = state(sqlite_ws)
    with pytest.raises(InvalidInput, match=message):
        sqlite_ws.datasets.ingest(data, name="f")
    assert state(sqlite_ws) == before


# -- bad input writes nothing ---------------------------------------------------------------

BAD_INPUTS: list[tuple[str, bytes | None, type[MloopError], str]] = [
    ("missing.csv", None, NotFound, "does not exist"),
    ("folder.csv", b"<dir>", InvalidInput, "is not a file"),
    ("garbage.parquet", os.urandom(300), InvalidInput, "cannot read .* as parquet"),
    ("empty.csv", b"", InvalidInput, "is empty"),
    ("header.csv", b"id,amount\n", InvalidInput, "has a header but no rows"),
    ("more.csv", b"id,amount\n1,2\n2,3,4\n", InvalidInput, "Expected 2 columns, got 3"),
    ("fewer.csv", b"id,amount\n1,2\n2\n", InvalidInput, "Expected 2 columns, got 1"),
    ("bad.jsonl", b'{"id": 1}\n{id: 2}\n', InvalidInput, "cannot read .* as jsonl"),
    ("dupes.csv", b"id,id\n1,2\n", InvalidInput, "repeats column names: id"),
    ("data.xlsx", b"id\n1\n", InvalidInput, "cannot tell the format"),
]


def test_bad_input_writes_nothing(
    ws: Workspace, tmp_path: Path, state: State, sales_frame: pl.DataFrame
) -> None:
    """Each bad file, into an existing dataset and into a new one: a clear error, and not one
    new blob, dataset, version row, lineage edge or audit record."""
    ws.datasets.ingest(sales_frame, name="sales")
    before = state(ws)
    for filename, data, error, message in BAD_INPUTS:
        path = tmp_path / filename
        if data == b"<dir>":
            path.mkdir()
        elif data is not None:
            path.write_bytes(data)
        for name in ("sales", "fresh"):
            with pytest.raises(error, match=message):
                ws.datasets.ingest(path, name=name)
        assert state(ws) == before, filename
    assert [d.name for d in ws.datasets.list()] == ["sales"]
    assert [v.ref for v in ws.datasets.versions("sales")] == ["sales@1"]


INVALID_NAMES = ["", "bad name", "-dash", ".dot", "a/b", "../up", "x" * 129, "é", "sales\n", "a@1"]


@embedded
def test_invalid_dataset_names_are_refused_and_write_nothing(
    ws: Workspace, tmp_path: Path, state: State, sales_frame: pl.DataFrame
) -> None:
    path = write(sales_frame, tmp_path / "sales.csv")
    before = state(ws)
    for name in INVALID_NAMES:
        with pytest.raises(InvalidInput, match=r"name .* is not allowed"):
            ws.datasets.ingest(path, name=name)
        with pytest.raises(InvalidInput, match=r"name .* is not allowed"):
            ws.datasets.ingest(sales_frame, name=name)
    assert state(ws) == before


@embedded
def test_longest_allowed_name(ws: Workspace, sales_frame: pl.DataFrame) -> None:
    name = "a" + "b" * 127
    assert ws.datasets.ingest(sales_frame, name=name).ref == f"{name}@1"


# -- versions ------------------------------------------------------------------------------


def test_versions_are_numbered_and_resolved(
    ws: Workspace, tmp_path: Path, make_sales: Callable[[int], pl.DataFrame]
) -> None:
    made = [
        ws.datasets.ingest(write(make_sales(n), tmp_path / f"s{n}.csv"), name="sales")
        for n in (10, 20, 30)
    ]
    assert [v.version for v in made] == [1, 2, 3]
    assert [v.row_count for v in made] == [10, 20, 30]
    assert ws.datasets.get("sales") == made[2]
    assert ws.datasets.get("sales@latest") == made[2]
    assert ws.datasets.get(" sales@2 ") == made[1]
    assert ws.datasets.get("sales@v1") == made[0]
    assert [v.ref for v in ws.datasets.versions("sales")] == ["sales@1", "sales@2", "sales@3"]
    ws.datasets.ingest(make_sales(5), name="other")
    listed = ws.datasets.list()
    assert [(d.name, d.latest_version, d.version_count) for d in listed] == [
        ("other", 1, 1),
        ("sales", 3, 3),
    ]
    # an older content again becomes the latest: a fourth version made of the first's segments
    again = ws.datasets.ingest(make_sales(10), name="sales")
    assert (again.version, again.content_hash, again.segments) == (
        4,
        made[0].content_hash,
        made[0].segments,
    )
    assert ws.datasets.get("sales") == again


UNKNOWN_REFS: list[tuple[str, type[MloopError], str]] = [
    ("nope", NotFound, "dataset 'nope' does not exist"),
    ("nope@1", NotFound, "dataset 'nope' does not exist"),
    ("sales@99", NotFound, r"has no version 99 \(latest is 1\)"),
    ("sales@0", NotFound, "has no version 0"),
    ("sales@abc", NotFound, "has no version 'abc'; use sales@N or sales@latest"),
    ("sales@-1", NotFound, "has no version '-1'"),
    ("sales@1.0", NotFound, "has no version '1.0'"),
    ("sales@99999999999999999999", NotFound, "has no version"),
    ("sales@", InvalidInput, "empty version"),
    ("", InvalidInput, "empty dataset reference"),
    ("bad name@1", InvalidInput, "is not allowed"),
]


@embedded
def test_unknown_datasets_and_versions(ws: Workspace, sales_frame: pl.DataFrame) -> None:
    ws.datasets.ingest(sales_frame, name="sales")
    for ref, error, message in UNKNOWN_REFS:
        with pytest.raises(error, match=message):
            ws.datasets.get(ref)


@embedded
def test_unknown_dataset_has_no_versions(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
        ws.datasets.versions("nope")
    with pytest.raises(NotFound, match="dataset version 'x' does not exist"):
        ws.datasets.get_by_id("x")
    assert ws.datasets.list() == []


def test_lineage_from_the_source_file_and_an_audit_record(
    ws: Workspace, tmp_path: Path, sales_frame: pl.DataFrame
) -> None:
    path = write(sales_frame, tmp_path / "sales.csv")
    v = ws.datasets.ingest(path, name="sales")

    edges = ws.lineage.upstream("dataset_version", v.id)
    assert [(e.src.type, e.src.id, e.relation) for e in edges] == [
        ("source", path.resolve().as_uri(), "ingested")
    ]
    assert ws.lineage.downstream("source", path.resolve().as_uri())[0].dst.id == v.id

    records = ws.audit.list(object_type="dataset_version", object_id="sales@1")
    assert [r.action for r in records] == ["dataset.version.create"]
    assert records[0].detail == {
        "rows": 120,
        "new_rows": 120,
        "kind": "ingest",
        "source": v.source,
    }
    assert [r.action for r in ws.audit.list(object_type="dataset")] == ["dataset.create"]


@embedded
def test_frames_have_no_source_edge(ws: Workspace, sales_frame: pl.DataFrame) -> None:
    v = ws.datasets.ingest(sales_frame, name="sales")
    assert ws.lineage.upstream("dataset_version", v.id) == []
    assert [r.action for r in ws.audit.list(object_id="sales@1")] == ["dataset.version.create"]


def test_load_checks_the_bytes_against_their_hash(
    sqlite_ws: Workspace, sales_frame: pl.DataFrame
) -> None:
    v = sqlite_ws.datasets.ingest(sales_frame, name="sales")
    blob = sqlite_ws.artifacts.path(v.data_digest)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="corrupt"):
        sqlite_ws.datasets.load("sales@1")


def test_concurrent_writers_get_dense_version_numbers(
    ws: Workspace, make_sales: Callable[[int], pl.DataFrame]
) -> None:
    """Four threads, four contents, one dataset: versions 1..4, none lost; then four threads
    with one content: one more version between them."""
    results: list[DatasetVersion] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def ingest(frame: pl.DataFrame) -> None:
        try:
            v = ws.datasets.ingest(frame, name="sales")
            with lock:
                results.append(v)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def run(frames: list[pl.DataFrame]) -> None:
        threads = [threading.Thread(target=ingest, args=(f,)) for f in frames]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    run([make_sales(n) for n in (11, 12, 13, 14)])
    assert errors == []
    assert sorted(v.version for v in results) == [1, 2, 3, 4]

    results.clear()
    run([make_sales(15) for _ in range(4)])
    assert errors == []
    assert {v.ref for v in results} == {"sales@5"}
    assert [v.version for v in ws.datasets.versions("sales")] == [1, 2, 3, 4, 5]


def test_frames_of_python_objects_are_refused(sqlite_ws: Workspace) -> None:
    import numpy as np
    import pandas as pd

    mixed = np.where(np.arange(4) % 2 == 0, None, np.arange(4) * 1.5)
    with pytest.raises(InvalidInput, match="holds Python objects"):
        sqlite_ws.datasets.ingest(pl.DataFrame({"x": pl.Series(mixed, dtype=pl.Object)}), name="o")
    with pytest.raises(InvalidInput, match="does not form a table"):
        sqlite_ws.datasets.ingest(pd.DataFrame({"x": [1, "a", 2.5, object()]}), name="o")
    assert sqlite_ws.datasets.list() == []
