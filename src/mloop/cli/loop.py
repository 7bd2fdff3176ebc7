"""mloop loop: retraining policies and the controller that carries them out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mloop.cli._common import (
    console,
    fmt_time,
    new_app,
    open_workspace,
    print_json,
    read_yaml,
)

app = new_app("The closed loop: retrain on a trigger, gate, canary, promote or roll back.")

JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.command("set")
def set_policy(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The registered model.")],
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The policy, YAML or JSON (docs/guide/loop.md).")
    ],
    as_json: JSON = False,
) -> None:
    """Set (or replace) MODEL's retraining policy; everything it names is checked now."""
    ws = open_workspace(ctx)
    policy = ws.loop.set_policy(model, read_yaml(file))
    if as_json:
        print_json(policy.model_dump(mode="json"))
        return
    triggers = ", ".join(t.type for t in policy.triggers)
    canary = (
        f"canary {policy.canary.percent:g} % on {policy.deployment}"
        if policy.canary and policy.deployment
        else "no canary"
    )
    console.print(
        f"loop policy of {model}: triggers {triggers}; recipe {policy.recipe.name}; {canary}"
    )


@app.command()
def show(ctx: typer.Context, model: str) -> None:
    """MODEL's policy, as JSON."""
    print_json(open_workspace(ctx).loop.get_policy(model).model_dump(mode="json"))


@app.command()
def delete(ctx: typer.Context, model: str) -> None:
    """Remove MODEL's policy (its history stays)."""
    open_workspace(ctx).loop.delete_policy(model)
    console.print(f"loop policy of {model} deleted")


@app.command()
def enable(ctx: typer.Context, model: str) -> None:
    """Let the controller act on MODEL's policy again."""
    open_workspace(ctx).loop.enable(model, True)
    console.print(f"loop of {model} enabled")


@app.command()
def disable(ctx: typer.Context, model: str) -> None:
    """Keep MODEL's policy but let the controller leave it alone."""
    open_workspace(ctx).loop.enable(model, False)
    console.print(f"loop of {model} disabled")


def _progress(run: Any) -> str:
    if run is None:
        return "-"
    progress = run.detail.get("progress") or {}
    mine = progress.get("challenger")
    if run.state == "canary" and mine:
        return f"{mine['requests']} requests, {mine['errors']} errors"
    return str(run.outcome)


@app.command()
def status(ctx: typer.Context, as_json: JSON = False) -> None:
    """Each model with a policy: idle or where its pass is, its champion, the last result."""
    states = open_workspace(ctx).loop.status()
    if as_json:
        print_json([s.model_dump(mode="json") for s in states])
        return
    if not states:
        console.print("no loop policies yet (mloop loop set MODEL -f POLICY.yaml)")
        return
    table = Table("model", "enabled", "state", "champion", "challenger", "now / last")
    for s in states:
        current = s.active or s.last
        table.add_row(
            s.model,
            "yes" if s.enabled else "no",
            s.state,
            "-" if s.champion is None else str(s.champion),
            "-"
            if current is None or current.candidate_version is None
            else str(current.candidate_version),
            _progress(s.active) if s.active else (s.last.outcome if s.last else "-"),
        )
    console.print(table)


@app.command()
def history(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="The newest so many passes.")] = 20,
    as_json: JSON = False,
) -> None:
    """The passes of the loop, newest first, with why each started and how it ended."""
    runs = open_workspace(ctx).loop.runs(model, limit=limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in runs])
        return
    table = Table("started", "model", "trigger", "state", "champion", "challenger", "why / how")
    for r in runs:
        table.add_row(
            fmt_time(r.started_at),
            r.model,
            r.trigger,
            r.state,
            "-" if r.champion_version is None else str(r.champion_version),
            "-" if r.candidate_version is None else str(r.candidate_version),
            f"{r.reason}\n→ {r.outcome}" if r.outcome != r.reason else r.reason,
        )
    console.print(table)


@app.command()
def trigger(
    ctx: typer.Context,
    model: str,
    reason: Annotated[str, typer.Option(help="Why (it goes in the audit trail).")] = "by hand",
) -> None:
    """Start a pass for MODEL now (train, gate, canary), whatever its triggers say."""
    run = open_workspace(ctx).loop.trigger(model, reason)
    console.print(f"loop pass {run.id} for {model}: {run.state} — {run.outcome}")


@app.command()
def run(
    ctx: typer.Context,
    interval: Annotated[str, typer.Option(help="Time between rounds, e.g. 30s or 5m.")] = "30s",
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    max_rounds: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many rounds.")
    ] = None,
) -> None:
    """Run the controller: every INTERVAL, advance running canaries and start a pass for each
    policy whose trigger fires. Ctrl-C stops it (a pass in progress finishes its step)."""
    import logging
    import signal
    import threading

    from mloop.core.errors import InvalidInput
    from mloop.data import parse_duration

    try:
        seconds = parse_duration(interval)
    except ValueError:
        raise InvalidInput(
            f"--interval must be a duration such as 30s or 5m, not {interval!r}"
        ) from None
    ws = open_workspace(ctx)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rounds = 1 if once else max_rounds
    console.print(f"mloop loop controller on {ws.home}, a round every {interval}")
    try:
        done = ws.loop.run_forever(interval=seconds, stop=stop, max_passes=rounds)
    except KeyboardInterrupt:
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(f"{done} round{'s' if done != 1 else ''} done")
