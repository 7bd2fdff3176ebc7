"""mloop models: register, list, show, alias."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Column, Table

from mloop.cli._common import console, fmt_num, fmt_time, new_app, open_workspace, print_json

app = new_app("The model registry: versions, aliases (champion, challenger, …).")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.command()
def register(
    ctx: typer.Context,
    run_id: str,
    name: str,
    artifact_path: Annotated[str, typer.Option(help="Where the run logged the model.")] = "model",
    as_json: JSON = False,
) -> None:
    """Register the model of RUN_ID as a new version of NAME."""
    ws = open_workspace(ctx)
    version = ws.registry.register(run_id, name, artifact_path=artifact_path)
    if as_json:
        print_json(version)
        return
    console.print(f"registered [bold]{version.ref}[/bold] from run {run_id}")


@app.command("list")
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """List registered models."""
    ws = open_workspace(ctx)
    found = ws.registry.list_models()
    if as_json:
        print_json(found)
        return
    table = Table("model", "latest version", "aliases", "updated")
    for m in found:
        aliases = ", ".join(f"{a}→{v}" for a, v in m.aliases.items()) or "-"
        table.add_row(m.name, str(m.latest_version or "-"), aliases, fmt_time(m.updated_at))
    console.print(table)


@app.command()
def show(ctx: typer.Context, name: str, as_json: JSON = False) -> None:
    """Show a model's versions with their aliases, runs, data and metrics."""
    ws = open_workspace(ctx)
    found = ws.registry.versions(name)
    if as_json:
        print_json(found)
        return
    run_id = Column("run", no_wrap=True, min_width=32)  # copied into the next command
    created = Column("created", no_wrap=True)
    wide = console.width >= 110  # on a narrow terminal, leave out when it was made
    headers: list[Column | str] = ["version", "aliases", run_id, "trained on", "metrics"]
    table = Table(*headers, created) if wide else Table(*headers)
    for v in found:
        metrics = v.info.get("metrics", {})
        shown = {k: metrics[k] for k in ("roc_auc", "f1", "rmse", "r2") if k in metrics}
        table.add_row(
            str(v.version),
            ", ".join(v.aliases) or "-",
            v.run_id or "-",
            str(v.info.get("dataset", "-")),
            "\n".join(f"{k}={fmt_num(x)}" for k, x in shown.items()),
            *([fmt_time(v.created_at)] if wide else []),
        )
    console.print(table)
    if found and found[-1].signature is not None:
        sig = found[-1].signature
        console.print(
            f"signature (v{found[-1].version}): {sig.task}, target {sig.target!r}; inputs: "
            + ", ".join(f"{c.name}:{c.type}" for c in sig.inputs)
        )


@app.command()
def alias(
    ctx: typer.Context,
    name: str,
    alias: str,
    version: Annotated[int | None, typer.Argument(help="Version to point at.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias instead.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
) -> None:
    """Point ALIAS of model NAME at VERSION (or remove it with --delete)."""
    ws = open_workspace(ctx)
    if delete:
        ws.registry.delete_alias(name, alias)
        console.print(f"removed alias {alias!r} of {name}")
        return
    if version is None:
        from mloop.core.errors import InvalidInput

        raise InvalidInput("give the VERSION to point the alias at, or --delete")
    moved = ws.registry.set_alias(name, alias, version, reason=reason)
    console.print(f"{name}@{alias} → version {moved.version}")


Gates = Annotated[
    list[str] | None,
    typer.Option(
        "--gate",
        help="A gate, e.g. 'roc_auc >= champion.roc_auc - 0.005' (repeat for more).",
    ),
]
Columns = Annotated[list[str] | None, typer.Option(help="A column (repeat for more).")]
SliceBy = Annotated[
    list[str] | None, typer.Option("--slice", help="A column to slice metrics by (repeat).")
]


@app.command()
def policy(
    ctx: typer.Context,
    name: str,
    gate: Gates = None,
    dataset: Annotated[
        str | None, typer.Option(help="The evaluation dataset (NAME or NAME@V).")
    ] = None,
    alias: Annotated[str, typer.Option(help="The alias the gates guard.")] = "champion",
    sensitive: Columns = None,
    slice_by: SliceBy = None,
    latency_rows: Annotated[int, typer.Option(help="Single-row predictions timed.")] = 200,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the policy.")] = False,
    as_json: JSON = False,
) -> None:
    """Show, set (--gate ... --dataset D) or remove (--delete) model NAME's promotion policy."""
    ws = open_workspace(ctx)
    if delete:
        ws.registry.delete_policy(name, reason=reason)
        console.print(f"removed the promotion policy of {name}")
        return
    if gate or dataset:
        if not gate or not dataset:
            from mloop.core.errors import InvalidInput

            raise InvalidInput("a policy needs at least one --gate and the --dataset")
        found = ws.registry.set_policy(
            name,
            gates=gate,
            dataset=dataset,
            alias=alias,
            sensitive=sensitive or [],
            slices=slice_by or [],
            latency_rows=latency_rows,
            reason=reason,
        )
    else:
        current = ws.registry.get_policy(name)
        if current is None:
            from mloop.core.errors import NotFound

            raise NotFound(
                f"model {name!r} has no promotion policy; set one with: mloop models policy "
                f"{name} --gate 'roc_auc >= champion.roc_auc' --dataset DATASET"
            )
        found = current
    if as_json:
        print_json(found)
        return
    console.print(f"[bold]{name}[/bold]@{found.alias} is guarded on dataset {found.dataset}:")
    for text in found.gates:
        console.print(f"  • {text}", highlight=False)
    if found.sensitive:
        console.print(f"  fairness over: {', '.join(found.sensitive)}")


def _gate_table(results: list[dict[str, Any]]) -> Table:
    table = Table("gate", "result", "values")
    for r in results:
        passed = r["passed"]
        mark = "[green]pass[/green]" if passed else "[red]FAIL[/red]" if passed is False else "skip"
        values = ", ".join(f"{k}={fmt_num(v)}" for k, v in r["values"].items())
        table.add_row(r["gate"], mark, values if passed is not None else r["message"])
    return table


@app.command()
def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME@N.")],
    dataset: Annotated[str, typer.Option(help="The dataset (NAME or NAME@V).")],
    sensitive: Columns = None,
    slice_by: SliceBy = None,
    latency_rows: Annotated[int, typer.Option(help="Single-row predictions timed.")] = 200,
    as_json: JSON = False,
) -> None:
    """Evaluate a model version on a dataset: metrics, latency, slices, fairness."""
    ws = open_workspace(ctx)
    found = ws.evaluation.evaluate(
        model,
        dataset,
        sensitive=sensitive or [],
        slices=slice_by or [],
        latency_rows=latency_rows,
    )
    if as_json:
        print_json(found)
        return
    note = " (stored earlier)" if found.reused else ""
    console.print(f"{found.model} on {found.dataset}: {found.rows:,} rows{note}")
    table = Table("metric", "value")
    for key, value in sorted(found.metrics.items()):
        table.add_row(key, fmt_num(value))
    console.print(table)


@app.command()
def promote(
    ctx: typer.Context,
    name: str,
    version: int,
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if gates fail (needs --reason).")
    ] = False,
    as_json: JSON = False,
) -> None:
    """Promote VERSION of NAME through its gates (exit 1 with the failing gates if refused)."""
    from mloop.cli._common import EXIT_FAILED_CHECK, fail
    from mloop.core.errors import GateFailed

    ws = open_workspace(ctx)
    try:
        result = ws.promotion.promote(name, version, reason=reason, force=force)
    except GateFailed as refused:
        if as_json:
            print_json(refused.to_dict())
        else:
            console.print(_gate_table(refused.details["gates"]))
        fail(refused.message, EXIT_FAILED_CHECK)
    if as_json:
        print_json(result)
        return
    if result.report.results:
        console.print(_gate_table([r.model_dump() for r in result.report.results]))
    forced = " (forced past failing gates)" if result.forced and not result.passed else ""
    before = f" (was version {result.previous})" if result.previous is not None else ""
    console.print(f"{name}@{result.alias} → version {version}{before}{forced}")


@app.command()
def rollback(
    ctx: typer.Context,
    name: str,
    alias: Annotated[str, typer.Option(help="The alias to move back.")] = "champion",
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
    as_json: JSON = False,
) -> None:
    """Point NAME@ALIAS back at the version it held before its last move."""
    ws = open_workspace(ctx)
    was = ws.registry.get_model(name).aliases.get(alias)
    back = ws.promotion.rollback(name, alias, reason=reason)
    if as_json:
        print_json(back)
        return
    console.print(f"{name}@{alias} → version {back.version} (rolled back from {was})")


@app.command()
def history(
    ctx: typer.Context,
    name: str,
    alias: Annotated[str | None, typer.Option(help="Only this alias.")] = None,
    as_json: JSON = False,
) -> None:
    """Every move of NAME's aliases (set, promote, rollback), with who, when and why."""
    ws = open_workspace(ctx)
    moves = ws.registry.alias_history(name, alias)
    if as_json:
        print_json(moves)
        return
    table = Table("when", "alias", "action", "version", "from", "by", "reason")
    for m in moves:
        table.add_row(
            fmt_time(m.created_at),
            m.alias,
            m.action,
            "-" if m.version is None else str(m.version),
            "-" if m.previous is None else str(m.previous),
            m.created_by or "-",
            m.reason or "-",
        )
    console.print(table)


@app.command()
def export(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME@N.")],
    destination: Annotated[str, typer.Argument(help="A new (or empty) folder.")],
    as_json: JSON = False,
) -> None:
    """Export a model version as a self-contained folder (loads without the workspace:
    mloop.models.load_folder, or mlflow.pyfunc.load_model)."""
    ws = open_workspace(ctx)
    version = ws.registry.resolve(model)
    folder = ws.registry.export(version, destination)
    if as_json:
        print_json({"model": version.ref, "folder": str(folder)})
        return
    console.print(f"exported {version.ref} to {folder}")


@app.command()
def explain(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME@N.")],
    dataset: Annotated[str, typer.Option(help="Rows to explain (NAME or NAME@V).")],
    rows: Annotated[int | None, typer.Option(help="At most this many rows (a sample).")] = None,
    top: Annotated[int, typer.Option(help="Features shown.")] = 10,
    as_json: JSON = False,
) -> None:
    """SHAP explanations of a version's predictions on a dataset, kept with the version."""
    ws = open_workspace(ctx)
    found = ws.evaluation.explain(model, dataset, rows=rows)
    ranked = found.importance()
    if as_json:
        print_json(
            {"method": found.method, "output_space": found.output_space, "importance": ranked}
        )
        return
    console.print(f"{found.rows} rows explained ({found.method}, {found.output_space})")
    table = Table("feature", "mean |SHAP|")
    for name, value in list(ranked.items())[:top]:
        table.add_row(name, fmt_num(value))
    console.print(table)


@app.command()
def card(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME@N.")],
    dataset: Annotated[str, typer.Option(help="The evaluation dataset (NAME or NAME@V).")],
    intended_use: Annotated[str | None, typer.Option(help="What the model is for.")] = None,
    limitations: Annotated[str | None, typer.Option(help="What it must not be used for.")] = None,
    sensitive: Columns = None,
    slice_by: SliceBy = None,
    out: Annotated[
        str | None, typer.Option(help="Write the card to FILE (.html or .md); else print it.")
    ] = None,
    explain_it: Annotated[
        bool, typer.Option("--explain/--no-explain", help="Include SHAP top features.")
    ] = True,
) -> None:
    """A model card (data, metrics, slices, fairness, explanations, intended use, limits), as
    Markdown and HTML, kept with the version."""
    from pathlib import Path

    from mloop.core.errors import InvalidInput

    if out is not None and not out.endswith((".html", ".htm", ".md")):
        raise InvalidInput(f"--out {out}: give a .html or .md file")
    ws = open_workspace(ctx)
    found = ws.evaluation.card(
        model,
        dataset,
        intended_use=intended_use,
        limitations=limitations,
        sensitive=sensitive or [],
        slices=slice_by or [],
        explain=explain_it,
    )
    if out is None:
        console.print(found.to_markdown(), markup=False, highlight=False)
        return
    text = found.to_markdown() if out.endswith(".md") else found.to_html()
    Path(out).write_text(text)
    console.print(f"wrote the card of {model} to {out}")
