"""mloop train: fit a model on a dataset version, track it, optionally register it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mloop.cli._common import console, fmt_num, open_workspace, print_json

# spelled out, not imported: importing mloop.training would load scikit-learn for --help
# (tests/test_architecture.py checks that the two agree)
DEFAULT_ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"


def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="NAME or NAME@VERSION")],
    target: Annotated[str, typer.Option("--target", "-t", help="The column to predict.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Estimator class path.")
    ] = DEFAULT_ESTIMATOR,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Hyper-parameter key=value (repeat).")
    ] = None,
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="Use only these columns (repeat).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", "-x", help="Leave these columns out (repeat).")
    ] = None,
    experiment: Annotated[str, typer.Option("--experiment", "-e")] = "Default",
    run_name: Annotated[str | None, typer.Option("--run-name")] = None,
    test_size: Annotated[float, typer.Option(help="Hold-out fraction.")] = 0.2,
    seed: int = 42,
    register: Annotated[
        str | None, typer.Option("--register", "-r", help="Register the model under this name.")
    ] = None,
    alias: Annotated[
        str | None,
        typer.Option(
            help="Alias to point at the new version (a new model's first version "
            "becomes 'champion' by default)."
        ),
    ] = None,
    cv: Annotated[
        str,
        typer.Option(
            help="Validation: holdout, or cross-validate on the training part with kfold, "
            "stratified, group (--group-column) or timeseries (--time-column; the hold-out is "
            "then the latest rows)."
        ),
    ] = "holdout",
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    group_column: Annotated[
        str | None, typer.Option(help="Rows of one group stay on one side (cv=group).")
    ] = None,
    time_column: Annotated[
        str | None, typer.Option(help="Orders rows in time (cv=timeseries).")
    ] = None,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="Add a verified ONNX export (and its quantized form).")
    ] = False,
    plots: Annotated[bool, typer.Option(help="Log ROC/PR/calibration/residual plots.")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train MODEL on DATASET to predict TARGET; preprocessing travels with the model."""
    from mloop.training import parse_param

    ws = open_workspace(ctx)
    params = dict(parse_param(p) for p in (param or []))
    with console.status(f"training {model.rsplit('.', 1)[-1]} on {dataset}…"):
        result = ws.training.train(
            dataset,
            target,
            model=model,
            params=params,
            features=feature,
            exclude=exclude or [],
            experiment=experiment,
            run_name=run_name,
            test_size=test_size,
            seed=seed,
            register=register,
            alias=alias,
            cv=cv,
            folds=folds,
            group_column=group_column,
            time_column=time_column,
            onnx=onnx,
            plots=plots,
        )
    if as_json:
        print_json(result)
        return
    run = result.run
    console.print(f"run [bold]{run.id}[/bold] {run.status} on {run.tags.get('mloop.dataset')}")
    table = Table("metric (hold-out)", "value")
    for key, value in result.metrics.items():
        table.add_row(key, fmt_num(value))
    console.print(table)
    if result.model_version is not None:
        alias_text = f" (alias [bold]{result.alias}[/bold])" if result.alias else ""
        console.print(f"registered [bold]{result.model_version.ref}[/bold]{alias_text}")
