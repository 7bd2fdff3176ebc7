"""MLflow's search grammar for runs (and experiments), compiled to SQL.

    metrics.auc > 0.9 and params.model = 'xgb' and tags.team LIKE 'risk%'
    attributes.status = 'FINISHED' and start_time >= 1700000000000
    run_id IN ('a1…', 'b2…') and datasets.name = 'train'
    metrics."val loss" < 0.3 and tags.`mlflow.user` ILIKE 'ANN%'

Clauses are joined by AND (MLflow has no OR). An identifier is ``TYPE.KEY`` with TYPE one of
metrics/metric, params/param/parameter(s), tags/tag, attributes/attribute/attr/run,
datasets/dataset — or a bare attribute name. Keys with other characters are quoted with "…" or
backticks. Metrics compare with numbers (=, !=, <, <=, >, >=); params and tags with quoted
strings (=, !=, LIKE, ILIKE, IS NULL, IS NOT NULL); attributes by their type; ``run_id`` and
dataset fields also take IN / NOT IN. LIKE is case-sensitive and ILIKE is not, on every backend;
in their patterns ``%`` and ``_`` are wildcards and a backslash escapes them. Every clause
becomes an indexed EXISTS over the latest value of a metric, a param, a tag or an input, so a
search over 100k runs stays fast.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from mloop.core.errors import InvalidInput
from mloop.storage import tables

Kind = Literal["metric", "param", "tag", "attribute", "dataset"]

ENTITY_ALIASES: dict[str, Kind] = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
STRING_ATTRIBUTES = {"run_id", "run_name", "status", "user_id", "artifact_uri"}
NUMERIC_ATTRIBUTES = {"start_time", "end_time"}
ATTRIBUTE_ALIASES = {"created": "start_time", "Created": "start_time", "run name": "run_name"}
DATASET_FIELDS = {"name", "digest", "context"}
NUMERIC_OPS = {"=", "!=", "<", "<=", ">", ">="}
STRING_OPS = {"=", "!=", "LIKE", "ILIKE"}
MAX_RESULTS = 50_000
DEFAULT_MAX_RESULTS = 1_000

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<backtick>`[^`]*`)
  | (?P<number>[-+]?(?:\d+\.?\d*|(?<!\w)\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
  | (?P<op>!=|<>|>=|<=|=|<|>)
  | (?P<punct>[(),.])
  | (?P<word>[A-Za-z_][\w\-:/]*)
    """,
    re.VERBOSE,
)
KEYWORDS = {"AND", "OR", "IN", "NOT", "LIKE", "ILIKE", "IS", "NULL", "ASC", "DESC"}


@dataclass(frozen=True)
class Token:
    kind: str  # string, backtick, number, op, punct, word, keyword
    text: str
    pos: int


def tokenize(text: str, what: str = "filter") -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise InvalidInput(
                f"invalid {what} {text!r}: unexpected {text[pos]!r} at position {pos}"
            )
        kind = match.lastgroup or ""
        value = match.group()
        if kind != "ws":
            if kind == "word" and value.upper() in KEYWORDS:
                tokens.append(Token("keyword", value.upper(), pos))
            else:
                tokens.append(Token(kind, value, pos))
        pos = match.end()
    return tokens


def _unquote(token: Token) -> str:
    quote = token.text[0]
    return token.text[1:-1].replace(quote * 2, quote)


@dataclass(frozen=True)
class Identifier:
    kind: Kind
    key: str


@dataclass(frozen=True)
class Clause:
    ident: Identifier
    op: str  # =, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS NULL, IS NOT NULL
    value: Any = None


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what
        self.tokens = tokenize(text, what)
        self.i = 0

    def error(self, message: str) -> InvalidInput:
        return InvalidInput(f"invalid {self.what} {self.text!r}: {message}")

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.error("it ends too early")
        self.i += 1
        return token

    def identifier(self) -> Identifier:
        first = self.take()
        if first.kind == "backtick":
            name = _unquote(first)
        elif first.kind in ("word", "keyword"):
            name = first.text
        elif first.kind == "string" and first.text[0] == '"':
            name = _unquote(first)
        else:
            raise self.error(f"expected a name at position {first.pos}, found {first.text!r}")
        nxt = self.peek()
        if nxt is not None and nxt.kind == "punct" and nxt.text == ".":
            self.take()
            entity = ENTITY_ALIASES.get(name.lower() if first.kind == "word" else name)
            if entity is None:
                raise self.error(
                    f"unknown entity {name!r}: use metrics., params., tags., attributes. "
                    "or datasets."
                )
            key_token = self.take()
            if key_token.kind in ("string", "backtick"):
                key = _unquote(key_token)
            elif key_token.kind in ("word", "keyword", "number"):
                key = self._source(key_token)  # as written: `params.like` is not 'LIKE'
                # a dotted key (metrics.a.b) arrives as several tokens: glue them back
                while (
                    (dot := self.peek()) is not None
                    and dot.kind == "punct"
                    and dot.text == "."
                    and dot.pos == self.tokens[self.i - 1].pos + len(self.tokens[self.i - 1].text)
                ):
                    self.take()
                    part = self.take()
                    key += "." + self._source(part)
            else:
                raise self.error(f"expected a key after {name!r}. at position {key_token.pos}")
            return self._checked(Identifier(entity, key))
        return self._checked(Identifier("attribute", name))

    def _source(self, token: Token) -> str:
        """The token as written (a keyword's text is upper-cased)."""
        return self.text[token.pos : token.pos + len(token.text)]

    def _checked(self, ident: Identifier) -> Identifier:
        if ident.kind == "attribute":
            key = ATTRIBUTE_ALIASES.get(ident.key, ident.key)
            if key not in STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES:
                known = ", ".join(sorted(STRING_ATTRIBUTES | NUMERIC_ATTRIBUTES))
                raise self.error(f"unknown attribute {ident.key!r} (known: {known})")
            return Identifier("attribute", key)
        if ident.kind == "dataset" and ident.key not in DATASET_FIELDS:
            raise self.error(f"unknown dataset field {ident.key!r} (name, digest or context)")
        if not ident.key:
            raise self.error("an empty key")
        return ident


def _value(parser: _Parser, ident: Identifier, op: str) -> Any:
    token = parser.take()
    numeric = ident.kind == "metric" or (
        ident.kind == "attribute" and ident.key in NUMERIC_ATTRIBUTES
    )
    if numeric:
        if token.kind != "number":
            raise parser.error(
                f"{_label(ident)} compares with a number, found {token.text!r} at position "
                f"{token.pos}"
            )
        number = float(token.text)
        return int(number) if ident.kind == "attribute" else number
    if token.kind != "string":
        raise parser.error(
            f"{_label(ident)} compares with a quoted string, found {token.text!r} at position "
            f"{token.pos}"
        )
    return _unquote(token)


def _label(ident: Identifier) -> str:
    return {
        "metric": "metrics",
        "param": "params",
        "tag": "tags",
        "attribute": "attributes",
        "dataset": "datasets",
    }[ident.kind] + f".{ident.key}"


def _list(parser: _Parser, ident: Identifier) -> list[str]:
    opening = parser.take()
    if opening.text != "(":
        raise parser.error(f"IN takes a list in parentheses, found {opening.text!r}")
    values: list[str] = []
    while True:
        token = parser.take()
        if token.kind != "string":
            raise parser.error(f"IN lists quoted strings, found {token.text!r}")
        values.append(_unquote(token))
        sep = parser.take()
        if sep.text == ")":
            return values
        if sep.text != ",":
            raise parser.error(f"expected ',' or ')' in the IN list, found {sep.text!r}")


def parse_filter(text: str | None, what: str = "filter") -> list[Clause]:
    """Parse a filter string; raises InvalidInput naming the problem and where it is.

    Parsed filters are remembered (a dashboard repeats the same search)."""
    return list(_parse_filter(text, what))


@functools.lru_cache(maxsize=512)
def _parse_filter(text: str | None, what: str) -> tuple[Clause, ...]:
    return tuple(_parse_filter_uncached(text, what))


def _parse_filter_uncached(text: str | None, what: str = "filter") -> list[Clause]:
    """Parse a filter string; raises InvalidInput naming the problem and where it is."""
    if text is None or not text.strip():
        return []
    parser = _Parser(text, what)
    clauses: list[Clause] = []
    while True:
        ident = parser.identifier()
        token = parser.take()
        op = token.text
        if token.kind == "op":
            op = "!=" if op == "<>" else op
            allowed = NUMERIC_OPS if _numeric(ident) else STRING_OPS
            if op not in allowed:
                raise parser.error(f"{_label(ident)} does not take {op!r}")
            clauses.append(Clause(ident, op, _value(parser, ident, op)))
        elif token.kind == "keyword" and op in ("LIKE", "ILIKE"):
            if _numeric(ident):
                raise parser.error(f"{_label(ident)} is a number: {op} needs a string")
            clauses.append(Clause(ident, op, _value(parser, ident, op)))
        elif token.kind == "keyword" and op in ("IN", "NOT"):
            if op == "NOT":
                if parser.take().text != "IN":
                    raise parser.error("expected IN after NOT")
                op = "NOT IN"
            if not (ident.kind == "dataset" or (ident.kind, ident.key) == ("attribute", "run_id")):
                raise parser.error(f"{op} works on run_id and datasets fields, not {_label(ident)}")
            clauses.append(Clause(ident, op, _list(parser, ident)))
        elif token.kind == "keyword" and op == "IS":
            negate = False
            nxt = parser.take()
            if nxt.text == "NOT":
                negate = True
                nxt = parser.take()
            if nxt.text != "NULL":
                raise parser.error("expected NULL after IS")
            if ident.kind not in ("param", "tag"):
                raise parser.error(f"IS NULL works on params and tags, not {_label(ident)}")
            clauses.append(Clause(ident, "IS NOT NULL" if negate else "IS NULL"))
        else:
            raise parser.error(f"expected a comparison after {_label(ident)}, found {op!r}")
        following = parser.peek()
        if following is None:
            return clauses
        parser.take()
        if following.text == "OR":
            raise parser.error("OR is not supported: clauses join with AND, as in MLflow")
        if following.text != "AND":
            raise parser.error(
                f"expected AND at position {following.pos}, found {following.text!r}"
            )


def _numeric(ident: Identifier) -> bool:
    return ident.kind == "metric" or (ident.kind == "attribute" and ident.key in NUMERIC_ATTRIBUTES)


@dataclass(frozen=True)
class OrderBy:
    ident: Identifier
    ascending: bool


def parse_order_by(items: list[str] | None) -> list[OrderBy]:
    result: list[OrderBy] = []
    for item in items or []:
        parser = _Parser(item, "order_by")
        ident = parser.identifier()
        ascending = True
        token = parser.peek()
        if token is not None:
            parser.take()
            if token.text not in ("ASC", "DESC"):
                raise parser.error(f"expected ASC or DESC, found {token.text!r}")
            ascending = token.text == "ASC"
        if parser.peek() is not None:
            raise parser.error("one key and an optional ASC/DESC per entry")
        if ident.kind == "dataset":
            raise parser.error("runs cannot be ordered by dataset fields")
        result.append(OrderBy(ident, ascending))
    return result


# -- page tokens -------------------------------------------------------------------------------


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"invalid page token {token!r}") from exc
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput(f"invalid page token {token!r}")
    return offset


def check_max_results(max_results: int | None) -> int:
    if max_results is None:
        return DEFAULT_MAX_RESULTS
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InvalidInput(f"max_results must be a positive integer, not {max_results!r}")
    if max_results > MAX_RESULTS:
        raise InvalidInput(f"max_results is at most {MAX_RESULTS}, not {max_results}")
    return max_results


# -- SQL ---------------------------------------------------------------------------------------

runs = tables.runs


def artifact_uri_expr() -> sa.ColumnElement[str]:
    """The run's artifact URI as SQL (see :func:`mloop.tracking.records.artifact_uri`)."""
    return (
        sa.literal("mlflow-artifacts:/")
        + runs.c.experiment_id
        + sa.literal("/")
        + runs.c.id
        + sa.literal("/artifacts")
    )


def _attribute_column(key: str) -> sa.ColumnElement[Any]:
    columns: dict[str, sa.ColumnElement[Any]] = {
        "run_id": runs.c.id,
        "run_name": runs.c.name,
        "status": runs.c.status,
        "user_id": runs.c.user,
        "start_time": runs.c.start_time,
        "end_time": runs.c.end_time,
    }
    if key == "artifact_uri":
        return artifact_uri_expr()
    return columns[key]


def _compare(column: sa.ColumnElement[Any], op: str, value: Any) -> sa.ColumnElement[bool]:
    comparisons: dict[str, Any] = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    if op in comparisons:
        result: sa.ColumnElement[bool] = comparisons[op](value)
        return result
    if op in ("LIKE", "ILIKE"):
        # one escape character on every backend (PostgreSQL's default; SQLite has none)
        if not isinstance(value, str):
            raise InvalidInput(f"{op} takes a quoted pattern, not {value!r}")
        if (len(value) - len(value.rstrip("\\"))) % 2:
            raise InvalidInput(f"{op} pattern {value!r} ends with the escape character '\\'")
        if op == "LIKE":
            return column.like(value, escape="\\")
        return sa.func.lower(column).like(sa.func.lower(sa.literal(value)), escape="\\")
    if op == "IN":
        return column.in_(value)
    if op == "NOT IN":
        return column.not_in(value)
    raise InvalidInput(f"unknown comparison {op!r}")


def _exists(table: sa.Table, *where: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """EXISTS (SELECT 1 … OFFSET 0): the OFFSET keeps PostgreSQL from turning it into a join
    whose size it cannot estimate; as a per-run probe of a primary key it is cheap and the
    planner is free to stop after a page. SQLite never flattens EXISTS: a no-op there."""
    return sa.select(sa.literal(1)).select_from(table).where(*where).offset(0).exists()


def clause_condition(clause: Clause) -> sa.ColumnElement[bool]:
    """One clause as a condition on ``runs``: an EXISTS that uses a primary-key lookup."""
    ident = clause.ident
    if ident.kind == "attribute":
        return _compare(_attribute_column(ident.key), clause.op, clause.value)
    if ident.kind == "metric":
        m = tables.latest_metrics
        return _exists(
            m,
            m.c.run_id == runs.c.id,
            m.c.key == ident.key,
            m.c.is_nan.is_(False),
            _compare(m.c.value, clause.op, clause.value),
        )
    if ident.kind in ("param", "tag"):
        t = tables.params if ident.kind == "param" else tables.tags
        has = _exists(t, t.c.run_id == runs.c.id, t.c.key == ident.key)
        if clause.op == "IS NULL":
            return ~has
        if clause.op == "IS NOT NULL":
            return has
        return _exists(
            t,
            t.c.run_id == runs.c.id,
            t.c.key == ident.key,
            _compare(t.c.value, clause.op, clause.value),
        )
    i = tables.run_inputs
    return _exists(i, i.c.run_id == runs.c.id, _compare(i.c[ident.key], clause.op, clause.value))


def order_columns(
    query: sa.Select[Any],
    order: list[OrderBy],
    *,
    leading: list[sa.ColumnElement[Any]] | None = None,
) -> sa.Select[Any]:
    """Add ORDER BY for each key (after ``leading`` terms): runs that lack a metric, param or
    tag come last; NaN sorts above every number, as in MLflow; start time (newest first) and id
    break ties."""
    terms: list[sa.ColumnElement[Any]] = list(leading or [])
    for n, item in enumerate(order):
        ident = item.ident
        if ident.kind == "attribute":
            column = _attribute_column(ident.key)
            if ident.key == "end_time":  # NULL while running: last, as missing values are
                terms.append(column.is_(None).asc())
            terms.append(column.asc() if item.ascending else column.desc())
            continue
        if ident.kind == "metric":
            alias = tables.latest_metrics.alias(f"order_m{n}")
            query = query.outerjoin(
                alias, sa.and_(alias.c.run_id == runs.c.id, alias.c.key == ident.key)
            )
            terms.append(alias.c.run_id.is_(None).asc())
            nan_first = alias.c.is_nan.asc() if item.ascending else alias.c.is_nan.desc()
            terms.append(nan_first)
            terms.append(alias.c.value.asc() if item.ascending else alias.c.value.desc())
        else:
            t = tables.params if ident.kind == "param" else tables.tags
            alias = t.alias(f"order_{ident.kind}{n}")
            query = query.outerjoin(
                alias, sa.and_(alias.c.run_id == runs.c.id, alias.c.key == ident.key)
            )
            terms.append(alias.c.run_id.is_(None).asc())
            terms.append(alias.c.value.asc() if item.ascending else alias.c.value.desc())
    terms += [runs.c.start_time.desc(), runs.c.id.desc()]
    return query.order_by(*terms)


def by_metric_queries(
    conditions: list[sa.ColumnElement[bool]], order: list[OrderBy]
) -> tuple[sa.Select[Any], sa.Select[Any], Any]:
    """For a search whose first order key is a metric: (the filter over runs in full order —
    the caller restricts it to a chunk of the metric's index through the returned alias of
    ``latest_metrics`` —, the runs that lack the metric, which come after all the others, and
    that alias)."""
    first = order[0]
    lm = tables.latest_metrics.alias("first_metric")
    # runs stay the outer table (a LEFT JOIN fixes the order): the caller narrows them by id
    has = (
        sa.select(runs.c.id)
        .select_from(
            runs.outerjoin(lm, sa.and_(lm.c.run_id == runs.c.id, lm.c.key == first.ident.key))
        )
        .where(*conditions)
    )
    leading: list[sa.ColumnElement[Any]] = (
        [lm.c.is_nan.asc(), lm.c.value.asc()]
        if first.ascending
        else [lm.c.is_nan.desc(), lm.c.value.desc()]
    )
    has = order_columns(has, order[1:], leading=leading)
    missing = sa.exists().where(
        tables.latest_metrics.c.run_id == runs.c.id,
        tables.latest_metrics.c.key == first.ident.key,
    )
    # the cheap test first: most runs have the metric, and then the filter is never evaluated
    lacks = order_columns(
        sa.select(runs.c.id).select_from(runs).where(~missing, *conditions), order[1:]
    )
    return has, lacks, lm
