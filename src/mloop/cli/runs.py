"""mloop runs: list and show tracked runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Column, Table

from mloop.cli._common import console, fmt_num, fmt_time, new_app, open_workspace, print_json

app = new_app("Runs: what was trained, on what, with which results.")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Option("--experiment", "-e")] = None,
    status: Annotated[str | None, typer.Option(help="RUNNING, FINISHED, FAILED, KILLED")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    as_json: JSON = False,
) -> None:
    """List runs, newest first."""
    ws = open_workspace(ctx)
    found = ws.tracking.list_runs(experiment, status=status, limit=limit)
    if as_json:
        print_json(found)
        return
    # ids are what a user copies into the next command: never cut or wrapped
    run_id = Column("run id", no_wrap=True, min_width=32)
    status_ = Column("status", no_wrap=True, min_width=8)
    started = Column("started", no_wrap=True)
    wide = console.width >= 110  # on a narrow terminal: id, status, metrics (runs show has all)
    headers: list[Column | str] = [
        run_id,
        "experiment / name",
        status_,
        started,
        "dataset",
        "key metrics",
    ]
    table = Table(*(headers if wide else [run_id, status_, "key metrics"]))
    for run in found:
        shown = {
            k: v for k, v in run.metrics.items() if k in ("roc_auc", "f1", "accuracy", "rmse", "r2")
        }
        metrics = "\n".join(f"{k}={fmt_num(v)}" for k, v in shown.items())
        if wide:
            table.add_row(
                run.id,
                f"{run.experiment} / {run.name}",
                run.status,
                fmt_time(run.start_time),
                run.tags.get("mloop.dataset", "-"),
                metrics,
            )
        else:
            table.add_row(run.id, run.status, metrics)
    console.print(table)


@app.command()
def show(ctx: typer.Context, run_id: str, as_json: JSON = False) -> None:
    """Show a run: params, metrics, tags, artifacts."""
    ws = open_workspace(ctx)
    run = ws.tracking.get_run(run_id)
    if as_json:
        print_json(run)
        return
    took = f"{run.duration_seconds:.1f}s" if run.duration_seconds is not None else "running"
    console.print(
        f"[bold]run {run.id}[/bold] ({run.name}) in experiment {run.experiment}: "
        f"{run.status}, started {fmt_time(run.start_time)} by {run.user}, {took}"
    )
    for title, values in (("metrics", run.metrics), ("params", run.params), ("tags", run.tags)):
        table = Table("key", "value", title=title, title_justify="left")
        for key, value in sorted(values.items()):
            table.add_row(key, fmt_num(value))
        console.print(table)
    table = Table("path", "size", "sha256", title="artifacts", title_justify="left")
    for artifact in run.artifacts:
        table.add_row(artifact.path, f"{artifact.size_bytes or 0:,}", (artifact.digest or "")[:12])
    console.print(table)
