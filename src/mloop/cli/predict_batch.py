"""mloop predict batch: a deployment's model over a dataset version, written as a new one."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from mloop.cli._common import console, open_workspace, print_json


def batch(
    ctx: typer.Context,
    deployment: Annotated[
        str, typer.Option("--deployment", "-d", help="The deployment whose model predicts.")
    ],
    input: Annotated[
        str, typer.Option("--input", "-i", help="The dataset to predict on: NAME or NAME@VERSION.")
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="The dataset the predictions become a version of.")
    ],
    workers: Annotated[
        int,
        typer.Option(help="1: in this process (a chunk per core); N: in N local processes."),
    ] = 1,
    chunk_rows: Annotated[int, typer.Option(help="Rows predicted in one call.")] = 100_000,
    variant: Annotated[
        str | None,
        typer.Option(help="The deployment's variant to use (default: its first served one)."),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(
            "--keep",
            "-k",
            help="Input columns to copy to the output (repeat; 'all': every one). "
            "Default: the columns the model does not take (ids, keys, labels).",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Run the chunks as Ray tasks: 'local' starts Ray here, else an address "
            "for ray.init ('auto', 'ray://HOST:10001').",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Predict every row of INPUT with DEPLOYMENT's model; write them as a version of OUTPUT,
    with lineage to the model version and the input version."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from mloop.core.errors import InvalidInput

    if workers < 1:
        raise InvalidInput(f"--workers is at least 1, not {workers}")
    if chunk_rows < 1:
        raise InvalidInput(f"--chunk-rows is at least 1, not {chunk_rows}")
    kept: list[str] | str | None = None
    if keep:
        kept = "all" if keep == ["all"] else [c for k in keep for c in k.split(",") if c]
    ws = open_workspace(ctx)
    service = ws.batch
    run = functools.partial(
        service.predict,
        deployment,
        input,
        output,
        workers=workers,
        chunk_rows=chunk_rows,
        variant=variant,
        keep=kept,
        ray_address=ray_address,
    )
    if as_json:
        print_json(run())
        return
    with Progress(
        TextColumn("[bold]predicting[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("rows", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = run(progress=report)
    how = {"process": "in this process", "local": "in local processes", "ray": "on Ray"}
    state = " (unchanged: the same predictions as before)" if result.unchanged else ""
    console.print(
        f"{result.rows:,} rows in {result.seconds:.2f}s ({result.rows_per_second:,.0f} rows/s) "
        f"with {result.model} ({result.runtime}, {how[result.backend]}) → "
        f"[bold]{result.output.ref}[/bold]{state}",
        highlight=False,
        soft_wrap=True,
    )
