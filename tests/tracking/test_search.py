"""MLflow's search grammar: the parser (tokens, identifiers, values, errors) without a database."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mloop import InvalidInput
from mloop.tracking import parse_filter, parse_order_by
from mloop.tracking.search import (
    MAX_RESULTS,
    Clause,
    Identifier,
    OrderBy,
    check_max_results,
    decode_page_token,
    encode_page_token,
    tokenize,
)


def one(text: str) -> Clause:
    clauses = parse_filter(text)
    assert len(clauses) == 1, clauses
    return clauses[0]


# -- identifiers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "kind"),
    [
        ("metrics", "metric"),
        ("metric", "metric"),
        ("METRICS", "metric"),
        ("params", "param"),
        ("param", "param"),
        ("parameter", "param"),
        ("parameters", "param"),
        ("tags", "tag"),
        ("tag", "tag"),
        ("Tags", "tag"),
    ],
)
def test_entity_prefixes_and_their_aliases(prefix: str, kind: str) -> None:
    value = "0.5" if kind == "metric" else "'x'"
    clause = one(f"{prefix}.k = {value}")
    assert clause.ident == Identifier(kind, "k")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["attributes", "attribute", "attr", "run", ""])
def test_attributes_with_any_prefix_or_none(prefix: str) -> None:
    dot = f"{prefix}." if prefix else ""
    assert one(f"{dot}status = 'FINISHED'") == Clause(
        Identifier("attribute", "status"), "=", "FINISHED"
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("run_id", "run_id"),
        ("run_name", "run_name"),
        ("status", "status"),
        ("user_id", "user_id"),
        ("artifact_uri", "artifact_uri"),
        ("`run name`", "run_name"),
        ('"run name"', "run_name"),
        ("attributes.`run name`", "run_name"),
    ],
)
def test_string_attributes_and_the_run_name_alias(name: str, key: str) -> None:
    assert one(f"{name} = 'v'").ident == Identifier("attribute", key)


@pytest.mark.parametrize("name", ["start_time", "end_time", "created", "Created", "attr.created"])
def test_time_attributes_compare_with_integers(name: str) -> None:
    clause = one(f"{name} >= 1700000000000")
    assert clause.ident.key in ("start_time", "end_time")
    assert clause.value == 1_700_000_000_000
    assert isinstance(clause.value, int)
    assert one("created < 1.7e12").value == 1_700_000_000_000
    assert one("created = 5").ident == Identifier("attribute", "start_time")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("metrics.`val loss`", "val loss"),
        ('metrics."val loss"', "val loss"),
        ("metrics.`a.b`", "a.b"),
        ("metrics.a.b.c", "a.b.c"),  # unquoted dots glue back into one key
        ("metrics.val-loss", "val-loss"),
        ("metrics.`with-dash and space`", "with-dash and space"),
        ("metrics.loss/val", "loss/val"),
        ("metrics.f1:macro", "f1:macro"),
        ("metrics.top_1.5", "top_1.5"),
        ("metrics.5", "5"),
        ("metrics.epoch.10", "epoch.10"),
        ("metrics.like", "like"),  # a keyword as a key keeps its case
        ("metrics.And", "And"),
        ('metrics."say ""hi"""', 'say "hi"'),
    ],
)
def test_metric_keys_quoted_with_backticks_or_double_quotes(text: str, key: str) -> None:
    assert one(f"{text} > 0").ident == Identifier("metric", key)


def test_params_and_tags_keys_quote_the_same_way() -> None:
    assert one("params.`model type` = 'x'").ident == Identifier("param", "model type")
    assert one("tags.\"mlflow.user\" = 'x'").ident == Identifier("tag", "mlflow.user")
    assert one("tags.mlflow.source.git.commit = 'x'").ident == Identifier(
        "tag", "mlflow.source.git.commit"
    )


@pytest.mark.parametrize("field", ["name", "digest", "context"])
def test_dataset_fields(field: str) -> None:
    assert one(f"datasets.{field} = 'x'").ident == Identifier("dataset", field)
    assert one(f"dataset.{field} != 'x'").op == "!="


# -- operators and values ----------------------------------------------------------------------


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_every_numeric_operator_on_metrics_and_times(op: str) -> None:
    assert one(f"metrics.m {op} 1") == Clause(Identifier("metric", "m"), op, 1.0)
    assert one(f"start_time {op} 1").op == op
    assert one(f"end_time {op} 1").op == op


def test_sql_not_equal_is_an_alias() -> None:
    assert one("metrics.m <> 1").op == "!="
    assert one("params.p <> 'a'").op == "!="


@pytest.mark.parametrize("op", ["=", "!=", "LIKE", "ILIKE", "like", "ilike"])
@pytest.mark.parametrize("ident", ["params.p", "tags.t", "run_name", "status", "user_id"])
def test_every_string_operator_on_strings(ident: str, op: str) -> None:
    clause = one(f"{ident} {op} 'a%'")
    assert clause.op == op.upper()
    assert clause.value == "a%"


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
@pytest.mark.parametrize("ident", ["params.p", "tags.t", "status", "datasets.name"])
def test_strings_refuse_ordering_comparisons(ident: str, op: str) -> None:
    with pytest.raises(InvalidInput, match=f"does not take '{op}'"):
        parse_filter(f"{ident} {op} 'a'")


@pytest.mark.parametrize("ident", ["metrics.m", "start_time", "end_time"])
def test_numbers_refuse_like(ident: str) -> None:
    with pytest.raises(InvalidInput, match="is a number: LIKE needs a string"):
        parse_filter(f"{ident} LIKE '1%'")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0),
        ("-1", -1.0),
        ("+2", 2.0),
        ("0.5", 0.5),
        (".5", 0.5),
        ("-.5", -0.5),
        ("1.", 1.0),
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("1.5e-3", 0.0015),
        ("-2.5E+2", -250.0),
        ("1.7976931348623157e308", 1.7976931348623157e308),
    ],
)
def test_numbers_in_every_notation(text: str, value: float) -> None:
    assert one(f"metrics.m > {text}").value == value
    assert one(f"metrics.m>{text}").value == value


def test_metrics_need_numbers_and_strings_need_quotes() -> None:
    with pytest.raises(InvalidInput, match=r"metrics\.m compares with a number, found \"'1'\""):
        parse_filter("metrics.m > '1'")
    with pytest.raises(InvalidInput, match=r"params\.p compares with a quoted string, found '1'"):
        parse_filter("params.p = 1")
    with pytest.raises(InvalidInput, match="compares with a quoted string, found 'xgb'"):
        parse_filter("params.model = xgb")
    with pytest.raises(InvalidInput, match="compares with a number"):
        parse_filter("metrics.m > nan")
    with pytest.raises(InvalidInput, match="compares with a number"):
        parse_filter("start_time > 'yesterday'")


def test_string_values_take_either_quote_and_doubled_quotes() -> None:
    assert one("params.p = 'xgb'").value == "xgb"
    assert one('params.p = "xgb"').value == "xgb"
    assert one("params.p = 'it''s'").value == "it's"
    assert one('params.p = "say ""hi"""').value == 'say "hi"'
    assert one("params.p = ''").value == ""
    assert one("params.p = 'a and b or c'").value == "a and b or c"
    assert one("params.p = 'ünï cødé'").value == "ünï cødé"


@pytest.mark.parametrize("op", ["IN", "NOT IN", "in", "not in"])
def test_in_lists_on_run_id_and_dataset_fields(op: str) -> None:
    clause = one(f"run_id {op} ('a', 'b','c')")
    assert clause == Clause(Identifier("attribute", "run_id"), op.upper(), ["a", "b", "c"])
    assert one(f"attributes.run_id {op} ('a')").value == ["a"]
    for field in ("name", "digest", "context"):
        assert one(f"datasets.{field} {op} (\"x\", 'y')").value == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params.p IN ('a')", "IN works on run_id and datasets fields, not params.p"),
        ("metrics.m NOT IN ('a')", "NOT IN works on run_id and datasets fields"),
        ("status IN ('a')", "not attributes.status"),
        ("run_id IN 'a'", "IN takes a list in parentheses, found \"'a'\""),
        ("run_id IN (1, 2)", "IN lists quoted strings, found '1'"),
        ("run_id IN ()", "IN lists quoted strings, found ')'"),
        ("run_id IN ('a' 'b')", "expected ',' or ')' in the IN list"),
        ("run_id IN ('a',", "it ends too early"),
        ("run_id NOT ('a')", "expected IN after NOT"),
    ],
)
def test_bad_in_lists(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=_re(message)):
        parse_filter(text)


@pytest.mark.parametrize("ident", ["params.p", "tags.t", "parameter.`x y`", 'tag."a.b"'])
def test_is_null_and_is_not_null_on_params_and_tags(ident: str) -> None:
    assert one(f"{ident} IS NULL").op == "IS NULL"
    assert one(f"{ident} is not null").op == "IS NOT NULL"
    assert one(f"{ident} IS NULL").value is None


@pytest.mark.parametrize("ident", ["metrics.m", "status", "datasets.name", "start_time"])
def test_is_null_elsewhere_is_refused(ident: str) -> None:
    with pytest.raises(InvalidInput, match="IS NULL works on params and tags"):
        parse_filter(f"{ident} IS NULL")
    with pytest.raises(InvalidInput, match="expected NULL after IS"):
        parse_filter("params.p IS 'x'")


# -- AND, OR and the shape of the whole filter -------------------------------------------------


def test_clauses_join_with_and_in_any_case() -> None:
    clauses = parse_filter(
        "metrics.auc > 0.9 and params.model = 'xgb' AND tags.team LIKE 'risk%' "
        "And status = 'FINISHED' aNd datasets.name IN ('train')"
    )
    assert [c.ident.kind for c in clauses] == ["metric", "param", "tag", "attribute", "dataset"]
    assert [c.op for c in clauses] == [">", "=", "LIKE", "=", "IN"]


@pytest.mark.parametrize(
    "text",
    [
        "metrics.a > 1 OR metrics.b > 1",
        "params.p = 'x' or params.q = 'y'",
        "status='A' Or run_id='b'",
    ],
)
def test_or_is_refused_with_a_clear_message(text: str) -> None:
    with pytest.raises(InvalidInput, match="OR is not supported: clauses join with AND"):
        parse_filter(text)


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_an_empty_filter_is_no_clause(text: str | None) -> None:
    assert parse_filter(text) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics.auc >", "it ends too early"),
        ("metrics.auc", "it ends too early"),
        ("metrics.auc > 0.9 and", "it ends too early"),
        ("metrics.auc > 0.9 params.p = 'x'", "expected AND at position 18, found 'params'"),
        ("metrics.auc > 0.9 && params.p = 'x'", "unexpected '&' at position 18"),
        ("metrics.auc ~ 1", "unexpected '~' at position 12"),
        ("foo.auc > 1", "unknown entity 'foo'"),
        ("bogus = 'x'", "unknown attribute 'bogus'"),
        ("attributes.bogus = 'x'", "unknown attribute 'bogus'"),
        ("datasets.size = 'x'", "unknown dataset field 'size'"),
        ("metrics.`` > 1", "an empty key"),
        ("metrics. > 1", "expected a key after 'metrics'. at position 9"),
        ("'auc' > 1", "expected a name at position 0"),
        ("metrics.auc = 'x", 'unexpected "\'" at position 14'),
        ("metrics.auc 0.5", "expected a comparison after metrics.auc, found '0.5'"),
        ("params.p IS", "it ends too early"),
        ("(metrics.a > 1)", "expected a name at position 0, found '('"),
    ],
)
def test_malformed_filters_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter(text)
    assert message in info.value.message
    assert info.value.message.startswith(f"invalid filter {text!r}: ")


def test_the_error_names_what_was_parsed() -> None:
    with pytest.raises(InvalidInput, match=r"^invalid experiment filter 'x'"):
        parse_filter("x", "experiment filter")


# -- the tokenizer -----------------------------------------------------------------------------


def test_tokens_keep_positions_and_upper_case_keywords() -> None:
    tokens = tokenize("metrics.a>=-1e3 and tags.`b c` like 'x''y'")
    assert [(t.kind, t.text, t.pos) for t in tokens] == [
        ("word", "metrics", 0),
        ("punct", ".", 7),
        ("word", "a", 8),
        ("op", ">=", 9),
        ("number", "-1e3", 11),
        ("keyword", "AND", 16),
        ("word", "tags", 20),
        ("punct", ".", 24),
        ("backtick", "`b c`", 25),
        ("keyword", "LIKE", 31),
        ("string", "'x''y'", 36),
    ]


# -- order_by ----------------------------------------------------------------------------------


def test_order_by_entries() -> None:
    assert parse_order_by(None) == []
    assert parse_order_by(
        ["metrics.auc DESC", "params.`model type`", "tags.t asc", "start_time", "`run name` desc"]
    ) == [
        OrderBy(Identifier("metric", "auc"), ascending=False),
        OrderBy(Identifier("param", "model type"), ascending=True),
        OrderBy(Identifier("tag", "t"), ascending=True),
        OrderBy(Identifier("attribute", "start_time"), ascending=True),
        OrderBy(Identifier("attribute", "run_name"), ascending=False),
    ]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("metrics.auc DOWN", "expected ASC or DESC, found 'DOWN'"),
        ("metrics.auc DESC ASC", "one key and an optional ASC/DESC per entry"),
        ("datasets.name", "runs cannot be ordered by dataset fields"),
        ("bogus", "unknown attribute 'bogus'"),
        ("", "it ends too early"),
    ],
)
def test_bad_order_by(item: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=_re(message)):
        parse_order_by([item])


# -- page tokens and max_results ---------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**12))
def test_page_tokens_round_trip(offset: int) -> None:
    assert decode_page_token(encode_page_token(offset)) == offset


@pytest.mark.parametrize(
    "token",
    ["garbage", "!!!", encode_page_token(0)[:-3] + "xx", "eyJ4IjogMX0=", "eyJvZmZzZXQiOiAtMX0="],
)
def test_invalid_page_tokens(token: str) -> None:
    with pytest.raises(InvalidInput, match="invalid page token"):
        decode_page_token(token)


def test_no_token_is_the_first_page() -> None:
    assert decode_page_token(None) == 0
    assert decode_page_token("") == 0


def test_max_results_bounds() -> None:
    assert check_max_results(None) == 1000
    assert check_max_results(1) == 1
    assert check_max_results(MAX_RESULTS) == MAX_RESULTS
    for bad in (0, -1, True, 1.5, "10"):
        with pytest.raises(InvalidInput, match="positive integer"):
            check_max_results(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=f"at most {MAX_RESULTS}"):
        check_max_results(MAX_RESULTS + 1)


# -- properties --------------------------------------------------------------------------------

KEY = st.text(alphabet="abcxyz_-/: .0123456789", min_size=1, max_size=12).filter(
    lambda k: k.strip() != "" and "`" not in k
)


@given(key=KEY, value=st.floats(allow_nan=False, allow_infinity=False))
def test_any_key_in_backticks_and_any_finite_number_round_trip(key: str, value: float) -> None:
    clause = one(f"metrics.`{key}` <= {value!r}")
    assert clause.ident == Identifier("metric", key)
    assert clause.value == value or (math.isclose(clause.value, value) and value != 0)


@given(
    key=st.text(min_size=1, max_size=12).filter(lambda k: "\x00" not in k),
    value=st.text(max_size=20),
)
def test_any_key_and_value_survive_quoting(key: str, value: str) -> None:
    quoted_key = '"' + key.replace('"', '""') + '"'
    quoted_value = "'" + value.replace("'", "''") + "'"
    clause = one(f"tags.{quoted_key} != {quoted_value}")
    assert clause == Clause(Identifier("tag", key), "!=", value)


def _re(text: str) -> str:
    import re

    return re.escape(text)
