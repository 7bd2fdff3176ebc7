"""mloop features: apply definitions from a Python file, list and show them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mloop.cli._common import console, fmt_time, new_app, open_workspace, print_json
from mloop.core.errors import InvalidInput, NotFound

app = new_app("Feature store: entities and feature views over datasets, point-in-time correct.")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _definitions(path: Path) -> list[Any]:
    """The Entity and FeatureView objects defined at module level in FILE.py."""
    from mloop.features import Entity, FeatureView

    if not path.is_file():
        raise NotFound(f"file {str(path)!r} does not exist")
    module_name = f"mloop_features_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's module: any failure is theirs to see
        raise InvalidInput(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(module_name, None)
    found = [v for v in vars(module).values() if isinstance(v, Entity | FeatureView)]
    if not found:
        raise InvalidInput(f"{path} defines no Entity or FeatureView at module level")
    return found


def _entry(definition: Any) -> dict[str, Any]:
    return {
        "kind": "entity" if "join_keys" in type(definition).model_fields else "feature_view",
        "ref": f"{definition.name}@{definition.version}",
        "version": definition.version,
        "created_at": definition.created_at.isoformat() if definition.created_at else None,
        **definition.spec(),
    }


@app.command()
def apply(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="FILE.py defining Entity/FeatureView objects.")],
    force: Annotated[
        bool, typer.Option("--force", help="Make incompatible changes (type change, removal).")
    ] = False,
    as_json: JSON = False,
) -> None:
    """Check and store the definitions of FILE.py; an unchanged one keeps its version."""
    ws = open_workspace(ctx)
    stored = ws.features.apply(_definitions(path), force=force)
    if as_json:
        print_json([_entry(d) for d in stored])
        return
    for d in stored:
        kind = _entry(d)["kind"].replace("_", " ")
        console.print(f"applied {kind} [bold]{escape(d.name)}@{d.version}[/bold]")


@app.command("list")
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """List entities and feature views (their latest versions)."""
    ws = open_workspace(ctx)
    entities, views = ws.features.list_entities(), ws.features.list_views()
    if as_json:
        print_json({"entities": [_entry(e) for e in entities], "views": [_entry(v) for v in views]})
        return
    table = Table("entity", "join keys", "created")
    for e in entities:
        keys = ", ".join(f"{k}: {t}" for k, t in e.join_keys.items())
        table.add_row(f"{escape(e.name)}@{e.version}", escape(keys), fmt_time(e.created_at))
    console.print(table)
    table = Table("feature view", "entities", "source", "features", "ttl", "created")
    for v in views:
        table.add_row(
            f"{escape(v.name)}@{v.version}",
            escape(", ".join(v.entities)),
            escape(v.source),
            str(len(v.features)),
            f"{v.ttl}s" if v.ttl else "-",
            fmt_time(v.created_at),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="A feature view: NAME (latest) or NAME@N.")],
    as_json: JSON = False,
) -> None:
    """Show a feature view version: its entities, source, timestamp, TTL and features."""
    ws = open_workspace(ctx)
    view = ws.features.get_view(ref)
    if as_json:
        print_json(_entry(view))
        return
    console.print(
        f"[bold]{escape(view.name)}@{view.version}[/bold]  source {escape(view.source)}  "
        f"entities {escape(', '.join(view.entities))}  timestamp {escape(view.timestamp_column)}"
        f"  ttl {f'{view.ttl}s' if view.ttl else 'none'}\ncreated {fmt_time(view.created_at)}"
        + (f"  owner {escape(view.owner)}" if view.owner else "")
        + (f"\n{escape(view.description)}" if view.description else "")
    )
    table = Table("feature", "type")
    for f in view.features:
        table.add_row(escape(f.name), str(f.dtype))
    console.print(table)
