"""hashing: sha256 hex digests of bytes, streams and files agree."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mloop.core.hashing import CHUNK, is_digest, sha256_bytes, sha256_file, sha256_stream

ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sha256_bytes_matches_the_standard_vectors() -> None:
    assert sha256_bytes(b"abc") == ABC
    assert sha256_bytes(b"") == EMPTY


def test_stream_and_file_agree_with_bytes_across_chunk_boundaries(tmp_path: Path) -> None:
    data = bytes(range(256)) * (2 * CHUNK // 256) + b"tail"
    assert len(data) > 2 * CHUNK
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = sha256_bytes(data)
    assert sha256_stream(io.BytesIO(data)) == expected
    assert sha256_file(path) == expected
    assert sha256_file(str(path)) == expected


@given(st.binary(max_size=4096))
def test_stream_equals_bytes(data: bytes) -> None:
    assert sha256_stream(io.BytesIO(data)) == sha256_bytes(data)


def test_is_digest() -> None:
    assert is_digest(ABC)
    assert is_digest(EMPTY)
    assert not is_digest(ABC.upper())
    assert not is_digest(ABC[:-1])
    assert not is_digest(ABC + "0")
    assert not is_digest(ABC + "\n")  # '$' alone would accept a trailing newline
    assert not is_digest("z" * 64)
    assert not is_digest("../" + ABC[3:])
    assert not is_digest("")


@given(st.binary(max_size=256))
def test_every_sha256_is_a_digest(data: bytes) -> None:
    assert is_digest(sha256_bytes(data))
