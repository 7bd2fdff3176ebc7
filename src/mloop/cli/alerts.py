"""mloop alerts: rules over monitored series, their evaluation, history and Prometheus rules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mloop.cli._common import console, fail, fmt_num, new_app, open_workspace, print_json

app = new_app("Alerts: rules over drift, latency, errors, nulls and metrics; who gets told.")

_STATE_STYLE = {"ok": "green", "pending": "yellow", "firing": "bold red"}
_KIND_STYLE = {
    "firing": "bold red",
    "pending": "yellow",
    "resolved": "green",
    "ok": "green",
    "notify_failed": "red",
    "error": "red",
}


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _state(state: str) -> str:
    return f"[{_STATE_STYLE.get(state, 'white')}]{state}[/]"


def _events_table(events: list[Any], title: str) -> Table:
    table = Table("time", "rule", "event", "value", "message", title=title, title_justify="left")
    for e in events:
        style = _KIND_STYLE.get(e.kind, "white")
        value = "-" if e.value is None else fmt_num(e.value)
        table.add_row(_when(e.ts), e.rule, f"[{style}]{e.kind}[/]", value, e.message)
    return table


@app.command()
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Rule name.")],
    model: Annotated[str, typer.Option("--model", "-m", help="NAME, NAME@ALIAS or NAME@N.")],
    series: Annotated[
        str,
        typer.Option(
            "--series",
            "-s",
            help="latency_p99, latency_p50, error_rate, volume, drift_share, drift:COLUMN, "
            "null_rate:COLUMN, metric:NAME.",
        ),
    ],
    op: Annotated[str, typer.Option("--op", help="One of >, >=, <, <=.")],
    threshold: Annotated[
        float, typer.Option("--threshold", "-t", help="Compared with the series.")
    ],
    window: Annotated[str, typer.Option("--window", help="Window of the series.")] = "5m",
    for_: Annotated[
        str, typer.Option("--for", help="How long the condition must hold before firing.")
    ] = "0s",
    cooldown: Annotated[
        str, typer.Option("--cooldown", help="Least time between notifications of the rule.")
    ] = "1h",
    dest: Annotated[
        list[str] | None,
        typer.Option("--dest", "-d", help="log or webhook:URL (repeatable; default log)."),
    ] = None,
    severity: Annotated[str, typer.Option(help="info, warning or critical.")] = "warning",
    description: Annotated[str, typer.Option(help="What the alert means.")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Add an alert rule."""
    ws = open_workspace(ctx)
    alert = ws.alerts.add(
        {
            "name": name,
            "model": model,
            "series": series,
            "op": op,
            "threshold": threshold,
            "window": window,
            "for": for_,
            "cooldown": cooldown,
            "destinations": dest or ["log"],
            "severity": severity,
            "description": description,
        }
    )
    if as_json:
        print_json(alert.model_dump(mode="json", by_alias=True))
        return
    console.print(f"added alert [bold]{alert.name}[/bold]: {alert.condition()}")


@app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every rule and its state."""
    alerts = open_workspace(ctx).alerts.list()
    if as_json:
        print_json([a.model_dump(mode="json", by_alias=True) for a in alerts])
        return
    if not alerts:
        console.print("no alert rules yet: mloop alerts add NAME -m MODEL --series S ...")
        return
    table = Table("name", "condition", "for", "severity", "state", "value", "evaluated")
    table.columns[1].overflow = "fold"  # a narrow terminal folds the condition, never cuts it
    for a in alerts:
        state = _state(a.state) if a.enabled else "[dim]disabled[/dim]"
        value = "-" if a.last_value is None else fmt_num(a.last_value)
        table.add_row(
            a.name,
            f"{a.condition()} over {a.window}",
            a.for_,
            a.severity,
            state,
            value,
            _when(a.last_evaluated_at),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One rule, its state and its latest events."""
    ws = open_workspace(ctx)
    alert = ws.alerts.get(name)
    if as_json:
        print_json(alert.model_dump(mode="json", by_alias=True))
        return
    for key, value in alert.model_dump(by_alias=True).items():
        shown = _when(value) if key.endswith(("_at", "_since")) else value
        if key == "state":
            shown = _state(str(value))
        console.print(f"[bold]{key:>18}[/bold]  {shown}")
    events = ws.alerts.history(name, limit=10)
    if events:
        console.print(_events_table(events, "latest events"))


@app.command()
def delete(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Delete a rule (its history stays)."""
    open_workspace(ctx).alerts.delete(name)
    console.print(f"deleted alert {name}")


@app.command()
def enable(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Enable a rule."""
    open_workspace(ctx).alerts.enable(name, True)
    console.print(f"enabled alert {name}")


@app.command()
def disable(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Disable a rule (a pending or firing one goes back to ok)."""
    open_workspace(ctx).alerts.enable(name, False)
    console.print(f"disabled alert {name}")


def _print_pass(events: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([e.model_dump(mode="json") for e in events])
    elif events:
        console.print(_events_table(events, "this pass"))
    else:
        console.print("no change")


@app.command()
def evaluate(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Evaluate every enabled rule once; print what changed (exit 0 even when one fires)."""
    _print_pass(open_workspace(ctx).alerts.evaluate(), as_json)


@app.command()
def watch(
    ctx: typer.Context,
    interval: Annotated[str, typer.Option(help="Time between passes.")] = "30s",
    max_passes: Annotated[
        int | None, typer.Option("--max-passes", help="Stop after so many passes.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Evaluate every enabled rule again and again (Ctrl-C stops)."""
    from mloop.data import parse_duration

    try:
        seconds = parse_duration(interval)
    except ValueError:
        fail(f"interval {interval!r} is not a duration such as 30s, 5m or 1h")
    if max_passes is not None and max_passes < 1:
        fail(f"--max-passes must be at least 1, got {max_passes}")
    ws = open_workspace(ctx)
    done = 0
    try:
        while True:
            _print_pass(ws.alerts.evaluate(), as_json)
            done += 1
            if max_passes is not None and done >= max_passes:
                break
            time.sleep(seconds)
    except KeyboardInterrupt:
        pass


@app.command()
def history(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One rule (default: all).")] = None,
    since: Annotated[str | None, typer.Option(help="ISO time, or a duration ago (1d).")] = None,
    limit: Annotated[int, typer.Option(help="At most so many events.")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Events of the rules, newest first."""
    start = _since(since) if since else None
    events = open_workspace(ctx).alerts.history(name, since=start, limit=limit)
    if as_json:
        print_json([e.model_dump(mode="json") for e in events])
    elif events:
        console.print(_events_table(events, f"history of {name or 'every rule'}"))
    else:
        console.print("no events")


def _since(text: str) -> Any:
    from mloop.core.clock import parse_time

    return parse_time(text)


@app.command("prometheus-rules")
def prometheus_rules(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """Prometheus alerting rules (YAML) for the enabled rules."""
    text = open_workspace(ctx).alerts.prometheus_rules()
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}")


@app.command()
def series(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME, NAME@ALIAS or NAME@N.")],
    name: Annotated[str, typer.Option("--series", "-s", help="The series (see mloop alerts add).")],
    window: Annotated[str, typer.Option("--window", help="Window width.")] = "5m",
    last: Annotated[int, typer.Option(help="The newest so many windows.")] = 12,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A series' values per window: what a rule's threshold is compared with."""
    from datetime import timedelta

    from mloop.data import parse_duration

    try:
        width = timedelta(seconds=parse_duration(window))
    except ValueError:
        fail(f"window {window!r} is not a duration such as 30s, 5m or 1h")
    points = open_workspace(ctx).series.compute(model, name, width=width, last=last)
    if as_json:
        print_json([{"start": p.start, "end": p.end, "value": p.value} for p in points])
        return
    table = Table("start", "end", name, title=f"{name} of {model}", title_justify="left")
    for p in points:
        table.add_row(_when(p.start), _when(p.end), fmt_num(p.value))
    console.print(table)
