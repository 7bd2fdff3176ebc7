"""mloop serve: the REST server and the serving data plane."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from mloop.cli._common import console, fail, open_workspace


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=256, help="Worker processes (one core and thread each).")
    ] = 1,
    deployment: Annotated[
        str | None,
        typer.Option(
            help="The deployment MLflow's POST /invocations serves (default: the only one)."
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Predict requests a worker serves at once; beyond it 503."),
    ] = None,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM): serve HTTPS.")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    graceful_timeout: Annotated[
        float,
        typer.Option(help="Seconds requests in flight get to finish on SIGTERM."),
    ] = 30.0,
    log_predictions: Annotated[bool, typer.Option("--log-predictions/--no-log-predictions")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    loop: Annotated[
        bool | None,
        typer.Option(
            "--loop/--no-loop",
            help="Run the loop controller (and alert evaluation) beside the server "
            "(default: when a model has an enabled loop policy or an alert rule exists).",
        ),
    ] = None,
    loop_interval: Annotated[str, typer.Option(help="The controller's round interval.")] = "30s",
) -> None:
    """Serve the REST API and every deployment (/v1/deployments/NAME/predict, the Open
    Inference Protocol V2 under /v2, MLflow's /invocations); /docs has the OpenAPI,
    /metrics the Prometheus metrics."""
    import uvicorn

    from mloop.api import OPTIONS_ENV, NoDelayHttpToolsProtocol, for_uvicorn, one_thread_per_worker

    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail("TLS needs both --ssl-certfile and --ssl-keyfile")
    for path in (ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            fail(f"no such file: {path}")
    one_thread_per_worker()
    if max_concurrency is not None:
        os.environ["MLOOP_SERVE_MAX_CONCURRENCY"] = str(max_concurrency)
    ws = open_workspace(ctx)  # opens (and migrates) the workspace before any worker starts
    if deployment is not None:
        ws.deployments.get(deployment)  # a clear error now rather than a 404 per request
    if loop or (loop is None and (ws.loop.policies(enabled_only=True) or ws.alerts.list())):
        _start_controller(ws.home, loop_interval)
    scheme = "https" if ssl_certfile else "http"
    names = [d.name for d in ws.deployments.list()]
    console.print(
        f"mloop serving workspace {ws.home} on {scheme}://{host}:{port} with {workers} "
        f"worker{'s' if workers > 1 else ''}; deployments: {', '.join(names) or 'none yet'}  "
        f"(OpenAPI: /docs, metrics: /metrics)"
    )
    tls: dict[str, Any] = {}
    if ssl_certfile is not None:
        tls = {"ssl_certfile": str(ssl_certfile), "ssl_keyfile": str(ssl_keyfile)}
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "proxy_headers": False,
        "http": NoDelayHttpToolsProtocol,
        "timeout_graceful_shutdown": graceful_timeout,
        **tls,
    }
    # uvicorn shuts down gracefully on SIGTERM (requests finish, the prediction log flushes),
    # then re-raises the signal to the handler it found: make that handler a clean exit
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if workers == 1:
        from mloop.api import create_app

        app = create_app(ws, log_predictions=log_predictions, default_deployment=deployment)
        uvicorn.run(for_uvicorn(app), **common)
        return
    os.environ["MLOOP_HOME"] = str(ws.home)
    os.environ[OPTIONS_ENV] = json.dumps(
        {"log_predictions": log_predictions, "default_deployment": deployment}
    )
    ws.close()
    uvicorn.run("mloop.api.server:worker_app", factory=True, workers=workers, **common)


def _start_controller(home: Path, interval: str) -> None:
    """The loop controller in a process of its own (training must not share the serving
    processes' cores and interpreter lock), ended with the server."""
    import atexit
    import subprocess
    import sys

    from mloop.data import parse_duration

    try:
        parse_duration(interval)
    except ValueError:
        fail(f"--loop-interval must be a duration such as 30s or 5m, not {interval!r}")
    child = subprocess.Popen(
        [sys.executable, "-m", "mloop", "loop", "run", "--interval", interval],
        env={**os.environ, "MLOOP_HOME": str(home)},
    )
    console.print(f"loop controller running (pid {child.pid}, a round every {interval})")

    def stop() -> None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()

    atexit.register(stop)


def _exit_cleanly(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)
