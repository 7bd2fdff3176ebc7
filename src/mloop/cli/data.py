"""mloop data: ingest, list, show, suite, validate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from mloop.cli._common import (
    EXIT_FAILED_CHECK,
    console,
    fmt_num,
    fmt_time,
    new_app,
    open_workspace,
    print_json,
)

app = new_app("Datasets: ingest files into immutable versions, profile and validate them.")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.command()
def ingest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A CSV, Parquet or JSON Lines file.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")],
    format: Annotated[
        str | None, typer.Option("--format", help="csv, parquet or jsonl (default: by suffix)")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Ingest FILE as a new version of dataset NAME (identical content: the same version)."""
    ws = open_workspace(ctx)
    before = {v.id for v in _versions_or_empty(ws, name)}
    with console.status(f"ingesting {escape(str(file))}…"):
        version = ws.datasets.ingest(file, name=name, format=format)
    if as_json:
        print_json(version)
        return
    new = version.id not in before
    console.print(
        f"{'[green]new version[/green]' if new else '[yellow]unchanged[/yellow]: same content as'} "
        f"[bold]{version.ref}[/bold]: {version.row_count:,} rows × {len(version.schema_.columns)} "
        f"columns, sha256 {version.content_hash[:12]}"
    )
    _print_profile(version)


def _versions_or_empty(ws: Any, name: str) -> list[Any]:
    from mloop.core.errors import NotFound

    try:
        return ws.datasets.versions(name)  # type: ignore[no-any-return]
    except NotFound:
        return []


def _print_profile(version: Any) -> None:
    table = Table(title=f"profile of {version.ref}", title_justify="left")
    for col in ("column", "type", "nulls", "min", "mean", "max", "distinct / top values"):
        table.add_column(col, overflow="fold")
    for column in version.schema_.columns:
        p = version.profile.get(column.name, {})
        if p.get("kind") == "numeric":
            extra = ""
            values = (fmt_num(p.get("min")), fmt_num(p.get("mean")), fmt_num(p.get("max")))
        elif p.get("kind") == "categorical":
            top = ", ".join(escape(str(t["value"])) for t in p.get("top_values", [])[:4])
            extra = f"{p.get('cardinality')}: {top}"
            values = ("", "", "")
        else:
            extra = ""
            values = (str(p.get("min", "")), "", str(p.get("max", "")))
        table.add_row(
            escape(column.name), column.type, f"{p.get('null_count', 0):,}", *values, extra
        )
    console.print(table)


@app.command("list")
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """List datasets."""
    ws = open_workspace(ctx)
    datasets = ws.datasets.list()
    if as_json:
        print_json(datasets)
        return
    table = Table("dataset", "versions", "latest", "created")
    for d in datasets:
        table.add_row(
            d.name, str(d.version_count), str(d.latest_version or "-"), fmt_time(d.created_at)
        )
    console.print(table)


@app.command()
def versions(ctx: typer.Context, name: str, as_json: JSON = False) -> None:
    """List the versions of dataset NAME."""
    ws = open_workspace(ctx)
    found = ws.datasets.versions(name)
    if as_json:
        print_json(found)
        return
    table = Table("version", "rows", "kind", "sha256", "created", "source")
    for v in found:
        table.add_row(
            v.ref,
            f"{v.row_count:,}",
            v.kind,
            v.content_hash[:12],
            fmt_time(v.created_at),
            escape(v.source or "-"),
        )
    console.print(table)


@app.command()
def show(ctx: typer.Context, ref: str, as_json: JSON = False) -> None:
    """Show a version (NAME, NAME@N or NAME@latest): schema and profile."""
    ws = open_workspace(ctx)
    version = ws.datasets.get(ref)
    if as_json:
        print_json(version)
        return
    console.print(
        f"[bold]{version.ref}[/bold]  {version.row_count:,} rows  kind={version.kind}  "
        f"sha256={version.content_hash}\ncreated {fmt_time(version.created_at)} by "
        f"{escape(str(version.created_by))}  source={escape(version.source or '-')}"
    )
    _print_profile(version)


@app.command()
def suite(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The dataset version to infer from (NAME@N).")],
    name: Annotated[str | None, typer.Option(help="Suite name (default: the dataset's).")] = None,
    as_json: JSON = False,
) -> None:
    """Infer an expectation suite from a dataset version and save it."""
    ws = open_workspace(ctx)
    inferred = ws.validation.infer_suite(ref, name=name)
    if as_json:
        print_json(inferred)
        return
    console.print(
        f"suite [bold]{inferred.name}@{inferred.version}[/bold]: "
        f"{len(inferred.expectations)} expectations inferred from {ref}"
    )
    table = Table("check", "column", "rule")
    for e in inferred.expectations:
        rule = {k: v for k, v in e.model_dump().items() if k not in ("type", "column")}
        text = ", ".join(f"{k}={v}" for k, v in rule.items())
        table.add_row(e.type, escape(e.column or "-"), escape(text))
    console.print(table)


@app.command()
def validate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Dataset version to check (NAME@N), or a file.")],
    suite: Annotated[str, typer.Option("--suite", "-s", help="Suite NAME or NAME@N.")],
    quarantine: Annotated[
        bool,
        typer.Option(
            "--quarantine",
            help="Split failing rows into NAME.quarantine (with the reason per row) and "
            "passing rows into a new version of NAME.",
        ),
    ] = False,
    as_json: JSON = False,
) -> None:
    """Validate a dataset version against a suite; exit 1 when a check fails."""
    ws = open_workspace(ctx)
    from mloop.data.readers import SUFFIXES

    looks_like_file = Path(ref).is_file() or Path(ref).suffix.lower() in SUFFIXES
    target: str | Path = Path(ref) if looks_like_file else ref
    result = None
    if quarantine:
        result = ws.validation.quarantine(target, suite)
        report = result.report
    else:
        report = ws.validation.validate(target, suite)
    if as_json:
        print_json(result if result is not None else report)
    else:
        _print_report(report)
        if result is not None and result.quarantined is not None:
            console.print(
                f"quarantined {result.quarantined.row_count:,} rows → "
                f"[bold]{result.quarantined.ref}[/bold] (column _mloop_reason says why)"
            )
            if result.clean is not None:
                console.print(
                    f"passing {result.clean.row_count:,} rows → [bold]{result.clean.ref}[/bold]"
                )
    if not report.success:
        raise typer.Exit(EXIT_FAILED_CHECK)


def _print_report(report: Any) -> None:
    verdict = "[green]passed[/green]" if report.success else "[red]FAILED[/red]"
    console.print(
        f"validation of {escape(report.dataset or 'data')} ({report.rows:,} rows) against "
        f"suite {report.suite}@{report.suite_version}: {verdict} — "
        f"{report.failed_checks} failed checks, {report.failing_rows:,} failing rows"
    )
    table = Table("", "check", "failing rows", "observed")
    for check in report.checks:
        mark = "[green]✓[/green]" if check.success else "[red]✗[/red]"
        if check.success and check.failing_rows == 0 and check.expectation["type"] == "column_type":
            continue
        table.add_row(
            mark, escape(check.message), f"{check.failing_rows:,}", escape(str(check.observed))
        )
    console.print(table)
    for check in report.checks:
        if not check.success and check.sample:
            console.print(f"[dim]sample failing rows for {escape(check.message)}:[/dim]")
            for row in check.sample[:3]:
                console.print(f"  [dim]{escape(str(row))}[/dim]", highlight=False)
