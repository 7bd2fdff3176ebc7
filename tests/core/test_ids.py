"""ids: UUIDv7 as 32 hex digits, strictly increasing in a process, unique across threads."""

from __future__ import annotations

import itertools
import threading
import uuid

from mloop.core.clock import now_ms
from mloop.core.ids import id_time_ms, is_id, new_id


def test_new_id_is_a_uuid7_in_32_lowercase_hex_digits() -> None:
    identifier = new_id()
    assert len(identifier) == 32
    assert is_id(identifier)
    parsed = uuid.UUID(hex=identifier)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_ids_strictly_increase_within_one_thread() -> None:
    made = [new_id() for _ in range(10_000)]
    assert all(a < b for a, b in itertools.pairwise(made))


def test_ids_are_unique_across_threads() -> None:
    threads, per_thread = 8, 2_000
    start = threading.Barrier(threads)
    results: list[list[str]] = [[] for _ in range(threads)]

    def make(slot: list[str]) -> None:
        start.wait()
        slot.extend(new_id() for _ in range(per_thread))

    workers = [threading.Thread(target=make, args=(slot,)) for slot in results]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    everything = [i for slot in results for i in slot]
    assert len(set(everything)) == threads * per_thread
    for slot in results:  # each thread still sees its own ids increase
        assert slot == sorted(slot)


def test_id_time_ms_is_the_creation_millisecond() -> None:
    before = now_ms()
    identifier = new_id()
    after = now_ms()
    embedded = id_time_ms(identifier)
    assert embedded >= before
    # in milliseconds, not seconds or microseconds: within a second of the wall clock
    assert embedded - after < 1_000


def test_id_time_ms_decodes_the_first_48_bits() -> None:
    assert id_time_ms("0123456789ab7000a000000000000000") == 0x0123456789AB


def test_is_id_refuses_anything_but_32_lowercase_hex_digits() -> None:
    good = new_id()
    assert is_id(good)
    assert not is_id(good.upper())
    assert not is_id(good[:-1])
    assert not is_id(good + "0")
    assert not is_id(good + "\n")
    assert not is_id("g" * 32)
    assert not is_id("")
