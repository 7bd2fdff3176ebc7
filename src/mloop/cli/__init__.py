"""The ``mloop`` command: Typer + Rich over the same services as the SDK and the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mloop import __version__
from mloop.cli import (
    alerts,
    data,
    deployments,
    experiments,
    features,
    lineage,
    loop,
    models,
    monitor,
    predict,
    runs,
    transforms,
)
from mloop.cli._common import console, new_app, open_workspace, print_json
from mloop.cli.demo import demo
from mloop.cli.serve import serve
from mloop.cli.stream import register as register_stream_commands
from mloop.cli.train import train
from mloop.cli.tune import tune

app = new_app(
    "mloop: the production ML loop — ingest, validate, train, track, register, serve, monitor."
)


def _version(value: bool) -> None:
    if value:
        console.print(f"mloop {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            envvar="MLOOP_HOME",
            help="Workspace folder (default ./.mloop, or $MLOOP_HOME).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = {"workspace": workspace}


@app.command()
def info(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Where the workspace is and what it holds."""
    ws = open_workspace(ctx)
    details = ws.info()
    details["datasets"] = len(ws.datasets.list())
    details["models"] = len(ws.registry.list_models())
    if as_json:
        print_json(details)
        return
    for key, value in details.items():
        console.print(f"[bold]{key:>16}[/bold]  {value}")


app.command()(demo)
app.command()(train)
app.command()(tune)
app.command()(serve)
app.command()(deployments.deploy)
register_stream_commands(data.app)
app.add_typer(data.app, name="data")
app.add_typer(transforms.app, name="transforms")
app.add_typer(features.app, name="features")
app.add_typer(lineage.app, name="lineage")
app.add_typer(experiments.app, name="experiments")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(deployments.app, name="deployments")
app.add_typer(predict.app, name="predict")
app.add_typer(monitor.app, name="monitor")
app.add_typer(loop.app, name="loop")
app.add_typer(alerts.app, name="alerts")


def main() -> None:
    app()


__all__ = ["app", "main"]
