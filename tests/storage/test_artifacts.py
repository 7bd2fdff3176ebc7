"""The artifact store: the conformance suite of the ``ArtifactStore`` contract, then what is
particular to the local folder, then ``safe_name``.

Every implementation of the contract runs ``TestArtifactStoreContract`` through a harness: the
store itself plus the few backend-specific moves a test needs (corrupt a stored blob behind the
store's back, count stored blobs, list unfinished temp writes). An S3 store joins by adding its
harness to ``HARNESSES``.
"""

from __future__ import annotations

import abc
import hashlib
import io
import os
import posixpath
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mloop.core.errors import IntegrityError, InvalidInput, NotFound, StorageError
from mloop.core.hashing import CHUNK, sha256_bytes
from mloop.storage import ArtifactStore, LocalArtifactStore, safe_name


class StoreHarness(abc.ABC):
    store: ArtifactStore

    @abc.abstractmethod
    def corrupt(self, digest: str) -> None:
        """Change the stored bytes of ``digest`` without going through the store."""

    @abc.abstractmethod
    def blob_count(self) -> int:
        """How many blobs the backend holds."""

    @abc.abstractmethod
    def leftovers(self) -> list[str]:
        """Unfinished writes the backend still holds (temp files, open uploads)."""


class LocalHarness(StoreHarness):
    def __init__(self, tmp_path: Path) -> None:
        self.store = self.local = LocalArtifactStore(tmp_path / "store")

    def corrupt(self, digest: str) -> None:
        path = self.local.path(digest)
        data = bytearray(path.read_bytes() or b"\x00")
        data[0] ^= 0xFF
        os.chmod(path, 0o644)
        path.write_bytes(bytes(data))

    def blob_count(self) -> int:
        return sum(1 for p in (self.local.root / "sha256").rglob("*") if p.is_file())

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in (self.local.root / "tmp").iterdir())


HARNESSES: list[Any] = [pytest.param(LocalHarness, id="local")]


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    factory: Callable[[Path], StoreHarness] = request.param
    return factory(tmp_path)


NOT_DIGESTS = [
    "",
    "abc",
    "../../../../etc/passwd",
    "/etc/passwd",
    "A" * 64,  # upper case
    "a" * 63,
    "a" * 65,
    "a" * 64 + "\n",
    "ab/" + "a" * 61,
    "..\\" + "a" * 61,
    "g" * 64,
]

PAYLOADS = [b"", b"x", b"hello artifacts", bytes(range(256)) * 17]


class TestArtifactStoreContract:
    def test_put_bytes_returns_the_sha256(self, harness: StoreHarness) -> None:
        data = b"model weights"
        digest = harness.store.put_bytes(data)
        assert digest == sha256_bytes(data)
        assert harness.store.exists(digest)
        assert harness.store.size(digest) == len(data)

    @pytest.mark.parametrize("data", PAYLOADS, ids=lambda d: f"{len(d)}B")
    def test_get_bytes_round_trips(self, harness: StoreHarness, data: bytes) -> None:
        assert harness.store.get_bytes(harness.store.put_bytes(data)) == data

    def test_the_same_bytes_are_stored_once(self, harness: StoreHarness) -> None:
        first = harness.store.put_bytes(b"same")
        second = harness.store.put_bytes(b"same")
        assert first == second
        assert harness.blob_count() == 1
        harness.store.put_bytes(b"different")
        assert harness.blob_count() == 2

    def test_put_stream_stores_many_chunks(self, harness: StoreHarness) -> None:
        data = os.urandom(2 * CHUNK + 5)
        digest = harness.store.put_stream(io.BytesIO(data))
        assert digest == sha256_bytes(data)
        assert harness.store.get_bytes(digest) == data
        assert harness.store.put_bytes(data) == digest
        assert harness.blob_count() == 1
        assert harness.leftovers() == []

    def test_put_file(self, harness: StoreHarness, tmp_path: Path) -> None:
        path = tmp_path / "model.bin"
        path.write_bytes(b"\x00\x01 file bytes")
        digest = harness.store.put_file(path)
        assert digest == sha256_bytes(b"\x00\x01 file bytes")
        assert harness.store.put_file(str(path)) == digest
        assert harness.store.get_bytes(digest) == b"\x00\x01 file bytes"

    def test_put_file_of_a_missing_file_is_not_found(
        self, harness: StoreHarness, tmp_path: Path
    ) -> None:
        with pytest.raises(NotFound, match="does not exist"):
            harness.store.put_file(tmp_path / "missing.bin")
        assert harness.blob_count() == 0

    def test_a_write_that_fails_midway_stores_nothing(self, harness: StoreHarness) -> None:
        class Broken(io.RawIOBase):
            def __init__(self) -> None:
                self.calls = 0

            def readable(self) -> bool:
                return True

            def read(self, size: int = -1) -> bytes:
                self.calls += 1
                if self.calls > 1:
                    raise OSError("disk pulled out")
                return b"a first chunk"

        with pytest.raises(OSError, match="disk pulled out"):
            harness.store.put_stream(Broken())  # type: ignore[arg-type]
        assert harness.blob_count() == 0
        assert not harness.store.exists(sha256_bytes(b"a first chunk"))
        assert harness.leftovers() == []

    def test_corrupted_bytes_raise_integrity_error(
        self, harness: StoreHarness, tmp_path: Path
    ) -> None:
        digest = harness.store.put_bytes(b"precious")
        harness.store.verify(digest)
        harness.corrupt(digest)
        with pytest.raises(IntegrityError, match=digest):
            harness.store.get_bytes(digest)
        with pytest.raises(IntegrityError):
            harness.store.verify(digest)
        with pytest.raises(IntegrityError):
            harness.store.fetch(digest, tmp_path / "out.bin")
        assert not (tmp_path / "out.bin").exists()

    def test_an_unknown_digest_is_not_found(self, harness: StoreHarness, tmp_path: Path) -> None:
        digest = sha256_bytes(b"never stored")
        assert not harness.store.exists(digest)
        with pytest.raises(NotFound):
            harness.store.get_bytes(digest)
        with pytest.raises(NotFound):
            harness.store.size(digest)
        with pytest.raises(NotFound):
            harness.store.verify(digest)
        with pytest.raises(NotFound):
            harness.store.fetch(digest, tmp_path / "out.bin")
        assert not (tmp_path / "out.bin").exists()

    @pytest.mark.parametrize("bad", NOT_DIGESTS)
    def test_a_non_digest_is_invalid_input(
        self, harness: StoreHarness, tmp_path: Path, bad: str
    ) -> None:
        operations: list[Callable[[], object]] = [
            lambda: harness.store.get_bytes(bad),
            lambda: harness.store.exists(bad),
            lambda: harness.store.size(bad),
            lambda: harness.store.verify(bad),
            lambda: harness.store.fetch(bad, tmp_path / "out.bin"),
        ]
        for operation in operations:
            with pytest.raises(InvalidInput, match="not a sha256 hex digest"):
                operation()

    def test_fetch_writes_the_blob(self, harness: StoreHarness, tmp_path: Path) -> None:
        digest = harness.store.put_bytes(b"fetch me")
        destination = tmp_path / "new" / "nested" / "model.bin"
        assert harness.store.fetch(digest, destination) == destination
        assert destination.read_bytes() == b"fetch me"
        assert harness.store.fetch(digest, str(destination)) == destination

    def test_fetch_replaces_atomically(self, harness: StoreHarness, tmp_path: Path) -> None:
        """The destination holds the old bytes or the new ones, never a mix or a temp file."""
        folder = tmp_path / "out"
        folder.mkdir()
        destination = folder / "model.bin"
        destination.write_bytes(b"old contents, longer than the new ones")
        good = harness.store.put_bytes(b"new")
        bad = harness.store.put_bytes(b"will rot")
        harness.corrupt(bad)
        with pytest.raises(IntegrityError):
            harness.store.fetch(bad, destination)
        assert destination.read_bytes() == b"old contents, longer than the new ones"
        assert sorted(p.name for p in folder.iterdir()) == ["model.bin"]
        harness.store.fetch(good, destination)
        assert destination.read_bytes() == b"new"
        assert sorted(p.name for p in folder.iterdir()) == ["model.bin"]

    def test_concurrent_writers_of_the_same_bytes(self, harness: StoreHarness) -> None:
        data = os.urandom(CHUNK + 1)
        start = threading.Barrier(6)
        digests: list[str] = []
        errors: list[BaseException] = []

        def put() -> None:
            try:
                start.wait()
                digests.append(harness.store.put_stream(io.BytesIO(data)))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=put) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        assert set(digests) == {sha256_bytes(data)}
        assert harness.blob_count() == 1
        assert harness.leftovers() == []
        assert harness.store.get_bytes(digests[0]) == data


# -- the local folder ----------------------------------------------------------------------


def test_local_layout_is_sha256_fanned_out(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    digest = store.put_bytes(b"layout")
    assert store.path(digest) == tmp_path / "store" / "sha256" / digest[:2] / digest[2:]
    assert store.path(digest).read_bytes() == b"layout"
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_local_store_reopens_what_it_wrote(tmp_path: Path) -> None:
    digest = LocalArtifactStore(tmp_path / "store").put_bytes(b"persisted")
    assert LocalArtifactStore(tmp_path / "store").get_bytes(digest) == b"persisted"


def test_local_store_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create the artifact store"):
        LocalArtifactStore(tmp_path / "a-file" / "store")


def test_clear_temp_removes_only_old_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    kept = store.put_bytes(b"a finished blob")
    tmp = tmp_path / "store" / "tmp"
    old_file, old_dir, fresh = tmp / "old-write", tmp / "old-upload", tmp / "live-write"
    old_file.write_bytes(b"half")
    old_dir.mkdir()
    (old_dir / "part-1").write_bytes(b"part")
    fresh.write_bytes(b"still being written")
    two_hours_ago = time.time() - 7200
    for path in (old_file, old_dir):
        os.utime(path, (two_hours_ago, two_hours_ago))

    assert store.clear_temp(older_than_seconds=3600) == 2
    assert sorted(p.name for p in tmp.iterdir()) == ["live-write"]
    assert store.get_bytes(kept) == b"a finished blob"  # blobs are never temp files
    assert store.clear_temp(older_than_seconds=3600) == 0
    assert store.clear_temp(older_than_seconds=0) == 1
    assert list(tmp.iterdir()) == []


# -- safe_name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "..",
        "a/../../b",
        "a/..",
        "a/../b",
        "/etc/passwd",
        "//server/share",
        "C:\\x",
        "C:x",
        "c:/windows",
        "a\\b",
        "..\\..\\x",
        "",
        "   ",
        ".",
        "./",
        "//",
        "\x00",
        "model\x00.joblib",
        "./C:x",
        "./ ",
        "a/ /b",
    ],
)
def test_safe_name_refuses(name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_name(name)


@pytest.mark.parametrize("name", [None, b"model.joblib", 3])
def test_safe_name_refuses_non_strings(name: Any) -> None:
    with pytest.raises(InvalidInput):
        safe_name(name)


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("model/model.joblib", "model/model.joblib"),
        ("./a//b/./c", "a/b/c"),
        ("dir/", "dir"),
        ("...", "..."),
        ("..hidden", "..hidden"),
        ("a b/ c", "a b/ c"),
        ("ünïcode/数据.parquet", "ünïcode/数据.parquet"),
    ],
)
def test_safe_name_normalises(name: str, normal: str) -> None:
    assert safe_name(name) == normal


_path_like = st.lists(
    st.sampled_from(["..", ".", "", "a", "b.txt", "...", "C:", "\\", "\x00", " ", "~", ":"]),
    max_size=6,
).map("/".join)


@given(st.one_of(st.text(), _path_like, _path_like.map(lambda p: "/" + p)))
@example("../x")
@example("a/../../b")
def test_whatever_safe_name_accepts_stays_inside_the_root(name: str) -> None:
    root = "/srv/mloop/artifacts"
    try:
        normal = safe_name(name)
    except InvalidInput:
        return
    joined = posixpath.normpath(posixpath.join(root, normal))
    assert joined.startswith(root + "/")
    assert not posixpath.isabs(normal)
    assert ".." not in normal.split("/")
    assert "\x00" not in normal
    assert "\\" not in normal
    assert safe_name(normal) == normal  # normalising is idempotent


@pytest.mark.parametrize("size", [100, 3 << 20])  # read whole / mapped and hashed alongside
def test_read_checked_hands_the_bytes_and_refuses_a_corrupt_blob(tmp_path: Path, size: int) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    data = os.urandom(size)
    digest = store.put_bytes(data)
    assert store.read_checked(digest, bytes) == data
    path = store.path(digest)
    path.chmod(0o644)
    corrupt = bytearray(data)
    corrupt[size // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    seen: list[int] = []
    with pytest.raises(IntegrityError, match="corrupt"):
        store.read_checked(digest, lambda b: seen.append(len(b)))
    # a small blob is checked before the reader runs; a large one while it runs, and the
    # reader's result never comes back
    assert seen == ([size] if size >= 1 << 20 else [])
    with pytest.raises(NotFound):
        store.read_checked("0" * 64, bytes)


def test_a_corrupt_large_blob_is_an_integrity_error_even_when_the_reader_fails(
    tmp_path: Path,
) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    data = os.urandom(2 << 20)
    digest = store.put_bytes(data)
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(data[:-100])  # truncated: a Parquet reader would fail on it

    def reader(_: object) -> None:
        raise ValueError("magic bytes not found")

    with pytest.raises(IntegrityError, match="corrupt") as caught:
        store.read_checked(digest, reader)
    assert isinstance(caught.value.__cause__, ValueError)
    path.write_bytes(data)  # whole again: the reader's own error comes through
    with pytest.raises(ValueError, match="magic bytes"):
        store.read_checked(digest, reader)


def test_a_settled_blob_is_hashed_once_per_store_and_again_once_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.storage import artifacts

    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    def counting_sha256(data: bytes = b"") -> Any:
        hashed.append(len(data))
        return real_sha256(data)

    store = LocalArtifactStore(tmp_path / "store")
    data = os.urandom(2 << 20)
    digest = store.put_bytes(data)
    monkeypatch.setattr(artifacts.hashlib, "sha256", counting_sha256)
    # just written: its times could still repeat after a change, so every read hashes it
    store.read_checked(digest, bytes)
    store.read_checked(digest, bytes)
    assert len(hashed) == 2
    monkeypatch.setattr(artifacts, "SETTLED_NS", -1)  # as if written long ago
    hashed.clear()
    assert store.read_checked(digest, bytes) == data
    assert store.read_checked(digest, bytes) == data
    assert hashed == [len(data)]  # checked once, then remembered
    # another store (another process) checks it again
    assert LocalArtifactStore(tmp_path / "store").read_checked(digest, bytes) == data
    assert len(hashed) == 2
    # a change to the file (its change time moves) is seen: hashed again, and refused
    path = store.path(digest)
    path.chmod(0o644)
    corrupt = bytearray(data)
    corrupt[5] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(IntegrityError, match="corrupt"):
        store.read_checked(digest, bytes)
    assert len(hashed) == 3
