"""Reading CSV, Parquet and JSON Lines into Arrow tables, and refusing what is not a table."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from mloop.core.errors import InvalidInput, NotFound
from mloop.data import content_hash, read_file
from mloop.data.readers import check_table, detect_format, read_bytes_table

CSV = b"id,amount,city,ok\n1,2.5,NY,true\n2,,LA,false\n3,4.0,,true\n"


# -- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("a.CSV", "csv"),
        ("a.txt", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", "jsonl"),
        ("a.backup.csv", "csv"),
    ],
)
def test_format_is_told_by_the_suffix(name: str, expected: str) -> None:
    assert detect_format(Path(name)) == expected


@pytest.mark.parametrize(
    ("declared", "expected"),
    [("csv", "csv"), (".PARQUET", "parquet"), ("json", "jsonl"), ("ndjson", "jsonl")],
)
def test_a_declared_format_wins_over_the_suffix(declared: str, expected: str) -> None:
    assert detect_format(Path("data.bin"), declared) == expected


def test_unknown_suffix_and_unknown_declared_format_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"cannot tell the format of data\.xlsx.*--format"):
        detect_format(Path("data.xlsx"))
    with pytest.raises(InvalidInput, match="unknown format 'xlsx'"):
        detect_format(Path("data.csv"), "xlsx")


def test_csv_types_nulls_and_quoting(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(CSV + b'4,1.0,"San Francisco, CA",false\n')
    table, fmt = read_file(path)
    assert fmt == "csv"
    assert table.schema.types == [pa.int64(), pa.float64(), pa.string(), pa.bool_()]
    assert table.column("amount").to_pylist() == [2.5, None, 4.0, 1.0]
    # an empty field is null, also in a string column
    assert table.column("city").to_pylist() == ["NY", "LA", None, "San Francisco, CA"]


def test_parquet_keeps_its_types(tmp_path: Path) -> None:
    original = pa.table(
        {"i": pa.array([1, 2], pa.int32()), "s": ["a", None], "f": pa.array([0.5, 1.5])}
    )
    pq.write_table(original, tmp_path / "t.parquet")
    table, fmt = read_file(tmp_path / "t.parquet")
    assert fmt == "parquet"
    assert table.equals(original)


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n\n{"a": 2, "b": null}\n')
    table, fmt = read_file(path)
    assert fmt == "jsonl"
    assert table.to_pylist() == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]


def test_a_column_with_no_values_is_kept_as_string(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,\n2,\n")
    table, _ = read_file(path)
    assert table.schema.field("b").type == pa.string()
    assert table.column("b").null_count == 2


def test_strings_are_canonical_whatever_wrote_them() -> None:
    """large, view and dictionary strings all become plain ``string``: the hash sees values."""
    plain = pa.table({"s": pa.array(["a", "b", "a"], pa.string())})
    for array in (
        pa.array(["a", "b", "a"], pa.large_string()),
        pa.array(["a", "b", "a"], pa.string_view()),
        pa.array(["a", "b", "a"]).dictionary_encode(),
    ):
        table = check_table(pa.table({"s": array}), "t")
        assert table.schema.field("s").type == pa.string()
        assert table.equals(plain)
        assert content_hash(table) == content_hash(plain)


# -- refusals --------------------------------------------------------------------------------

BAD_FILES: list[tuple[str, bytes, str]] = [
    ("empty.csv", b"", r"empty\.csv is empty"),
    ("blank.csv", b"\n \n", r"blank\.csv is empty"),
    ("header.csv", b"a,b,c\n", r"header\.csv has a header but no rows"),
    (
        "more.csv",
        b"a,b\n1,2\n3,4,5\n",
        r"cannot read .*more\.csv as csv: .*Expected 2 columns, got 3",
    ),
    (
        "fewer.csv",
        b"a,b\n1,2\n3\n",
        r"cannot read .*fewer\.csv as csv: .*Expected 2 columns, got 1",
    ),
    ("dupes.csv", b"a,b,a\n1,2,3\n", r"dupes\.csv repeats column names: a"),
    ("noname.csv", b"a,,b\n1,2,3\n", r"noname\.csv has a column with no name \(column 2\)"),
    ("bad.jsonl", b'{"a": 1}\n{"a": \n', r"cannot read .*bad\.jsonl as jsonl: JSON parse error"),
    ("array.jsonl", b"[1, 2]\n", r"cannot read .*array\.jsonl as jsonl"),
    ("mixed.jsonl", b'{"a": 1}\n{"a": "x"}\n', r"cannot read .*mixed\.jsonl as jsonl"),
    ("dupes.jsonl", b'{"a": 1, "a": 2}\n', r"cannot read .*dupes\.jsonl as jsonl"),
    ("garbage.parquet", os.urandom(512), r"cannot read .*garbage\.parquet as parquet"),
    ("text.parquet", CSV, r"cannot read .*text\.parquet as parquet"),
    ("sheet.xlsx", CSV, r"cannot tell the format of sheet\.xlsx"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_are_refused_with_the_file_and_the_reason(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InvalidInput, match=message):
        read_file(path)


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"file .*nope\.csv does not exist"):
        read_file(tmp_path / "nope.csv")


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InvalidInput, match=r"dir\.csv is not a file"):
        read_file(tmp_path / "dir.csv")


def test_an_empty_parquet_table_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), tmp_path / "e.parquet")
    with pytest.raises(InvalidInput, match="has a header but no rows"):
        read_file(tmp_path / "e.parquet")


def test_bytes_errors_name_the_label() -> None:
    with pytest.raises(InvalidInput, match="the request body is empty"):
        read_bytes_table(b"", "csv", "the request body")
    with pytest.raises(InvalidInput, match="cannot read the request body as parquet"):
        read_bytes_table(b"PAR1 nothing", "parquet", "the request body")


# -- one table, three formats, one hash -----------------------------------------------------

_row = st.fixed_dictionaries(
    {
        "i": st.integers(-(2**53), 2**53),
        "f": st.floats(allow_nan=False, allow_infinity=False, width=64).map(
            lambda x: x + 0.5 if float(x).is_integer() else x  # keep the column a float column
        ),
        "s": st.text(alphabet="abcxyz", min_size=1, max_size=6),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, min_size=1, max_size=30))
def test_the_same_rows_in_csv_parquet_and_json_lines_hash_the_same(
    rows: list[dict[str, object]],
) -> None:
    frame = pl.DataFrame(rows, schema={"i": pl.Int64, "f": pl.Float64, "s": pl.String})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame.write_csv(folder / "t.csv")
        frame.write_parquet(folder / "t.parquet")
        frame.write_ndjson(folder / "t.jsonl")
        hashes = set()
        for name in ("t.csv", "t.parquet", "t.jsonl"):
            table, _ = read_file(folder / name)
            assert table.to_pylist() == frame.to_dicts(), name
            hashes.add(content_hash(check_table(table, name)))
    assert len(hashes) == 1
