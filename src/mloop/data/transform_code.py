"""A transform's code: captured from a function or given as SQL, normalised, checked, hashed,
compiled.

Only a function's own source is stored (``inspect.getsource``), so it must not lean on its
module's globals: a check refuses names defined outside it before anything is stored, and the
frame libraries (``pl``, ``pa``, ``pc``, ``np``) are provided. What is hashed leaves out comments,
layout, the docstring, decorators and annotations (an annotation that picks the frame type a
parameter receives counts separately), so only a change to what runs makes a new version.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dis
import hashlib
import importlib
import inspect
import json
import textwrap
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import duckdb
else:
    duckdb = lazy_module("duckdb")

# the names a transform function may use without importing them (its module's imports are not
# stored with it): the libraries its frames come from
PROVIDED_MODULES = {
    "pl": "polars",
    "polars": "polars",
    "pa": "pyarrow",
    "pyarrow": "pyarrow",
    "pc": "pyarrow.compute",
    "np": "numpy",
    "numpy": "numpy",
}


class PythonCode:
    """A transform function's source, parsed: one top-level ``def``."""

    def __init__(self, source: str, label: str) -> None:
        self.source = textwrap.dedent(source).strip("\n") + "\n"
        try:
            tree = ast.parse(self.source)
        except SyntaxError as exc:
            raise InvalidInput(
                f"the code of {label} does not parse: {exc.msg} (line {exc.lineno})"
            ) from exc
        defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        if len(defs) != 1 or len(tree.body) != 1:
            raise InvalidInput(
                f"the code of {label} must be exactly one function definition (def ...)"
            )
        self.definition = defs[0]
        self.label = label

    @property
    def function_name(self) -> str:
        return self.definition.name

    def frames(self) -> list[str]:
        """What each positional parameter receives: ``polars``, ``lazy`` or ``arrow``."""
        args = self.definition.args
        kinds = []
        for arg in [*args.posonlyargs, *args.args]:
            text = ast.unparse(arg.annotation) if arg.annotation is not None else ""
            text = text.strip("'\"")
            if text.endswith("Table"):
                kinds.append("arrow")
            elif text.endswith("LazyFrame"):
                kinds.append("lazy")
            else:
                kinds.append("polars")
        return kinds

    def _stripped(self) -> ast.FunctionDef:
        """The definition without decorators, docstring and annotations; nodes keep their
        line numbers in :attr:`source`."""
        node = copy.deepcopy(self.definition)
        node.decorator_list = []
        node.returns = None
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            arg.annotation = None
        for rest in (node.args.vararg, node.args.kwarg):
            if rest is not None:
                rest.annotation = None
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body = body[1:] or [ast.copy_location(ast.Pass(), body[0])]
        node.body = body
        return node

    def normalised(self) -> str:
        """The function without decorators, docstring, annotations, comments or layout: what
        is hashed (annotations count through :meth:`frames`)."""
        return ast.unparse(self._stripped())

    def check(self, n_inputs: int) -> None:
        """Refuse, before anything is stored, a function that cannot take the inputs or that
        uses names it does not define (its module's globals are not stored with it)."""
        args = self.definition.args
        if any(default is None for default in args.kw_defaults):
            raise InvalidInput(f"{self.label} has keyword-only parameters without defaults")
        positional = len(args.posonlyargs) + len(args.args)
        required = positional - len(args.defaults)
        if args.vararg is None and not required <= n_inputs <= positional:
            raise InvalidInput(
                f"{self.label} takes {positional} argument{'s' if positional != 1 else ''} but "
                f"the transform has {n_inputs} input{'s' if n_inputs != 1 else ''}: the function "
                "gets one frame per input, in order"
            )
        if args.vararg is not None and required > n_inputs:
            raise InvalidInput(f"{self.label} needs more arguments than the transform has inputs")
        module = self.compile()
        outside = sorted(global_names(module) - set(dir(builtins)) - set(PROVIDED_MODULES))
        outside = [n for n in outside if n != self.function_name]
        if outside:
            raise InvalidInput(
                f"{self.label} uses {', '.join(outside)}, defined outside the function; only "
                "the function's own code is stored, so import or define "
                f"{'them' if len(outside) > 1 else 'it'} inside the function (pl, pa, pc and np "
                "are provided)"
            )

    def compile(self) -> types.CodeType:
        """What runs: the stripped function, its line numbers those of :attr:`source`."""
        module = ast.Module(body=[self._stripped()], type_ignores=[])
        return compile(ast.fix_missing_locations(module), f"<{self.label}>", "exec")

    def load(self) -> Callable[..., Any]:
        namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "mloop_transform"}
        for alias, module in PROVIDED_MODULES.items():
            namespace[alias] = importlib.import_module(module)
        exec(self.compile(), namespace)  # the stored code of a registered transform
        function: Callable[..., Any] = namespace[self.function_name]
        return function


def global_names(code: types.CodeType) -> set[str]:
    """Every name ``code`` (and the functions, lambdas and comprehensions in it) reads from
    globals or builtins."""
    found: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        for instruction in dis.get_instructions(current):
            if instruction.opname in (
                "LOAD_GLOBAL",
                "LOAD_NAME",
                "LOAD_FROM_DICT_OR_GLOBALS",
            ) and isinstance(instruction.argval, str):
                found.add(instruction.argval)
        stack.extend(c for c in current.co_consts if isinstance(c, types.CodeType))
    return found


def function_source(fn: Callable[..., Any]) -> str:
    if not inspect.isfunction(fn):
        raise InvalidInput(
            f"a transform is a Python function or a SQL string, not {type(fn).__name__}"
        )
    if fn.__name__ == "<lambda>":
        raise InvalidInput("a transform cannot be a lambda: define it with def")
    if fn.__code__.co_freevars:
        raise InvalidInput(
            f"function {fn.__name__!r} is a closure over {', '.join(fn.__code__.co_freevars)}; "
            "only its own code is stored, so define it at the top level of a module"
        )
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError) as exc:
        raise InvalidInput(
            f"cannot read the source of function {fn.__name__!r} ({exc}); define it in a file"
        ) from exc


def normalise_sql(sql: str) -> str:
    lines = [line.rstrip() for line in sql.strip().splitlines()]
    text = "\n".join(lines).strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    return text


def check_sql(sql: str, label: str) -> None:
    if not sql:
        raise InvalidInput(f"the SQL of {label} is empty")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InvalidInput(f"the SQL of {label} does not parse: {first_line(exc)}") from exc
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise InvalidInput(f"the SQL of {label} must be exactly one SELECT statement")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def code_hash(kind: str, normalised: str, inputs: Sequence[str], output: str, frames: Any) -> str:
    payload = {
        "kind": kind,
        "code": normalised,
        "inputs": list(inputs),
        "output": output,
        "frames": frames,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
