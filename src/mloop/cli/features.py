"""mloop features: apply definitions from a Python file, list and show them, materialize them
into the online store (once or from their stream), their status, and online reads."""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mloop.cli._common import (
    console,
    err_console,
    fail,
    fmt_time,
    new_app,
    open_workspace,
    print_json,
)
from mloop.core.errors import InvalidInput, MloopError, NotFound

if TYPE_CHECKING:
    from mloop.features import Entity, FeatureView, OnDemandFeatureView
    from mloop.workspace import Workspace

app = new_app(
    "Feature store: entities, feature views and on-demand views; point-in-time training sets; "
    "the online store (materialize, status, online reads)."
)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _definitions(path: Path) -> list[Any]:
    """The Entity, FeatureView and OnDemandFeatureView objects defined at module level in
    FILE.py."""
    from mloop.features import Entity, FeatureView, OnDemandFeatureView

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
    kinds = Entity | FeatureView | OnDemandFeatureView
    found = [v for v in vars(module).values() if isinstance(v, kinds)]
    if not found:
        raise InvalidInput(
            f"{path} defines no Entity, FeatureView or OnDemandFeatureView at module level"
        )
    return found


def _kind(definition: Any) -> str:
    fields = type(definition).model_fields
    if "join_keys" in fields:
        return "entity"
    return "feature_view" if "timestamp_column" in fields else "ondemand_view"


KIND_LABELS = {
    "entity": "entity",
    "feature_view": "feature view",
    "ondemand_view": "on-demand view",
}


def _entry(definition: Any) -> dict[str, Any]:
    return {
        "kind": _kind(definition),
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
        kind = KIND_LABELS[_kind(d)]
        console.print(f"applied {kind} [bold]{escape(d.name)}@{d.version}[/bold]")


@app.command("list")
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """List entities, feature views and on-demand views (their latest versions)."""
    ws = open_workspace(ctx)
    entities, views = ws.features.list_entities(), ws.features.list_views()
    ondemand = ws.features.list_ondemand()
    if as_json:
        print_json(
            {
                "entities": [_entry(e) for e in entities],
                "views": [_entry(v) for v in views],
                "ondemand": [_entry(v) for v in ondemand],
            }
        )
        return
    table = Table("entity", "join keys", "created")
    for e in entities:
        keys = ", ".join(f"{k}: {t}" for k, t in e.join_keys.items())
        table.add_row(f"{escape(e.name)}@{e.version}", escape(keys), fmt_time(e.created_at))
    console.print(table)
    table = Table("feature view", "entities", "source", "features", "ttl", "transform", "created")
    for v in views:
        table.add_row(
            f"{escape(v.name)}@{v.version}",
            escape(", ".join(v.entities)),
            escape(v.source) + (f" ← {escape(v.stream)}" if v.stream else ""),
            str(len(v.features)),
            f"{v.ttl}s" if v.ttl else "-",
            v.transform.kind if v.transform else "-",
            fmt_time(v.created_at),
        )
    console.print(table)
    if ondemand:
        table = Table("on-demand view", "request", "sources", "features", "transform", "created")
        for d in ondemand:
            table.add_row(
                f"{escape(d.name)}@{d.version}",
                escape(", ".join(f"{k}: {t}" for k, t in d.request.items()) or "-"),
                escape(", ".join(d.sources) or "-"),
                escape(", ".join(d.feature_names)),
                d.transform.kind,
                fmt_time(d.created_at),
            )
        console.print(table)


def _find(ws: Workspace, ref: str) -> FeatureView | OnDemandFeatureView:
    """A feature view, else an on-demand view, of that reference."""
    try:
        return ws.features.get_view(ref)
    except NotFound as exc:
        try:
            return ws.features.get_ondemand(ref)
        except NotFound:
            raise exc from None


def _view_status(ws: Workspace, name: str) -> dict[str, Any] | None:
    return next((s for s in ws.features.status() if s["view"].partition("@")[0] == name), None)


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[
        str, typer.Argument(help="A feature or on-demand view: NAME (latest) or NAME@N.")
    ],
    as_json: JSON = False,
) -> None:
    """Show a view version: entities, source, stream, timestamp, TTL, transform and features
    (with its materialization status), or an on-demand view's request fields and sources."""
    from mloop.features import FeatureView

    ws = open_workspace(ctx)
    view = _find(ws, ref)
    status = _view_status(ws, view.name) if isinstance(view, FeatureView) else None
    if as_json:
        print_json({**_entry(view), **({"status": status} if status is not None else {})})
        return
    transform = view.transform.kind if view.transform else "none"
    if isinstance(view, FeatureView):
        console.print(
            f"[bold]{escape(view.name)}@{view.version}[/bold]  source {escape(view.source)}  "
            f"entities {escape(', '.join(view.entities))}  timestamp "
            f"{escape(view.timestamp_column)}  ttl {f'{view.ttl}s' if view.ttl else 'none'}\n"
            f"transform {transform}  stream {escape(view.stream) if view.stream else 'none'}\n"
            f"created {fmt_time(view.created_at)}"
            + (f"  owner {escape(view.owner)}" if view.owner else "")
            + (f"\n{escape(view.description)}" if view.description else "")
        )
    else:
        request = ", ".join(f"{k}: {t}" for k, t in view.request.items()) or "none"
        console.print(
            f"[bold]{escape(view.name)}@{view.version}[/bold]  on-demand view  "
            f"request {escape(request)}  sources {escape(', '.join(view.sources) or 'none')}\n"
            f"transform {transform}\ncreated {fmt_time(view.created_at)}"
            + (f"  owner {escape(view.owner)}" if view.owner else "")
            + (f"\n{escape(view.description)}" if view.description else "")
        )
    table = Table("feature", "type")
    for f in view.features:
        table.add_row(escape(f.name), str(f.dtype))
    console.print(table)
    if status is not None:
        last = status["last_materialization"]
        if last is None:
            console.print(
                f"not materialized into {escape(status['store'])}: "
                f"mloop features materialize {escape(view.name)}"
            )
        else:
            console.print(
                f"last materialization {last} at {fmt_time(_when(status['last_run_at']))}"
                + (f": {escape(status['last_error'])}" if status["last_error"] else "")
                + f"\nmaterialized until {fmt_time(_when(status['materialized_until']))}  "
                f"newest event {fmt_time(_when(status['newest_event']))}  "
                f"freshness {_age(status['freshness_seconds'])}  "
                f"fresh {'yes' if status['fresh'] else 'no'}"
            )


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 0:
        return f"{s}s (in the future)"
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit} {s % size // sub_size}{sub}"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


# -- materialization -------------------------------------------------------------------------


@app.command()
def materialize(
    ctx: typer.Context,
    views: Annotated[
        list[str] | None, typer.Argument(help="Feature views (default: every view).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="ISO time; default: the beginning.")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="ISO time; default: now.")] = None,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental", help="Only what came since each view's last materialization."
        ),
    ] = False,
    as_json: JSON = False,
) -> None:
    """Write each view's latest value per entity into the online store, with a progress bar
    per view, then a table of what was done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    ws = open_workspace(ctx)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("entities"),
        console=err_console,
    )
    tasks: dict[str, Any] = {}

    def report(view: str, done: int, total: int) -> None:
        if view not in tasks:
            tasks[view] = progress.add_task(view, total=total)
        progress.update(tasks[view], completed=done, total=total)

    try:
        with progress:
            runs = ws.features.materialize(
                views or None, start=start, end=end, incremental=incremental, progress=report
            )
    except MloopError:
        raise
    except Exception as exc:  # a view's transform or source failed: recorded, then shown
        fail(f"materialization failed: {type(exc).__name__}: {exc}")
    if as_json:
        print_json([{**r.model_dump(mode="json"), "seconds": r.seconds} for r in runs])
        return
    table = Table("view", "mode", "rows read", "entities written", "seconds", "store")
    for r in runs:
        table.add_row(
            escape(r.view),
            r.mode,
            f"{r.rows_read:,}",
            f"{r.entities_written:,}",
            f"{r.seconds:.2f}" if r.seconds is not None else "-",
            escape(r.store),
        )
    console.print(table)


@app.command("materialize-stream")
def materialize_stream(
    ctx: typer.Context,
    view: Annotated[str, typer.Argument(help="A feature view defined with stream=URI.")],
    max_events: Annotated[
        int | None, typer.Option("--max-events", min=1, help="Stop after this many events.")
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option("--idle-exit", min=0, help="Stop when no event came for this many seconds."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Events per batch (one ingestion each).")
    ] = 10_000,
    max_wait: Annotated[
        float,
        typer.Option(
            "--max-wait", min=0, help="…or write a batch this many seconds after its first event."
        ),
    ] = 1.0,
    as_json: JSON = False,
) -> None:
    """Consume the view's stream into its source dataset, materializing after each batch, until
    --max-events, --idle-exit or Ctrl-C."""
    ws = open_workspace(ctx)
    runs: list[Any] = []

    def after_batch(stats: Any, run: Any) -> None:
        runs.append(run)
        if not as_json:
            err_console.print(
                f"batch {stats.batches}: {stats.events:,} events, {stats.written:,} written · "
                f"{run.entities_written:,} entities materialized",
                highlight=False,
            )

    stats = ws.features.materialize_stream(
        view,
        max_events=max_events,
        idle_exit=idle_exit,
        batch_size=batch_size,
        max_wait=max_wait,
        on_batch=after_batch,
    )
    summary = {
        "view": view,
        "source": stats.source,
        "dataset": stats.dataset,
        "events": stats.events,
        "written": stats.written,
        "duplicates": stats.duplicates,
        "quarantined": stats.quarantined,
        "batches": stats.batches,
        "version": stats.version,
        "materializations": len(runs),
        "entities_written": sum(r.entities_written for r in runs),
        "seconds": round(stats.seconds, 3),
        "stopped": stats.stopped,
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"{stats.source} → {stats.dataset} → {view}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for label, key in [
        ("events", "events"),
        ("written", "written"),
        ("duplicates dropped", "duplicates"),
        ("quarantined", "quarantined"),
        ("batches", "batches"),
        ("materializations", "materializations"),
        ("entities written", "entities_written"),
        ("seconds", "seconds"),
        ("stopped", "stopped"),
    ]:
        table.add_row(label, escape(str(summary[key])))
    console.print(table)


# -- status and online reads -----------------------------------------------------------------


@app.command()
def status(ctx: typer.Context, as_json: JSON = False) -> None:
    """Per feature view: version, last materialization, how far it is materialized, its newest
    event and how fresh that is against the view's TTL."""
    ws = open_workspace(ctx)
    found = ws.features.status()
    if as_json:
        print_json(found)
        return
    if not found:
        console.print("no feature view: mloop features apply FILE.py")
        return
    table = Table(
        "view",
        "version",
        "last materialization",
        "materialized until",
        "newest event",
        "freshness",
        "fresh",
    )
    for s in found:
        name, _, version = s["view"].partition("@")
        last = s["last_materialization"] or "never"
        if s["last_error"]:
            last += f": {s['last_error']}"
        table.add_row(
            escape(name),
            version,
            escape(last),
            fmt_time(_when(s["materialized_until"])),
            fmt_time(_when(s["newest_event"])),
            _age(s["freshness_seconds"]),
            "[green]yes[/green]" if s["fresh"] else "[red]no[/red]",
        )
    console.print(table)


def _typed(text: str, kind: str | None) -> Any:
    """A value typed on the command line, as the key or request field's type says (unknown: an
    integer if it is one, else text); a value that does not parse stays text, for the service
    to refuse with its message."""
    if kind in ("string", "datetime", "date"):
        return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), text)
    try:
        return int(text)
    except ValueError:
        pass
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            pass
    return text


def _entity_rows(ws: Workspace, pairs: list[str]) -> list[dict[str, Any]]:
    """KEY=VALUE pairs into entity rows: a key given again starts the next row."""
    types: dict[str, str] = {}
    entities: list[Entity] = ws.features.list_entities()
    for e in entities:
        types.update(e.join_keys)
    for d in ws.features.list_ondemand():
        types.update({k: str(t) for k, t in d.request.items()})
    rows: list[dict[str, Any]] = [{}]
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise InvalidInput(f"--entity {pair!r}: use KEY=VALUE, e.g. --entity driver_id=5")
        if key in rows[-1]:
            rows.append({})
        rows[-1][key] = _typed(value, types.get(key))
    return rows


@app.command()
def online(
    ctx: typer.Context,
    features: Annotated[list[str], typer.Argument(help="Features as VIEW:FEATURE.")],
    entity: Annotated[
        list[str],
        typer.Option(
            "--entity",
            "-e",
            help="KEY=VALUE: a join key (or a request field of an on-demand view); giving a key "
            "again starts the next entity row.",
        ),
    ],
    as_json: JSON = False,
) -> None:
    """Read the latest materialized values of FEATURES for entity rows, with each value's status
    (present, missing: never materialized for the key, expired: older than the TTL)."""
    ws = open_workspace(ctx)
    result = ws.features.online(_entity_rows(ws, entity), features)
    statuses = result.statuses
    if as_json:
        print_json({"features": result.features, "rows": result.rows, "statuses": statuses})
        return
    table = Table(*[escape(c) for c in result.rows[0]])
    for row, state in zip(result.rows, statuses, strict=True):
        cells = []
        for name, value in row.items():
            text = escape("null" if value is None else str(value))
            s = state.get(name)
            if s is not None and s != "present":
                text = f"[dim]{text}[/dim] [yellow]({s})[/yellow]"
            cells.append(text)
        table.add_row(*cells)
    console.print(table)
