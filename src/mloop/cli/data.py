"""mloop data: ingest, list, show, suite, suite-apply, suite-export, validate."""

from __future__ import annotations

import sys
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
        else:
            same = [
                v.ref
                for v in ws.datasets.versions(version.dataset)
                if v.content_hash == version.content_hash and v.id != version.id
            ]
            if same:
                verdict += f" (the content of {same[-1]}, sharing its segments)"
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
    yaml_file: Annotated[
        Path | None,
        typer.Option(
            "--yaml",
            help="Write the inferred suite to this YAML file to edit (instead of storing it); "
            "store the edited file with: mloop data suite-apply FILE",
        ),
    ] = None,
    distribution: Annotated[
        str | None,
        typer.Option(
            "--distribution",
            help="Also add a distribution check per column (psi or ks) against stats of this "
            "version, kept in the suite (severity warn).",
        ),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Infer an expectation suite from a dataset version and save it (or write it as YAML)."""
    from mloop.core.errors import InvalidInput

    if distribution not in (None, "psi", "ks"):
        raise InvalidInput(f"--distribution is psi or ks, not {distribution!r}")
    ws = open_workspace(ctx)
    inferred = ws.validation.infer_suite(
        ref,
        name=name,
        save=yaml_file is None,
        distribution=distribution,  # type: ignore[arg-type]
    )
    if yaml_file is not None:
        _write_text(yaml_file, inferred.to_yaml())
    if as_json:
        print_json(inferred)
        return
    if yaml_file is None:
        console.print(
            f"suite [bold]{inferred.name}@{inferred.version}[/bold]: "
            f"{len(inferred.expectations)} expectations inferred from {ref}"
        )
    else:
        console.print(
            f"suite [bold]{inferred.name}[/bold]: {len(inferred.expectations)} expectations "
            f"inferred from {ref}, written to {escape(str(yaml_file))}; edit it, then store it "
            f"with: mloop data suite-apply {escape(str(yaml_file))}"
        )
    _print_suite(inferred)


def _write_text(path: Path, text: str) -> None:
    from mloop.core.errors import InvalidInput

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None


def _print_suite(the_suite: Any) -> None:
    table = Table("check", "column", "rule", "severity")
    for e in the_suite.expectations:
        rule = {
            k: v
            for k, v in e.model_dump(exclude_defaults=True).items()
            if k not in ("type", "column", "severity", "reference_stats")
        }
        if getattr(e, "reference_stats", None) is not None:
            rule["reference"] = f"stored stats of {e.reference_stats.rows:,} values"
        text = ", ".join(f"{k}={v}" for k, v in rule.items())
        table.add_row(e.type, escape(e.column or "-"), escape(text), e.severity)
    console.print(table)


@app.command("suite-apply")
def suite_apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A suite as YAML (or JSON), edited by hand.")],
    name: Annotated[
        str | None, typer.Option(help="Store under this name (default: the file's name:).")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Store a suite file as the next version of its name (the same content: the same one)."""
    from mloop.data import load_suite_file

    loaded = load_suite_file(file)  # bad YAML or an unknown check: an error, nothing stored
    ws = open_workspace(ctx)
    before = _latest_suite_version(ws, name or loaded.name)
    stored = ws.validation.save_suite(
        loaded if name is None else loaded.model_copy(update={"name": name})
    )
    if as_json:
        print_json(stored)
        return
    state = "unchanged: same content as" if stored.version == before else "stored as"
    console.print(
        f"suite {state} [bold]{stored.name}@{stored.version}[/bold]: "
        f"{len(stored.expectations)} expectations"
    )


def _latest_suite_version(ws: Any, name: str) -> int | None:
    from mloop.core.errors import MloopError

    try:
        return ws.validation.get_suite(name).version  # type: ignore[no-any-return]
    except MloopError:
        return None


@app.command("suite-export")
def suite_export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="A stored suite: NAME or NAME@N.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Print a stored suite as YAML, to edit and store again with suite-apply."""
    ws = open_workspace(ctx)
    text = ws.validation.get_suite(ref).to_yaml()
    if output is None:
        sys.stdout.write(text)
    else:
        _write_text(output, text)
        console.print(f"suite {escape(ref)} written to [bold]{escape(str(output))}[/bold]")


@app.command()
def validate(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Dataset version to check (NAME@N), or a file.")],
    suite_ref: Annotated[
        str | None,
        typer.Argument(
            metavar="[SUITE]", help="A stored suite (NAME or NAME@N) or a suite YAML file."
        ),
    ] = None,
    suite: Annotated[
        str | None, typer.Option("--suite", "-s", help="The suite, as an option.")
    ] = None,
    quarantine: Annotated[
        bool,
        typer.Option(
            "--quarantine",
            help="Split failing rows into NAME.quarantine (with the reason per row) and "
            "passing rows into a new version of NAME.",
        ),
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as one HTML file.")
    ] = None,
    as_json: JSON = False,
) -> None:
    """Validate a dataset version or a file against a suite; exit 1 when an error-severity
    check fails (warnings are reported, never fail)."""
    from mloop.core.errors import InvalidInput
    from mloop.data import is_suite_file
    from mloop.data.readers import SUFFIXES

    if (suite_ref is None) == (suite is None):
        raise InvalidInput("give the suite once: mloop data validate DATA SUITE (or --suite SUITE)")
    suite_arg = suite_ref or suite
    assert suite_arg is not None
    looks_like_file = Path(ref).is_file() or Path(ref).suffix.lower() in SUFFIXES
    target: str | Path = Path(ref) if looks_like_file else ref
    result = None
    if looks_like_file and is_suite_file(suite_arg) and not quarantine:
        report = _validate_without_workspace(ctx, Path(ref), Path(suite_arg))
    else:
        ws = open_workspace(ctx)
        if quarantine:
            result = ws.validation.quarantine(target, ws.validation.load_suite(suite_arg))
            report = result.report
        else:
            report = ws.validation.validate(target, ws.validation.load_suite(suite_arg))
    if html is not None:
        from mloop.data import render_html

        _write_text(html, render_html(report))
    if as_json:
        print_json(result if result is not None else report)
    else:
        _print_report(report)
        if html is not None:
            console.print(f"HTML report → [bold]{escape(str(html))}[/bold]")
        if result is not None and result.quarantined is not None:
            console.print(
                f"quarantined {result.quarantined_rows:,} rows → "
                f"[bold]{result.quarantined.ref}[/bold] (column _mloop_reason says why)"
            )
            if result.clean is not None:
                console.print(
                    f"passing {result.clean.row_count:,} rows → [bold]{result.clean.ref}[/bold]"
                )
    if not report.success:
        raise typer.Exit(EXIT_FAILED_CHECK)


def _validate_without_workspace(ctx: typer.Context, data: Path, suite_file: Path) -> Any:
    """A file against a suite file needs no workspace: none is opened (or created) unless
    there is one already (its PII policies apply to reports) or a distribution check compares
    with a dataset version."""
    from mloop.data import (
        load_suite_file,
        needs_references,
        read_frame,
        validate_frame,
    )

    the_suite = load_suite_file(suite_file)
    if needs_references(the_suite) or _workspace_exists(ctx):
        # a workspace may hold the reference version, or a PII policy for this data
        return open_workspace(ctx).validation.validate(data, the_suite)
    if not data.is_file():
        from mloop.core.errors import NotFound

        raise NotFound(f"{data} does not exist")
    return validate_frame(read_frame(data), the_suite, str(data))


def _workspace_exists(ctx: typer.Context) -> bool:
    """Whether the workspace this command would open is there already (without opening it)."""
    from mloop.core.settings import Settings

    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if obj.get("ws") is not None:
        return True
    try:
        home = obj.get("workspace")
        settings = Settings(**({"home": home} if home is not None else {}))
    except Exception:  # an invalid setting: opening the workspace says which
        return True
    return settings.database_url is not None or (settings.home / "mloop.db").exists()


def _print_report(report: Any) -> None:
    verdict = "[green]passed[/green]" if report.success else "[red]FAILED[/red]"
    warned = f", {report.warnings} warnings" if report.warnings else ""
    console.print(
        f"validation of {escape(report.dataset or 'data')} ({report.rows:,} rows) against "
        f"suite {escape(report.suite)}@{report.suite_version}: {verdict} — "
        f"{report.failed_checks} failed checks, {report.failing_rows:,} failing rows{warned}"
    )
    table = Table("", "check", "severity", "failing rows", "observed")
    for check in report.checks:
        if check.success:
            mark = "[green]✓[/green]"
        else:
            mark = "[yellow]![/yellow]" if check.severity == "warn" else "[red]✗[/red]"
        if check.success and check.failing_rows == 0 and check.expectation["type"] == "column_type":
            continue
        table.add_row(
            mark,
            escape(check.message),
            check.severity,
            f"{check.failing_rows:,}",
            escape(str(check.observed)),
        )
    console.print(table)
    for check in report.checks:
        if not check.success and check.sample:
            console.print(f"[dim]sample failing rows for {escape(check.message)}:[/dim]")
            for row in check.sample[:3]:
                console.print(f"  [dim]{escape(str(row))}[/dim]", highlight=False)
