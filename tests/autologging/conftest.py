"""Autologging tests: each test logs to a workspace of its own, with autologging on.

The fluent API keeps process-wide state; after each test autologging is turned off (the
original methods put back), runs still active are ended and that state is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import mloop
from autologging.support import reset_fluent
from mloop import fluent
from mloop.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace the fluent API logs to, and autologging on."""
    mloop.init(tmp_path / "ws")
    assert fluent._ctx is not None
    assert fluent._ctx.owner is not None
    mloop.autolog()
    try:
        yield fluent._ctx.owner
    finally:
        mloop.autolog(disable=True)
        reset_fluent()
