"""mloop data stream / mloop data produce: consume a stream into a dataset; send events."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mloop.cli._common import console, err_console, open_workspace, print_json

PROGRESS_SECONDS = 5.0


def stream(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The dataset the events are appended to.")],
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            help="log://NAME (a log in the workspace), nats://HOST:PORT/SUBJECT or "
            "kafka://HOST:PORT/TOPIC.",
        ),
    ],
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Write a segment every this many events…")
    ] = 10_000,
    max_wait: Annotated[
        float, typer.Option("--max-wait", help="…or this many seconds after a batch's first event.")
    ] = 1.0,
    suite: Annotated[
        str | None,
        typer.Option("--suite", help="Validate each batch; failing rows go to the quarantine."),
    ] = None,
    id_field: Annotated[
        str, typer.Option("--id-field", help="The event field that identifies an event.")
    ] = "id",
    dedup_window: Annotated[
        int,
        typer.Option("--dedup-window", help="How many recent ids are remembered to drop resends."),
    ] = 100_000,
    quarantine: Annotated[
        str | None,
        typer.Option("--quarantine", help="Dataset for rejected events (default NAME.quarantine)."),
    ] = None,
    max_events: Annotated[
        int | None, typer.Option("--max-events", help="Stop after this many events.")
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option("--idle-exit", help="Stop when no event came for this many seconds."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Consume a stream into dataset NAME, exactly once, until stopped (SIGTERM or Ctrl-C
    write the batch in hand first), --max-events or --idle-exit."""
    ws = open_workspace(ctx)
    progress = _Progress(quiet)
    consumer = ws.streams.consumer(
        name,
        source,
        batch_size=batch_size,
        max_wait=max_wait,
        suite=suite,
        id_field=id_field,
        dedup_window=dedup_window,
        quarantine=quarantine,
        max_events=max_events,
        idle_exit=idle_exit,
        on_start=progress.start,
        on_batch=progress.batch,
    )
    stats = consumer.run(handle_signals=True)
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
            f"consuming {escape(stats.source)} → dataset [bold]{escape(stats.dataset)}[/bold] "
            "(SIGTERM or Ctrl-C: write the batch in hand, then stop)",
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
            f"{stats.events:,} events · {stats.written:,} written · {stats.duplicates:,} "
            f"duplicates · {stats.quarantined:,} quarantined · {stats.batches:,} batches · "
            f"{stats.events_per_second:,.0f} events/s"
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
    table = Table(title=f"{stats.source} → {stats.dataset}", title_justify="left")
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = [
        ("events", f"{stats.events:,}"),
        ("written", f"{stats.written:,}" + (f" → {stats.version}" if stats.version else "")),
        ("duplicates dropped", f"{stats.duplicates:,}"),
        (
            "quarantined",
            f"{stats.quarantined:,}"
            + (f" → {stats.quarantine_version}" if stats.quarantine_version else ""),
        ),
    ]
    rows += [(f"  {kind}", f"{n:,}") for kind, n in stats.reasons.items() if n]
    rows += [
        ("already written, skipped", f"{stats.redelivered:,}"),
        ("batches", f"{stats.batches:,}"),
        ("seconds", f"{stats.seconds:,.2f}"),
        ("events/s", f"{stats.events_per_second:,.0f}"),
        ("stopped by", stats.stopped),
    ]
    for key, value in rows:
        table.add_row(key, escape(value))
    console.print(table)
    for warning in stats.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)


def produce(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="log://NAME, nats://HOST:PORT/SUBJECT or kafka://HOST:PORT/TOPIC")
    ],
    file: Annotated[
        Path | None,
        typer.Argument(help="JSON Lines, one event per line (default: standard input)."),
    ] = None,
    chunk: Annotated[
        int, typer.Option("--chunk", help="Events sent (and made durable) at a time.")
    ] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the count as JSON.")] = False,
) -> None:
    """Send events to a stream: each line of FILE is one event, sent as it is (blank lines
    are skipped). A stream or topic that does not exist is created."""
    from mloop.core.errors import InvalidInput
    from mloop.data import mask_stream_url as mask_url

    if chunk < 1:
        raise InvalidInput("--chunk must be at least 1")
    ws = open_workspace(ctx)
    sent = 0
    handle: IO[bytes]
    if file is None or str(file) == "-":
        handle = sys.stdin.buffer
    else:
        try:
            handle = open(file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        with ws.streams.producer(source) as producer:
            batch: list[bytes] = []
            for line in handle:
                event = line.rstrip(b"\r\n")
                if not event.strip():
                    continue
                batch.append(event)
                if len(batch) >= chunk:
                    sent += producer.send(batch)
                    batch = []
            if batch:
                sent += producer.send(batch)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    shown = mask_url(source)  # never a password on the screen
    if as_json:
        print_json({"source": shown, "events": sent})
    else:
        console.print(f"sent {sent:,} events to {escape(shown)}")


def register(app: typer.Typer) -> None:
    """Add ``stream`` and ``produce`` to the ``mloop data`` app."""
    app.command("stream")(stream)
    app.command("produce")(produce)
