"""Promotion gates: conditions over evaluation results that a model version must meet to take
an alias (``champion`` by default).

A gate is one comparison written as Python reads it, over the candidate's metrics by name and
the current champion's as ``champion.NAME``::

    roc_auc >= champion.roc_auc - 0.005
    latency_p99_ms <= 5
    demographic_parity_difference <= 0.1
    0.7 <= accuracy <= 0.99

Only numbers, metric names, ``champion.NAME``, ``+ - * /``, unary minus, comparisons (chains
too), ``and``, ``or``, ``not`` and ``abs``/``min``/``max`` are allowed: a gate is parsed with
:mod:`ast` and walked, never ``eval``-ed. Metric names with characters Python does not allow in
a name (``demographic_parity_difference[sex]``) are written in backquotes:
``\\`demographic_parity_difference[sex]\\` <= 0.1``.

A gate that reads the champion passes without a check while there is no champion (the first
promotion), and says so.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from mloop.core.errors import InvalidInput

CHAMPION = "champion"
MAX_GATE_LENGTH = 500

_COMPARE: dict[type[ast.cmpop], Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {"abs": abs, "min": min, "max": max}
_QUOTED = re.compile(r"`([^`]+)`")


class GateResult(BaseModel):
    """One gate's outcome: ``passed`` (None: not checked, there is no champion yet)."""

    model_config = ConfigDict(frozen=True)

    gate: str
    passed: bool | None
    values: dict[str, float | None]  # every metric the gate read: its value
    message: str


class GateReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    results: list[GateResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.results)

    @property
    def failed(self) -> list[GateResult]:
        return [r for r in self.results if r.passed is False]

    def summary(self) -> str:
        """The failing gates, one per line with the values they read (or "all gates pass")."""
        if self.passed:
            return "all gates pass"
        return "; ".join(f"{r.gate} ({r.message})" for r in self.failed)


class Gate:
    """A parsed gate: :meth:`check` it against the candidate's and the champion's metrics."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("a gate is a comparison, e.g. 'roc_auc >= champion.roc_auc'")
        if len(text) > MAX_GATE_LENGTH:
            raise InvalidInput(f"gate is longer than {MAX_GATE_LENGTH} characters")
        self.text = text.strip()
        self._quoted: dict[str, str] = {}

        def name_for(match: re.Match[str]) -> str:
            placeholder = f"__mloop_q{len(self._quoted)}"
            self._quoted[placeholder] = match.group(1)
            return placeholder

        source = _QUOTED.sub(name_for, self.text)
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            raise InvalidInput(f"gate {self.text!r} is not a valid expression: {exc.msg}") from None
        self._tree = tree.body
        self._check(self._tree, top=True)

    def __repr__(self) -> str:
        return f"Gate({self.text!r})"

    # -- parsing --------------------------------------------------------------------------

    def _refuse(self, node: ast.AST, why: str) -> InvalidInput:
        return InvalidInput(f"gate {self.text!r}: {why}")

    def _check(self, node: ast.AST, *, top: bool = False) -> None:
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value, top=True)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self._check(node.operand, top=True)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise self._refuse(node, f"unsupported comparison {type(op).__name__}")
            for operand in [node.left, *node.comparators]:
                self._check_value(operand)
        elif top:
            raise self._refuse(
                node,
                "each part must be a comparison (<, <=, >, >=, ==, !=), e.g. 'roc_auc >= 0.8'",
            )
        else:
            self._check_value(node)

    def _check_value(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self._refuse(node, f"{node.value!r} is not a number")
        elif isinstance(node, ast.Name):
            if node.id == CHAMPION:
                raise self._refuse(node, "write champion.METRIC, e.g. champion.roc_auc")
        elif isinstance(node, ast.Attribute):
            if not (isinstance(node.value, ast.Name) and node.value.id == CHAMPION):
                raise self._refuse(node, "only champion.METRIC reads another version's metric")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITHMETIC:
                raise self._refuse(node, f"unsupported operator {type(node.op).__name__}")
            self._check_value(node.left)
            self._check_value(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            self._check_value(node.operand)
        elif isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
                raise self._refuse(node, f"only {', '.join(_FUNCTIONS)} may be called")
            if node.keywords or not node.args:
                raise self._refuse(node, f"{node.func.id}() takes numbers")
            for arg in node.args:
                self._check_value(arg)
        else:
            raise self._refuse(node, f"{ast.unparse(node)!r} is not allowed in a gate")

    def _metric(self, name: str) -> str:
        return self._quoted.get(name, name)

    @property
    def metrics(self) -> list[str]:
        """The candidate's metrics the gate reads."""
        return sorted(
            {
                self._metric(n.id)
                for n in ast.walk(self._tree)
                if isinstance(n, ast.Name) and n.id not in _FUNCTIONS and n.id != CHAMPION
            }
        )

    @property
    def champion_metrics(self) -> list[str]:
        """The champion's metrics the gate reads."""
        return sorted(
            {
                n.attr
                for n in ast.walk(self._tree)
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name)
                and n.value.id == CHAMPION
            }
        )

    # -- checking -------------------------------------------------------------------------

    def check(
        self, candidate: Mapping[str, float], champion: Mapping[str, float] | None
    ) -> GateResult:
        values: dict[str, float | None] = {m: _number(candidate.get(m)) for m in self.metrics}
        reads_champion = bool(self.champion_metrics)
        if reads_champion:
            for m in self.champion_metrics:
                values[f"champion.{m}"] = _number(champion.get(m)) if champion else None
        if reads_champion and champion is None:
            return GateResult(
                gate=self.text,
                passed=None,
                values=values,
                message="no champion yet: not checked",
            )
        missing = [k for k, v in values.items() if v is None]
        if missing:
            return GateResult(
                gate=self.text,
                passed=False,
                values=values,
                message=f"no value for {', '.join(missing)} in the evaluation",
            )
        try:
            passed = bool(self._truth(self._tree, candidate, champion or {}))
        except ZeroDivisionError:
            return GateResult(
                gate=self.text, passed=False, values=values, message="division by zero"
            )
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        return GateResult(
            gate=self.text,
            passed=passed,
            values=values,
            message=("passes" if passed else "fails") + (f": {shown}" if shown else ""),
        )

    def _truth(
        self, node: ast.AST, candidate: Mapping[str, float], champion: Mapping[str, float]
    ) -> bool:
        if isinstance(node, ast.BoolOp):
            parts = (self._truth(v, candidate, champion) for v in node.values)
            return all(parts) if isinstance(node.op, ast.And) else any(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not self._truth(node.operand, candidate, champion)
        assert isinstance(node, ast.Compare)
        left = self._value(node.left, candidate, champion)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self._value(right_node, candidate, champion)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def _value(
        self, node: ast.AST, candidate: Mapping[str, float], champion: Mapping[str, float]
    ) -> float:
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, int | float)  # checked when parsed
            return float(node.value)
        if isinstance(node, ast.Name):
            return float(candidate[self._metric(node.id)])
        if isinstance(node, ast.Attribute):
            return float(champion[node.attr])
        if isinstance(node, ast.BinOp):
            return _ARITHMETIC[type(node.op)](
                self._value(node.left, candidate, champion),
                self._value(node.right, candidate, champion),
            )
        if isinstance(node, ast.UnaryOp):
            value = self._value(node.operand, candidate, champion)
            return -value if isinstance(node.op, ast.USub) else value
        assert isinstance(node, ast.Call)
        assert isinstance(node.func, ast.Name)
        return float(
            _FUNCTIONS[node.func.id](*(self._value(a, candidate, champion) for a in node.args))
        )


def parse_gates(gates: Sequence[str]) -> list[Gate]:
    """Every gate parsed (InvalidInput names the first bad one); the same gate twice is refused."""
    if isinstance(gates, str):
        gates = [gates]
    parsed = [Gate(g) for g in gates]
    texts = [g.text for g in parsed]
    twice = sorted({t for t in texts if texts.count(t) > 1})
    if twice:
        raise InvalidInput(f"gate {twice[0]!r} is given twice")
    return parsed


def check_gates(
    gates: Sequence[Gate], candidate: Mapping[str, float], champion: Mapping[str, float] | None
) -> GateReport:
    return GateReport(results=[g.check(candidate, champion) for g in gates])


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
