"""The local append-only log: frames, offsets, the committed end, torn tails, corruption."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mloop.core.errors import InvalidInput, StorageError
from mloop.data.streams import LocalLog, parse_stream_uri
from mloop.data.streams.log import HEADER


def test_appended_events_read_back_in_order_with_their_offsets(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "a.log")
    first = log.append([b"one", b"two", b""])
    second = log.append([b"three"])
    assert first[0] == 0
    assert first == sorted(first)
    assert second[0] > first[-1]
    payloads, offsets, position = log.read(0, 100)
    assert payloads == [b"one", b"two", b"", b"three"]
    assert offsets == first + second
    assert position == log.end() == os.path.getsize(log.path)
    assert log.read(position, 100) == ([], [], position)
    assert log.next_after(offsets[1]) == offsets[2]


def test_reading_stops_at_max_messages_and_max_bytes_and_resumes(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "a.log")
    offsets = log.append([bytes([i]) * 100 for i in range(50)])
    got, position = [], 0
    while True:
        payloads, _, position = log.read(position, 7, max_bytes=300)
        if not payloads:
            break
        assert len(payloads) <= 7
        got += payloads
    assert got == [bytes([i]) * 100 for i in range(50)]
    assert log.read(offsets[10], 1)[0] == [bytes([10]) * 100]


def test_a_frame_larger_than_max_bytes_is_read_whole(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "a.log")
    log.append([b"x" * 10_000, b"y"])
    payloads, _, position = log.read(0, 10, max_bytes=64)
    assert payloads == [b"x" * 10_000]
    assert log.read(position, 10, max_bytes=64)[0] == [b"y"]


def test_bytes_past_the_committed_end_are_invisible_and_cut_by_the_next_append(
    tmp_path: Path,
) -> None:
    """A writer that died after writing frames but before moving the end told nobody 'done'."""
    log = LocalLog(tmp_path / "a.log")
    log.append([b"kept"])
    with open(log.path, "ab") as handle:  # a torn frame: a header promising 100 bytes, 3 given
        handle.write(HEADER.pack(100, 0) + b"abc")
    assert log.read(0, 10)[0] == [b"kept"]
    log.append([b"next"])
    assert log.read(0, 10)[0] == [b"kept", b"next"]
    assert os.path.getsize(log.path) == log.end()


def test_a_corrupt_frame_below_the_end_raises(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "a.log")
    log.append([b"hello world"])
    data = bytearray(log.path.read_bytes())
    data[-1] ^= 0xFF
    log.path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="corrupt"):
        LocalLog(log.path).read(0, 10)


def test_a_log_shorter_than_the_position_asked_for_raises(tmp_path: Path) -> None:
    log = LocalLog(tmp_path / "a.log")
    log.append([b"a"])
    with pytest.raises(StorageError, match="replaced"):
        log.read(10_000, 1)


def test_events_must_be_bytes(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        LocalLog(tmp_path / "a.log").append(["text"])  # type: ignore[list-item]


def _writer(path: str, start: int) -> None:
    log = LocalLog(path)
    for i in range(start, start + 200, 20):
        log.append([str(j).encode() for j in range(i, i + 20)])


def test_concurrent_writers_interleave_whole_appends(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, s)) for s in (0, 1000, 2000)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    payloads, _, _ = LocalLog(path).read(0, 10_000)
    values = [int(p) for p in payloads]
    assert sorted(values) == sorted([*range(200), *range(1000, 1200), *range(2000, 2200)])
    for start in (0, 1000, 2000):  # each writer's events stay in its order
        mine = [v for v in values if start <= v < start + 200]
        assert mine == sorted(mine)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.binary(max_size=300), max_size=20), max_size=8))
def test_any_appends_read_back_exactly(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[bytes]]
) -> None:
    log = LocalLog(tmp_path_factory.mktemp("log") / "p.log")
    written = []
    for batch in batches:
        log.append(batch)
        written += batch
    got, position = [], 0
    while True:
        payloads, _, position = log.read(position, 13, max_bytes=512)
        if not payloads:
            break
        got += payloads
    assert got == written


def test_log_uris() -> None:
    assert parse_stream_uri("log://events").canonical == "log://events"
    with pytest.raises(InvalidInput):
        parse_stream_uri("log://../etc")
    nats = parse_stream_uri("nats://127.0.0.1:4222/orders.eu?durable=x")
    assert (nats.servers, nats.target, nats.options) == (
        "127.0.0.1:4222",
        "orders.eu",
        {"durable": "x"},
    )
    assert nats.canonical == "nats://127.0.0.1:4222/orders.eu"
    assert nats.key == "nats:orders.eu"  # offsets follow the stream, not the server
    secret = parse_stream_uri("nats://app:s3cret@localhost,h2:4223/orders.eu")
    assert secret.servers == "localhost:4222,h2:4223"
    assert secret.canonical == "nats://app:***@localhost:4222,h2:4223/orders.eu"
    assert secret.key == nats.key
    assert "s3cret" not in repr(secret)
    assert parse_stream_uri("nats://tok3n@h/x").canonical == "nats://***@h:4222/x"
    assert parse_stream_uri("kafka://u:p@b/t").key == "kafka:t"
    with pytest.raises(InvalidInput) as refused:
        parse_stream_uri("ftp://app:s3cret@h/x")
    assert "s3cret" not in str(refused.value)
    assert parse_stream_uri("kafka://broker/t1").servers == "broker:9092"
    for bad in (
        "events",
        "http://x/y",
        "nats://h:1/",
        "nats://h:1/a..b",
        "nats://h:1/a.>.b",
        "kafka://h:1/a b",
    ):
        with pytest.raises(InvalidInput):
            parse_stream_uri(bad)
