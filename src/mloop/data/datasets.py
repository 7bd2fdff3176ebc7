"""Datasets and their immutable, content-addressed versions."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import re
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import Conflict, InvalidInput, MloopError, NotFound
from mloop.core.ids import new_id
from mloop.core.lazy import lazy_module
from mloop.core.schema import TableSchema
from mloop.data.policy import apply_policy, has_pii, make_policy, public_policy, redact
from mloop.data.profile import profile_frame
from mloop.data.readers import (
    canonical_type,
    check_table,
    detect_format,
    read_bytes_table,
)
from mloop.data.sources import SqlSource, read_files, rows_to_table, source_uri
from mloop.data.types import schema_of
from mloop.data.versioning import (
    SourceState,
    _Segment,
    conform,
    diff_versions,
    merge_profiles,
    merged_schema,
    parse_instant,
)
from mloop.security import AuditLog, local_actor
from mloop.storage import ArtifactStore, Database, LineageStore, tables

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")

QUARANTINE_SUFFIX = ".quarantine"
# the columns of a quarantine dataset, whoever writes it: a stream's consumer (the raw message,
# its partition and offset) or a batch quarantine (the row as a JSON object, no partition, its
# position in the version split); the same as mloop.data.streams.consumer.QUARANTINE_COLUMNS
QUARANTINE_COLUMNS = (
    "_mloop_kind",
    "_mloop_reason",
    "_mloop_payload",
    "_mloop_partition",
    "_mloop_offset",
)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str = "dataset") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"{what} name {name!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME@VERSION`` (``NAME@latest`` too) → (name, version or None)."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("empty dataset reference; use NAME or NAME@VERSION")
    name, _, version = ref.strip().partition("@")
    check_name(name)
    if "@" in ref and not version:
        raise InvalidInput(f"dataset reference {ref!r} has an empty version after '@'")
    return name, (version or None)


def content_hash(table: pa.Table) -> str:
    """sha256 of the table's logical content: same rows and schema, same hash.

    Per column it hashes the column's name and canonical type, where its nulls are and the
    values of the other rows, never raw Arrow buffers: the bytes under a null, the padding bits
    of a bitmap and a buffer's spare capacity differ between writers of the same rows (pyarrow,
    polars, pandas) and must not make two versions of one content.
    """
    digest = hashlib.sha256()
    for field, column in zip(table.schema, table.columns, strict=True):
        dtype = canonical_type(field.type)
        array = column.cast(dtype).combine_chunks()
        digest.update(f"{len(field.name)}:{field.name}:{dtype}:{len(array)}\n".encode())
        _hash_values(digest, pc.indices_nonzero(array.is_null()).cast(pa.uint64()))
        _hash_values(digest, array.drop_null())
    return digest.hexdigest()


def _hash_values(digest: Any, array: pa.Array) -> None:
    """Feed the exact bytes of a null-free array's values to ``digest``, nothing beyond them."""
    if pa.types.is_boolean(array.type):
        array = array.cast(pa.uint8())
    dtype, buffers, start, n = array.type, array.buffers(), array.offset, len(array)
    digest.update(f"{n}\n".encode())
    if n == 0:
        return
    if pa.types.is_string(dtype) or pa.types.is_binary(dtype):
        offsets = np.frombuffer(buffers[1], dtype=np.int32)[start : start + n + 1]
        digest.update((offsets - offsets[0]).astype(np.int64).tobytes())
        if offsets[-1] > offsets[0]:
            digest.update(buffers[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])))
    elif (
        pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_temporal(dtype)
        or pa.types.is_decimal(dtype)
        or pa.types.is_fixed_size_binary(dtype)
    ) and dtype.bit_width % 8 == 0:
        size = dtype.bit_width // 8
        digest.update(buffers[1].slice(start * size, n * size))
    else:  # nested and rarer types (canonical strings are never large or views): Python values
        digest.update(repr(array.to_pylist()).encode())


class DatasetVersion(BaseModel):
    """One immutable version of a dataset: its data is the Parquet blob ``data_digest``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    id: str
    dataset: str
    version: int
    content_hash: str
    data_digest: str
    row_count: int
    size_bytes: int
    schema_: TableSchema = Field(alias="schema")
    profile: dict[str, dict[str, Any]]
    source: str | None
    kind: str
    created_at: datetime
    created_by: str | None
    segments: list[tuple[int, int]] = Field(default_factory=list)
    base_version_id: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.version}"

    def summary(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "id": self.id,
            "rows": self.row_count,
            "columns": len(self.schema_.columns),
            "kind": self.kind,
            "content_hash": self.content_hash,
            "created_at": self.created_at.isoformat(),
            "source": self.source,
            "segments": self.segment_count,
        }

    @property
    def segment_count(self) -> int:
        return sum(last - first + 1 for first, last in self.segments)

    def segment_numbers(self) -> builtins.list[int]:
        return [n for first, last in self.segments for n in range(first, last + 1)]


class Dataset(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str | None
    created_at: datetime
    latest_version: int | None
    version_count: int


SAMPLE_ROWS = 10_000


def _encodings(table: pa.Table) -> tuple[builtins.list[str], dict[str, str]]:
    """Per column, a dictionary or not, and its codec. Text, binary and booleans get a
    dictionary and zstd. A number or time gets them too when a sample of it repeats (codes,
    counts, ages); a high-cardinality one is written plain with lz4: trying a dictionary on it
    (then falling back) took three quarters of the time of writing 100k rows of floats, and
    zstd decodes such data four times slower than lz4 for a few percent of size."""
    dictionary, codecs = [], {}
    for field in table.schema:
        kind = field.type
        textual = (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_dictionary(kind)
        )
        repeats = textual
        if not textual and (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind)
        ):
            sample = table.column(field.name).slice(0, SAMPLE_ROWS)
            valid = len(sample) - sample.null_count
            repeats = valid == 0 or pc.count_distinct(sample).as_py() <= valid // 2
        elif not textual:
            repeats = True  # nested and other types: as before
        if repeats:
            dictionary.append(field.name)
            codecs[field.name] = "zstd"
        else:
            codecs[field.name] = "lz4"
    return dictionary, codecs


def _version_from_row(row: RowMapping, dataset_name: str) -> DatasetVersion:
    return DatasetVersion(
        id=row["id"],
        dataset=dataset_name,
        version=row["version"],
        content_hash=row["content_hash"],
        data_digest=row["data_digest"],
        row_count=row["row_count"],
        size_bytes=row["size_bytes"],
        schema_=TableSchema.model_validate(row["schema"]),
        profile=row["profile"],
        source=row["source"],
        kind=row["kind"],
        created_at=from_ms(row["created_at"]),
        created_by=row["created_by"],
        segments=[(int(a), int(b)) for a, b in row["segments"] or []],
        base_version_id=row["base_version_id"],
    )


def to_arrow(data: Any) -> pa.Table:
    """Accept an Arrow table, a Polars or pandas frame, or a list of row dicts."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pl.DataFrame):
        objects = [name for name, dtype in data.schema.items() if dtype == pl.Object]
        if objects:
            raise InvalidInput(
                f"column {objects[0]!r} holds Python objects, which have no portable form; "
                "cast it to numbers, strings, booleans or times first"
            )
        return data.to_arrow()
    if isinstance(data, list):
        if not data:
            raise InvalidInput("no rows given")
        if not all(isinstance(r, dict) for r in data):
            raise InvalidInput("rows must be objects mapping column names to values")
        try:
            return pa.Table.from_pylist(data)
        except OverflowError:
            raise InvalidInput(
                "rows do not form a table: an integer is beyond the 64-bit range"
            ) from None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            # the message without the values it quotes: they may be personal data
            raise InvalidInput(f"rows do not form a table: {redact(str(exc))}") from None
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            try:
                return pa.Table.from_pandas(data, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise InvalidInput(f"the data frame does not form a table: {exc}") from exc
    except ImportError:  # pragma: no cover
        pass
    raise InvalidInput(
        f"cannot make a dataset from {type(data).__name__}: pass a file path, an Arrow table, "
        "a Polars or pandas DataFrame, or a list of row dicts"
    )


@dataclass(frozen=True)
class AppendPart:
    """One dataset's rows for :meth:`DatasetService.append_together`: ``table`` appended to
    dataset ``name`` as one new segment (its first version when it has none), recorded as
    coming from ``source`` with ``kind``; ``state`` (where ``source`` stands after these rows)
    is saved with them."""

    name: str
    table: pa.Table
    source: str | None = None
    kind: str = "append"
    state: SourceState | None = None


@dataclass(eq=False)
class _Write:
    """A version about to be committed: what was asked, and what was staged for it (the
    policy applied, the schema conformed to, the stored segment) outside the transaction."""

    name: str
    raw: pa.Table  # checked, before the policy
    append: bool  # True: after the latest version's segments; False: a whole version
    source: str | None
    kind: str
    description: str | None = None
    parents: list[DatasetVersion] = _field(default_factory=list)
    relation: str = "derived"
    state: SourceState | None = None
    new_policy: dict[str, Any] | None = None  # a policy to save with the version (pii=)
    expected_state: Any = ...  # the source state this write was read from (...: unchecked)
    expected_base: Any = ...  # the latest version id it must replace (None: none; ...: any)
    # staged
    policy: dict[str, Any] | None = None
    basis: tuple[tuple[str, str, str | None], ...] | None = None
    table: pa.Table | None = None
    digest: str = ""
    segment: _Segment | None = None
    profile: dict[str, dict[str, Any]] = _field(default_factory=dict)


class _Restage(Exception):
    """Raised in a commit's transaction (rolling it back) when ``write`` was staged against a
    schema or policy that changed meanwhile: stage it again against these, then retry."""

    def __init__(
        self,
        write: _Write,
        policy: dict[str, Any] | None,
        schema: TableSchema | None,
        *,
        need_blob: bool = False,
    ) -> None:
        super().__init__(write.name)
        self.write, self.policy, self.schema, self.need_blob = write, policy, schema, need_blob


def _schema_key(schema: TableSchema) -> tuple[tuple[str, str, str | None], ...]:
    """What :func:`conform` depends on: names, logical and physical types, in order."""
    return tuple((c.name, str(c.type), c.physical) for c in schema.columns)


def _protection(policy: dict[str, Any] | None) -> Any:
    """What applying ``policy`` does to rows: its PII tags and key (None: nothing)."""
    if not has_pii(policy):
        return None
    assert policy is not None
    return (sorted(policy["pii"].items()), policy.get("key"))


def _key_hasher(
    key: str | None, policy: dict[str, Any] | None
) -> Callable[[pa.Array], pa.Array] | None:
    """How an incremental SQL source keeps the values of its ``key`` column in its state: as
    keyed hashes (HMAC-SHA-256 with the dataset's policy key) when the column is PII, so no
    raw value is stored with the source's position or shown by ``mloop data show``."""
    if key is None or not has_pii(policy) or key not in (policy or {})["pii"]:
        return None
    hashing = {"pii": {key: "hash"}, "key": (policy or {}).get("key")}

    def digests(values: pa.Array) -> pa.Array:
        return apply_policy(pa.table({key: values}), hashing).column(0).combine_chunks()

    return digests


@contextlib.contextmanager
def _redacting(policy: dict[str, Any] | None) -> Iterator[None]:
    """For a dataset with PII columns, errors raised inside lose the data values they quote
    (a parser echoing a row, Arrow naming the value it could not convert), and their causes."""
    try:
        yield
    except MloopError as exc:
        if not has_pii(policy):
            raise
        exc.message = redact(exc.message)
        exc.args = (exc.message, *exc.args[1:])
        raise exc from None


def _read_by_column(path: str, columns: Sequence[str] | None) -> pa.Table:
    """A Parquet file's ``columns`` (all by default), each read on its own, two at a time: only
    the compressed bytes of the columns being decoded are in memory besides the result, where
    reading the whole file at once (or mapping it) holds all of them (the peak of a 1M-row,
    12-column read drops from 2.3× the table's size to 1.4×, in the same time)."""
    schema = pq.ParquetFile(path, memory_map=False).schema_arrow
    names = list(dict.fromkeys(columns)) if columns is not None else schema.names
    if len(names) < 2:
        return pq.ParquetFile(path, memory_map=False).read(columns=names)

    def one(name: str) -> pa.Table:
        return pq.ParquetFile(path, memory_map=False).read(columns=[name], use_threads=False)

    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(one, names))
    table = pa.Table.from_arrays(
        [part.column(0) for part in parts],
        schema=pa.schema([part.schema.field(0) for part in parts], metadata=schema.metadata),
    )
    # the compressed pages are freed: hand their memory back rather than keep it in the pool
    pa.default_memory_pool().release_unused()
    return table


class DatasetService:
    """Ingest data into immutable versions; look them up; load them."""

    def __init__(
        self, db: Database, artifacts: ArtifactStore, audit: AuditLog, lineage: LineageStore
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._audit = audit
        self._lineage = lineage

    # -- writing -----------------------------------------------------------------------

    def ingest(
        self,
        source: str | Path | Any,
        *,
        name: str,
        format: str | None = None,
        description: str | None = None,
        append: bool = False,
        pii: dict[str, str] | None = None,
    ) -> DatasetVersion:
        """Make a version of dataset ``name`` from files (CSV, Parquet, JSON Lines) or a frame.

        ``source`` is a path, a glob (``data/*.csv``: every match, in sorted order, as one
        version; all must have one schema), a URL read through fsspec (``s3://``, ``https://``,
        ``memory://``, ``file://``; globs too), or a frame (Arrow, Polars, pandas, row dicts).
        ``append=True`` adds the rows to the latest version as one new segment (they must
        have its schema) instead of making a whole new version. ``pii`` (``{column: hash |
        mask | drop}``) declares PII columns before anything is stored, so even the first
        version is protected.

        Identical content to the latest version returns it and writes nothing; identical to
        an older version, it makes a new latest version sharing that one's segments (no new
        blob). A missing, unreadable, empty or ragged input raises and writes nothing.
        """
        check_name(name)
        policy = self._effective_policy(name, pii)
        if isinstance(source, str | Path) or (
            isinstance(source, list) and source and all(isinstance(s, str | Path) for s in source)
        ):
            with _redacting(policy):
                table, _files = read_files(source, format)
            uri: str | None = source_uri(source)
        else:
            with _redacting(policy):
                table = check_table(to_arrow(source), "the given data")
            uri = None
        if append:
            return self.append(
                name, table, source=uri, kind="ingest", description=description, pii=pii
            )
        return self.write_version(
            name, table, source=uri, kind="ingest", description=description, pii=pii
        )

    def ingest_sql(
        self,
        url: str,
        *,
        name: str,
        table: str | None = None,
        query: str | None = None,
        cursor: str | None = None,
        key: str | None = None,
        append: bool = False,
        pii: dict[str, str] | None = None,
        description: str | None = None,
        chunk_rows: int = 50_000,
    ) -> DatasetVersion:
        """Ingest a table or a query of any SQLAlchemy database, read in chunks.

        With ``cursor`` (a column that grows: an id, ``updated_at``) the read is incremental:
        the first run reads every row and makes version 1; each later run reads only rows whose
        cursor is greater than the greatest one read before, and appends them as a new version
        sharing every earlier segment (storage grows by the new rows only). The cursor is saved
        with the version, in one transaction. Rows that arrive later with a cursor *equal* to
        the last one read are missed, unless ``key`` names a unique column: then rows with
        cursor ≥ the last are read and those already read (by key) are dropped. With no new
        rows the latest version is returned and nothing is written.

        Without ``cursor`` the whole result becomes a new version (identical content: the same
        version), or with ``append=True`` one more segment of the latest version.

        The URL's password is never stored: lineage, source states, the audit log and messages
        carry the URL with ``***`` in its place."""
        check_name(name)
        policy = self._effective_policy(name, pii)
        policies = self._policy_for_write(name, pii)
        source = SqlSource(
            url,
            table=table,
            query=query,
            cursor=cursor,
            key=key,
            chunk_rows=chunk_rows,
            hash_keys=_key_hasher(key, policies[0]),
        )
        before = self.source_state(name, source.name) if cursor else None
        with _redacting(policy):
            read = source.read(before)
        if read.table is None:
            latest = self._latest(name)
            if latest is None:
                raise InvalidInput(f"{source.name} returned no rows: nothing to ingest")
            return latest
        if cursor is not None:
            state = SourceState(source.name, read.state)
            return self._append(
                name,
                read.table,
                source=source.name,
                kind="sql",
                description=description,
                state=state,
                pii=pii,
                expected_state=before,
                policies=policies,
            )
        if append:
            return self.append(
                name, read.table, source=source.name, kind="sql", description=description, pii=pii
            )
        return self.write_version(
            name, read.table, source=source.name, kind="sql", description=description, pii=pii
        )

    def append_rows(
        self, name: str, rows: Any, *, source: str | None = "api:rows"
    ) -> DatasetVersion:
        """Append JSON rows (a list of objects) or an Arrow table to dataset ``name`` (the first
        call makes version 1). Rows must have exactly the dataset's fields, each value of its
        column's type (null allowed): anything else raises :class:`SchemaChanged` listing the
        differences (or :class:`InvalidInput`), naming rows and fields but never values, and
        nothing is written."""
        check_name(name)
        if isinstance(rows, pa.Table):
            table = rows
        else:
            latest = self._latest(name)
            table = rows_to_table(rows, None if latest is None else latest.schema_)
        return self.append(name, table, source=source, kind="rows")

    def protect(self, name: str, table: pa.Table) -> pa.Table:
        """``table`` with dataset ``name``'s PII policy applied (as ingestion would)."""
        policy = self._stored_policy(name)
        return apply_policy(table, policy) if has_pii(policy) else table

    def ingest_bytes(
        self,
        data: bytes,
        *,
        name: str,
        format: str,
        source: str | None = None,
        description: str | None = None,
    ) -> DatasetVersion:
        """Make a version of ``name`` from the bytes of a file (an HTTP upload, say).

        Without a ``source`` the upload is recorded in lineage as ``upload:sha256:<digest>``."""
        check_name(name)
        fmt = detect_format(Path(name), format)
        with _redacting(self._stored_policy(name)):
            table = read_bytes_table(data, fmt, "the request body")
        return self.write_version(
            name,
            table,
            source=source or f"upload:sha256:{hashlib.sha256(data).hexdigest()}",
            kind="ingest",
            description=description,
        )

    def write_version(
        self,
        name: str,
        table: pa.Table,
        *,
        source: str | None = None,
        kind: str = "ingest",
        description: str | None = None,
        parents: builtins.list[DatasetVersion] | None = None,
        relation: str = "derived",
        state: SourceState | None = None,
        pii: dict[str, str] | None = None,
    ) -> DatasetVersion:
        """The door through which data becomes a whole new version (one new segment).

        Content equal to the latest version returns it and writes nothing (the source
        ``state``, when given, still moves on; a new ``pii`` policy is still saved). Content
        equal to an older version makes a new latest version that shares that version's
        segments: nothing new is stored but the version row."""
        check_name(name)
        return self._replace(
            name,
            table,
            source=source,
            kind=kind,
            description=description,
            parents=parents or [],
            relation=relation,
            state=state,
            pii=pii,
        )

    def _replace(
        self,
        name: str,
        table: pa.Table,
        *,
        source: str | None,
        kind: str,
        description: str | None = None,
        parents: builtins.list[DatasetVersion] | None = None,
        relation: str = "derived",
        state: SourceState | None = None,
        pii: dict[str, str] | None = None,
        expected_base: Any = ...,
    ) -> DatasetVersion:
        """:meth:`write_version`; with ``expected_base`` (a version id, or None: no version
        yet) the version is written only while that is the dataset's latest, else
        :class:`Conflict` (a compare-and-swap: rows appended meanwhile are never dropped)."""
        write = self._plan(
            name,
            table,
            append=False,
            source=source,
            kind=kind,
            description=description,
            parents=parents or [],
            relation=relation,
            state=state,
            pii=pii,
            expected_base=expected_base,
        )
        if state is None and write.new_policy is None and expected_base is ...:
            latest = self._latest(name)
            if latest is not None and latest.content_hash == write.digest:
                return latest  # the same content as the latest version: nothing to write
        return self._commit_all([write])[0]

    def append(
        self,
        name: str,
        table: pa.Table,
        *,
        source: str | None = None,
        kind: str = "append",
        description: str | None = None,
        state: SourceState | None = None,
        pii: dict[str, str] | None = None,
    ) -> DatasetVersion:
        """A new version: every segment of the latest version plus one segment of ``table``
        (the first version when the dataset has none).

        Storage grows by the new rows only. The rows must have the latest version's schema
        (same columns, same logical types, any order): a new, missing or retyped column raises
        :class:`SchemaChanged` naming each difference, and nothing is written. ``state`` (where
        the source stands after these rows: a SQL cursor, stream offsets) is saved in the same
        transaction as the version, so data and position never disagree. Concurrent appends
        all land: each extends the version that is latest when it commits."""
        return self._append(
            name, table, source=source, kind=kind, description=description, state=state, pii=pii
        )

    def append_together(self, parts: Sequence[AppendPart]) -> builtins.list[DatasetVersion]:
        """Append to several datasets in one transaction: every part's version, segment and
        source state commits, or none does (e.g. a stream's batch into ``clicks`` and its
        rejected rows into ``clicks.quarantine``). Each part follows the rules of
        :meth:`append`: the dataset's PII policy is applied, the rows must have its latest
        schema (read in the transaction), and a dataset with no version gets its first.
        Returns the new versions in the order of ``parts``. Each dataset appears once; a part
        without rows is refused (leave it out). Segments are stored before the transaction:
        after a failure they are unreferenced blobs, never part of a version."""
        parts = builtins.list(parts)
        if not parts:
            raise InvalidInput("nothing to append: no parts given")
        names = [p.name for p in parts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InvalidInput(
                f"dataset {repeated[0]!r} appears in more than one part: one part per dataset"
            )
        writes = []
        for part in parts:
            check_name(part.name)
            if not isinstance(part.table, pa.Table):
                raise InvalidInput(f"the part for dataset {part.name!r} is not an Arrow table")
            if part.table.num_rows == 0:
                raise InvalidInput(f"nothing to append to dataset {part.name!r}: no rows")
            writes.append(
                self._plan(
                    part.name,
                    part.table,
                    append=True,
                    source=part.source,
                    kind=part.kind,
                    state=part.state,
                )
            )
        return self._commit_all(writes)

    def _append(
        self,
        name: str,
        table: pa.Table,
        *,
        source: str | None,
        kind: str,
        description: str | None,
        state: SourceState | None,
        pii: dict[str, str] | None,
        expected_state: Any = ...,
        policies: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None,
    ) -> DatasetVersion:
        """:meth:`append`; with ``expected_state`` the version is written only if the source's
        saved state is still that (None: no state yet), else :class:`Conflict` — two runs of
        one incremental source never both append the same rows. ``policies``: what
        :meth:`_policy_for_write` gave the caller (a new policy's key is made once)."""
        check_name(name)
        if isinstance(table, pa.Table) and table.num_rows == 0:
            raise InvalidInput(f"nothing to append to dataset {name!r}: no rows")
        write = self._plan(
            name,
            table,
            append=True,
            source=source,
            kind=kind,
            description=description,
            state=state,
            pii=pii,
            expected_state=expected_state,
            policies=policies,
        )
        return self._commit_all([write])[0]

    def write_split(
        self,
        version: DatasetVersion,
        passing: pa.Table | None,
        failing: pl.DataFrame,
        rows: Sequence[int],
        *,
        reason_column: str = "_mloop_reason",
    ) -> tuple[DatasetVersion | None, DatasetVersion]:
        """Split ``version`` (which must be its dataset's latest) in one transaction: the
        ``failing`` rows (at positions ``rows`` of the version, their reasons in
        ``reason_column``) appended to ``NAME.quarantine`` in the quarantine columns a stream
        writes (kind ``validation``, the reason, the row as a JSON object, no partition, its
        position as the offset), and the ``passing`` rows, when any, as a whole new version of
        ``NAME`` written only while ``version`` is still the latest. Returns (the validated
        version or None, the quarantine's version). Raises :class:`Conflict`, writing
        nothing, when ``version`` is not (or stops being) the latest: rows appended since
        would be dropped."""
        name = version.dataset
        if len(rows) != failing.height:
            raise InvalidInput("one position per failing row is needed")
        data = failing.drop(reason_column)
        payloads = data.write_ndjson().splitlines() if data.width else ["{}"] * failing.height
        record = pa.table(
            {
                "_mloop_kind": pa.array(["validation"] * failing.height, pa.string()),
                "_mloop_reason": failing.get_column(reason_column).cast(pl.String).to_arrow(),
                "_mloop_payload": pa.array(payloads, pa.string()),
                "_mloop_partition": pa.nulls(failing.height, pa.int64()),
                "_mloop_offset": pa.array(builtins.list(rows), pa.int64()),
            }
        )
        earlier = self._previous_split(version, passing, record)
        if earlier is not None:
            return earlier  # the same split again: nothing to write
        latest = self.get(name)
        if latest.id != version.id:
            raise Conflict(
                f"{version.ref} is not the latest version of dataset {name!r} ({latest.ref} "
                f"is): splitting it would write a version without the rows added since; "
                f"quarantine {latest.ref} instead"
            )
        writes = [
            self._plan(
                f"{name}{QUARANTINE_SUFFIX}",
                record,
                append=True,
                source=None,
                kind="quarantine",
                parents=[version],
                relation="quarantined",
            )
        ]
        if passing is not None:
            writes.append(
                self._plan(
                    name,
                    passing,
                    append=False,
                    source=None,
                    kind="validated",
                    parents=[version],
                    relation="validated",
                    expected_base=version.id,
                )
            )
        written = self._commit_all(writes)
        return (written[1] if passing is not None else None), written[0]

    def _previous_split(
        self, version: DatasetVersion, passing: pa.Table | None, record: pa.Table
    ) -> tuple[DatasetVersion | None, DatasetVersion] | None:
        """The versions an earlier split of ``version`` into these very rows wrote (its
        quarantine version's own segment holds ``record``, its validated version ``passing``),
        or None."""
        edges = self._lineage.downstream("dataset_version", version.id, depth=1)
        made = {(e.relation, e.dst.id) for e in edges if e.dst.type == "dataset_version"}
        quarantine = f"{version.dataset}{QUARANTINE_SUFFIX}"
        for relation, version_id in sorted(made):
            if relation != "quarantined":
                continue
            found = self.get_by_id(version_id)
            if found.dataset != quarantine:
                continue
            if self._own_segment_hash(found) != self._digest(quarantine, record, found.schema_):
                continue
            if passing is None:
                return None, found
            clean = self._digest(version.dataset, passing, None)
            for other, other_id in sorted(made):
                if other == "validated":
                    candidate = self.get_by_id(other_id)
                    if candidate.content_hash == clean and candidate.dataset == version.dataset:
                        return candidate, found
        return None

    def _own_segment_hash(self, version: DatasetVersion) -> str | None:
        """The content hash of the segment a version added (its last)."""
        if not version.segments:
            return version.content_hash
        d, seg = tables.datasets, tables.dataset_segments
        with self._db.read() as conn:
            found = conn.execute(
                sa.select(seg.c.content_hash)
                .join(d, d.c.id == seg.c.dataset_id)
                .where(d.c.name == version.dataset, seg.c.seq == version.segments[-1][1])
            ).scalar()
        return None if found is None else str(found)

    def _digest(self, name: str, table: pa.Table, schema: TableSchema | None) -> str:
        """The content hash ``table`` would have written to dataset ``name`` (its policy
        applied; conformed to ``schema`` when appended), writing nothing."""
        policy = self._stored_policy(name)
        with _redacting(policy):
            table = check_table(table, f"data for dataset {name!r}")
            table = apply_policy(table, policy) if has_pii(policy) else table
            if schema is not None:
                table = conform(table, schema, name)
        return content_hash(table)

    def _plan(
        self,
        name: str,
        table: pa.Table,
        *,
        append: bool,
        source: str | None,
        kind: str,
        description: str | None = None,
        parents: builtins.list[DatasetVersion] | None = None,
        relation: str = "derived",
        state: SourceState | None = None,
        pii: dict[str, str] | None = None,
        expected_state: Any = ...,
        expected_base: Any = ...,
        policies: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None,
    ) -> _Write:
        """A write, staged: checked, protected by the policy, conformed to the latest schema
        (appends) and its segment stored, ready for :meth:`_commit_all`."""
        policy, new_policy = policies or self._policy_for_write(name, pii)
        with _redacting(policy):
            raw = check_table(table, f"data for dataset {name!r}")
        write = _Write(
            name=name,
            raw=raw,
            append=append,
            source=source,
            kind=kind,
            description=description,
            parents=parents or [],
            relation=relation,
            state=state,
            new_policy=new_policy,
            expected_state=expected_state,
            expected_base=expected_base,
        )
        latest = self._latest(name) if append else None
        self._stage(write, policy, None if latest is None else latest.schema_)
        return write

    def _stage(
        self,
        write: _Write,
        policy: dict[str, Any] | None,
        schema: TableSchema | None,
        *,
        need_blob: bool = False,
    ) -> None:
        """Apply ``policy``, conform an append to ``schema`` (the latest version's; None: it
        will be the first version) and hash; store the segment and profile it, unless the
        staged content is unchanged or (whole versions) stored already as a version."""
        table = apply_policy(write.raw, policy) if has_pii(policy) else write.raw
        if write.append and schema is not None:
            with _redacting(policy):
                table = conform(table, schema, write.name)
        digest = content_hash(table)
        write.policy = policy
        write.basis = _schema_key(schema) if write.append and schema is not None else None
        if digest == write.digest and write.segment is not None:
            write.table = table
            return
        write.table, write.digest, write.segment, write.profile = table, digest, None, {}
        if not write.append and not need_blob and self._find_by_hash(write.name, digest):
            return  # a version holds this content: the new one shares its segments
        write.segment, write.profile = self._segment_and_profile(table, digest)

    def _segment_and_profile(
        self, table: pa.Table, digest_of_content: str
    ) -> tuple[_Segment, dict[str, dict[str, Any]]]:
        """Write the segment and profile the rows at once: both run in native code that
        releases the GIL, so on two cores the version costs about the longer of the two."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            written = pool.submit(self._put_segment, table, digest_of_content)
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            profile = profile_frame(frame)
            return written.result(), profile

    def _put_segment(self, table: pa.Table, digest_of_content: str) -> _Segment:
        # through a temporary file, not memory: a big table's Parquet form is not held twice
        with tempfile.TemporaryFile() as sink:
            dictionary, codecs = _encodings(table)
            pq.write_table(table, sink, compression=codecs, use_dictionary=dictionary)
            size = sink.tell()
            sink.seek(0)
            data_digest = self._artifacts.put_stream(sink)  # blob first: no dangling row
        return _Segment(data_digest, digest_of_content, table.num_rows, size)

    def _commit_all(self, writes: builtins.list[_Write]) -> builtins.list[DatasetVersion]:
        """Commit staged writes in one transaction. What each was staged against (the latest
        schema, the policy) is checked inside it: when another writer changed it meanwhile,
        the write is staged again against what the transaction read, and the transaction
        retried; so is a transaction that lost a race for a version or segment number."""
        for _attempt in range(8):
            try:
                with self._db.write() as conn:
                    return [self._commit_one(conn, write) for write in writes]
            except _Restage as again:
                self._stage(again.write, again.policy, again.schema, need_blob=again.need_blob)
            except DBIntegrityError:
                continue  # a concurrent writer took the number; look again
        names = ", ".join(repr(w.name) for w in writes)
        raise Conflict(f"could not add a version to dataset {names}: too many concurrent writers")

    def _commit_one(self, conn: Connection, write: _Write) -> DatasetVersion:
        dv = tables.dataset_versions
        name = write.name
        dataset_id = self._dataset_id(
            conn, name, create=True, description=write.description, parents=write.parents
        )
        assert dataset_id is not None
        # one writer per dataset at a time (PostgreSQL; SQLite serializes writes anyway): under
        # READ COMMITTED a writer could otherwise read the latest version before another's
        # commit and the next segment number after it, and add the same content twice
        d = tables.datasets
        conn.execute(sa.select(d.c.id).where(d.c.id == dataset_id).with_for_update())
        if write.new_policy is not None:
            self._save_policy(conn, name, write.new_policy)
        policy = self._sync_policy(conn, name)
        if write.state is not None and write.expected_state is not ...:
            self._check_state(conn, name, write.state, write.expected_state)
        base = (
            conn.execute(
                sa.select(dv)
                .where(dv.c.dataset_id == dataset_id)
                .order_by(dv.c.version.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        base_id = None if base is None else base["id"]
        if write.expected_base is not ... and base_id != write.expected_base:
            raise Conflict(
                f"dataset {name!r} moved on while this version was made from "
                f"{'its latest version' if write.expected_base else 'nothing'} (another "
                "writer added a version); nothing was written: run again on the new latest"
            )
        schema = None if base is None else TableSchema.model_validate(base["schema"])
        if _protection(policy) != _protection(write.policy) or (
            write.append and write.basis != (None if schema is None else _schema_key(schema))
        ):
            raise _Restage(write, policy, schema if write.append else None)
        if write.append:
            return self._insert_version(conn, write, dataset_id, base=base)
        if base is not None and base["content_hash"] == write.digest:
            found = _version_from_row(base, name)
            if write.state is not None:
                self._save_state(conn, found, write.state)
            return found
        same = (
            conn.execute(
                sa.select(dv)
                .where(dv.c.dataset_id == dataset_id, dv.c.content_hash == write.digest)
                .order_by(dv.c.version.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if same is None and write.segment is None:
            raise _Restage(write, policy, None, need_blob=True)
        return self._insert_version(conn, write, dataset_id, base=None, reuse=same)

    def _insert_version(
        self,
        conn: Connection,
        write: _Write,
        dataset_id: str,
        *,
        base: RowMapping | None,
        reuse: RowMapping | None = None,
    ) -> DatasetVersion:
        """Add ``write``'s segment and the version holding it (after ``base``'s segments when
        appending); with ``reuse``, a version of an older version's very segments."""
        dv, seg = tables.dataset_versions, tables.dataset_segments
        name, table, segment = write.name, write.table, write.segment
        assert table is not None
        new_rows = 0
        if reuse is None:
            assert segment is not None
            last_seq = conn.execute(
                sa.select(sa.func.max(seg.c.seq)).where(seg.c.dataset_id == dataset_id)
            ).scalar()
            seq = (last_seq or 0) + 1
            conn.execute(
                seg.insert().values(
                    dataset_id=dataset_id,
                    seq=seq,
                    data_digest=segment.data_digest,
                    content_hash=segment.content_hash,
                    row_count=segment.row_count,
                    size_bytes=segment.size_bytes,
                    created_at=now_ms(),
                )
            )
            new_rows = segment.row_count
        latest = conn.execute(
            sa.select(sa.func.max(dv.c.version)).where(dv.c.dataset_id == dataset_id)
        ).scalar()
        version_id = new_id()
        if reuse is not None:
            version_hash, data_digest = reuse["content_hash"], reuse["data_digest"]
            ranges = [builtins.list(r) for r in reuse["segments"] or []]
            rows, size = reuse["row_count"], reuse["size_bytes"]
            schema, profile = reuse["schema"], reuse["profile"]
        else:
            assert segment is not None
            data_digest = segment.data_digest
            if base is None:
                version_hash = segment.content_hash
                ranges = [[seq, seq]]
                rows, size = segment.row_count, segment.size_bytes
                schema = schema_of(table).model_dump(mode="json")
                profile = write.profile
            else:
                version_hash = hashlib.sha256(
                    f"{base['content_hash']}+{segment.content_hash}".encode()
                ).hexdigest()
                ranges = [builtins.list(r) for r in base["segments"] or []]
                if ranges and ranges[-1][1] == seq - 1:
                    ranges[-1][1] = seq
                else:
                    ranges.append([seq, seq])
                rows = base["row_count"] + segment.row_count
                size = base["size_bytes"] + segment.size_bytes
                schema = merged_schema(
                    TableSchema.model_validate(base["schema"]), schema_of(table)
                ).model_dump(mode="json")
                profile = merge_profiles(base["profile"], write.profile)
        row = {
            "id": version_id,
            "dataset_id": dataset_id,
            "version": (latest or 0) + 1,
            "content_hash": version_hash,
            "data_digest": data_digest,
            "row_count": rows,
            "size_bytes": size,
            "schema": schema,
            "profile": profile,
            "source": write.source,
            "kind": write.kind,
            "created_at": now_ms(),
            "created_by": local_actor(),
            "segments": ranges,
            "base_version_id": None if base is None else base["id"],
        }
        conn.execute(dv.insert().values(**row))
        node = ("dataset_version", version_id)
        if write.source:
            self._lineage.add(conn, ("source", write.source), node, "ingested")
        if base is not None:
            self._lineage.add(conn, ("dataset_version", base["id"]), node, "appended")
        if reuse is not None:
            self._lineage.add(conn, ("dataset_version", reuse["id"]), node, "same_content")
        for parent in write.parents:
            self._lineage.add(conn, ("dataset_version", parent.id), node, write.relation)
        self._audit.record(
            conn,
            "dataset.version.create",
            "dataset_version",
            f"{name}@{row['version']}",
            {"rows": rows, "new_rows": new_rows, "kind": write.kind, "source": write.source},
        )
        version = _version_from_row(row, name)  # type: ignore[arg-type]
        if write.state is not None:
            self._save_state(conn, version, write.state)
        return version

    # -- incremental sources ---------------------------------------------------------------

    def _check_state(
        self, conn: Connection, name: str, state: SourceState, expected: dict[str, Any] | None
    ) -> None:
        st, d = tables.source_states, tables.datasets
        current = conn.execute(
            sa.select(st.c.state)
            .join(d, d.c.id == st.c.dataset_id)
            .where(d.c.name == name, st.c.source_key == state.key)
        ).scalar()
        if (None if current is None else dict(current)) != expected:
            raise Conflict(
                f"{state.source} moved on while these rows were read (another run ingested "
                f"into dataset {name!r}); nothing was written: run again"
            )

    def _save_state(self, conn: Connection, version: DatasetVersion, state: SourceState) -> None:
        st, d = tables.source_states, tables.datasets
        dataset_id = conn.execute(sa.select(d.c.id).where(d.c.name == version.dataset)).scalar()
        key = state.key
        values = {
            "source": state.source,
            "state": state.state,
            "version_id": version.id,
            "updated_at": now_ms(),
        }
        done = conn.execute(
            st.update()
            .where(st.c.dataset_id == dataset_id, st.c.source_key == key)
            .values(**values)
            .returning(st.c.source_key)
        ).first()
        if done is None:
            conn.execute(st.insert().values(dataset_id=dataset_id, source_key=key, **values))

    def source_state(self, name: str, source: str) -> dict[str, Any] | None:
        """Where ``source`` stood for dataset ``name`` when its last version was written."""
        check_name(name)
        st, d = tables.source_states, tables.datasets
        with self._db.read() as conn:
            found = conn.execute(
                sa.select(st.c.state)
                .join(d, d.c.id == st.c.dataset_id)
                .where(d.c.name == name, st.c.source_key == SourceState.key_of(source))
            ).scalar()
        return None if found is None else dict(found)

    def source_states(self, name: str) -> builtins.list[dict[str, Any]]:
        check_name(name)
        st, d = tables.source_states, tables.datasets
        with self._db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(st.c.source, st.c.state, st.c.version_id, st.c.updated_at)
                    .join(d, d.c.id == st.c.dataset_id)
                    .where(d.c.name == name)
                    .order_by(st.c.source)
                )
                .mappings()
                .all()
            )
        return [
            {
                "source": r["source"],
                "state": r["state"],
                "version_id": r["version_id"],
                "updated_at": from_ms(r["updated_at"]).isoformat(),
            }
            for r in rows
        ]

    # -- policy (PII) ----------------------------------------------------------------------

    def set_policy(self, name: str, pii: dict[str, str]) -> dict[str, Any]:
        """Declare PII columns of dataset ``name`` and what ingestion does to them: ``hash``
        (keyed SHA-256, so equal values still join), ``mask`` (all but the last 4 characters
        become ``*``) or ``drop`` (the value becomes null). Applies to every later write; to
        protect the first version too, declare them before it (here, or ``pii=`` at ingest).

        Returns the policy without its key, which never leaves the metadata database."""
        check_name(name)
        policy = make_policy(pii, self._stored_policy(name))
        with self._db.write() as conn:
            self._dataset_id(conn, name, create=True)
            self._save_policy(conn, name, policy)
        return public_policy(policy)

    def policy(self, name: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        """Dataset ``name``'s PII policy, ``{"pii": {column: action}}`` (never the key), or None
        when it has none."""
        check_name(name)
        d = tables.datasets
        with self._db.read() as conn:
            row = conn.execute(sa.select(d.c.id, d.c.policy).where(d.c.name == name)).first()
        if row is None and not missing_ok:
            raise NotFound(f"dataset {name!r} does not exist")
        return None if row is None or row.policy is None else public_policy(row.policy)

    def _stored_policy(self, name: str) -> dict[str, Any] | None:
        """The policy with its hashing key: for this service only. ``X.quarantine`` has
        ``X``'s current PII tags too (merged into its own at every write): whoever writes
        rejected rows there, and whenever ``X``'s policy changed, they are protected."""
        with self._db.read() as conn:
            return self._policy_in(conn, name)

    def _policy_in(self, conn: Connection, name: str) -> dict[str, Any] | None:
        d = tables.datasets
        found = conn.execute(sa.select(d.c.policy).where(d.c.name == name)).scalar()
        own = None if found is None else dict(found)
        if not name.endswith(QUARANTINE_SUFFIX):
            return own
        parent = self._policy_in(conn, name.removesuffix(QUARANTINE_SUFFIX))
        if not has_pii(parent):
            return own
        assert parent is not None
        if own is None:
            return parent
        pii = {**own.get("pii", {}), **parent["pii"]}  # the dataset's current actions win
        return {"pii": dict(sorted(pii.items())), "key": own.get("key") or parent.get("key")}

    def _sync_policy(self, conn: Connection, name: str) -> dict[str, Any] | None:
        """In a write's transaction: the policy its rows must have been protected by, saved
        with the dataset when it changed (a quarantine taking its dataset's new PII tags)."""
        policy = self._policy_in(conn, name)
        if policy is not None and name.endswith(QUARANTINE_SUFFIX):
            self._save_policy(conn, name, policy)
        return policy

    def _effective_policy(self, name: str, pii: dict[str, str] | None) -> dict[str, Any] | None:
        """Which columns a write will protect (no key): to know whether messages need redacting."""
        stored = public_policy(self._stored_policy(name))["pii"]
        merged = {**stored, **(pii or {})}
        return {"pii": merged} if merged else None

    def _policy_for_write(
        self, name: str, pii: dict[str, str] | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the policy to apply, the policy to save with the version or None when unchanged)."""
        stored = self._stored_policy(name)
        if not pii:
            return stored, None
        policy = make_policy(pii, stored)
        return policy, (None if policy == stored else policy)

    def _save_policy(self, conn: Connection, name: str, policy: dict[str, Any]) -> None:
        d = tables.datasets
        current = conn.execute(sa.select(d.c.policy).where(d.c.name == name)).scalar()
        if current is not None and dict(current) == policy:
            return
        conn.execute(d.update().where(d.c.name == name).values(policy=policy))
        self._audit.record(conn, "dataset.policy.set", "dataset", name, public_policy(policy))

    def _inherited_policy(
        self, conn: Connection, parents: builtins.list[DatasetVersion]
    ) -> dict[str, Any] | None:
        """A derived dataset (quarantine, validated, transformed) keeps its parents' PII tags,
        so rows appended to it later are protected like theirs."""
        d = tables.datasets
        names = sorted({p.dataset for p in parents})
        if not names:
            return None
        found = [
            dict(p)
            for p in conn.execute(
                sa.select(d.c.policy).where(d.c.name.in_(names)).order_by(d.c.name)
            ).scalars()
            if p
        ]
        if not found:
            return None
        pii: dict[str, str] = {}
        for policy in found:
            pii.update(policy.get("pii", {}))
        return {"pii": dict(sorted(pii.items())), "key": found[0].get("key")}

    def _dataset_id(
        self,
        conn: Connection,
        name: str,
        *,
        create: bool,
        description: str | None = None,
        parents: builtins.list[DatasetVersion] | None = None,
    ) -> str | None:
        d = tables.datasets
        found = conn.execute(sa.select(d.c.id).where(d.c.name == name)).scalar()
        if found is not None or not create:
            return found
        dataset_id = new_id()
        # a quarantine takes its dataset's policy at every write (_sync_policy)
        policy = self._inherited_policy(conn, parents) if parents else None
        conn.execute(
            d.insert().values(
                id=dataset_id,
                name=name,
                description=description,
                created_at=now_ms(),
                policy=policy,
            )
        )
        self._audit.record(conn, "dataset.create", "dataset", name)
        if policy is not None:
            self._audit.record(conn, "dataset.policy.set", "dataset", name, public_policy(policy))
        return dataset_id

    def _latest(self, name: str) -> DatasetVersion | None:
        try:
            return self.get(name)
        except NotFound:
            return None

    def _find_by_hash(self, name: str, digest: str) -> DatasetVersion | None:
        d, dv = tables.datasets, tables.dataset_versions
        with self._db.read() as conn:
            row = (
                conn.execute(
                    sa.select(dv)
                    .join(d, d.c.id == dv.c.dataset_id)
                    .where(d.c.name == name, dv.c.content_hash == digest)
                )
                .mappings()
                .first()
            )
        return None if row is None else _version_from_row(row, name)

    # -- reading -----------------------------------------------------------------------

    def get(self, ref: str) -> DatasetVersion:
        """Resolve ``NAME``, ``NAME@latest``, ``NAME@N`` or ``NAME@<ISO time>`` (the version
        that was latest at that time: time travel) to a version."""
        name, version = parse_ref(ref)
        d, dv = tables.datasets, tables.dataset_versions
        with self._db.read() as conn:
            dataset_id = conn.execute(sa.select(d.c.id).where(d.c.name == name)).scalar()
            if dataset_id is None:
                raise NotFound(f"dataset {name!r} does not exist")
            query = sa.select(dv).where(dv.c.dataset_id == dataset_id)
            instant = None if version is None else parse_instant(version)
            if version in (None, "latest"):
                query = query.order_by(dv.c.version.desc()).limit(1)
            elif instant is not None:
                row = (
                    conn.execute(
                        query.where(dv.c.created_at <= int(instant.timestamp() * 1000))
                        .order_by(dv.c.version.desc())
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    raise NotFound(
                        f"dataset {name!r} has no version at or before {instant.isoformat()}"
                    )
                return _version_from_row(row, name)
            else:
                digits = version[1:] if version[:1] == "v" else version
                if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
                    raise NotFound(
                        f"dataset {name!r} has no version {version!r}; "
                        f"use {name}@N or {name}@latest"
                    )
                query = query.where(dv.c.version == int(digits))
            row = conn.execute(query).mappings().first()
            if row is None:
                latest = conn.execute(
                    sa.select(sa.func.max(dv.c.version)).where(dv.c.dataset_id == dataset_id)
                ).scalar()
                raise NotFound(
                    f"dataset {name!r} has no version {version}"
                    + (f" (latest is {latest})" if latest else " (it has no versions)")
                )
        return _version_from_row(row, name)

    def dataset_name_of(self, version_id: str) -> str | None:
        """The name of the dataset version ``version_id`` belongs to (None: no such version)."""
        d, dv = tables.datasets, tables.dataset_versions
        with self._db.read() as conn:
            found = conn.execute(
                sa.select(d.c.name).join(dv, dv.c.dataset_id == d.c.id).where(dv.c.id == version_id)
            ).scalar()
        return None if found is None else str(found)

    def get_by_id(self, version_id: str) -> DatasetVersion:
        d, dv = tables.datasets, tables.dataset_versions
        with self._db.read() as conn:
            row = (
                conn.execute(
                    sa.select(dv, d.c.name.label("dataset_name"))
                    .join(d, d.c.id == dv.c.dataset_id)
                    .where(dv.c.id == version_id)
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"dataset version {version_id!r} does not exist")
        return _version_from_row(row, row["dataset_name"])

    def list(self) -> builtins.list[Dataset]:
        d, dv = tables.datasets, tables.dataset_versions
        query = (
            sa.select(
                d,
                sa.func.max(dv.c.version).label("latest"),
                sa.func.count(dv.c.id).label("n"),
            )
            .select_from(d.outerjoin(dv, dv.c.dataset_id == d.c.id))
            .group_by(d.c.id)
            .order_by(d.c.name)
        )
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Dataset(
                id=r["id"],
                name=r["name"],
                description=r["description"],
                created_at=from_ms(r["created_at"]),
                latest_version=r["latest"],
                version_count=r["n"],
            )
            for r in rows
        ]

    def versions(self, name: str) -> builtins.list[DatasetVersion]:
        check_name(name)
        d, dv = tables.datasets, tables.dataset_versions
        with self._db.read() as conn:
            dataset_id = conn.execute(sa.select(d.c.id).where(d.c.name == name)).scalar()
            if dataset_id is None:
                raise NotFound(f"dataset {name!r} does not exist")
            rows = (
                conn.execute(
                    sa.select(dv).where(dv.c.dataset_id == dataset_id).order_by(dv.c.version)
                )
                .mappings()
                .all()
            )
        return [_version_from_row(r, name) for r in rows]

    def load(
        self,
        ref: str | DatasetVersion,
        *,
        columns: Sequence[str] | None = None,
        segments: Collection[int] | None = None,
    ) -> pa.Table:
        """The version's rows as an Arrow table: its segments in order (each hash-checked).
        ``columns`` reads only those columns; ``segments`` only those segment numbers (of the
        version's own; a version without segments is one segment, numbered 1)."""
        version = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        digests = self.segment_digests(version, segments)
        wanted = list(columns) if columns is not None else None
        # a small segment through a zero-copy buffer reader (several times faster than a
        # file-like object); a large one column by column from its file
        parts = [
            self._artifacts.read_checked(
                d,
                lambda data: pq.ParquetFile(pa.py_buffer(data)).read(columns=wanted),
                file_reader=lambda path: _read_by_column(path, wanted),
            )
            for d in digests
        ]
        if not parts:  # no segment asked for: no rows, the version's columns
            first = self.segment_digests(version)[0]
            return pq.read_table(io.BytesIO(self._artifacts.get_bytes(first)), columns=wanted)[:0]
        if len(parts) == 1:
            return parts[0]
        return pa.concat_tables(parts, promote_options="permissive")

    def segment_digests(
        self, version: DatasetVersion, only: Collection[int] | None = None
    ) -> builtins.list[str]:
        """The Parquet blobs (artifact digests) of a version's segments, in order."""
        if not version.segments:
            return [version.data_digest] if only is None or 1 in only else []
        d, seg = tables.datasets, tables.dataset_segments
        numbers = version.segment_numbers()
        if only is not None:
            numbers = [n for n in numbers if n in only]
        with self._db.read() as conn:
            dataset_id = conn.execute(sa.select(d.c.id).where(d.c.name == version.dataset)).scalar()
            found: dict[int, str] = {}
            for first, last in version.segments:
                found.update(
                    conn.execute(
                        sa.select(seg.c.seq, seg.c.data_digest).where(
                            seg.c.dataset_id == dataset_id, seg.c.seq.between(first, last)
                        )
                    ).all()
                )
        return [found[n] for n in numbers]

    def segments(self, ref: str | DatasetVersion) -> builtins.list[dict[str, Any]]:
        """Each segment of a version: its number, rows, bytes and when it was written."""
        version = ref if isinstance(ref, DatasetVersion) else self.get(ref)
        d, seg = tables.datasets, tables.dataset_segments
        with self._db.read() as conn:
            dataset_id = conn.execute(sa.select(d.c.id).where(d.c.name == version.dataset)).scalar()
            rows: builtins.list[Any] = []
            for first, last in version.segments:
                rows += (
                    conn.execute(
                        sa.select(seg)
                        .where(seg.c.dataset_id == dataset_id, seg.c.seq.between(first, last))
                        .order_by(seg.c.seq)
                    )
                    .mappings()
                    .all()
                )
        return [
            {
                "segment": r["seq"],
                "rows": r["row_count"],
                "bytes": r["size_bytes"],
                "data_digest": r["data_digest"],
                "created_at": from_ms(r["created_at"]).isoformat(),
            }
            for r in rows
        ]

    def diff(self, old: str | DatasetVersion, new: str | DatasetVersion) -> dict[str, Any]:
        """What changed between two versions: schema, rows, shared segments, profile deltas."""
        a = old if isinstance(old, DatasetVersion) else self.get(old)
        b = new if isinstance(new, DatasetVersion) else self.get(new)
        return diff_versions(a, b)

    def load_polars(self, ref: str | DatasetVersion) -> pl.DataFrame:
        frame = pl.from_arrow(self.load(ref))
        assert isinstance(frame, pl.DataFrame)
        return frame
