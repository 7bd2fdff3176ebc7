"""What every command shares: the console, the workspace, errors, JSON output."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from mloop.core.errors import MloopError

if TYPE_CHECKING:
    from mloop.workspace import Workspace

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line

EXIT_FAILED_CHECK = 1
EXIT_ERROR = 2


class Group(TyperGroup):
    """Turns every MloopError raised by any command into one red error line on stderr and
    exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MloopError as exc:
            fail(exc.message)


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        help=help_text,
        cls=Group,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


def open_workspace(ctx: typer.Context) -> Workspace:
    from mloop.workspace import Workspace

    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    ws: Workspace | None = obj.get("ws")
    if ws is None:
        ws = Workspace.open(obj.get("workspace"))
        obj["ws"] = ws
        root.obj = obj
        root.call_on_close(ws.close)
    return ws


def _jsonable(value: Any) -> Any:
    """Plain JSON: models dumped, NaN and infinities as the strings MLflow's JSON uses (a bare
    NaN is not JSON, and jq refuses it)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def dump(value: Any) -> str:
    return json.dumps(_jsonable(value), indent=2, default=str, allow_nan=False)


def print_json(value: Any) -> None:
    sys.stdout.write(dump(value) + "\n")


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def fmt_time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def fmt_num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def read_yaml(file: Path) -> Any:
    """A YAML (or JSON) file's content; InvalidInput says what is wrong and where."""
    import yaml

    from mloop.core.errors import InvalidInput

    try:
        return yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {file}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{file} is not valid YAML{where}: {problem}") from None
