"""mloop demo."""

from __future__ import annotations

from typing import Annotated

import typer

from mloop.cli._common import EXIT_FAILED_CHECK, console, err_console, open_workspace, print_json


def demo(
    ctx: typer.Context,
    rows: Annotated[int, typer.Option(min=500, help="Training transactions to generate.")] = 20_000,
    traffic: Annotated[int, typer.Option(min=100, help="Rows of traffic to send.")] = 6_000,
    seed: Annotated[int, typer.Option(help="Seed of the generated data.")] = 7,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON at the end.")
    ] = False,
) -> None:
    """Run the whole loop on generated card transactions: ingest, validate, train, track,
    register, serve over HTTP, drift, and where to look next."""
    from mloop.demo import run_demo

    ws = open_workspace(ctx)  # opens (and migrates) the workspace the server will share
    # with --json, stdout holds the JSON alone: the progress and tables go to stderr
    out = err_console if as_json else console
    summary = run_demo(ws.home, rows=rows, traffic_rows=traffic, seed=seed, console=out)
    if as_json:
        print_json(summary)
    if summary.failed_requests:
        raise typer.Exit(EXIT_FAILED_CHECK)
