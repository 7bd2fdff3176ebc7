"""From a batch of raw messages to typed rows: JSON parsing, schema fit, ids, duplicates.

A batch is parsed in one go: the payloads are joined into newline-delimited JSON and read by
Arrow's multithreaded JSON reader against the dataset's schema (on a dataset's first batch,
the schema Arrow infers; JSON Lines ingestion infers the same). Only when that fails does the
batch split in halves, recursively, until each message that does not parse or fit stands
alone and gets its reason — so a clean batch costs one parse, and k bad messages cost about
log2(n) parses more. Nothing is coerced: a number where the dataset has a string, a field the
dataset does not have, a message that is not a JSON object, or one without an id is rejected
with a reason, never dropped or converted.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mloop.core.lazy import lazy_module
from mloop.data.types import logical_type

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pajson
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pl = lazy_module("polars")
    pajson = lazy_module("pyarrow.json")

INVALID_JSON = "invalid_json"
MISSING_ID = "missing_id"
SCHEMA = "schema"
VALIDATION = "validation"
KINDS = (INVALID_JSON, MISSING_ID, SCHEMA, VALIDATION)
BLOCK_SIZE = 1 << 20


@dataclass
class Parsed:
    """The rows that parsed and fit, which message each came from, and the rejects."""

    table: pa.Table | None
    index: np.ndarray  # message index of each row of ``table``
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (index, kind, reason)
    schema: pa.Schema | None = None


def _loads(payload: bytes) -> Any:
    return json.loads(payload)  # the slow path only: a batch is parsed by Arrow


JSON_ERRORS = (ValueError, UnicodeDecodeError, RecursionError)  # JSONDecodeError is a ValueError


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _accepts(dtype: pa.DataType) -> frozenset[str] | None:
    """The JSON kinds a column of ``dtype`` takes (None: anything, let Arrow judge)."""
    if pa.types.is_boolean(dtype):
        return frozenset({"boolean"})
    if pa.types.is_integer(dtype):
        return frozenset({"integer"})
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return frozenset({"integer", "float"})
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return frozenset({"string"})
    if pa.types.is_temporal(dtype):
        return frozenset({"string"})
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return frozenset({"array"})
    if pa.types.is_struct(dtype):
        return frozenset({"object"})
    if pa.types.is_null(dtype):
        return frozenset()
    return None


def explain(payload: bytes, schema: pa.Schema | None, error: str | None = None) -> tuple[str, str]:
    """Why one message does not make a row: (kind, human reason)."""
    try:
        value = _loads(payload)
    except JSON_ERRORS as exc:
        return INVALID_JSON, f"not valid JSON: {exc}"
    if not isinstance(value, dict):
        return INVALID_JSON, f"not a JSON object but {_kind(value)}"
    if schema is not None:
        extra = [k for k in value if schema.get_field_index(k) < 0]
        if extra:
            names = ", ".join(repr(k) for k in extra[:5])
            return SCHEMA, f"unexpected field {names}: not a column of the dataset (schema change)"
        for f in schema:
            got = value.get(f.name)
            if got is None:
                continue
            accepted = _accepts(f.type)
            if accepted is not None and _kind(got) not in accepted:
                return SCHEMA, (
                    f"field {f.name!r} is {_kind(got)}, "
                    f"the dataset's column is {logical_type(f.type)}"
                )
    if payload.count(b"\n") or payload.count(b"\r"):
        return INVALID_JSON, "a message holding several lines"
    detail = (error or "it does not parse as one row").removeprefix("JSON parse error: ")
    return SCHEMA, f"does not fit the dataset's columns: {_UNQUOTE.sub('', detail)}"


# reasons name fields, never values (the message itself is in the quarantine, protected like
# the dataset's columns when they are PII): Arrow quotes what it could not convert
_UNQUOTE = re.compile(r"(?<=couldn't parse):.*", re.S)


def _read(data: bytes, schema: pa.Schema | None, block_size: int) -> pa.Table:
    parse = (
        pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        if schema is not None
        else None
    )
    return pajson.read_json(
        io.BytesIO(data),
        read_options=pajson.ReadOptions(block_size=block_size),
        parse_options=parse,
    )


class _Parser:
    def __init__(self, payloads: Sequence[bytes], schema: pa.Schema | None) -> None:
        self.payloads = payloads
        self.schema = schema
        longest = max((len(p) for p in payloads), default=0)
        self.block_size = max(BLOCK_SIZE, longest + 2)
        self.tables: list[pa.Table] = []
        self.ranges: list[np.ndarray] = []
        self.rejected: list[tuple[int, str, str]] = []

    def run(self, positions: np.ndarray, chunk: bytes | None = None) -> None:
        """Parse the messages at ``positions`` (joined: ``chunk``); a failing chunk splits in
        halves."""
        n = len(positions)
        if n == 0:
            return
        if chunk is None:
            chunk = b"\n".join([self.payloads[i] for i in positions])
        error = None
        try:
            table = _read(chunk, self.schema, self.block_size)
            if table.num_rows == n:
                self.tables.append(table)
                self.ranges.append(positions)
                return
            error = f"{table.num_rows} rows from {n} messages"
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, ValueError) as exc:
            error = str(exc)
        if n == 1:
            i = int(positions[0])
            kind, reason = explain(self.payloads[i], self.schema, error)
            self.rejected.append((i, kind, reason))
            return
        mid = n // 2
        self.run(positions[:mid])
        self.run(positions[mid:])


def parse_batch(payloads: Sequence[bytes], schema: pa.Schema | None, id_field: str) -> Parsed:
    """Parse messages into rows of ``schema`` (inferred from the batch when None)."""
    n = len(payloads)
    rejected: list[tuple[int, str, str]] = []
    candidates = np.arange(n, dtype=np.int64)
    payloads = list(payloads)
    joined = b"\n".join(payloads)
    try:
        joined.decode("utf-8")  # Arrow's JSON reader would take invalid UTF-8 into strings
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if not utf8 or joined.count(b"\n") != n - 1 or b"\r" in joined:
        candidates, payloads = _screen(payloads, rejected)
        joined = b"\n".join([payloads[i] for i in candidates])
    if schema is None:
        table = None
        if len(candidates):
            try:
                table = _read(joined, None, max(BLOCK_SIZE, max(map(len, payloads)) + 2))
            except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, ValueError):
                table = None
        if table is not None and table.num_rows == len(candidates):
            schema = _plain(table.schema)
            return _with_ids(Parsed(table, candidates, rejected, schema), id_field)
        schema = infer_schema([payloads[i] for i in candidates])
        if schema is None:
            for i in candidates:
                kind, reason = explain(payloads[i], None)
                rejected.append((int(i), kind, reason))
            return Parsed(None, np.zeros(0, dtype=np.int64), rejected, None)
        joined = b""  # the schema differs from what a plain read saw: parse again
    parser = _Parser(payloads, schema)
    parser.run(candidates, joined or None)
    rejected.extend(parser.rejected)
    if not parser.tables:
        return Parsed(None, np.zeros(0, dtype=np.int64), rejected, schema)
    table = parser.tables[0] if len(parser.tables) == 1 else pa.concat_tables(parser.tables)
    index = parser.ranges[0] if len(parser.ranges) == 1 else np.concatenate(parser.ranges)
    return _with_ids(Parsed(table, index, rejected, schema), id_field)


def _screen(
    payloads: list[bytes], rejected: list[tuple[int, str, str]]
) -> tuple[np.ndarray, list[bytes]]:
    """Reject messages that are not UTF-8; messages holding line breaks: valid JSON keeps them
    only as whitespace between tokens (a string cannot hold a raw line break), so they become
    spaces; invalid ones are rejected."""
    keep = []
    out = list(payloads)
    for i, p in enumerate(payloads):
        try:
            p.decode("utf-8")
        except UnicodeDecodeError as exc:
            rejected.append((i, INVALID_JSON, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
            continue
        if b"\n" in p or b"\r" in p:
            try:
                _loads(p)
            except JSON_ERRORS:
                kind, reason = explain(p, None)
                rejected.append((i, kind, reason))
                continue
            out[i] = p.replace(b"\r", b" ").replace(b"\n", b" ")
        keep.append(i)
    return np.asarray(keep, dtype=np.int64), out


def _with_ids(parsed: Parsed, id_field: str) -> Parsed:
    """Reject rows without an id (the field absent or null)."""
    table = parsed.table
    assert table is not None
    if table.schema.get_field_index(id_field) < 0:
        reason = f"no id: the field {id_field!r} is missing"
        parsed.rejected.extend((int(i), MISSING_ID, reason) for i in parsed.index)
        parsed.table, parsed.index = None, np.zeros(0, dtype=np.int64)
        return parsed
    ids = table.column(id_field)
    if pa.types.is_nested(ids.type) or pa.types.is_null(ids.type):
        reason = f"the id field {id_field!r} holds {ids.type}, not a number or a string"
        parsed.rejected.extend((int(i), MISSING_ID, reason) for i in parsed.index)
        parsed.table, parsed.index = None, np.zeros(0, dtype=np.int64)
        return parsed
    if ids.null_count:
        valid = ids.is_valid()
        missing = np.flatnonzero(~np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool))
        reason = f"no id: the field {id_field!r} is missing or null"
        parsed.rejected.extend((int(parsed.index[r]), MISSING_ID, reason) for r in missing)
        parsed.table = table.filter(valid)
        parsed.index = np.delete(parsed.index, missing)
    return parsed


def _plain(schema: pa.Schema) -> pa.Schema:
    return schema.remove_metadata()


def infer_schema(payloads: Sequence[bytes]) -> pa.Schema | None:
    """The schema of a batch whose rows disagree: per field, the kind most messages have;
    Arrow infers the types from the messages that agree with every majority."""
    objects: list[tuple[bytes, dict[str, Any]]] = []
    for p in payloads:
        try:
            value = _loads(p)
        except JSON_ERRORS:
            continue
        if isinstance(value, dict):
            objects.append((p, value))
    if not objects:
        return None
    counts: dict[str, Counter[str]] = {}
    for _, value in objects:
        for key, item in value.items():
            kind = _kind(item)
            if kind != "null":
                counts.setdefault(key, Counter())[
                    "number" if kind in ("integer", "float") else kind
                ] += 1
            else:
                counts.setdefault(key, Counter())
    majority = {k: (c.most_common(1)[0][0] if c else "null") for k, c in counts.items()}

    def agrees(value: dict[str, Any]) -> bool:
        for key, item in value.items():
            kind = _kind(item)
            if kind == "null":
                continue
            if ("number" if kind in ("integer", "float") else kind) != majority[key]:
                return False
        return True

    agreeing = [p for p, value in objects if agrees(value)]
    try:
        table = _read(b"\n".join(agreeing), None, max(BLOCK_SIZE, max(map(len, agreeing)) + 2))
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
        simple = {"number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}
        fields = [pa.field(k, simple.get(kind, pa.null())) for k, kind in majority.items()]
        return pa.schema(fields)
    order = {k: i for i, k in enumerate(counts)}
    fields = sorted(table.schema, key=lambda f: order.get(f.name, len(order)))
    return pa.schema(fields)


class DedupWindow:
    """The ids of the last ``size`` rows written: a message whose id is among them, or earlier
    in the same batch, is a duplicate. Ids are kept as Arrow arrays (8 bytes an integer id, a
    string's length and 4 bytes a string id) and checked with one hash lookup per batch."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self._chunks: deque[pa.Array] = deque()
        self._count = 0
        self._values: pa.Array | None = None

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: Any) -> bool:
        return bool(self._count) and bool(self._known(pa.array([key]))[0])

    def _known(self, ids: pa.Array) -> np.ndarray:
        if not self._count:
            return np.zeros(len(ids), dtype=bool)
        if self._values is None:
            self._values = pa.concat_arrays(list(self._chunks))
        values = self._values
        if values.type != ids.type:
            values = values.cast(ids.type)
        found = pc.is_in(ids, value_set=values)
        return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)

    def check(self, ids: Any) -> np.ndarray:
        """Per id, whether it is new (not in the window, not earlier in this batch)."""
        array = _array(ids)
        first = pl.Series(array).is_first_distinct().to_numpy()
        return np.asarray(first & ~self._known(array), dtype=bool)

    def add(self, ids: Any) -> None:
        if not self.size:
            return
        array = _array(ids)
        if not len(array):
            return
        self._chunks.append(array)
        self._count += len(array)
        while self._count > self.size:
            excess = self._count - self.size
            oldest = self._chunks[0]
            if len(oldest) <= excess:
                self._chunks.popleft()
                self._count -= len(oldest)
            else:
                self._chunks[0] = oldest.slice(excess)
                self._count -= excess
        self._values = None


def _array(ids: Any) -> pa.Array:
    if isinstance(ids, pa.ChunkedArray):
        return ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    if isinstance(ids, pa.Array):
        return ids
    return pa.array(list(ids))
