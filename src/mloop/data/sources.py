"""Batch sources: files (one, a glob, a URL through fsspec), SQL tables and queries (whole or
incremental by a cursor column), and JSON rows. Each reads into one Arrow table, or says clearly
why not; none writes anything."""

from __future__ import annotations

import decimal
import glob as _glob
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mloop.core.errors import InvalidInput, NotFound
from mloop.core.lazy import lazy_module
from mloop.core.schema import TableSchema
from mloop.data.readers import (
    FileFormat,
    check_table,
    csv_convert_options,
    detect_format,
    read_bytes_table,
    read_file,
)
from mloop.data.types import logical_type, schema_of
from mloop.data.versioning import SchemaChanged, conform, describe_changes

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq
    import sqlalchemy as sa
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pacsv = lazy_module("pyarrow.csv")
    pajson = lazy_module("pyarrow.json")
    pq = lazy_module("pyarrow.parquet")
    pl = lazy_module("polars")
    sa = lazy_module("sqlalchemy")

GLOB_CHARS = re.compile(r"[*?\[]")
SMALL_FILE = 1 << 20  # below this a file is read into memory whole; above it, streamed
SQL_CHUNK_ROWS = 50_000
# keys of the rows at the last cursor value kept in an incremental source's state (--key); when
# more rows share that value, none are kept and the next run reads only greater cursors
MAX_KEYS = 10_000


# -- secrets in URLs ---------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (SQLAlchemy URLs and ordinary URLs), so it
    can be stored in lineage, source states, audit records and messages."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _scrub(message: str, url: str) -> str:
    """``message`` without the password of ``url`` (drivers sometimes echo it)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        message = message.replace(password, "***")
    return message


# -- files ---------------------------------------------------------------------------------------


def is_pattern(source: str) -> bool:
    return bool(GLOB_CHARS.search(source))


def is_url(source: str) -> bool:
    return "://" in source


def expand(source: str) -> list[str]:
    """The files ``source`` names: itself, or each match of a glob in sorted order. Local paths
    stay paths; anything with a scheme (``file://``, ``memory://``, ``s3://``, ``https://``)
    stays a URL read through fsspec."""
    if not is_url(source):
        if not is_pattern(source):
            return [source]
        matches = sorted(p for p in _glob.glob(source, recursive=True) if Path(p).is_file())
        if not matches:
            raise NotFound(f"no file matches {source}")
        return matches
    fs, path = _filesystem(source)
    protocol = source.split("://", 1)[0]
    if not is_pattern(path):
        return [source]
    try:
        found = sorted(p for p in fs.glob(path) if not fs.isdir(p))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot list {mask_url(source)}: {exc}") from exc
    if not found:
        raise NotFound(f"no file matches {mask_url(source)}")
    return [f"{protocol}://{p.split('://', 1)[-1]}" for p in found]


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise InvalidInput("reading URLs needs fsspec: pip install fsspec") from exc
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        protocol = url.split("://", 1)[0]
        hint = {"s3": "s3fs", "gs": "gcsfs", "http": "aiohttp", "https": "aiohttp"}.get(protocol)
        raise InvalidInput(
            f"cannot read {mask_url(url)}: the {protocol}:// filesystem is not installed"
            + (f" (pip install {hint})" if hint else "")
        ) from exc
    except ValueError as exc:
        raise InvalidInput(f"cannot read {mask_url(url)}: {exc}") from exc
    return fs, path


def read_one(source: str, fmt: str | None = None) -> pa.Table:
    """One file, local or by URL, as a checked table. Big files are parsed from a stream, so
    their bytes are never held in memory beside the table."""
    if not is_url(source):
        local = Path(source)
        if local.is_file() and local.stat().st_size >= SMALL_FILE:
            # pyarrow reads the file itself, in blocks: its bytes are never one Python object
            return read_stream(str(local), detect_format(local, fmt), str(local))
        table, _ = read_file(source, fmt)
        return table
    label = mask_url(source)
    fs, path = _filesystem(source)
    detected = detect_format(Path(path.split("?")[0]), fmt)
    try:
        if not fs.exists(path):
            raise NotFound(f"{label} does not exist")
        if fs.isdir(path):
            raise InvalidInput(f"{label} is not a file")
        size = fs.size(path)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {label}: {exc}") from exc
    if size is None or size < SMALL_FILE:
        with fs.open(path, "rb", compression="infer") as handle:
            return read_bytes_table(handle.read(), detected, label)
    with fs.open(path, "rb", compression="infer") as handle:
        return read_stream(handle, detected, label)


def read_stream(handle: Any, fmt: FileFormat, label: str) -> pa.Table:
    """Parse an open binary file (a path works too) as ``fmt`` without reading it whole first."""
    try:
        if fmt == "csv":
            table = pacsv.read_csv(handle, convert_options=csv_convert_options())
        elif fmt == "jsonl":
            table = pajson.read_json(handle)
        else:
            table = pq.read_table(handle)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"cannot read {label} as {fmt}: {message}") from exc
    return check_table(table, label)


def read_files(
    source: str | Path | list[str | Path], fmt: str | None = None
) -> tuple[pa.Table, list[str]]:
    """Every file ``source`` names (a path, a glob, a URL or a URL glob, or a list of them) as
    one table, in sorted file order (a list: in its order, each glob sorted), and the files
    read. All files must have one schema: the same columns with the same logical types, any
    order; otherwise :class:`SchemaChanged` names the file and each difference from the first
    file."""
    patterns = [str(s) for s in source] if isinstance(source, list) else [str(source)]
    if not patterns:
        raise InvalidInput("no file given")
    files = [f for pattern in patterns for f in expand(pattern)]
    tables: list[pa.Table] = []
    first_schema: TableSchema | None = None
    for file in files:
        table = read_one(file, fmt)
        if first_schema is None:
            first_schema = schema_of(table)
        else:
            try:
                table = conform(table, first_schema, files[0])
            except SchemaChanged as exc:
                raise SchemaChanged(
                    f"{mask_url(file)} does not have the schema of {mask_url(files[0])}: "
                    f"{describe_changes(exc.changes)}",
                    exc.changes,
                ) from None
        tables.append(table)
    if len(tables) == 1:
        return tables[0], files
    return pa.concat_tables(tables), files


def source_uri(source: str | Path | list[str | Path]) -> str:
    """How a file source is named in lineage: a ``file://`` URL of the absolute path (globs
    kept as written), or the URL with its password masked; a list, by its first and count."""
    if isinstance(source, list):
        first = source_uri(source[0])
        return first if len(source) == 1 else f"{first} (+{len(source) - 1} more)"
    text = str(source)
    if is_url(text):
        return mask_url(text)
    if is_pattern(text):
        return "file://" + str(Path(text).absolute())
    return Path(text).resolve().as_uri()


# -- SQL -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlRead:
    """What one SQL read returned: the rows (None when there were none), the source's name
    (its URL with the password masked) and where the source stands after these rows."""

    table: pa.Table | None
    source: str
    state: dict[str, Any]


class SqlSource:
    """A table or a query of a SQL database (any SQLAlchemy URL), read in chunks.

    With a ``cursor`` column it reads incrementally: only rows whose cursor is greater than the
    last one read. Rows that share the last cursor value and arrive later are missed unless a
    ``key`` column is given: then rows with cursor ≥ the last are read and those whose key was
    already read at that cursor value are dropped."""

    def __init__(
        self,
        url: str,
        *,
        table: str | None = None,
        query: str | None = None,
        cursor: str | None = None,
        key: str | None = None,
        chunk_rows: int = SQL_CHUNK_ROWS,
        hash_keys: Callable[[pa.Array], pa.Array] | None = None,
    ) -> None:
        if (table is None) == (query is None):
            raise InvalidInput("give a SQL source exactly one of a table or a query")
        if key is not None and cursor is None:
            raise InvalidInput("a key column deduplicates rows at the cursor: give a cursor too")
        if query is not None:
            query = query.strip().rstrip(";").strip()
            if not query:
                raise InvalidInput("the SQL query is empty")
        if table is not None and not table.strip():
            raise InvalidInput("the SQL table name is empty")
        self.url = url
        self.table = table
        self.query = query
        self.cursor = cursor
        self.key = key
        self.chunk_rows = max(1, chunk_rows)
        self.hash_keys = hash_keys
        masked = mask_url(url)
        if table is not None:
            self.name = f"{masked}#table={table}"
        else:
            digest = hashlib.sha256((query or "").encode()).hexdigest()[:16]
            self.name = f"{masked}#query={digest}"

    def _engine(self) -> sa.Engine:
        try:
            parsed = sa.make_url(self.url)
        except Exception as exc:  # ArgumentError, ValueError: never echo the URL (a password)
            raise InvalidInput(
                f"{mask_url(self.url)!r} is not a SQLAlchemy URL "
                "(e.g. postgresql+psycopg://user@host/db, sqlite:///file.db)"
            ) from exc
        try:
            return sa.create_engine(parsed)
        except ImportError as exc:
            raise InvalidInput(
                f"the driver of {parsed.drivername} is not installed: {exc.name or exc}"
            ) from exc
        except Exception as exc:
            raise InvalidInput(
                f"cannot use SQL URL {mask_url(self.url)}: {_scrub(str(exc), self.url)}"
            ) from exc

    def read(self, state: dict[str, Any] | None) -> SqlRead:
        """Rows after ``state`` (everything when None or without a cursor), in cursor order."""
        last = None
        seen: list[Any] | None = None  # keys read at the last cursor; None: not known
        if self.cursor is not None and state:
            saved = state.get("cursor") or {}
            if saved.get("column") not in (None, self.cursor):
                raise InvalidInput(
                    f"{self.name} was read by cursor column {saved.get('column')!r}, "
                    f"not {self.cursor!r}; ingest into another dataset to change it"
                )
            if "value" in saved:
                last = _decode_cursor(saved)
            seen = self._seen(state)
        ties = self.key is not None and (last is None or seen is not None)
        engine = self._engine()
        try:
            with engine.connect() as conn:
                stmt, types = self._statement(conn, last, ties)
                result = conn.execution_options(stream_results=True).execute(stmt)
                names = list(result.keys())
                parts = []
                try:
                    # the first chunk through SQLAlchemy (which drains the rows it read ahead),
                    # the rest from the driver's cursor: values as the driver gives them, cast
                    # column by column in Arrow, with no per-row processing in Python
                    first = result.fetchmany(self.chunk_rows)
                    if first:
                        parts.append(_chunk_table(first, names, types))
                    if len(first) == self.chunk_rows:
                        cursor = result.cursor
                        while rows := cursor.fetchmany(self.chunk_rows):
                            parts.append(_chunk_table(rows, names, types))
                finally:
                    result.close()
        except sa.exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(exc).__name__
            raise InvalidInput(f"cannot read {self.name}: {_scrub(text, self.url)}") from None
        finally:
            engine.dispose()
        table = _concat(parts, names, types)
        if table is not None and self.cursor is not None:
            table = self._after(table, last, seen if ties else None)
        return SqlRead(table, self.name, self._state_after(table, state, seen))

    def _seen(self, state: dict[str, Any]) -> list[Any] | None:
        """The keys a saved state holds, in the form this read compares (digests when the key
        column is hashed); None when they are not known (more than :data:`MAX_KEYS` shared the
        last cursor, or they were hashed and no hashing is given now)."""
        if self.key is None or state.get("keys_overflow") or state.get("key") != self.key:
            return None  # none kept, too many, or of another column: compare cursors only
        keys = list(state.get("keys") or [])
        if state.get("keys_hashed"):
            return keys if self.hash_keys is not None else None
        if self.hash_keys is not None and keys:  # kept raw before the key column was PII
            digests: list[Any] = self.hash_keys(pa.array(keys)).to_pylist()
            return digests
        return keys

    def _statement(
        self, conn: sa.Connection, last: Any, ties: bool = False
    ) -> tuple[Any, dict[str, pa.DataType]]:
        """The SELECT of the rows after ``last``: a superset where the database cannot compare
        exactly (rows equal to ``last`` too: ``ties``, or SQLite's times), cut in Arrow."""
        types: dict[str, pa.DataType] = {}
        if self.table is not None:
            schema, _, name = self.table.rpartition(".")
            try:
                source = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=conn)
            except sa.exc.NoSuchTableError:
                raise NotFound(
                    f"table {self.table!r} does not exist in {mask_url(self.url)}"
                ) from None
            types = {c.name: t for c in source.columns if (t := _arrow_type(c.type))}
            stmt = sa.select(source)
            columns = source.c
            if self.cursor is not None and self.cursor not in columns:
                raise InvalidInput(f"table {self.table!r} has no cursor column {self.cursor!r}")
            if self.key is not None and self.key not in columns:
                raise InvalidInput(f"table {self.table!r} has no key column {self.key!r}")
            cursor_col: Any = columns[self.cursor] if self.cursor else None
            key_col: Any = columns[self.key] if self.key else None
            order = list(source.primary_key.columns)
        else:
            sub = sa.text(self.query or "").columns().subquery("mloop_src")
            stmt = sa.select(sa.text("*")).select_from(sub)
            cursor_col = sa.column(self.cursor) if self.cursor else None
            key_col = sa.column(self.key) if self.key else None
            order = []
        if cursor_col is not None:
            if last is not None:
                bound: Any
                if isinstance(cursor_col.type, sa.types.NullType):
                    bound = sa.bindparam("mloop_last", last)
                else:
                    bound = sa.bindparam("mloop_last", last, type_=cursor_col.type)
                left: Any = cursor_col
                superset = ties
                if conn.dialect.name == "sqlite" and isinstance(cursor_col.type, sa.DateTime):
                    # SQLite keeps times as text, with or without fractions of a second:
                    # compare them as times, not as strings. julianday() keeps milliseconds
                    # only, so rows later within the last one's millisecond compare equal:
                    # read them too (>=), and keep the ones truly after in Arrow (_after)
                    left = sa.func.julianday(cursor_col)
                    bound = sa.func.julianday(
                        sa.bindparam("mloop_last", last.isoformat(sep=" "), type_=sa.String)
                    )
                    superset = True
                stmt = stmt.where(left >= bound if superset else left > bound)
            stmt = stmt.where(cursor_col.is_not(None))
            order = [cursor_col] + ([key_col] if key_col is not None else [])
        if order:
            stmt = stmt.order_by(*order)
        return stmt, types

    def _after(self, table: pa.Table, last: Any, seen: list[Any] | None) -> pa.Table | None:
        """The rows truly after ``last``, exactly, in Arrow: a greater cursor, or (``seen``
        given: a key column closes the gap at ties) an equal cursor and a key not yet read."""
        assert self.cursor is not None
        if self.cursor not in table.column_names:
            raise InvalidInput(f"{self.name} returned no cursor column {self.cursor!r}")
        if self.key is not None:
            if self.key not in table.column_names:
                raise InvalidInput(f"{self.name} returned no key column {self.key!r}")
            key_type = table.schema.field(self.key).type
            if not (pa.types.is_integer(key_type) or pa.types.is_string(key_type)):
                raise InvalidInput(
                    f"key column {self.key!r} is {key_type}: a key is an integer or a string "
                    "column (its values at the last cursor are kept with the source's state)"
                )
        if last is None:
            return table if table.num_rows else None
        column = table.column(self.cursor)
        bound = _scalar_like(last, table, self.cursor)
        keep = pc.fill_null(pc.greater(column, bound), False)
        if seen is not None:
            at_last = pc.fill_null(pc.equal(column, bound), False)
            rows = pc.indices_nonzero(at_last)
            if len(rows):
                keys = self._key_form(table.column(self.key).take(rows))
                known = pc.fill_null(pc.is_in(keys, value_set=pa.array(seen, keys.type)), False)
                tie = np.zeros(table.num_rows, dtype=bool)
                tie[rows.to_numpy()[~known.to_numpy(zero_copy_only=False)]] = True
                keep = pc.or_(keep, pa.array(tie))
        table = table.filter(keep)
        return table if table.num_rows else None

    def _key_form(self, keys: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Keys as kept in the source's state: keyed hashes when the key column is PII."""
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.combine_chunks()
        return keys if self.hash_keys is None else self.hash_keys(keys)

    def _state_after(
        self, table: pa.Table | None, before: dict[str, Any] | None, seen: list[Any] | None
    ) -> dict[str, Any]:
        if self.cursor is None:
            return {}
        if table is None:
            return dict(before or {})
        column = table.column(self.cursor)
        top = pc.max(column)
        state: dict[str, Any] = {"cursor": {"column": self.cursor, **_encode_cursor(top.as_py())}}
        if self.key is not None:
            at_top = table.filter(pc.fill_null(pc.equal(column, top), False))
            keys = self._key_form(at_top.column(self.key)).to_pylist()
            previous = (before or {}).get("cursor", {})
            if previous.get("value") == state["cursor"]["value"] and seen is not None:
                keys = list(dict.fromkeys([*seen, *keys]))
            state["key"] = self.key
            if self.hash_keys is not None:
                state["keys_hashed"] = True
            if len(keys) > MAX_KEYS:
                # too many to keep: the next run reads only rows with a greater cursor
                state["keys"] = []
                state["keys_overflow"] = True
            else:
                state["keys"] = keys
        return state


def _scalar_like(value: Any, table: pa.Table, column: str) -> pa.Scalar:
    return pa.scalar(value).cast(table.schema.field(column).type)


def _encode_cursor(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "bool", "value": value}
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, float):
        return {"type": "float", "value": value}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {"type": "date", "value": value.isoformat()}
    return {"type": "str", "value": str(value)}


def _decode_cursor(saved: dict[str, Any]) -> Any:
    kind, value = saved.get("type"), saved.get("value")
    if kind == "datetime":
        return datetime.fromisoformat(value)  # type: ignore[arg-type]
    if kind == "date":
        return date.fromisoformat(value)  # type: ignore[arg-type]
    if kind == "decimal":
        return decimal.Decimal(value)  # type: ignore[arg-type]
    return value


def _arrow_type(sql_type: Any) -> pa.DataType | None:
    """The Arrow type a column of this SQL type reads as; None: infer from the values."""
    t = sa.types
    try:
        if isinstance(sql_type, t.Boolean):
            return pa.bool_()
        if isinstance(sql_type, t.Integer):
            return pa.int64()
        if isinstance(sql_type, t.Float | t.Numeric):
            return pa.float64()
        if isinstance(sql_type, t.DateTime):
            return pa.timestamp("us", "UTC" if getattr(sql_type, "timezone", False) else None)
        if isinstance(sql_type, t.Date):
            return pa.date32()
        if isinstance(sql_type, t.String | t.Enum | t.Uuid):
            return pa.string()
    except AttributeError:  # pragma: no cover - an older SQLAlchemy without a type
        return None
    return None


def _python_value(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_python_value(v) for v in values])


def _cast(column: pa.Array | pa.ChunkedArray, dtype: pa.DataType | None) -> Any:
    """``column`` as the SQL column's Arrow type when it converts safely (SQLite's text times,
    integer booleans, decimals as floats); otherwise as read, for the schema check to judge."""
    if dtype is None or column.type == dtype:
        return column
    try:
        return column.cast(dtype, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return column


def _chunk_table(rows: Any, names: list[str], types: dict[str, pa.DataType]) -> pa.Table:
    """Driver rows (tuples) as a table: through Polars, which builds columns from rows in
    native code; rows it cannot type (mixed or exotic values) column by column in Arrow."""
    try:
        table = pl.DataFrame(
            [tuple(r) for r in rows], schema=names, orient="row", infer_schema_length=None
        ).to_arrow()
    except Exception:  # polars refuses mixed, object or duplicate columns: the slow, exact way
        columns = list(zip(*rows, strict=True))
        table = pa.table([_column(list(c)) for c in columns], names=names)
    return pa.table(
        [_cast(table.column(i), types.get(n)) for i, n in enumerate(names)], names=names
    )


def _concat(
    parts: list[pa.Table], names: list[str], types: dict[str, pa.DataType]
) -> pa.Table | None:
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"the SQL rows change type between chunks: {exc}") from None


# -- JSON rows -----------------------------------------------------------------------------------

_PY_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "float", str: "string"}


def _kind(value: Any) -> str:
    return _PY_TYPES.get(type(value), "other" if value is not None else "null")


def rows_to_table(rows: Any, schema: TableSchema | None, label: str = "the rows") -> pa.Table:
    """A list of JSON objects as a table: with ``schema`` (the dataset's), each row must have
    exactly its fields, each value of the column's type (null allowed); without one, every row
    must have the first row's fields and each field one type. Errors name rows and fields,
    never values (they may be personal data); schema differences raise :class:`SchemaChanged`
    listing each."""
    if not isinstance(rows, list):
        raise InvalidInput(f'{label} must be a list of objects (or {{"rows": [...]}})')
    if not rows:
        raise InvalidInput(f"{label}: no rows given")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise InvalidInput(f"{label}: row {bad} is not an object mapping field names to values")
    names = list(schema.names) if schema is not None else list(rows[0])
    if not names:
        raise InvalidInput(f"{label}: row 0 has no fields")
    expected = set(names)
    changes: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if row.keys() == expected:
            continue
        missing = [n for n in names if n not in row]
        extra = [k for k in row if k not in expected]
        if schema is None:
            what = (
                (f"lacks field {missing[0]!r}" if missing else f"has field {extra[0]!r}")
                + " that row 0 "
                + ("has" if missing else "does not have")
            )
            raise InvalidInput(f"{label}: row {i} {what}; every row needs the same fields")
        changes += [{"column": n, "change": "removed", "row": i} for n in missing]
        changes += [{"column": k, "change": "added", "row": i} for k in extra]
        break
    if changes:
        raise SchemaChanged(f"{label} do not match the dataset: {_describe_rows(changes)}", changes)
    types = {c.name: c for c in schema.columns} if schema is not None else {}
    arrays = []
    for name in names:
        values = [row[name] for row in rows]
        column = types.get(name)
        arrays.append(_json_column(name, values, column, label))
    return pa.table(arrays, names=names)


def _describe_rows(changes: list[dict[str, Any]]) -> str:
    parts = []
    for c in changes:
        if c["change"] == "removed":
            parts.append(f"row {c['row']} lacks field {c['column']!r}")
        elif c["change"] == "added":
            parts.append(f"row {c['row']} has field {c['column']!r} the dataset does not have")
        else:
            parts.append(
                f"field {c['column']!r} is {c['from']} in the dataset but row {c['row']} "
                f"holds {c['to']}"
            )
    return "; ".join(parts)


def _json_column(name: str, values: list[Any], column: Any, label: str) -> pa.Array:
    if column is None:  # a new dataset: one JSON type per field
        kinds = {_kind(v) for v in values} - {"null"}
        if {"integer", "float"} <= kinds:
            kinds.discard("integer")
            values = [float(v) if type(v) is int else v for v in values]
        if len(kinds) > 1 or "other" in kinds:
            shown = " and ".join(sorted(k if k != "other" else "objects or lists" for k in kinds))
            raise InvalidInput(f"{label}: field {name!r} mixes {shown}; one type per field")
        try:
            return pa.array(values, type=None if kinds else pa.string())
        except (OverflowError, pa.ArrowInvalid):  # an integer beyond 64 bits: no Arrow type
            raise InvalidInput(
                f"{label}: field {name!r} holds an integer beyond the 64-bit range"
            ) from None
    expected = column.type
    allowed = {
        "integer": {"integer"},
        "float": {"integer", "float"},
        "boolean": {"boolean"},
        "string": {"string"},
        "datetime": {"string"},
        "date": {"string"},
    }.get(expected)
    for i, value in enumerate(values):
        kind = _kind(value)
        if kind == "null" or (allowed is not None and kind in allowed):
            continue
        if allowed is None and kind != "other":
            continue
        change = {"column": name, "change": "retyped", "from": expected, "to": kind, "row": i}
        raise SchemaChanged(
            f"{label} do not match the dataset: {_describe_rows([change])}", [change]
        )
    target = _physical_type(column)
    try:
        if expected == "float":  # a JSON integer in a float column, even one beyond 64 bits
            values = [float(v) if type(v) is int else v for v in values]
        if expected in ("datetime", "date"):
            return pa.array(values, type=pa.string()).cast(target or pa.timestamp("us"))
        return pa.array(values, type=target)
    except OverflowError:  # Python's integers have no bound; the column's type does
        change = {"column": name, "change": "retyped", "from": expected, "to": "out of range"}
        raise SchemaChanged(
            f"{label} do not match the dataset: field {name!r} holds a number beyond the range "
            f"of {column.physical or expected}",
            [change],
        ) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        change = {"column": name, "change": "retyped", "from": expected, "to": "unparseable"}
        raise SchemaChanged(
            f"{label} do not match the dataset: field {name!r} holds values that are not "
            f"{expected} ({column.physical})",
            [change],
        ) from None


def _physical_type(column: Any) -> pa.DataType | None:
    physical = column.physical
    if not physical:
        return None
    try:
        dtype = pa.type_for_alias(physical)
    except ValueError:
        if physical.startswith("timestamp["):
            unit, _, tz = physical[len("timestamp[") : -1].partition(", tz=")
            return pa.timestamp(unit, tz or None)
        return None
    return dtype if logical_type(dtype) == column.type else None
