"""PII policy: columns tagged PII are hashed, masked or dropped before data is stored, profiled,
validated or reported, so raw values never reach a version, a profile, a report or a log."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from typing import TYPE_CHECKING, Any

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

ACTIONS = ("hash", "mask", "drop")
MASK_KEEP = 4
HASHED = "^[0-9a-f]{64}$"  # what ``hash`` makes: a value already like it is left as it is
# quarantines keep the message a row came from and why it was refused: both can hold PII
PAYLOAD_COLUMN = "_mloop_payload"
REASON_COLUMN = "_mloop_reason"


def make_policy(pii: dict[str, str], current: dict[str, Any] | None) -> dict[str, Any]:
    """A stored policy from ``{column: action}``; the hashing key is made once per dataset
    and kept, so a value hashes the same in every version (joins still work)."""
    if not isinstance(pii, dict) or not pii:
        raise InvalidInput("give at least one PII column, as {column: 'hash' | 'mask' | 'drop'}")
    for column, action in pii.items():
        if not isinstance(column, str) or not column:
            raise InvalidInput(f"PII column name {column!r} is not a name")
        if action not in ACTIONS:
            raise InvalidInput(
                f"PII action {action!r} for column {column!r} is not one of {', '.join(ACTIONS)}"
            )
    key = (current or {}).get("key") or secrets.token_hex(32)
    return {"pii": dict(sorted({**(current or {}).get("pii", {}), **pii}.items())), "key": key}


def public_policy(policy: dict[str, Any] | None) -> dict[str, Any]:
    """The policy without its secret key."""
    return {"pii": dict((policy or {}).get("pii", {}))}


def has_pii(policy: dict[str, Any] | None) -> bool:
    return bool((policy or {}).get("pii"))


def parse_pii(items: list[str] | None) -> dict[str, str]:
    """``["email=hash", "phone=mask"]`` (as typed on the command line) → ``{column: action}``."""
    pii: dict[str, str] = {}
    for item in items or []:
        column, sep, action = item.partition("=")
        if not sep or not column.strip():
            raise InvalidInput(
                f"--pii {item!r}: write COLUMN=ACTION, ACTION one of {', '.join(ACTIONS)}"
            )
        pii[column.strip()] = action.strip().lower()
    return pii


_REDACTIONS = [
    # a CSV parser echoes the offending row after "Expected N columns, got M:"
    (re.compile(r"(Expected \d+ columns?, got \d+):.*", re.S), r"\1"),
    (re.compile(r"(invalid value) '[^']*'"), r"\1 (redacted)"),
    (re.compile(r"Could not convert .*? with type"), "Could not convert a value with type"),
    (re.compile(r"(Failed to parse string):? '[^']*'"), r"\1 (redacted)"),
]


def redact(message: str) -> str:
    """``message`` (a parser's or Arrow's) without the values it quotes from the data."""
    for pattern, replacement in _REDACTIONS:
        message = pattern.sub(replacement, message)
    return message


def apply_policy(table: pa.Table, policy: dict[str, Any] | None) -> pa.Table:
    """``table`` with each PII column present hashed, masked or nulled.

    Applying a policy twice changes nothing more (rows read back from a protected version and
    written again — quarantine, validated or derived versions — are not hashed twice): masking
    and dropping are idempotent, and hashing leaves values that are already 64 hex digits."""
    pii: dict[str, str] = (policy or {}).get("pii", {})
    key = bytes.fromhex(policy["key"]) if policy and policy.get("key") else b""
    for column, action in pii.items():
        if column not in table.column_names:
            continue
        index = table.column_names.index(column)
        values = table.column(index)
        if action == "drop":
            new = pa.nulls(len(values), type=pa.string())
        else:
            strings = values.cast(pa.string()).combine_chunks()
            new = _hash(strings, key) if action == "hash" else _mask(strings)
        table = table.set_column(index, pa.field(column, pa.string()), new)
    if pii and PAYLOAD_COLUMN in table.column_names:
        index = table.column_names.index(PAYLOAD_COLUMN)
        payloads = table.column(index).cast(pa.string()).to_pylist()
        protected = [_protect_payload(p, pii, key) for p in payloads]
        table = table.set_column(index, PAYLOAD_COLUMN, pa.array(protected, pa.string()))
    if pii and REASON_COLUMN in table.column_names:
        index = table.column_names.index(REASON_COLUMN)
        reasons = table.column(index).cast(pa.string()).to_pylist()
        redacted = [None if r is None else redact(r) for r in reasons]
        table = table.set_column(index, REASON_COLUMN, pa.array(redacted, pa.string()))
    return table


def _protect_payload(text: str | None, pii: dict[str, str], key: bytes) -> str | None:
    """A raw message (JSON) with its PII fields protected like the columns; a message that is
    not a JSON object cannot be protected field by field, so it is not kept (None)."""
    if text is None:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    for field, action in pii.items():
        value = message.get(field)
        if value is None:
            continue
        if action == "drop" or isinstance(value, dict | list):
            message[field] = None
            continue
        raw = str(value).lower() if isinstance(value, bool) else str(value)
        if action == "hash":
            message[field] = _hash(pa.array([raw], pa.string()), key)[0].as_py()
        else:
            message[field] = _mask(pa.array([raw], pa.string()))[0].as_py()
    return json.dumps(message, separators=(",", ":"))


def _hash(strings: pa.Array, key: bytes) -> pa.Array:
    # one HMAC per distinct value: columns of emails or ids repeat a lot
    encoded = strings.dictionary_encode()
    hashed = re.compile(HASHED)
    digests = [
        None
        if v is None
        else v
        if hashed.match(v)
        else hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
        for v in encoded.dictionary.to_pylist()
    ]
    return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(digests, pa.string())).cast(
        pa.string()
    )


def _mask(strings: pa.Array) -> pa.Array:
    # up to 4 characters: all masked; longer: all but the last 4
    length = pc.utf8_length(strings)
    short = pc.less_equal(length, MASK_KEEP)
    hidden = pc.if_else(short, length, pc.subtract(length, MASK_KEEP))
    stars = pc.binary_repeat(pa.scalar("*"), hidden)
    tail = pc.if_else(short, pa.scalar(""), pc.utf8_slice_codeunits(strings, start=-MASK_KEEP))
    return pc.binary_join_element_wise(stars, tail, "")
