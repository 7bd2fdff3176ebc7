"""mloop models: register, list, show, alias."""

from __future__ import annotations

from typing import Annotated

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
