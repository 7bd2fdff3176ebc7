"""The embedded stream: an append-only log file in the workspace, ``log://NAME``.

``<workspace>/streams/NAME.log`` holds frames, each ``length (u32) · crc32 (u32) · payload``;
a frame's offset is the byte position where it starts. ``NAME.end`` holds the committed end
(the high-water mark, a u64): an append writes its frames after the end, fsyncs the log, then
writes and fsyncs the new end. Readers never look past the end, so they only see frames that
are on disk; a writer that died mid-append left bytes past the end, which the next append cuts
off before writing (its caller never heard "done", so nothing it was told is lost). Appends
take an exclusive ``flock`` on the log; readers take none. A frame whose checksum does not match
below the end is corruption and raises, never skipped.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mloop.core.errors import InvalidInput, StorageError
from mloop.data.streams.base import Fetched, StreamProducer, StreamSource, StreamURI

HEADER = struct.Struct(">II")
END = struct.Struct(">Q")
MAX_FRAME = 2**31 - 1
POLL_SECONDS = 0.02


def log_path(home: Path, name: str) -> Path:
    return home / "streams" / f"{name}.log"


class LocalLog:
    """One append-only log file with its committed end."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.end_path = self.path.with_suffix(".end")
        self._fd: int | None = None
        self._end_fd: int | None = None

    # -- writing ---------------------------------------------------------------------------

    def append(self, payloads: Iterable[bytes]) -> list[int]:
        """Append events durably (one fsync for all of them); returns their offsets."""
        frames = bytearray()
        offsets: list[int] = []
        sizes = []
        for payload in payloads:
            if not isinstance(payload, bytes | bytearray | memoryview):
                raise InvalidInput("log events are bytes")
            payload = bytes(payload)
            if len(payload) > MAX_FRAME:
                raise InvalidInput(f"an event of {len(payload):,} bytes is too large for a log")
            head = HEADER.pack(len(payload), zlib.crc32(payload, zlib.crc32(_len(payload))))
            sizes.append(len(frames))
            frames += head
            frames += payload
        if not sizes:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        end_fd = os.open(self.end_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            end = _read_end(end_fd)
            size = os.fstat(fd).st_size
            if size < end:
                raise StorageError(
                    f"log {self.path} is shorter ({size} bytes) than its committed end ({end})"
                )
            if size > end:  # a writer died mid-append: its frames were never committed
                os.ftruncate(fd, end)
            _write_all(fd, bytes(frames), end)
            os.fsync(fd)
            os.pwrite(end_fd, END.pack(end + len(frames)), 0)
            os.fsync(end_fd)
            if created:
                _fsync_dir(self.path.parent)
            offsets = [end + s for s in sizes]
        finally:
            os.close(end_fd)
            os.close(fd)  # closing releases the lock
        return offsets

    # -- reading ---------------------------------------------------------------------------

    def end(self) -> int:
        """The committed end: frames before it are durable and complete."""
        if self._end_fd is None:
            try:
                self._end_fd = os.open(self.end_path, os.O_RDONLY)
            except FileNotFoundError:
                return 0
        return _read_end(self._end_fd)

    def read(
        self, position: int, max_messages: int, max_bytes: int = 16 * 2**20
    ) -> tuple[list[bytes], list[int], int]:
        """Frames from ``position`` on: (payloads, offsets, the position after the last)."""
        end = self.end()
        if position > end:
            raise StorageError(
                f"log {self.path} ends at {end} but reading was asked to start at {position}: "
                "was the log replaced?"
            )
        if position == end or max_messages <= 0:
            return [], [], position
        fd = self._reader()
        base, at = position, 0
        data = os.pread(fd, min(end - base, max_bytes), base)
        payloads: list[bytes] = []
        offsets: list[int] = []
        unpack, crc32, size = HEADER.unpack_from, zlib.crc32, HEADER.size
        while len(payloads) < max_messages and base + at < end:
            if at + size > len(data):
                if payloads:
                    break  # the rest next time
                base, at = base + at, 0
                data = os.pread(fd, min(end - base, max(max_bytes, size)), base)
            length, crc = unpack(data, at)
            stop = at + size + length
            if base + stop > end:
                raise StorageError(f"log {self.path}: the frame at {base + at} crosses the end")
            if stop > len(data):
                if payloads:
                    break
                base, at = base + at, 0  # one frame larger than max_bytes: read it whole
                data = os.pread(fd, size + length, base)
                stop = size + length
            payload = data[at + size : stop]
            if crc32(payload, crc32(length.to_bytes(4, "big"))) != crc:
                raise StorageError(f"log {self.path} is corrupt at offset {base + at}")
            payloads.append(payload)
            offsets.append(base + at)
            at = stop
        return payloads, offsets, base + at

    def next_after(self, offset: int) -> int:
        """The position of the frame after the one at ``offset``."""
        fd = self._reader()
        head = os.pread(fd, HEADER.size, offset)
        if len(head) < HEADER.size:
            raise StorageError(f"log {self.path} has no frame at offset {offset}")
        length, _crc = HEADER.unpack(head)
        return offset + HEADER.size + int(length)

    def _reader(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError as exc:
                raise StorageError(f"log {self.path} does not exist") from exc
        return self._fd

    def close(self) -> None:
        for fd in (self._fd, self._end_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._end_fd = None


def _len(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big")


def _read_end(fd: int) -> int:
    raw = os.pread(fd, END.size, 0)
    return int(END.unpack(raw)[0]) if len(raw) == END.size else 0


def _write_all(fd: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view = view[written:]
        position += written


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LogSource(StreamSource):
    """Reads ``log://NAME``: one partition (0), offsets are byte positions."""

    def __init__(self, uri: StreamURI, home: Path) -> None:
        self.uri = uri.canonical
        self.log = LocalLog(log_path(home, uri.target))
        self._position = 0

    def open(self, resume: dict[int, int], stored: dict[str, Any] | None = None) -> None:
        last = resume.get(0)
        if last is not None:
            if last >= self.log.end():
                raise StorageError(
                    f"{self.uri} ends at {self.log.end()} but the dataset already holds its "
                    f"event at offset {last}: was the log replaced?"
                )
            self._position = self.log.next_after(last)

    def fetch(self, max_messages: int, timeout: float) -> Fetched:
        deadline = time.monotonic() + timeout
        while True:
            if self.log.path.exists():
                payloads, offsets, self._position = self.log.read(self._position, max_messages)
                if payloads:
                    return Fetched(payloads, offsets, [0] * len(offsets))
            left = deadline - time.monotonic()
            if left <= 0:
                return Fetched([], [], [])
            time.sleep(min(POLL_SECONDS, left))

    def ack(self, fetched: Sequence[Fetched]) -> None:
        """Nothing to tell: the offsets stored with the data are the log's only cursor."""

    def close(self) -> None:
        self.log.close()

    def describe(self) -> dict[str, str]:
        return {"log": str(self.log.path)}


class LogProducer(StreamProducer):
    def __init__(self, uri: StreamURI, home: Path) -> None:
        self.uri = uri.canonical
        self.log = LocalLog(log_path(home, uri.target))

    def send(self, payloads: Sequence[bytes]) -> int:
        return len(self.log.append(payloads))

    def close(self) -> None:
        self.log.close()
