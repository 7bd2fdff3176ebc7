"""mloop serve: the REST server."""

from __future__ import annotations

import signal
from typing import Annotated, Any

import typer

from mloop.cli._common import console, open_workspace


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8000,
    log_predictions: Annotated[bool, typer.Option("--log-predictions/--no-log-predictions")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve the REST API: predict, datasets, runs, models, drift; /docs has the OpenAPI."""
    import uvicorn

    from mloop.api import create_app

    ws = open_workspace(ctx)
    app = create_app(ws, log_predictions=log_predictions)
    console.print(
        f"mloop serving workspace {ws.home} on http://{host}:{port}  "
        f"(OpenAPI: http://{host}:{port}/docs, metrics: /metrics)"
    )
    # uvicorn shuts down gracefully on SIGTERM (the prediction log flushes), then re-raises the
    # signal to the handler it found: make that handler a clean exit, not death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def _exit_cleanly(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)
