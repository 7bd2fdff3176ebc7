"""mloop monitor: drift of served traffic against training data."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from mloop.cli._common import EXIT_FAILED_CHECK, console, new_app, open_workspace, print_json

app = new_app("Monitoring: is the traffic still like the training data?")


def drift_table(report: Any) -> Table:
    table = Table(
        "column",
        "kind",
        "method",
        "statistic",
        "threshold",
        "PSI",
        "rows",
        "drifted",
        title=f"drift of {report.model}@{report.version} vs {report.reference}",
        title_justify="left",
    )
    for col in [*report.features, *report.outputs]:
        stat = "-" if col.statistic is None else f"{col.statistic:.4f}"
        rule = "p <" if col.method in ("ks", "chi_square") else "≥"
        psi = "-" if col.psi is None else f"{col.psi:.3f}"
        flag = "[red]DRIFT[/red]" if col.drifted else "[green]ok[/green]"
        table.add_row(
            col.column,
            col.kind,
            col.method,
            stat,
            f"{rule} {col.threshold}",
            psi,
            f"{col.current_rows:,}",
            flag,
        )
    return table


@app.command()
def drift(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME, NAME@ALIAS or NAME@N")],
    since: Annotated[
        str | None, typer.Option(help="Window start: ISO time or a duration ago (30m, 2h, 1d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end (default: now).")] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when any feature drifted.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare logged inputs and predictions in a window with the model's training data."""
    from mloop.core.clock import parse_time
    from mloop.monitoring import window_label

    ws = open_workspace(ctx)
    report = ws.monitoring.drift(
        model,
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
    )
    if as_json:
        print_json(report)
    else:
        console.print(drift_table(report))
        drifted = ", ".join(report.drifted_features) or "none"
        console.print(
            f"window {window_label(report.since, report.until)}: {report.current_rows:,} rows "
            f"vs {report.reference_rows:,} training rows; drifted features: [bold]{drifted}[/bold] "
            f"({report.share_drifted:.0%}{', dataset drift' if report.dataset_drift else ''})"
        )
    if fail_on_drift and report.drifted_features:
        raise typer.Exit(EXIT_FAILED_CHECK)
