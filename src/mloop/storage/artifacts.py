"""The content-addressed artifact store.

Every blob is stored once under its sha256 digest; writes are atomic (temp file in the store,
fsync, rename), so a reader sees a whole blob or none; reads check the bytes against the digest.
Human names ("model/model.joblib") live in the metadata database and pass :func:`safe_name`,
so no name can point outside the store.

``ArtifactStore`` is the contract every backend implements (the local folder here; S3 later),
and ``tests/storage/test_artifacts.py`` is the conformance suite they all run.
"""

from __future__ import annotations

import abc
import hashlib
import mmap
import os
import posixpath
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from mloop.core.errors import IntegrityError, InvalidInput, NotFound, StorageError
from mloop.core.hashing import CHUNK, is_digest, sha256_bytes

T = TypeVar("T")
Buffer = bytes | memoryview
PARALLEL_CHECK_BYTES = 1 << 20  # smaller blobs are read and hashed in one go
SETTLED_NS = 2_000_000_000  # a blob unchanged this long is remembered as checked
CHECKED_LIMIT = 65_536  # blobs remembered as checked, per store


def safe_name(name: str) -> str:
    """Normalise an artifact name to a relative POSIX path, or refuse it.

    Refused: empty names, absolute paths, drive letters, backslashes, NUL, and any ``..`` part.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("artifact name is empty")
    if "\x00" in name or "\\" in name:
        raise InvalidInput(f"artifact name {name!r} contains a NUL or a backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidInput(f"artifact name {name!r} is absolute; names are relative paths")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidInput(f"artifact name {name!r} climbs out of the store with '..'")
    if not parts:
        raise InvalidInput(f"artifact name {name!r} names no file")
    if any(not p.strip() for p in parts):
        raise InvalidInput(f"artifact name {name!r} has a blank part")
    if len(parts[0]) > 1 and parts[0][1] == ":":  # "./C:x" is as absolute as "C:x"
        raise InvalidInput(f"artifact name {name!r} is absolute; names are relative paths")
    return posixpath.join(*parts)


def _check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not is_digest(digest):
        raise InvalidInput(f"{digest!r} is not a sha256 hex digest")
    return digest


def _stamp(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _hash_file(path: Path, stamp: tuple[int, int, int, int]) -> str:
    """The sha256 of the file at ``path``, streamed through one buffer; "" (no digest) when
    the file there is not the one ``stamp`` describes."""
    hasher = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        if _stamp(os.fstat(handle.fileno())) != stamp:
            return ""
        while read := handle.readinto(buffer):
            hasher.update(view[:read])
    return hasher.hexdigest()


class ArtifactStore(abc.ABC):
    """Immutable blobs addressed by the sha256 of their bytes."""

    @abc.abstractmethod
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest. Storing the same bytes twice writes nothing."""

    @abc.abstractmethod
    def put_stream(self, stream: BinaryIO) -> str:
        """Store everything read from ``stream``; return its digest."""

    @abc.abstractmethod
    def put_file(self, path: str | Path) -> str:
        """Store a file's bytes; return their digest (NotFound if there is no such file)."""

    @abc.abstractmethod
    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, checked against the digest (IntegrityError on mismatch)."""

    @abc.abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abc.abstractmethod
    def size(self, digest: str) -> int: ...

    @abc.abstractmethod
    def fetch(self, digest: str, destination: str | Path) -> Path:
        """Copy the blob to ``destination`` (checked, atomically); return the path."""

    def read_checked(
        self,
        digest: str,
        reader: Callable[[Buffer], T],
        *,
        file_reader: Callable[[str], T] | None = None,
    ) -> T:
        """``reader`` applied to the blob's bytes, which are checked against the digest
        (IntegrityError on mismatch, and ``reader``'s result is dropped). A local store maps
        a large file instead of copying it, or hands its path to ``file_reader``, and hashes
        it while the reader runs."""
        return reader(self.get_bytes(digest))

    def verify(self, digest: str) -> None:
        """Raise IntegrityError if the stored bytes no longer hash to ``digest``."""
        self.get_bytes(digest)


class LocalArtifactStore(ArtifactStore):
    """Blobs in a local folder: ``<root>/sha256/ab/cdef…``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._blobs = self.root / "sha256"
        self._tmp = self.root / "tmp"
        # blobs whose hash a read of this process checked: digest -> the file's stamp then
        self._checked: dict[str, tuple[int, int, int, int]] = {}
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the artifact store at {self.root}: {exc}") from exc

    def path(self, digest: str) -> Path:
        _check_digest(digest)
        return self._blobs / digest[:2] / digest[2:]

    def _commit(self, tmp_path: Path, digest: str) -> str:
        final = self.path(digest)
        if final.exists():
            tmp_path.unlink(missing_ok=True)
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp_path, 0o444)
        os.replace(tmp_path, final)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        if self.path(digest).exists():
            return digest
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return self._commit(Path(tmp), digest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_stream(self, stream: BinaryIO) -> str:
        fd, tmp = tempfile.mkstemp(dir=self._tmp)
        hasher = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as handle:
                while chunk := stream.read(CHUNK):
                    hasher.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            return self._commit(Path(tmp), hasher.hexdigest())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, path: str | Path) -> str:
        try:
            with open(path, "rb") as handle:
                return self.put_stream(handle)
        except FileNotFoundError as exc:
            raise NotFound(f"file {path} does not exist") from exc

    def get_bytes(self, digest: str) -> bytes:
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {digest} is not in the store at {self.root}") from exc
        if sha256_bytes(data) != digest:
            raise IntegrityError(
                f"artifact {digest} is corrupt: its bytes no longer match their hash ({path})"
            )
        return data

    def read_checked(
        self,
        digest: str,
        reader: Callable[[Buffer], T],
        *,
        file_reader: Callable[[str], T] | None = None,
    ) -> T:
        """``reader`` over the blob's bytes, its hash checked on another thread while
        ``reader`` runs. A large blob is memory-mapped, or, given ``file_reader``, read by it
        from its path (a reader that takes only the parts it needs keeps memory low) while
        the hash streams through the file. A blob checked before by this process and not
        touched since (the same inode, size, modification and change times, its times older
        than the check by more than the clock's step) is not hashed again."""
        path = self.path(digest)
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size < PARALLEL_CHECK_BYTES:
                    return reader(self.get_bytes(digest))
                if file_reader is None:
                    mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {digest} is not in the store at {self.root}") from exc
        stamp = _stamp(stat)
        if file_reader is not None:
            use_path = file_reader

            def run() -> T:
                return use_path(str(path))

            def check() -> str:
                return _hash_file(path, stamp)
        else:
            view = memoryview(mapped)

            def run() -> T:
                return reader(view)

            def check() -> str:
                return hashlib.sha256(view).hexdigest()

        if self._checked.get(digest) == stamp:
            return run()
        hashed: list[str] = []
        # hashlib lets go of the GIL: the hash runs on another core while the reader parses
        thread = threading.Thread(target=lambda: hashed.append(check()))
        thread.start()
        failure: Exception | None = None
        try:
            result = run()
        except Exception as exc:  # corrupt bytes first: a parse error may only be the symptom
            failure = exc
        finally:
            thread.join()
        if hashed != [digest]:
            raise IntegrityError(
                f"artifact {digest} is corrupt: its bytes no longer match their hash ({path})"
            ) from failure
        if failure is not None:
            raise failure
        # a file written in the last seconds could change again within one tick of a coarse
        # file-system clock and keep its times: only settled files are remembered
        if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) > SETTLED_NS:
            if len(self._checked) >= CHECKED_LIMIT:
                self._checked.clear()
            self._checked[digest] = stamp
        return result

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"artifact {digest} is not in the store at {self.root}") from exc

    def fetch(self, digest: str, destination: str | Path) -> Path:
        destination = Path(destination)
        data = self.get_bytes(digest)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=".mloop-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, destination)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return destination

    def clear_temp(self, older_than_seconds: float = 3600.0) -> int:
        """Remove temp files left by writers that died mid-write; return how many.

        Only files older than ``older_than_seconds`` go, so a live writer is never disturbed."""
        import time

        count = 0
        cutoff = time.time() - older_than_seconds
        for entry in self._tmp.iterdir():
            if entry.stat().st_mtime > cutoff:
                continue
            if entry.is_file():
                entry.unlink(missing_ok=True)
                count += 1
            elif entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                count += 1
        return count
