"""mloop experiments: list, create, rename, delete, restore, show.

An experiment is named by its name or its id (32 hex digits, or "0" for Default) wherever a
command takes one; ids win when a name looks like an id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Column, Table

from mloop.cli._common import (
    console,
    err_console,
    fmt_time,
    new_app,
    open_workspace,
    print_json,
)

if TYPE_CHECKING:
    from mloop.tracking import Experiment

app = new_app("Experiments: named groups of runs.")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
NAME_OR_ID = Annotated[str, typer.Argument(help="Experiment name or id.", metavar="NAME_OR_ID")]
RECENT_RUNS = 10


@app.command("list")
def list_(
    ctx: typer.Context,
    view: Annotated[str, typer.Option(help="active, deleted or all.")] = "active",
    filter_string: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            help="e.g. \"name LIKE 'fraud%' and tags.team = 'risk'\" (name, creation_time, "
            "last_update_time, tags.KEY).",
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", "-o", help="name, creation_time or last_update_time [DESC]."),
    ] = None,
    max_results: Annotated[int, typer.Option("--max", "-n", help="Experiments per page.")] = 100,
    page_token: Annotated[str | None, typer.Option("--page-token")] = None,
    as_json: JSON = False,
) -> None:
    """List experiments, newest first."""
    ws = open_workspace(ctx)
    page = ws.tracking.search_experiments(
        view=view,
        filter_string=filter_string,
        order_by=order_by,
        max_results=max_results,
        page_token=page_token,
    )
    if as_json:
        print_json(page.items)
    else:
        table = Table(
            Column("id", no_wrap=True, min_width=32),  # copied into the next command
            Column("name", overflow="fold"),
            Column("created", no_wrap=True),
            Column("tags", overflow="fold"),
        )
        for exp in page.items:
            name = escape(exp.name)
            if exp.lifecycle_stage != "active":
                name += " [red](deleted)[/red]"
            table.add_row(exp.id, name, fmt_time(exp.created_at), _tags(exp))
        console.print(table)
    if page.next_page_token:
        err_console.print(f"more experiments: --page-token {page.next_page_token}", highlight=False)


def _tags(exp: Experiment) -> str:
    return escape("\n".join(f"{k}={v}" for k, v in sorted(exp.tags.items()))) or "-"


@app.command()
def create(
    ctx: typer.Context,
    name: str,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="KEY=VALUE; repeat for several.")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Create the experiment NAME."""
    from mloop.core.errors import InvalidInput

    tags: dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--tag takes KEY=VALUE, not {item!r}")
        tags[key.strip()] = value
    ws = open_workspace(ctx)
    exp = ws.tracking.create_experiment(name, tags)
    if as_json:
        print_json(exp)
        return
    console.print(f"created experiment [bold]{escape(exp.name)}[/bold] (id {exp.id})")


@app.command()
def rename(
    ctx: typer.Context, name_or_id: NAME_OR_ID, new_name: str, as_json: JSON = False
) -> None:
    """Rename an experiment (its runs follow: they hold its id)."""
    from mloop.tracking import resolve_experiment

    ws = open_workspace(ctx)
    old = resolve_experiment(ws.tracking, name_or_id)
    exp = ws.tracking.rename_experiment(old.id, new_name)
    if as_json:
        print_json(exp)
        return
    console.print(f"renamed experiment {escape(old.name)} → [bold]{escape(exp.name)}[/bold]")


@app.command()
def delete(ctx: typer.Context, name_or_id: NAME_OR_ID, as_json: JSON = False) -> None:
    """Mark an experiment deleted (hidden from the active list; restore undoes it)."""
    from mloop.tracking import resolve_experiment

    ws = open_workspace(ctx)
    exp = ws.tracking.delete_experiment(resolve_experiment(ws.tracking, name_or_id).id)
    if as_json:
        print_json(exp)
        return
    console.print(f"deleted experiment {escape(exp.name)} (id {exp.id}); undo with:")
    console.print(f"  mloop experiments restore {exp.id}", highlight=False)


@app.command()
def restore(ctx: typer.Context, name_or_id: NAME_OR_ID, as_json: JSON = False) -> None:
    """Restore a deleted experiment (by id, or by name)."""
    from mloop.tracking import resolve_experiment

    ws = open_workspace(ctx)
    exp = ws.tracking.restore_experiment(resolve_experiment(ws.tracking, name_or_id).id)
    if as_json:
        print_json(exp)
        return
    console.print(f"restored experiment {escape(exp.name)} (id {exp.id})")


@app.command()
def show(ctx: typer.Context, name_or_id: NAME_OR_ID, as_json: JSON = False) -> None:
    """Show an experiment: id, state, tags and its most recent runs."""
    from mloop.tracking import resolve_experiment

    ws = open_workspace(ctx)
    exp = resolve_experiment(ws.tracking, name_or_id)
    if as_json:
        print_json(exp)
        return
    stage = "" if exp.lifecycle_stage == "active" else " [red](deleted)[/red]"
    console.print(
        f"[bold]experiment {escape(exp.name)}[/bold]{stage}  id {exp.id}, created "
        f"{fmt_time(exp.created_at)}, updated {fmt_time(exp.updated_at)}"
    )
    if exp.tags:
        table = Table("tag", Column("value", overflow="fold"), title="tags", title_justify="left")
        for key, value in sorted(exp.tags.items()):
            table.add_row(escape(key), escape(value))
        console.print(table)
    page = ws.tracking.search_runs([exp.id], max_results=RECENT_RUNS, view="all")
    table = Table(
        Column("run id", no_wrap=True, min_width=32),
        Column("name", overflow="fold"),
        Column("status", no_wrap=True),
        Column("started", no_wrap=True),
        title="latest runs" + (f" (the {RECENT_RUNS} newest)" if page.next_page_token else ""),
        title_justify="left",
    )
    for run in page.items:
        state = run.status if run.lifecycle_stage == "active" else f"{run.status} (deleted)"
        table.add_row(run.id, escape(run.name), state, fmt_time(run.start_time))
    console.print(table)
    console.print(f"more: mloop runs list --experiment {exp.id}", highlight=False)
