"""mloop: the production ML loop in one package.

import mloop
ws = mloop.Workspace.open()            # ./.mloop, or $MLOOP_HOME
v = ws.datasets.ingest("tx.csv", name="transactions")
result = ws.training.train("transactions", target="is_fraud", register="fraud")
ws.predict("fraud", [{"amount": 12.5, ...}])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mloop.core.errors import (
    AlreadyExists,
    Conflict,
    Forbidden,
    IntegrityError,
    InvalidInput,
    MloopError,
    NotFound,
    SchemaMismatch,
    StorageError,
    Unauthorized,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mloop.workspace import Workspace

__all__ = [
    "AlreadyExists",
    "Conflict",
    "Forbidden",
    "IntegrityError",
    "InvalidInput",
    "MloopError",
    "NotFound",
    "SchemaMismatch",
    "StorageError",
    "Unauthorized",
    "Workspace",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # the workspace pulls in every service; import it only when asked, so `import mloop` is fast
    if name == "Workspace":
        from mloop.workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'mloop' has no attribute {name!r}")
