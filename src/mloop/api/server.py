"""Running the application under uvicorn: one worker in-process, or N worker processes.

Each worker is one process with one event loop and one thread for the models: the CLI sets
``OMP_NUM_THREADS=1`` (and limits BLAS/OpenMP pools), so N workers use N cores without
oversubscribing them. Workers open the workspace from the environment the CLI passes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

OPTIONS_ENV = "MLOOP_SERVE_OPTIONS"


# requests uvicorn has read whose handling has not started yet (a weak set: a request whose
# task is dropped before it runs leaves it by itself)
_waiting: weakref.WeakSet[Any] = weakref.WeakSet()


def requests_waiting() -> int:
    """How many requests this process has read and not yet begun to handle. The data plane
    predicts a request on its own stack, skipping the micro-batcher's queue, only when this
    is 0 and no other request is in flight: nobody could share its model call."""
    return len(_waiting)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with TCP_NODELAY set on every connection (with several
    workers uvicorn leaves it off, and each small response then waits ~40 ms for the peer's
    delayed ACK, uvicorn#3149), which also counts the requests read but not yet started."""

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        _waiting.add(cycle)

        async def started(scope: Any, receive: Any, send: Any) -> None:
            _waiting.discard(cycle)
            await app(scope, receive, send)

        super()._start_asgi_task(cycle, started)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def one_thread_per_worker() -> None:
    """Limit native thread pools (OpenMP, BLAS, ONNX Runtime's via its session) to one."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    # the prediction-log writer thread shares the interpreter with the event loop: let the
    # loop take the GIL back after 1 ms rather than 5, so a batch write does not stall requests
    sys.setswitchinterval(0.001)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - scikit-learn brings threadpoolctl
        pass


def worker_app() -> Any:
    """The application of one worker process (``uvicorn --factory``): the workspace from
    ``MLOOP_HOME`` and the settings environment, the serve options from ``MLOOP_SERVE_OPTIONS``."""
    from mloop.api.app import create_app
    from mloop.workspace import Workspace

    one_thread_per_worker()
    options = json.loads(os.environ.get(OPTIONS_ENV, "{}"))
    ws = Workspace.open()
    return for_uvicorn(
        create_app(
            ws,
            log_predictions=bool(options.get("log_predictions", True)),
            default_deployment=options.get("default_deployment"),
        )
    )


def for_uvicorn(app: Any) -> Any:
    """``app`` told how many requests wait behind the one it handles (run it with
    :class:`NoDelayHttpToolsProtocol`, which counts them)."""
    app.state.serving.runtime.requests_waiting = requests_waiting
    return app
