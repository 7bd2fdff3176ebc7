"""mloop monitor: drift of served traffic against training data, or of one dataset against
another."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mloop.cli._common import (
    EXIT_FAILED_CHECK,
    console,
    fail,
    new_app,
    open_workspace,
    print_json,
)

app = new_app("Monitoring: is the traffic still like the training data?")


ModelRef = Annotated[str, typer.Option("--model", "-m", help="NAME, NAME@ALIAS or NAME@N")]
Window = Annotated[str, typer.Option("--window", "-w", help="Tumbling window width: 15m, 1h, 1d.")]
Sliding = Annotated[
    int, typer.Option(help="Merge this many windows ending at each one (a sliding window).")
]
Last = Annotated[int | None, typer.Option(help="Only the newest N windows.")]


def _cells(col: Any) -> list[str]:
    """A column's verdict as table cells: column, kind, method, statistic, rule, PSI, flag."""
    stat = "-" if col.statistic is None else f"{col.statistic:.4f}"
    rule = "p <" if col.method in ("ks", "chi_square") else "≥"
    psi = "-" if col.psi is None else f"{col.psi:.3f}"
    flag = "[red]DRIFT[/red]" if col.drifted else "[green]ok[/green]"
    return [col.column, col.kind, col.method, stat, f"{rule} {col.threshold}", psi, flag]


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
        *cells, flag = _cells(col)
        table.add_row(*cells, f"{col.current_rows:,}", flag)
    return table


def dataset_table(report: Any) -> Table:
    table = Table(
        "column",
        "kind",
        "method",
        "statistic",
        "threshold",
        "PSI",
        "drifted",
        title=f"drift of {report.current} vs {report.reference}",
        title_justify="left",
    )
    for col in report.columns:
        table.add_row(*_cells(col))
    return table


def _thresholds(values: list[str] | None, effect_size: float | None, p_value: float | None) -> Any:
    """--threshold COLUMN=VALUE (an effect size) or COLUMN:p=VALUE (a p-value)."""
    from mloop.monitoring import Thresholds

    columns: dict[str, dict[str, float]] = {}
    for item in values or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            fail(f"--threshold takes COLUMN=EFFECT_SIZE or COLUMN:p=P_VALUE, got {item!r}")
        key = "effect_size"
        if name.endswith(":p"):
            name, key = name[:-2], "p_value"
        try:
            number = float(value)
        except ValueError:
            fail(f"--threshold {item!r}: {value!r} is not a number")
        if not number > 0:
            fail(f"--threshold {item!r}: the threshold must be positive")
        columns.setdefault(name, {})[key] = number
    base = Thresholds()
    return Thresholds(
        effect_size=base.effect_size if effect_size is None else effect_size,
        p_value=base.p_value if p_value is None else p_value,
        columns=columns,
    )


@app.command()
def drift(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="NAME, NAME@ALIAS or NAME@N")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Dataset against dataset: the reference, NAME[@V] (with --current)."),
    ] = None,
    current: Annotated[str | None, typer.Option(help="... and the current data, NAME[@V].")] = None,
    columns: Annotated[
        list[str] | None, typer.Option("--column", "-c", help="Compare only these (repeat).")
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="Per column: COLUMN=EFFECT_SIZE (large samples) or COLUMN:p=P_VALUE (repeat).",
        ),
    ] = None,
    effect_size: Annotated[
        float | None, typer.Option(help="Drift at this effect size or more (default 0.1).")
    ] = None,
    p_value: Annotated[
        float | None, typer.Option(help="Drift below this p-value (default 0.05).")
    ] = None,
    multivariate: Annotated[
        bool,
        typer.Option("--multivariate", help="Also a domain classifier's ROC AUC (datasets)."),
    ] = False,
    html: Annotated[
        str | None, typer.Option("--html", help="Write an HTML report to this file (datasets).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Window start: ISO time or a duration ago (30m, 2h, 1d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end (default: now).")] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when any feature drifted.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Compare logged inputs and predictions in a window with the model's training data
    (--model), or one dataset with another (--reference and --current)."""
    if (reference is None) != (current is None):
        fail("--reference and --current go together")
    if reference is not None and model is not None:
        fail("give either --model or --reference and --current, not both")
    if reference is None and model is None:
        fail("give --model NAME, or --reference NAME[@V] and --current NAME[@V]")
    if reference is not None:
        _datasets(
            ctx,
            reference,
            current or "",
            columns,
            threshold,
            effect_size,
            p_value,
            multivariate,
            html,
            as_json,
            fail_on_drift,
        )
        return
    if html or multivariate or columns or threshold or effect_size or p_value:
        fail("--html, --multivariate, --column and thresholds apply to --reference/--current")
    from mloop.core.clock import parse_time
    from mloop.monitoring import window_label

    ws = open_workspace(ctx)
    report = ws.monitoring.drift(
        model or "",
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


def _datasets(
    ctx: typer.Context,
    reference: str,
    current: str,
    columns: list[str] | None,
    threshold: list[str] | None,
    effect_size: float | None,
    p_value: float | None,
    multivariate: bool,
    html: str | None,
    as_json: bool,
    fail_on_drift: bool,
) -> None:
    limits = _thresholds(threshold, effect_size, p_value)
    ws = open_workspace(ctx)
    report = ws.monitoring.compare_datasets(
        reference,
        current,
        columns=columns or None,
        thresholds=limits,
        multivariate=multivariate,
        html_path=html,
    )
    if as_json:
        print_json(report)
    else:
        console.print(dataset_table(report))
        drifted = ", ".join(report.drifted_columns) or "none"
        console.print(
            f"{report.current_rows:,} rows vs {report.reference_rows:,}: drifted columns "
            f"[bold]{drifted}[/bold] ({report.share_drifted:.0%}"
            f"{', dataset drift' if report.dataset_drift else ''}) in {report.seconds:.2f} s"
        )
        if report.multivariate is not None:
            m = report.multivariate
            console.print(
                f"domain classifier ROC AUC {m.statistic:.3f} (drift at ≥ {m.threshold}): "
                f"{'[red]DRIFT[/red]' if m.drifted else '[green]ok[/green]'}"
            )
        if report.skipped_columns:
            console.print(f"skipped: {', '.join(report.skipped_columns)}")
        if html:
            console.print(f"report: {html}")
    if fail_on_drift and report.drifted_columns:
        raise typer.Exit(EXIT_FAILED_CHECK)


@app.command()
def windows(
    ctx: typer.Context,
    model: ModelRef,
    window: Window = "1h",
    sliding: Sliding = 1,
    against: Annotated[
        str, typer.Option(help="Compare with the training data, or the previous window.")
    ] = "training",
    last: Last = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when the newest window drifted.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Drift per window of served traffic, from summaries kept up to date incrementally."""
    width = _width(window)
    ws = open_workspace(ctx)
    results = ws.monitoring.window_drift(
        model, width=width, sliding=sliding, against=against, last=last
    )
    if as_json:
        print_json(results)
    else:
        table = Table(
            "window",
            "rows",
            "drifted columns",
            "share",
            "drifted outputs",
            title=f"drift of {model} per {window} window"
            + (f" (sliding over {sliding})" if sliding > 1 else "")
            + f" vs {'the training data' if against == 'training' else 'the previous window'}",
            title_justify="left",
        )
        for r in results:
            names = ", ".join(r.drifted_columns)
            table.add_row(
                f"{r.start:%Y-%m-%d %H:%M} → {r.end:%H:%M}",
                f"{r.rows:,}",
                f"[red]{names}[/red]" if names else "[green]none[/green]",
                f"{r.share_drifted:.0%}",
                f"[red]{', '.join(r.drifted_outputs)}[/red]"
                if r.drifted_outputs
                else ("[green]none[/green]" if r.outputs else "-"),
            )
        console.print(table)
    if fail_on_drift and results and results[-1].drifted_columns:
        raise typer.Exit(EXIT_FAILED_CHECK)


@app.command()
def quality(
    ctx: typer.Context,
    model: ModelRef,
    window: Window = "1h",
    sliding: Sliding = 1,
    last: Last = None,
    fail_on_issue: Annotated[
        bool, typer.Option("--fail-on-issue", help="Exit 1 when the newest window failed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Data quality per window of served inputs: null rates, values out of the training
    data's range (or its suite's), categories the training data did not have."""
    width = _width(window)
    ws = open_workspace(ctx)
    results = ws.monitoring.window_quality(model, width=width, sliding=sliding, last=last)
    if as_json:
        print_json(results)
    else:
        table = Table(
            "window",
            "rows",
            "failed columns",
            title=f"data quality of {model} per {window} window"
            + (f" (sliding over {sliding})" if sliding > 1 else "")
            + (f", limits from the {results[0].bounds}" if results else ""),
            title_justify="left",
        )
        for r in results:
            names = ", ".join(r.failed_columns)
            table.add_row(
                f"{r.start:%Y-%m-%d %H:%M:%S} → {r.end:%H:%M:%S}",
                f"{r.rows:,}",
                f"[red]{names}[/red]" if names else "[green]none[/green]",
            )
        console.print(table)
        if results:
            console.print(quality_table(results[-1]))
    if fail_on_issue and results and results[-1].failed:
        raise typer.Exit(EXIT_FAILED_CHECK)


def quality_table(result: Any) -> Table:
    """One window's quality, a row a column."""
    table = Table(
        "column",
        "null (training)",
        "out of range",
        "unseen categories",
        "verdict",
        "issues",
        title=f"newest window, {result.start:%Y-%m-%d %H:%M:%S} → {result.end:%H:%M:%S}",
        title_justify="left",
    )

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.2%}"

    for c in result.columns:
        unseen = rate(c.unseen_category_rate)
        if c.unseen_categories:
            unseen += " (" + ", ".join(str(u["value"]) for u in c.unseen_categories) + ")"
        table.add_row(
            c.column,
            f"{c.null_rate:.2%} ({c.training_null_rate:.2%})",
            rate(c.out_of_range_rate) + (" est." if c.estimated else ""),
            unseen,
            "[red]FAILED[/red]" if c.failed else "[green]ok[/green]",
            "; ".join(c.issues),
        )
    return table


@app.command()
def report(
    ctx: typer.Context,
    model: ModelRef,
    output: Annotated[str, typer.Option("--output", "-o", help="The HTML file to write.")],
    window: Window = "1h",
    sliding: Sliding = 1,
    against: Annotated[
        str, typer.Option(help="Compare with the training data, or the previous window.")
    ] = "training",
    last: Annotated[int, typer.Option(help="The newest N windows.")] = 24,
) -> None:
    """An HTML report per window: drift of each feature and of the predictions, with a chart
    each, data quality, and live performance when labels were sent back."""
    from mloop.core.errors import NotFound

    width = _width(window)
    ws = open_workspace(ctx)
    performance = None
    tracker = getattr(ws, "performance", None)
    if tracker is not None:
        try:
            performance = tracker.windows(model, width=width, last=last)
        except NotFound:
            performance = None
    ws.monitoring.window_report(
        model,
        width=width,
        sliding=sliding,
        against=against,
        last=last,
        performance=performance,
        path=output,
    )
    console.print(f"report: {output}")


# -- live performance (labels that arrive late) ----------------------------------------------


def _width(window: str) -> Any:
    from datetime import timedelta

    from mloop.data import parse_duration

    try:
        return timedelta(seconds=parse_duration(window))
    except ValueError:
        fail(f"--window {window!r} is not a duration such as 15m, 1h or 1d")


def _metric_cells(metrics: dict[str, float], names: list[str]) -> list[str]:
    return [f"{metrics[n]:.4g}" if n in metrics else "-" for n in names]


@app.command()
def feedback(
    ctx: typer.Context,
    file: Annotated[
        str | None,
        typer.Argument(help="CSV, Parquet or JSON lines: request_id, [row_index], label."),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(help="Consume label events instead: log://NAME or nats://HOST:PORT/SUBJECT."),
    ] = None,
    max_events: Annotated[
        int | None, typer.Option(help="Stream: stop after this many events.")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stream: stop after this many seconds without events.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Stream: events per batch.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record labels of served predictions (joined by request_id and row_index): from a file,
    all or nothing, or from a stream until Ctrl-C, --max-events or --idle-timeout."""
    if (file is None) == (stream is None):
        fail("give a labels FILE or --stream URI (one of them)")
    ws = open_workspace(ctx)
    if file is not None:
        if max_events is not None or idle_timeout is not None:
            fail("--max-events and --idle-timeout apply to --stream")
        result = ws.performance.record_file(file)
        if as_json:
            print_json(result)
        else:
            console.print(
                f"recorded {result.accepted:,} label(s) from {file} "
                f"({result.replaced:,} replaced earlier ones)"
            )
        return
    from mloop.data import mask_stream_url
    from mloop.monitoring import FeedbackStream

    consumer = FeedbackStream(
        ws.performance,
        stream or "",
        ws.home,
        batch_size=batch_size,
        max_events=max_events,
        idle_timeout=idle_timeout,
        workspace=str(ws.home),
    )
    err = Console(stderr=True)
    err.print(f"consuming labels from {mask_stream_url(stream or '')} (Ctrl-C to stop)")
    stats = consumer.run(handle_signals=True)
    if as_json:
        print_json(stats)
    else:
        console.print(
            f"{stats.events:,} event(s): {stats.accepted:,} label(s) recorded "
            f"({stats.replaced:,} replaced), {stats.rejected:,} rejected"
            + (f" (see {stats.rejects})" if stats.rejected else "")
            + (f"; stopped: {stats.stopped}" if stats.stopped else "")
        )


@app.command()
def performance(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option("--model", "-m", help="NAME (every version), NAME@ALIAS or NAME@N")
    ],
    window: Window = "1h",
    last: Last = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Live metrics per window and version, from labels sent back (feedback)."""
    width = _width(window)
    ws = open_workspace(ctx)
    results = ws.performance.windows(model, width=width, last=last)
    if as_json:
        print_json(results)
        return
    regression = any("rmse" in r.metrics for r in results)
    names = ["rmse", "mae", "r2"] if regression else ["accuracy", "f1_macro", "roc_auc"]
    table = Table(
        "window",
        "version",
        "predictions",
        "labeled",
        *names,
        title=f"live performance of {model} per {window} window",
        title_justify="left",
    )
    for r in results:
        table.add_row(
            f"{r.start:%Y-%m-%d %H:%M:%S} → {r.end:%H:%M:%S}",
            str(r.version),
            f"{r.predictions:,}",
            f"{r.labeled:,}",
            *_metric_cells(r.metrics, names),
        )
    console.print(table)
    if not results:
        console.print(f"no predictions of {model} were logged yet")


@app.command()
def decay(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="NAME (its champion), NAME@ALIAS")],
    window: Annotated[str, typer.Option("--window", "-w", help="Window width: 1h, 1d.")] = "1h",
    metric: Annotated[
        str | None, typer.Option(help="Default: accuracy (classification), rmse (regression).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Relative drop allowed before decay (0.05: 5% worse).")
    ] = 0.05,
    min_labels: Annotated[int, typer.Option(help="No verdict on fewer labels.")] = 50,
    fail_on_decay: Annotated[
        bool, typer.Option("--fail-on-decay", help="Exit 1 when the model decayed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Has the model got worse than at training time? The newest labeled window's metric
    against the hold-out value its training run logged."""
    width = _width(window)
    ws = open_workspace(ctx)
    report = ws.performance.decay(
        model, width=width, metric=metric, tolerance=tolerance, min_labels=min_labels
    )
    if as_json:
        print_json(report)
    else:
        flag = (
            "[red]DECAYED[/red]"
            if report.decayed
            else ("[green]ok[/green]" if report.verdict else "[yellow]no verdict[/yellow]")
        )
        console.print(f"{report.model}@{report.version}: {flag} — {report.reason}")
    if fail_on_decay and report.decayed:
        raise typer.Exit(EXIT_FAILED_CHECK)
