"""Content hashing: sha256 everywhere, hex digests."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import BinaryIO

DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def is_digest(value: str) -> bool:
    return bool(DIGEST_PATTERN.fullmatch(value))
