"""mloop tune: search hyper-parameters with Optuna, every trial a run, the best refit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mloop.cli._common import console, fmt_num, open_workspace, print_json
from mloop.cli.train import DEFAULT_ESTIMATOR


def tune(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")],
    target: Annotated[str, typer.Option("--target", "-t", help="The column to predict.")],
    space: Annotated[
        Path,
        typer.Option(
            "--space",
            "-s",
            help="Search space, YAML or JSON: {param: {type: float|int|categorical, ...}}.",
        ),
    ],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Estimator class path.")
    ] = DEFAULT_ESTIMATOR,
    trials: Annotated[int, typer.Option("--trials", "-n", help="Finished trials in all.")] = 20,
    workers: Annotated[int, typer.Option(help="Trials in parallel (processes or Ray).")] = 1,
    backend: Annotated[str, typer.Option(help="local (processes) or ray.")] = "local",
    study: Annotated[
        str | None, typer.Option(help="Study name; an existing study resumes.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(help="scikit-learn scorer (default roc_auc, accuracy or neg RMSE)."),
    ] = None,
    cv: Annotated[int, typer.Option(help="Cross-validation folds (1: one hold-out).")] = 3,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Fixed hyper-parameter key=value.")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-x", help="Leave these columns out (repeat).")
    ] = None,
    experiment: Annotated[str, typer.Option("--experiment", "-e")] = "Default",
    seed: int = 42,
    register: Annotated[
        str | None, typer.Option("--register", "-r", help="Register the refit best model.")
    ] = None,
    alias: Annotated[str | None, typer.Option(help="Alias to point at the new version.")] = None,
    refit: Annotated[bool, typer.Option(help="Train the best parameters on the dataset.")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tune MODEL on DATASET: each trial a child run, the best refit (and registered)."""
    from mloop.training import load_space, parse_param

    ws = open_workspace(ctx)
    search_space = load_space(space)
    params = dict(parse_param(p) for p in (param or []))
    options: dict[str, Any] = {
        "space": search_space,
        "model": model,
        "params": params,
        "n_trials": trials,
        "workers": workers,
        "backend": backend,
        "study": study,
        "metric": metric,
        "cv": cv,
        "exclude": exclude or [],
        "experiment": experiment,
        "seed": seed,
        "refit": refit,
        "register": register,
        "alias": alias,
    }
    if as_json:
        print_json(ws.tuning.tune(dataset, target, **options))
        return
    with Progress(
        TextColumn("[bold]tuning[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("trials", total=trials, best="-")

        def report(done: int, total: int, best: float | None) -> None:
            bar.update(task, completed=done, total=total, best=fmt_num(best) if best else "-")

        result = ws.tuning.tune(dataset, target, progress=report, **options)
    console.print(
        f"study [bold]{result.study}[/bold]: {result.complete} complete, {result.pruned} pruned, "
        f"{result.failed} failed (run {result.run.id})"
    )
    table = Table(f"best trial {result.best_trial}", "value")
    table.add_row(result.metric, fmt_num(result.best_score))
    for key, value in result.best_params.items():
        table.add_row(key, fmt_num(value) if isinstance(value, float) else str(value))
    console.print(table)
    if result.refit is not None:
        console.print(f"refit run [bold]{result.refit.run.id}[/bold]")
        if result.refit.model_version is not None:
            alias_text = f" (alias [bold]{result.refit.alias}[/bold])" if result.refit.alias else ""
            console.print(f"registered [bold]{result.refit.model_version.ref}[/bold]{alias_text}")
