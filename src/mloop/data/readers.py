"""Read a file into an Arrow table, or say clearly why not."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mloop.core.errors import InvalidInput, NotFound
from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq
else:
    pa = lazy_module("pyarrow")
    pacsv = lazy_module("pyarrow.csv")
    pajson = lazy_module("pyarrow.json")
    pq = lazy_module("pyarrow.parquet")

FileFormat = Literal["csv", "parquet", "jsonl"]

SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


def detect_format(path: Path, declared: str | None = None) -> FileFormat:
    if declared:
        fmt = declared.lower().lstrip(".")
        if fmt in ("csv", "parquet", "jsonl"):
            return fmt  # type: ignore[return-value]
        if fmt in ("json", "ndjson"):
            return "jsonl"
        raise InvalidInput(f"unknown format {declared!r}; use csv, parquet or jsonl")
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in SUFFIXES:
            return SUFFIXES[suffix]
    raise InvalidInput(
        f"cannot tell the format of {path.name}: name it .csv, .parquet or .jsonl, "
        "or pass the format (--format)"
    )


def csv_convert_options() -> pacsv.ConvertOptions:
    """Only an empty field is null: Arrow's default null spellings (``NA``, ``N/A``, ``nan``,
    ``NULL``, ``null``, ``-``, ...) are data (``NA`` is Namibia's country code). A column of
    numbers holding one of them is a string column, like any other text among numbers."""
    return pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True)


def read_bytes_table(data: bytes, fmt: FileFormat, label: str) -> pa.Table:
    """Parse ``data`` as ``fmt``; ``label`` names the input in error messages."""
    if not data.strip():
        raise InvalidInput(f"{label} is empty")
    try:
        if fmt == "csv":
            table = pacsv.read_csv(
                io.BytesIO(data),
                convert_options=csv_convert_options(),
            )
        elif fmt == "jsonl":
            table = pajson.read_json(io.BytesIO(data))
        else:
            table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot read {label} as {fmt}: {message}") from exc
    return check_table(table, label)


def read_file(path: str | Path, fmt: str | None = None) -> tuple[pa.Table, FileFormat]:
    """Read a CSV, Parquet or JSON Lines file. Errors name the file and the reason."""
    p = Path(path)
    if not p.exists():
        raise NotFound(f"file {p} does not exist")
    if not p.is_file():
        raise InvalidInput(f"{p} is not a file")
    detected = detect_format(p, fmt)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {p}: {exc.strerror or exc}") from exc
    return read_bytes_table(data, detected, str(p)), detected


def check_table(table: pa.Table, label: str) -> pa.Table:
    """Refuse tables no dataset should be made of; normalise the rest."""
    if table.num_columns == 0:
        raise InvalidInput(f"{label} has no columns")
    if table.num_rows == 0:
        raise InvalidInput(f"{label} has a header but no rows")
    names = table.column_names
    blank = [i for i, n in enumerate(names) if not str(n).strip()]
    if blank:
        raise InvalidInput(f"{label} has a column with no name (column {blank[0] + 1})")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"{label} repeats column names: {', '.join(dupes)}")
    # one physical type per logical one, so the same rows hash the same whatever wrote them
    columns = []
    changed = False
    for field, column in zip(table.schema, table.columns, strict=True):
        canonical = canonical_type(field.type)
        if canonical != field.type:
            columns.append(column.cast(canonical))
            changed = True
        else:
            columns.append(column)
    if changed:
        table = pa.table(columns, names=names)
    return table


def canonical_type(dtype: pa.DataType) -> pa.DataType:
    """Strings as ``string`` (not large or view strings, not dictionary-encoded), binaries as
    ``binary``; a column with no values at all (Arrow type null) as ``string``."""
    if pa.types.is_dictionary(dtype):
        return canonical_type(dtype.value_type)
    if pa.types.is_null(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return pa.binary()
    return dtype
