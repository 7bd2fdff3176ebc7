"""The chain every lineage test walks, on each metadata backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.support import Chain, build_chain
from mloop.workspace import Workspace


@pytest.fixture
def chain(ws: Workspace, tmp_path: Path) -> Chain:
    return build_chain(ws, tmp_path)
