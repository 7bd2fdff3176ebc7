"""mloop runs: search, show, compare, delete and restore tracked runs.

Every command is one call to the tracking service; this module only parses and renders. Tables
stay readable however many params and metrics the runs have: ``list`` shows the columns you name
(``--columns``) or a few key metrics in one cell, and ``compare`` puts keys in rows and runs in
columns, split into several tables when the runs do not fit the terminal's width.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer
from rich.markup import escape
from rich.table import Column, Table

from mloop.cli._common import (
    console,
    err_console,
    fmt_num,
    fmt_time,
    new_app,
    open_workspace,
    print_json,
)

if TYPE_CHECKING:
    from mloop.tracking import Run

app = new_app("Runs: what was trained, on what, with which results.")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DATASET_FIELDS = ("name", "digest", "context")
KEY_METRICS = ("roc_auc", "auc", "f1", "accuracy", "rmse", "mae", "r2", "loss")
MAX_KEY_METRICS = 4
FILTER_HELP = (
    "MLflow's filter grammar, e.g. \"metrics.auc > 0.9 and params.model = 'xgb'\" "
    "(see docs/guide/tracking.md)."
)


@app.command("list")
def list_(
    ctx: typer.Context,
    experiment: Annotated[
        list[str] | None,
        typer.Option("--experiment", "-e", help="Experiment name or id; repeat for several."),
    ] = None,
    filter_string: Annotated[str | None, typer.Option("--filter", "-f", help=FILTER_HELP)] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by", "-o", help="e.g. 'metrics.auc DESC'; repeat for ties. Default: newest."
        ),
    ] = None,
    status: Annotated[str | None, typer.Option(help="RUNNING, FINISHED, FAILED, KILLED")] = None,
    max_results: Annotated[
        int, typer.Option("--max", "--limit", "-n", help="Runs per page (at most 50000).")
    ] = 20,
    page_token: Annotated[
        str | None, typer.Option("--page-token", help="The token printed under the last page.")
    ] = None,
    view: Annotated[str, typer.Option(help="active, deleted or all.")] = "active",
    columns: Annotated[
        list[str] | None,
        typer.Option(
            "--columns",
            "-c",
            help="Comma-separated, e.g. metrics.auc,params.model,tags.team,datasets.name.",
        ),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Search runs: filter, order, page. Newest first by default."""
    from mloop.tracking import parse_filter, search_run_list

    ws = open_workspace(ctx)
    clauses = parse_filter(filter_string)  # a malformed filter fails here, in its own words
    wanted = [_column(spec) for spec in _split_columns(columns or [])]
    filters = [filter_string] if filter_string and clauses else []
    if status is not None:
        filters.append(f"attributes.status = '{_status(status)}'")
    found = search_run_list(
        ws.tracking,
        experiment or None,
        " and ".join(filters) or None,
        order_by or None,
        max_results,
        page_token,
        view,
    )
    if as_json:
        print_json(_jsonable(found))
    else:
        mentioned = [c.ident.key for c in clauses if c.ident.kind == "metric"]
        mentioned += _ordered_metrics(order_by or [])
        console.print(_runs_table(found, wanted, mentioned))
    if found.next_page_token:
        # with --json stdout stays one JSON document: the next page's token goes to stderr
        out = err_console if as_json else console
        out.print(f"more runs: --page-token {found.next_page_token}", highlight=False)


def _jsonable(value: Any) -> Any:
    """Models as JSON values with NaN and infinities as the strings "NaN" and "Infinity", as
    the REST API writes them (``json.dumps`` would write bare NaN, which is not JSON)."""
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return json.loads(value.model_dump_json())


def _status(status: str) -> str:
    from typing import get_args

    from mloop.core.errors import InvalidInput
    from mloop.tracking import RunStatus

    known = get_args(RunStatus)
    if status.upper() not in known:
        raise InvalidInput(f"unknown run status {status!r}; use one of {', '.join(known)}")
    return status.upper()


def _split_columns(values: Sequence[str]) -> list[str]:
    """``a,b`` and repeated options, with commas inside quotes or backticks left alone."""
    parts: list[str] = []
    for value in values:
        parts += [p.strip() for p in re.findall(r"(?:`[^`]*`|\"[^\"]*\"|[^,])+", value)]
    return [p for p in parts if p]


class Key(NamedTuple):
    """What a column shows: kind (metric, param, tag, attribute, dataset) and key."""

    kind: str
    key: str


def _column(spec: str) -> tuple[str, Key]:
    from mloop.core.errors import InvalidInput
    from mloop.tracking import parse_order_by

    entity, _, field = spec.partition(".")
    if entity.lower() in ("datasets", "dataset"):
        if field not in DATASET_FIELDS:
            raise InvalidInput(
                f"unknown dataset field {field!r} in --columns (name, digest, context)"
            )
        return spec, Key("dataset", field)
    if spec.split()[-1].upper() in ("ASC", "DESC"):
        raise InvalidInput(f"--columns takes names, not an order: {spec!r}")
    ident = parse_order_by([spec])[0].ident  # the grammar's identifiers, aliases and quoting
    return spec, Key(ident.kind, ident.key)


def _ordered_metrics(order_by: Sequence[str]) -> list[str]:
    from mloop.tracking import parse_order_by

    return [o.ident.key for o in parse_order_by(list(order_by)) if o.ident.kind == "metric"]


def _value(run: Run, ident: Key) -> str:
    from mloop.tracking import artifact_uri

    if ident.kind == "metric":
        value = run.metrics.get(ident.key)
        return "-" if value is None else fmt_num(value)
    if ident.kind in ("param", "tag"):
        found = (run.params if ident.kind == "param" else run.tags).get(ident.key)
        return "-" if found is None else escape(found)
    if ident.kind == "dataset":
        values = sorted({str(getattr(i, ident.key)) for i in run.inputs})
        return escape(", ".join(values)) or "-"
    attributes: dict[str, Any] = {
        "run_id": run.id,
        "run_name": escape(run.name),
        "status": run.status,
        "user_id": escape(run.user or "-"),
        "start_time": fmt_time(run.start_time),
        "end_time": fmt_time(run.end_time),
        "artifact_uri": artifact_uri(run.experiment_id, run.id),
    }
    return str(attributes[ident.key])


def _key_metrics(run: Run, mentioned: Sequence[str]) -> str:
    """The metrics the search was about, then the usual suspects, then the rest: a few."""
    order = [*mentioned, *KEY_METRICS, *sorted(run.metrics)]
    keys = list(dict.fromkeys(k for k in order if k in run.metrics))
    lines = [f"{escape(k)}={fmt_num(run.metrics[k])}" for k in keys[:MAX_KEY_METRICS]]
    if len(keys) > MAX_KEY_METRICS:
        lines.append(f"[dim]+{len(keys) - MAX_KEY_METRICS} more[/dim]")
    return "\n".join(lines)


def _column_title(title: str, ident: Key, keys: Sequence[str]) -> str:
    """The key alone when it says which column it is; the full name when two share it."""
    if ident.kind == "dataset":
        return f"dataset {ident.key}"
    return escape(ident.key if keys.count(ident.key) == 1 else title)


def _runs_table(
    found: Sequence[Run], wanted: Sequence[tuple[str, Key]], mentioned: Sequence[str]
) -> Table:
    """One row per run. Wide terminals add experiment, name, status and start; narrow ones show
    the id and the columns asked for (or the key metrics)."""
    # ids are what a user copies into the next command: never cut or wrapped
    run_id = Column("run id", no_wrap=True, min_width=32)
    wide = console.width >= 110
    keys = [ident.key for _, ident in wanted]
    extra = [
        Column(
            _column_title(title, ident, keys),
            overflow="fold",
            justify="right" if ident.kind == "metric" else "left",
        )
        for title, ident in wanted
    ] or [Column("key metrics", overflow="fold")]
    context: list[Column | str] = []
    if wide:
        context = ["experiment / name", Column("status", no_wrap=True), "started"]
    elif not wanted:
        context = [Column("status", no_wrap=True, min_width=8)]
    table = Table(run_id, *context, *extra)
    for run in found:
        state = run.status if run.lifecycle_stage == "active" else f"{run.status} (deleted)"
        values = (
            [_value(run, ident) for _, ident in wanted]
            if wanted
            else [_key_metrics(run, mentioned)]
        )
        if wide:
            where = f"{escape(run.experiment)} / {escape(run.name)}"
            table.add_row(run.id, where, state, fmt_time(run.start_time), *values)
        elif not wanted:
            table.add_row(run.id, state, *values)
        else:
            table.add_row(run.id, *values)
    return table


@app.command()
def show(ctx: typer.Context, run_id: str, as_json: JSON = False) -> None:
    """Show a run: params, metrics, tags, datasets, artifacts."""
    ws = open_workspace(ctx)
    run = ws.tracking.get_run(run_id)
    if as_json:
        print_json(run)
        return
    took = f"{run.duration_seconds:.1f}s" if run.duration_seconds is not None else "running"
    deleted = " [red](deleted)[/red]" if run.lifecycle_stage != "active" else ""
    console.print(
        f"[bold]run {run.id}[/bold] ({escape(run.name)}) in experiment {escape(run.experiment)}: "
        f"{run.status}{deleted}, started {fmt_time(run.start_time)} by "
        f"{escape(run.user or '-')}, {took}"
    )
    if run.parent_run_id:
        console.print(f"parent run {run.parent_run_id}")
    for title, values in (("metrics", run.metrics), ("params", run.params), ("tags", run.tags)):
        table = Table("key", Column("value", overflow="fold"), title=title, title_justify="left")
        for key, value in sorted(values.items()):
            table.add_row(escape(key), escape(fmt_num(value)))
        console.print(table)
    if run.inputs:
        table = Table("dataset", "digest", "context", title="inputs", title_justify="left")
        for item in run.inputs:
            table.add_row(escape(item.name), item.digest[:12], escape(item.context))
        console.print(table)
    table = Table("path", "size", "sha256", title="artifacts", title_justify="left")
    for artifact in run.artifacts:
        table.add_row(
            escape(artifact.path), f"{artifact.size_bytes or 0:,}", (artifact.digest or "")[:12]
        )
    console.print(table)


@app.command()
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    only_diff: Annotated[
        bool, typer.Option("--only-diff", help="Only the params and metrics that differ.")
    ] = False,
    as_json: JSON = False,
) -> None:
    """Params and metrics of runs side by side: keys in rows, runs in columns.

    Keys that differ between the runs are marked ≠. Runs that do not fit the terminal's
    width continue in a further table, so any number of runs stays readable."""
    ws = open_workspace(ctx)
    comparison = ws.tracking.compare_runs(run_ids)
    rows: list[tuple[str, list[Any]]] = [(f"params.{k}", v) for k, v in comparison.params.items()]
    rows += [(f"metrics.{k}", v) for k, v in comparison.metrics.items()]
    differing = {key for key, values in rows if _differ(values)}
    total = len(rows)
    if only_diff:
        rows = [(key, values) for key, values in rows if key in differing]
    if as_json:
        data = _jsonable(comparison)
        if only_diff:
            data["params"] = {k: v for k, v in data["params"].items() if f"params.{k}" in differing}
            data["metrics"] = {
                k: v for k, v in data["metrics"].items() if f"metrics.{k}" in differing
            }
        data["differing"] = sorted(differing)
        print_json(data)
        return
    legend = Table("#", "name", Column("run id", no_wrap=True), title="runs", title_justify="left")
    for n, (run_id, name) in enumerate(zip(comparison.runs, comparison.names, strict=True), 1):
        legend.add_row(str(n), escape(name), run_id)
    console.print(legend)
    cells = [[_cell(v) for v in values] for _, values in rows]
    key_width = min(40, max([len(k) for k, _ in rows] + [3])) + 2
    widths = [
        min(18, max([len(_header(i + 1, name))] + [len(row[i]) for row in cells]))
        for i, name in enumerate(comparison.names)
    ]
    for start, stop in _chunks(widths, console.width - key_width - 4):
        title = (
            f"runs #{start + 1}–#{stop} of {len(widths)}" if len(widths) > stop - start else None
        )
        table = Table(
            Column("key", overflow="fold", max_width=40),
            *[
                Column(
                    escape(_header(n + 1, comparison.names[n])), justify="right", overflow="fold"
                )
                for n in range(start, stop)
            ],
            title=title,
            title_justify="left",
        )
        for n, ((key, _values), row) in enumerate(zip(rows, cells, strict=True)):
            if n and key.startswith("metrics.") and rows[n - 1][0].startswith("params."):
                table.add_section()  # a rule between the params and the metrics
            mark = "≠ " if key in differing else "  "
            style = "bold yellow" if key in differing else None
            table.add_row(mark + escape(key), *row[start:stop], style=style)
        console.print(table)
    if not rows:
        console.print("no params or metrics differ" if only_diff else "no params or metrics")
    elif differing:
        console.print(f"{len(differing)} of {total} keys differ (≠)")


def _differ(values: Sequence[Any]) -> bool:
    seen = {("nan" if isinstance(v, float) and math.isnan(v) else v) for v in values}
    return len(seen) > 1


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


def _header(n: int, name: str) -> str:
    return f"#{n} {name if len(name) <= 14 else name[:13] + '…'}"


def _chunks(widths: Sequence[int], room: int) -> list[tuple[int, int]]:
    """Split the run columns into consecutive groups that fit ``room`` characters."""
    groups: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, width in enumerate(widths):
        need = width + 3  # padding and the border
        if i > start and used + need > room:
            groups.append((start, i))
            start, used = i, 0
        used += need
    groups.append((start, len(widths)))
    return groups


@app.command()
def delete(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="One or more run ids.")],
    as_json: JSON = False,
) -> None:
    """Mark runs deleted: hidden from searches of active runs, restorable."""
    _set_stage(ctx, run_ids, delete=True, as_json=as_json)


@app.command()
def restore(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="One or more run ids.")],
    as_json: JSON = False,
) -> None:
    """Restore deleted runs."""
    _set_stage(ctx, run_ids, delete=False, as_json=as_json)


def _set_stage(ctx: typer.Context, run_ids: Sequence[str], *, delete: bool, as_json: bool) -> None:
    ws = open_workspace(ctx)
    for run_id in run_ids:  # every id is checked before any run changes
        ws.tracking.get_run(run_id)
    change = ws.tracking.delete_run if delete else ws.tracking.restore_run
    done = [change(run_id) for run_id in dict.fromkeys(run_ids)]
    if as_json:
        print_json(_jsonable(done))
        return
    for run in done:
        console.print(f"{'deleted' if delete else 'restored'} run {run.id} ({escape(run.name)})")
