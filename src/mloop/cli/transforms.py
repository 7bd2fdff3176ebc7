"""mloop transforms: register, list, show, run."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from mloop.cli._common import console, fmt_time, new_app, open_workspace, print_json
from mloop.core.errors import InvalidInput, NotFound

app = new_app("Transforms: versioned code (Python or SQL) that derives datasets from datasets.")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _load_function(path: Path, function: str | None) -> Any:
    """The function FUNC of FILE.py (without FUNC: its one @transform function)."""
    if not path.is_file():
        raise NotFound(f"file {str(path)!r} does not exist")
    module_name = f"mloop_transform_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidInput(f"cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's module: any failure is theirs to see
        sys.modules.pop(module_name, None)
        raise InvalidInput(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    if function is not None:
        found = getattr(module, function, None)
        if found is None or not inspect.isfunction(found):
            raise NotFound(f"{path} defines no function {function!r}")
        return found
    from mloop.data import transform_spec

    marked = [
        value
        for value in vars(module).values()
        if inspect.isfunction(value) and transform_spec(value) is not None
    ]
    if len(marked) != 1:
        raise InvalidInput(
            f"{path} has {len(marked)} @transform functions: name one as {path}:FUNCTION"
        )
    return marked[0]


@app.command()
def register(
    ctx: typer.Context,
    code: Annotated[
        str,
        typer.Argument(
            help="FILE.py:FUNCTION (a Python function over Polars frames) or FILE.sql "
            "(one DuckDB SELECT; each input is a table of its name)."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Transform name (default: the function or file)."),
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="An input dataset (repeat, in argument order)."),
    ] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Output dataset.")] = None,
    description: Annotated[str | None, typer.Option(help="What it does.")] = None,
    as_json: JSON = False,
) -> None:
    """Register a transform; the same code again is the same version, changed code a new one."""
    ws = open_workspace(ctx)
    file_part, _, function = code.partition(":")
    path = Path(file_part)
    if path.suffix.lower() == ".sql":
        if function:
            raise InvalidInput(f"{code!r}: a SQL file has no functions; give FILE.sql")
        if not path.is_file():
            raise NotFound(f"file {file_part!r} does not exist")
        known = _known(ws, name or path.stem)
        registered = ws.transforms.register(
            name or path.stem,
            path.read_text(),
            inputs=inputs or None,
            output=output,
            description=description,
        )
    elif path.suffix.lower() == ".py":
        from mloop.data import transform_spec

        fn = _load_function(path, function or None)
        spec = transform_spec(fn)
        known = _known(ws, name or (spec.name if spec and spec.name else fn.__name__))
        registered = ws.transforms.register(
            name, fn, inputs=inputs or None, output=output, description=description
        )
    else:
        raise InvalidInput(f"{code!r} is neither FILE.py:FUNCTION nor FILE.sql")
    if as_json:
        print_json(registered)
        return
    new = registered.id not in known
    state = "[green]registered[/green]" if new else "[yellow]unchanged[/yellow]: same code as"
    console.print(
        f"{state} [bold]{registered.ref}[/bold] ({registered.kind}): "
        f"{', '.join(registered.inputs)} → {registered.output}"
    )


def _known(ws: Any, name: str) -> set[str]:
    """The ids of transform ``name``'s versions (none when it has none or cannot exist)."""
    try:
        return {t.id for t in ws.transforms.versions(name)}
    except (NotFound, InvalidInput):
        return set()


@app.command("list")
def list_(ctx: typer.Context, as_json: JSON = False) -> None:
    """List transforms (their latest versions)."""
    ws = open_workspace(ctx)
    found = ws.transforms.list()
    if as_json:
        print_json(found)
        return
    table = Table("transform", "kind", "inputs", "output", "created")
    for t in found:
        table.add_row(
            t.ref, t.kind, escape(", ".join(t.inputs)), escape(t.output), fmt_time(t.created_at)
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (latest version) or NAME@N.")],
    as_json: JSON = False,
) -> None:
    """Show a transform version: its code, inputs, output, versions and runs."""
    ws = open_workspace(ctx)
    found = ws.transforms.get(ref)
    versions = ws.transforms.versions(found.name)
    runs = ws.transforms.runs(found.ref)
    if as_json:
        print_json({"transform": found, "versions": [v.ref for v in versions], "runs": runs})
        return
    console.print(
        f"[bold]{found.ref}[/bold] ({found.kind})  {escape(', '.join(found.inputs))} → "
        f"{escape(found.output)}\ncreated {fmt_time(found.created_at)} by "
        f"{escape(str(found.created_by))}  versions: {', '.join(str(v.version) for v in versions)}"
        + (f"\n{escape(found.description)}" if found.description else "")
    )
    console.print(Syntax(found.code, "sql" if found.kind == "sql" else "python"))
    if runs:
        table = Table("run", "inputs", "output", "when", title="runs", title_justify="left")
        for run in runs:
            table.add_row(run.id, ", ".join(run.inputs), run.output, fmt_time(run.created_at))
        console.print(table)
    else:
        console.print(f"no runs yet: mloop transforms run {found.ref}")


@app.command()
def run(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (latest version) or NAME@N.")],
    pins: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="Pin an input to a version: NAME@V (default: latest)."),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Run a transform over the latest (or pinned) input versions; a run seen before computes
    nothing and answers with the output it made then."""
    ws = open_workspace(ctx)
    pinned: dict[str, str | int] = {}
    for pin in pins or []:
        dataset, at, version = pin.partition("@")
        if not at or not dataset or not version:
            raise InvalidInput(f"--input {pin!r}: write NAME@VERSION")
        pinned[dataset] = pin
    with console.status(f"running {escape(ref)}…"):
        result = ws.transforms.run(ref, inputs=pinned)
    if as_json:
        print_json(result)
        return
    if result.cached:
        console.print(
            f"[yellow]cached: nothing changed[/yellow] — {result.transform} over "
            f"{', '.join(result.inputs)} made [bold]{result.output}[/bold]"
        )
    else:
        console.print(
            f"[green]computed[/green] {result.transform}: {', '.join(result.inputs)} → "
            f"[bold]{result.output}[/bold]"
        )
