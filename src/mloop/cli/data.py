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
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files (CSV, Parquet, JSON Lines), globs ('data/*.csv', quoted: one version of "
            "every match, in sorted order) or URLs (s3://, https://, file://).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")] = "",
    format: Annotated[
        str | None, typer.Option("--format", help="csv, parquet or jsonl (default: by suffix)")
    ] = None,
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql", help="Read a SQL database instead: a SQLAlchemy URL (password never stored)."
        ),
    ] = None,
    table: Annotated[str | None, typer.Option("--table", help="With --sql: a table.")] = None,
    query: Annotated[str | None, typer.Option("--query", help="With --sql: a query.")] = None,
    cursor: Annotated[
        str | None,
        typer.Option(
            "--cursor",
            help="With --sql: read incrementally, only rows whose COLUMN is greater than the "
            "last run's, appended as a new version sharing the earlier segments.",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="With --cursor: a unique column; rows arriving later with the last cursor "
            "value are read too, without reading a row twice.",
        ),
    ] = None,
    append: Annotated[
        bool,
        typer.Option(
            "--append", help="Append the rows to the latest version instead of a new whole one."
        ),
    ] = False,
    pii: Annotated[
        list[str] | None,
        typer.Option(
            "--pii",
            help="COLUMN=hash|mask|drop: protect a PII column from this first version on "
            "(repeat for more).",
        ),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Ingest files, a glob, a URL or a SQL table/query as a version of dataset NAME
    (identical content: the same version)."""
    from mloop.core.errors import InvalidInput

    if not name:
        raise InvalidInput("give the dataset a name: --name NAME")
    if sql is None and not sources:
        raise InvalidInput("give a file, a glob or a URL to ingest, or --sql URL --table T")
    if sql is not None and sources:
        raise InvalidInput("give either files or --sql, not both")
    if sql is None and (table or query or cursor or key):
        raise InvalidInput("--table, --query, --cursor and --key go with --sql URL")
    protect = _parse_pii(pii)
    ws = open_workspace(ctx)
    before = {v.id for v in _versions_or_empty(ws, name)}
    if sql is not None:
        with console.status(f"reading {escape(table or 'the query')}…"):
            version = ws.datasets.ingest_sql(
                sql,
                name=name,
                table=table,
                query=query,
                cursor=cursor,
                key=key,
                append=append,
                pii=protect,
            )
    else:
        assert sources
        what: Any = sources[0] if len(sources) == 1 else sources
        with console.status(f"ingesting {escape(', '.join(sources)[:80])}…"):
            version = ws.datasets.ingest(what, name=name, format=format, append=append, pii=protect)
    if as_json:
        print_json(version)
        return
    new = version.id not in before
    if new:
        verdict = "[green]new version[/green]"
        if version.base_version_id:
            added = version.row_count - ws.datasets.get_by_id(version.base_version_id).row_count
            verdict += f" (+{added:,} rows appended)"
    elif sql is not None and cursor is not None:
        verdict = "[yellow]no new rows[/yellow]: still"
    else:
        verdict = "[yellow]unchanged[/yellow]: same content as"
    console.print(
        f"{verdict} [bold]{version.ref}[/bold]: {version.row_count:,} rows × "
        f"{len(version.schema_.columns)} columns in {version.segment_count} segment"
        f"{'s' if version.segment_count != 1 else ''}, sha256 {version.content_hash[:12]}"
    )
    _print_profile(version)


def _parse_pii(items: list[str] | None) -> dict[str, str] | None:
    from mloop.core.errors import InvalidInput

    pii: dict[str, str] = {}
    for item in items or []:
        column, sep, action = item.partition("=")
        if not sep or not column.strip() or not action.strip():
            raise InvalidInput(f"--pii {item!r}: write COLUMN=ACTION, ACTION hash, mask or drop")
        pii[column.strip()] = action.strip().lower()
    return pii or None


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
    table = Table("version", "rows", "segments", "kind", "sha256", "created", "source")
    for v in found:
        table.add_row(
            v.ref,
            f"{v.row_count:,}",
            str(v.segment_count),
            v.kind,
            v.content_hash[:12],
            fmt_time(v.created_at),
            escape(v.source or "-"),
        )
    console.print(table)


@app.command()
def show(ctx: typer.Context, ref: str, as_json: JSON = False) -> None:
    """Show a version (NAME, NAME@N, NAME@latest or NAME@<ISO time>): schema, profile,
    segments, PII policy and where its incremental sources stand."""
    ws = open_workspace(ctx)
    version = ws.datasets.get(ref)
    segments = ws.datasets.segments(version)
    policy = ws.datasets.policy(version.dataset, missing_ok=True) or {"pii": {}}
    sources = ws.datasets.source_states(version.dataset)
    if as_json:
        print_json(
            {
                **version.model_dump(mode="json"),
                "segment_list": segments,
                "policy": policy,
                "source_states": sources,
            }
        )
        return
    console.print(
        f"[bold]{version.ref}[/bold]  {version.row_count:,} rows  kind={version.kind}  "
        f"sha256={version.content_hash}\ncreated {fmt_time(version.created_at)} by "
        f"{escape(str(version.created_by))}  source={escape(version.source or '-')}"
    )
    _print_profile(version)
    table = Table(title=f"segments of {version.ref}", title_justify="left")
    for col in ("segment", "rows", "bytes", "written"):
        table.add_column(col, justify="right" if col != "written" else "left")
    for seg in segments:
        table.add_row(
            str(seg["segment"]), f"{seg['rows']:,}", f"{seg['bytes']:,}", seg["created_at"]
        )
    console.print(table)
    if policy["pii"]:
        console.print(
            "PII policy: " + ", ".join(f"{escape(c)}={a}" for c, a in sorted(policy["pii"].items()))
        )
    for state in sources:
        console.print(
            f"source {escape(state['source'])}: {escape(str(state['state']))} "
            f"(at {state['updated_at']})",
            highlight=False,
        )


@app.command()
def diff(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The earlier version: NAME@N or NAME@<ISO time>.")],
    new: Annotated[str, typer.Argument(help="The later version (NAME: the latest).")],
    as_json: JSON = False,
) -> None:
    """What changed between two versions: schema, rows, shared segments, profile deltas."""
    ws = open_workspace(ctx)
    result = ws.datasets.diff(old, new)
    if as_json:
        print_json(result)
        return
    rows = result["rows"]
    console.print(
        f"[bold]{result['from']}[/bold] → [bold]{result['to']}[/bold]: rows {rows['from']:,} → "
        f"{rows['to']:,} ({rows['delta']:+,}); {result['shared_segments']} segments shared, "
        f"{result['new_segments']} new"
    )
    if result["schema"]:
        schema = Table("column", "change", "type", title="schema", title_justify="left")
        for c in result["schema"]:
            kind = f"{c['from']} → {c['to']}" if c["change"] == "retyped" else c.get("type", "")
            schema.add_row(escape(c["column"]), c["change"], kind)
        console.print(schema)
    else:
        console.print("schema: unchanged")
    if result["profile"]:
        table = Table("column", "statistic", "from", "to", "delta", title="profile")
        table.title_justify = "left"
        for column, stats in result["profile"].items():
            for stat, change in stats.items():
                table.add_row(
                    escape(column),
                    stat,
                    fmt_num(change.get("from")),
                    fmt_num(change.get("to")),
                    fmt_num(change["delta"]) if "delta" in change else "",
                )
        console.print(table)


@app.command()
def policy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name (created if it does not exist).")],
    pii: Annotated[
        list[str] | None,
        typer.Option(
            "--pii", help="COLUMN=hash|mask|drop, applied at every later ingestion (repeat)."
        ),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Show or set the PII policy of dataset NAME: hash (keyed, still joins), mask (all but
    the last 4 characters) or drop each PII column before anything is stored."""
    ws = open_workspace(ctx)
    protect = _parse_pii(pii)
    if protect:
        result = ws.datasets.set_policy(name, protect)
    else:
        result = ws.datasets.policy(name) or {"pii": {}}
    if as_json:
        print_json(result)
        return
    if not result["pii"]:
        console.print(f"dataset {escape(name)} has no PII columns")
        return
    table = Table("column", "action", title=f"PII policy of {escape(name)}", title_justify="left")
    for column, action in sorted(result["pii"].items()):
        table.add_row(escape(column), action)
    console.print(table)


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
