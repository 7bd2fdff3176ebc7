"""Sortable unique ids: UUIDv7 (RFC 9562) rendered as 32 lowercase hex digits.

Time-ordered (the first 48 bits are Unix milliseconds), so ids sort by creation time, index well
and have the shape of MLflow run ids.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time

_lock = threading.Lock()
# the random part: a PRNG seeded from os.urandom, reseeded in every forked child (ids are
# unique, not secret; a urandom syscall per id was a tenth of a served request's time)
_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _rng.seed(os.urandom(32)))
_last_ms = 0
_counter = 0

ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    """A new UUIDv7 as 32 hex digits; strictly increasing within a process."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # 12-bit sequence exhausted: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = _rng.getrandbits(10)  # leave room to count up
        _last_ms = ms
        seq = _counter
        rand = _rng.getrandbits(62)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= seq << 64
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand
    return f"{value:032x}"


def id_time_ms(identifier: str) -> int:
    """The Unix millisecond embedded in an id made by :func:`new_id`."""
    return int(identifier[:12], 16)


def is_id(value: str) -> bool:
    return bool(ID_PATTERN.fullmatch(value))
