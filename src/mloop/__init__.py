"""mloop: the production ML loop in one package.

    import mloop
    mloop.set_experiment("fraud")
    with mloop.start_run():
        mloop.log_params({"C": 0.1})
        mloop.log_metric("auc", 0.93)


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
    from mloop.autologging import autolog
    from mloop.data import transform
    from mloop.workspace import Workspace


_FLUENT = (
    "ActiveRun",
    "active_run",
    "end_run",
    "flush",
    "get_run",
    "get_tracking_uri",
    "init",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
)


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
    "MloopClient",
    "Workspace",
    "__version__",
    "autolog",
    "transform",
    *_FLUENT,
]


def __getattr__(name: str) -> Any:
    # the workspace pulls in every service; import it only when asked, so `import mloop` is fast
    if name == "Workspace":
        from mloop.workspace import Workspace

        return Workspace
    if name == "MloopClient":
        from mloop.client import MloopClient

        return MloopClient
    if name == "autolog":
        from mloop.autologging import autolog

        return autolog
    if name == "transform":
        from mloop.data import transform

        return transform
    if name in _FLUENT:
        from mloop import fluent

        return getattr(fluent, name)
    raise AttributeError(f"module 'mloop' has no attribute {name!r}")
