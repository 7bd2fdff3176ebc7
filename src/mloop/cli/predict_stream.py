"""mloop predict stream: predict every event of a stream with a deployment, publish the results."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mloop.cli._common import console, err_console, open_workspace, print_json

PROGRESS_SECONDS = 5.0
URIS = "log://NAME (a log in the workspace), nats://HOST:PORT/SUBJECT or kafka://HOST:PORT/TOPIC"


def stream(
    ctx: typer.Context,
    deployment: Annotated[str, typer.Argument(help="The deployment that predicts.")],
    source: Annotated[
        str, typer.Option("--source", "-s", help=f"Where the events come from: {URIS}.")
    ],
    sink: Annotated[
        str,
        typer.Option("--sink", "-o", help=f"Where one result per event goes: {URIS}."),
    ],
    id_field: Annotated[
        str,
        typer.Option(
            "--id-field",
            help="The event field that identifies an event and keys its result (absent: the "
            "broker's sequence or offset).",
        ),
    ] = "event_id",
    variant: Annotated[
        str | None,
        typer.Option("--variant", help="The variant that predicts (default: the first served)."),
    ] = None,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Predict every this many events…")
    ] = 500,
    max_wait_ms: Annotated[
        float,
        typer.Option("--max-wait-ms", help="…or this many milliseconds after a batch's first."),
    ] = 100.0,
    idle_exit: Annotated[
        float | None,
        typer.Option("--idle-exit", help="Stop when no event came for this many seconds."),
    ] = None,
    max_events: Annotated[
        int | None, typer.Option("--max-events", help="Stop after this many events.")
    ] = None,
    dead_letter: Annotated[
        str | None,
        typer.Option(
            "--dead-letter",
            help="Where events that do not fit the model go, with the 422 message (default: "
            "the sink, with 'error' and 'message' instead of 'prediction').",
        ),
    ] = None,
    refresh: Annotated[
        float,
        typer.Option(
            "--refresh", help="Follow the deployment's alias: check every this many seconds."
        ),
    ] = 30.0,
    log_predictions: Annotated[
        bool,
        typer.Option("--log/--no-log", help="Write the predictions to the prediction log."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Predict every event of a stream with DEPLOYMENT and publish one result per event, keyed
    by its id, at least once (an event is acknowledged only after its result is published).
    Runs until stopped (SIGTERM or Ctrl-C publish and acknowledge the batch in hand first),
    --max-events or --idle-exit."""
    from mloop.serving import PredictionLogger, stream_predictor

    ws = open_workspace(ctx)
    progress = _Progress(quiet)
    predictor = stream_predictor(
        ws,
        deployment,
        source,
        sink,
        id_field=id_field,
        variant=variant,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        idle_exit=idle_exit,
        max_events=max_events,
        dead_letter=dead_letter,
        refresh_seconds=refresh if refresh > 0 else None,
        on_start=progress.start,
        on_batch=progress.batch,
    )
    logger = None
    if log_predictions:
        logger = PredictionLogger(ws.db)
        logger.start()
        predictor.logger = logger
    try:
        stats = predictor.run(handle_signals=True)
    finally:
        if logger is not None:
            logger.close()
        progress.done()
    if as_json:
        print_json(stats.as_dict())
        return
    _print_summary(stats)


class _Progress:
    """One line on stderr at start, then one every few seconds (a live line on a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = err_console.is_terminal and not quiet
        self.status: Any = None
        self.last = 0.0

    def start(self, stats: Any) -> None:
        if self.quiet:
            return
        err_console.print(
            f"predicting {escape(stats.source)} → {escape(stats.sink)} with deployment "
            f"[bold]{escape(stats.deployment)}[/bold] ({escape(stats.model)} v{stats.version}, "
            f"variant {escape(stats.variant)}; SIGTERM or Ctrl-C: publish the batch in hand, "
            "then stop)",
            highlight=False,
        )
        if self.live:
            self.status = err_console.status("waiting for events…")
            self.status.start()
        self.last = time.monotonic()

    def batch(self, stats: Any) -> None:
        if self.quiet:
            return
        line = (
            f"{stats.events:,} events · {stats.predicted:,} predicted · {stats.errors:,} "
            f"errors · {stats.batches:,} batches · {stats.events_per_second:,.0f} events/s"
        )
        if self.status is not None:
            self.status.update(line)
        elif time.monotonic() - self.last >= PROGRESS_SECONDS:
            err_console.print(line, highlight=False)
            self.last = time.monotonic()

    def done(self) -> None:
        if self.status is not None:
            self.status.stop()


def _print_summary(stats: Any) -> None:
    table = Table(title=f"{stats.source} → {stats.deployment} → {stats.sink}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = [
        ("model", f"{stats.model} v{stats.version} (variant {stats.variant})"),
        ("events", f"{stats.events:,}"),
        ("predicted", f"{stats.predicted:,}"),
        ("errors", f"{stats.errors:,}" + (f" → {stats.dead_letter}" if stats.dead_letter else "")),
        ("duplicate ids in a batch", f"{stats.duplicates:,}"),
        ("already published", f"{stats.already_published:,}"),
        ("already acknowledged, skipped", f"{stats.redelivered:,}"),
        ("model swaps", f"{stats.swaps:,}"),
        ("batches", f"{stats.batches:,}"),
        ("seconds", f"{stats.seconds:,.2f}"),
        ("events/s", f"{stats.events_per_second:,.0f}"),
        ("stopped by", stats.stopped),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    console.print(table)
    err_console.print(f"redelivery: {escape(stats.guarantee)}", highlight=False)
    for warning in stats.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
