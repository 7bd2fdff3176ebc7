"""Protocol codecs: each accepted body shape → rows; each bad shape → InvalidInput naming it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mloop.core.errors import InvalidInput, SchemaMismatch
from mloop.serving.protocols import (
    V2_DATATYPE_OF,
    mlflow_response,
    rows_from_mlflow,
    rows_from_native,
    rows_from_v2,
    v2_model_metadata,
    v2_response,
)

NAMES = ["amount", "city", "fresh"]
TYPES = {"amount": "float", "city": "string", "fresh": "boolean"}
ROWS: list[dict[str, Any]] = [
    {"amount": 1.5, "city": "Oslo", "fresh": True},
    {"amount": 2, "city": None, "fresh": False},
]
X = ["x1", "x2", "x3"]
X_TYPES = dict.fromkeys(X, "float")


def check_400(call: Callable[[], object], fragment: str) -> None:
    """``call`` raises InvalidInput (HTTP 400, not SchemaMismatch's 422) saying ``fragment``."""
    with pytest.raises(InvalidInput, match=re.escape(fragment)) as info:
        call()
    assert not isinstance(info.value, SchemaMismatch)
    assert info.value.http_status == 400


# --- native -----------------------------------------------------------------------------------


def test_native_rows_pass_through_unchanged() -> None:
    rows = [dict(r) for r in ROWS]
    assert rows_from_native({"rows": rows}) is rows
    assert rows_from_native({"rows": rows, "key": "user-7"}) == ROWS
    assert rows_from_native({"rows": rows, "key": 7}) == ROWS


def test_native_columns_become_rows() -> None:
    body = {"columns": {"amount": [1.5, 2], "city": ["Oslo", None], "fresh": [True, False]}}
    assert rows_from_native(body) == ROWS


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([{"a": 1}], "the body must be a JSON object"),
        ({"rows": ROWS, "columns": {"a": [1]}}, "either 'rows' or 'columns', not both"),
        ({}, "neither 'rows' nor 'columns'"),
        ({"key": "k"}, "neither 'rows' nor 'columns'"),
        ({"rows": ROWS, "row": 1}, "unknown key 'row'"),
        ({"rows": ROWS, "key": 1.5}, "'key' must be a string or an integer, got a number"),
        ({"rows": ROWS, "key": True}, "'key' must be a string or an integer, got a boolean"),
        ({"rows": {"a": 1}}, "rows must be a list of row objects, got an object"),
        ({"rows": []}, "rows is empty"),
        ({"rows": [{"a": 1}, {"a": 2}, [1]]}, "rows[2] is a list, not an object"),
        ({"rows": [{"a": 1}, "x"]}, "rows[1] is a string, not an object"),
        ({"columns": [[1]]}, "'columns' must be an object of column → list, got a list"),
        ({"columns": {}}, "columns has no columns"),
        ({"columns": {"a": [1, 2], "b": [3]}}, "columns['b'] has 1 values but columns['a'] has 2"),
        ({"columns": {"a": 1}}, "columns['a'] must be a list of values, got a number"),
        ({"columns": {"a": [], "b": []}}, "columns has no rows"),
    ],
)
def test_native_bad_shapes_are_named(body: Any, fragment: str) -> None:
    check_400(lambda: rows_from_native(body), fragment)


# --- MLflow -----------------------------------------------------------------------------------


def test_mlflow_dataframe_split() -> None:
    body = {
        "dataframe_split": {
            "columns": ["city", "amount", "fresh"],
            "data": [["Oslo", 1.5, True], [None, 2, False]],
            "index": [10, 11],
        }
    }
    assert rows_from_mlflow(body, NAMES) == ROWS


def test_mlflow_dataframe_split_without_columns_is_positional() -> None:
    body = {"dataframe_split": {"data": [[1.5, "Oslo", True], [2, None, False]]}}
    assert rows_from_mlflow(body, NAMES) == ROWS


def test_mlflow_dataframe_split_of_one_column_takes_bare_values() -> None:
    body = {"dataframe_split": {"columns": ["x"], "data": [1, 2]}}
    assert rows_from_mlflow(body, ["x"]) == [{"x": 1}, {"x": 2}]


def test_mlflow_dataframe_records() -> None:
    assert rows_from_mlflow({"dataframe_records": ROWS}, NAMES) == ROWS


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_mlflow_instances_and_inputs(key: str) -> None:
    as_lists = [[1.5, "Oslo", True], [2, None, False]]
    columnar = {"amount": [1.5, 2], "city": ["Oslo", None], "fresh": [True, False]}
    assert rows_from_mlflow({key: ROWS}, NAMES) == ROWS
    assert rows_from_mlflow({key: as_lists}, NAMES) == ROWS
    assert rows_from_mlflow({key: columnar}, NAMES) == ROWS
    assert rows_from_mlflow({key: ROWS[0]}, NAMES) == [ROWS[0]]  # column → value: one row
    assert rows_from_mlflow({key: [3, None]}, ["x"]) == [{"x": 3}, {"x": None}]


def test_mlflow_params_and_unknown_keys_are_ignored() -> None:
    body = {"inputs": ROWS, "params": {"temperature": 0.1}, "signature_name": "serving_default"}
    assert rows_from_mlflow(body, NAMES) == ROWS


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([1, 2], "must be a JSON object with exactly one of dataframe_split"),
        ({}, "got an empty object"),
        ({"rows": ROWS}, "got keys: rows"),
        ({"instances": ROWS, "inputs": ROWS}, "exactly one of"),
        ({"dataframe_records": ROWS, "dataframe_split": {}}, "got dataframe_split, dataframe_r"),
        ({"dataframe_split": [[1, 2]]}, "dataframe_split must be an object"),
        ({"dataframe_split": {"columns": X}}, "dataframe_split has no 'data'"),
        (
            {"dataframe_split": {"columns": X, "data": [[1, 2, 3]], "dtypes": {}}},
            "dataframe_split has unknown key 'dtypes'",
        ),
        (
            {"dataframe_split": {"columns": [*X, "x4"], "data": [[1, 2, 3, 4], [1, 2, 3]]}},
            "dataframe_split.data row 1 has 3 values for 4 columns",
        ),
        (
            {"dataframe_split": {"columns": X, "data": [[1, 2, 3], 4]}},
            "dataframe_split.data row 1 is a number, not a list",
        ),
        ({"dataframe_split": {"columns": X, "data": []}}, "dataframe_split.data is empty"),
        ({"dataframe_split": {"columns": X, "data": {"a": 1}}}, "data must be a list of rows"),
        ({"dataframe_split": {"columns": "x1", "data": [[1]]}}, "columns must be a list of"),
        ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, "names 'a' twice"),
        (
            {"dataframe_split": {"columns": X, "data": [[1, 2, 3]], "index": [0, 1]}},
            "index must be a list with one entry per row",
        ),
        ({"dataframe_records": {"x1": [1]}}, "dataframe_records must be a list of row objects"),
        ({"dataframe_records": [{"x1": 1}, [1]]}, "dataframe_records[1] is a list, not an obj"),
        ({"dataframe_records": []}, "dataframe_records is empty"),
        ({"inputs": [[1, 2, 3], [1, 2, 3], [1]]}, "inputs[2] has 1 values for 3 columns"),
        ({"instances": [[1, 2, 3], {"x1": 1}]}, "instances[1] is an object, not a list"),
        ({"instances": [{"x1": 1}, [1, 2, 3]]}, "instances[1] is a list, not an object"),
        ({"inputs": {"x1": [1, 2], "x2": [1]}}, "inputs['x2'] has 1 values but inputs['x1'] has 2"),
        ({"inputs": {"x1": [1, 2], "x2": 3}}, "inputs['x2'] is a number but other columns are"),
        ({"inputs": {}}, "inputs has no columns"),
        ({"inputs": []}, "inputs is empty"),
        ({"inputs": "x"}, "inputs must be a list of rows or an object of columns"),
        ({"instances": [1, 2]}, "instances[0] is a number: send each row as an object"),
    ],
)
def test_mlflow_bad_shapes_are_named(body: Any, fragment: str) -> None:
    check_400(lambda: rows_from_mlflow(body, X), fragment)


def test_mlflow_response() -> None:
    assert mlflow_response([1, 0]) == {"predictions": [1, 0]}


# --- Open Inference Protocol V2 ---------------------------------------------------------------


def tensor(name: str, shape: list[Any], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def v2(*tensors: Any, **extra: Any) -> dict[str, Any]:
    return {"inputs": list(tensors), **extra}


def test_v2_named_tensors_flat_and_nested() -> None:
    body = v2(
        tensor("amount", [2], "FP64", [1.5, 2]),
        tensor("city", [2, 1], "BYTES", ["Oslo", None]),  # flat [N,1]
        tensor("fresh", [2, 1], "BOOL", [[True], [False]]),  # nested [N,1]
        id="req-1",
        parameters={"content_type": "pd"},
    )
    rows, request_id, requested = rows_from_v2(body, NAMES, TYPES)
    assert rows == ROWS
    assert request_id == "req-1"
    assert requested is None


def test_v2_tensor_order_does_not_matter() -> None:
    body = v2(
        tensor("fresh", [2], "BOOL", [True, False]),
        tensor("city", [2], "BYTES", ["Oslo", None]),
        tensor("amount", [2], "INT32", [1, 2]),
    )
    rows, _, _ = rows_from_v2(body, NAMES, TYPES)
    assert rows == [
        {"amount": 1, "city": "Oslo", "fresh": True},
        {"amount": 2, "city": None, "fresh": False},
    ]


def test_v2_one_matrix_tensor_of_any_name() -> None:
    expected = [{"x1": 1, "x2": 2, "x3": 3}, {"x1": 4, "x2": 5.5, "x3": 6}]
    flat = v2(tensor("input-0", [2, 3], "FP32", [1, 2, 3, 4, 5.5, 6]))
    nested = v2(tensor("x1", [2, 3], "FP64", [[1, 2, 3], [4, 5.5, 6]]))
    assert rows_from_v2(flat, X, X_TYPES)[0] == expected
    assert rows_from_v2(nested, X, X_TYPES)[0] == expected


def test_v2_single_input_model_takes_a_named_or_an_unnamed_column() -> None:
    named = v2(tensor("x", [3], "INT64", [1, 2, 3]))
    unnamed = v2(tensor("input-0", [3, 1], "INT64", [1, 2, 3]))
    expected = [{"x": 1}, {"x": 2}, {"x": 3}]
    assert rows_from_v2(named, ["x"], {"x": "integer"})[0] == expected
    assert rows_from_v2(unnamed, ["x"], {"x": "integer"})[0] == expected


def test_v2_requested_outputs() -> None:
    body = v2(
        tensor("x1", [1], "FP64", [1.0]),
        outputs=[{"name": "probabilities"}, {"name": "predict", "parameters": {}}],
    )
    assert rows_from_v2(body, X, X_TYPES)[2] == ["probabilities", "predict"]
    assert rows_from_v2({**body, "outputs": []}, X, X_TYPES)[2] is None


def test_v2_missing_columns_are_left_to_the_model_layer() -> None:
    rows, _, _ = rows_from_v2(v2(tensor("x1", [1], "FP64", [1.0])), X, X_TYPES)
    assert rows == [{"x1": 1.0}]  # the model layer names the missing x2, x3 (422)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "the body must be a V2 inference request object, got a list"),
        ({}, "'inputs' must be a non-empty list of tensors"),
        (v2(), "'inputs' must be a non-empty list of tensors"),
        (v2(tensor("x1", [1], "FP64", [1]), id=5), "'id' must be a string, got a number"),
        (v2(tensor("x1", [1], "FP64", [1]), parameters=[]), "'parameters' must be an object"),
        (v2(tensor("x1", [1], "FP64", [1]), outputs={"name": "p"}), "'outputs' must be a list"),
        (v2(tensor("x1", [1], "FP64", [1]), outputs=[{"n": "p"}]), "outputs[0] must be an obj"),
        (v2([1]), "inputs[0] must be a tensor object, got a list"),
        (v2({"shape": [1], "datatype": "FP64", "data": [1]}), "inputs[0] has no 'name'"),
        (v2(tensor("x1", [-1], "FP64", [1])), "inputs[0] 'x1' has shape [-1]: a shape is a list"),
        (v2(tensor("x1", [], "FP64", [1])), "inputs[0] 'x1' has shape []"),
        (v2(tensor("x1", [1.0], "FP64", [1])), "inputs[0] 'x1' has shape [1.0]"),
        (v2(tensor("x1", [1], "FLOAT", [1])), "inputs[0] 'x1' has datatype 'FLOAT', not a V2"),
        (v2(tensor("x1", [1], "fp64", [1])), "has datatype 'fp64'"),
        (v2({"name": "x1", "shape": [1], "datatype": "FP64"}), "inputs[0] 'x1' has no 'data'"),
        (
            v2({**tensor("x1", [1], "FP64", [1]), "parameters": 3}),
            "'parameters' that are not an object",
        ),
        (
            v2(
                tensor("x1", [4], "FP64", [1, 2, 3, 4]),
                tensor("x2", [4], "FP64", [1, 2, 3, 4]),
                tensor("x3", [4, 1], "FP64", [1, 2, 3]),
            ),
            "inputs[2] 'x3' has shape [4,1] but 3 values",
        ),
        (v2(tensor("x1", [4], "FP64", [1, 2])), "inputs[0] 'x1' has shape [4] but 2 values"),
        (
            v2(tensor("x1", [2, 1], "FP64", [[1], [2], [3]])),
            "inputs[0] 'x1' has shape [2,1] but 3 nested rows",
        ),
        (
            v2(tensor("m", [2, 3], "FP64", [[1, 2, 3], [4, 5]])),
            "inputs[0] 'm' has shape [2,3] but nested row 1 has 2 values",
        ),
        (
            v2(tensor("m", [2, 3], "FP64", [[1, 2, 3], 4])),
            "inputs[0] 'm' has shape [2,3] but nested row 1 is a number, not a list",
        ),
        (
            v2(tensor("x1", [2], "FP64", [[1], [2]])),
            "is FP64, whose values are numbers, but holds a",
        ),
        (
            v2(tensor("x1", [2], "FP64", [1, "2"])),
            "inputs[0] 'x1' is FP64, whose values are numbers, but holds a string ('2')",
        ),
        (v2(tensor("x1", [1], "FP64", [True])), "holds a boolean (True)"),
        (v2(tensor("x1", [2], "INT64", [1, 2.5])), "is INT64, whose values are integers"),
        (v2(tensor("x1", [2], "UINT8", [1, -2])), "inputs[0] 'x1' is UINT8 but holds -2"),
        (
            v2(tensor("x1", [1], "FP64", [1]), tensor("x4", [1], "FP64", [1])),
            "inputs[1] 'x4' is not an input of the model (it takes: x1, x2, x3)",
        ),
        (
            v2(tensor("x1", [1], "FP64", [1]), tensor("x1", [1], "FP64", [1])),
            "inputs[1] 'x1' is sent twice",
        ),
        (
            v2(tensor("x1", [2], "FP64", [1, 2]), tensor("x2", [3], "FP64", [1, 2, 3])),
            "inputs[1] 'x2' has 3 rows but inputs[0] 'x1' has 2",
        ),
        (
            v2(tensor("x1", [2, 2], "FP64", [1, 2, 3, 4]), tensor("x2", [2], "FP64", [1, 2])),
            "inputs[0] 'x1' has shape [2,2]: a named input takes [N] or [N,1]",
        ),
        (v2(tensor("data", [2, 2], "FP64", [1, 2, 3, 4])), "inputs[0] 'data' is not an input"),
        (v2(tensor("x1", [1, 1, 1], "FP64", [1])), "a named input takes [N] or [N,1]"),
        (v2(tensor("x1", [0], "FP64", [])), "the request has no rows"),
        (v2(tensor("m", [0, 3], "FP64", [])), "inputs[0] 'm' has no rows"),
        (v2(tensor("m", [1, 3], "BYTES", ["a", "b", "c"])), "is BYTES but column 'x1' is float"),
    ],
)
def test_v2_bad_requests_are_named(body: Any, fragment: str) -> None:
    check_400(lambda: rows_from_v2(body, X, X_TYPES), fragment)


@pytest.mark.parametrize(
    ("column", "datatype", "data", "ok"),
    [
        ("amount", "INT8", [1], True),
        ("amount", "FP16", [1.5], True),
        ("amount", "BYTES", ["1"], False),
        ("amount", "BOOL", [True], False),
        ("city", "BYTES", ["Oslo"], True),
        ("city", "FP64", [1.0], False),
        ("fresh", "BOOL", [True], True),
        ("fresh", "INT64", [1], False),
    ],
)
def test_v2_datatype_must_suit_the_column(
    column: str, datatype: str, data: list[Any], ok: bool
) -> None:
    body = v2(tensor(column, [1], datatype, data))
    if ok:
        assert rows_from_v2(body, NAMES, TYPES)[0] == [{column: data[0]}]
    else:
        check_400(lambda: rows_from_v2(body, NAMES, TYPES), f"is {datatype} but column {column!r}")


def test_v2_nulls_are_missing_values_in_any_datatype() -> None:
    body = v2(tensor("x", [3], "UINT8", [None, 1, None]))
    assert rows_from_v2(body, ["x"], {"x": "integer"})[0] == [{"x": None}, {"x": 1}, {"x": None}]


def test_v2_response_of_a_classifier() -> None:
    probs = [{"no": 0.75, "yes": 0.25}, {"no": 0.125, "yes": 0.875}]
    body = v2_response("fraud", "3", "req-1", ["no", "yes"], probs, None)
    assert body == {
        "model_name": "fraud",
        "model_version": "3",
        "id": "req-1",
        "outputs": [
            {"name": "predict", "shape": [2], "datatype": "BYTES", "data": ["no", "yes"]},
            {
                "name": "probabilities",
                "shape": [2, 2],
                "datatype": "FP64",
                "parameters": {"classes": ["no", "yes"]},
                "data": [0.75, 0.25, 0.125, 0.875],
            },
        ],
    }
    json.dumps(body)  # plain JSON


def test_v2_response_classes_in_dict_order() -> None:
    probs = [{"b": 0.5, "a": 0.25, "c": 0.25}]
    out = v2_response("m", "1", None, ["b"], probs, ["probabilities"])["outputs"]
    assert out == [
        {
            "name": "probabilities",
            "shape": [1, 3],
            "datatype": "FP64",
            "parameters": {"classes": ["b", "a", "c"]},
            "data": [0.5, 0.25, 0.25],
        }
    ]
    single = v2_response("m", "1", None, ["a"], [{"a": 1.0}, {"a": 1.0}], None)["outputs"][1]
    assert (single["shape"], single["data"]) == ([2, 1], [1.0, 1.0])


@pytest.mark.parametrize(
    ("predictions", "datatype"),
    [
        ([1.5, 2.0], "FP64"),
        ([1, 2.5], "FP64"),
        ([1, 0], "INT64"),
        ([True, False], "BOOL"),
        (["a", "b"], "BYTES"),
    ],
)
def test_v2_response_predict_datatype(predictions: list[Any], datatype: str) -> None:
    body = v2_response("m", "1", None, predictions, None, None)
    assert "id" not in body
    assert body["outputs"] == [
        {"name": "predict", "shape": [2], "datatype": datatype, "data": predictions}
    ]


def test_v2_response_returns_only_the_requested_outputs_in_order() -> None:
    probs = [{"0": 0.5, "1": 0.5}]
    both = v2_response("m", "1", None, [0], probs, ["probabilities", "predict"])
    assert [o["name"] for o in both["outputs"]] == ["probabilities", "predict"]
    only = v2_response("m", "1", None, [0], probs, ["predict"])
    assert [o["name"] for o in only["outputs"]] == ["predict"]


def test_v2_response_refuses_an_output_the_model_does_not_have() -> None:
    check_400(
        lambda: v2_response("m", "1", None, [0.5], None, ["probabilities"]),
        "output 'probabilities' is not an output of model 'm' (its outputs: predict)",
    )
    check_400(
        lambda: v2_response("m", "1", None, [0], [{"0": 1.0}], ["proba"]),
        "output 'proba' is not an output of model 'm' (its outputs: predict, probabilities)",
    )


def test_v2_model_metadata() -> None:
    inputs = [("amount", "float"), ("n", "integer"), ("fresh", "boolean"), ("city", "string")]
    meta = v2_model_metadata("fraud", ["1", "2"], "mloop_onnx", inputs, [0, 1])
    assert meta == {
        "name": "fraud",
        "versions": ["1", "2"],
        "platform": "mloop_onnx",
        "inputs": [
            {"name": "amount", "datatype": "FP64", "shape": [-1, 1]},
            {"name": "n", "datatype": "INT64", "shape": [-1, 1]},
            {"name": "fresh", "datatype": "BOOL", "shape": [-1, 1]},
            {"name": "city", "datatype": "BYTES", "shape": [-1, 1]},
        ],
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
        ],
    }
    regressor = v2_model_metadata("price", ["1"], "mloop_onnx", inputs[:1], None)
    assert regressor["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    labels = v2_model_metadata("m", ["1"], "p", inputs[:1], ["no", "yes"])["outputs"][0]
    assert labels["datatype"] == "BYTES"


def test_the_metadata_datatype_of_each_column_is_accepted_in_requests() -> None:
    values = {"integer": 3, "float": 1.5, "boolean": True, "string": "s"}
    for kind, datatype in V2_DATATYPE_OF.items():
        body = v2(tensor("c", [1], datatype, [values[kind]]))
        assert rows_from_v2(body, ["c"], {"c": kind})[0] == [{"c": values[kind]}]


# --- round trips ------------------------------------------------------------------------------

VALUES = {
    "integer": st.integers(-(2**40), 2**40),
    "float": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000),
    "boolean": st.booleans(),
    "string": st.text(max_size=6),
}


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], dict[str, str], list[dict[str, Any]]]:
    names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=5, unique=True))
    types = {n: draw(st.sampled_from(sorted(VALUES))) for n in names}
    n_rows = draw(st.integers(1, 8))
    rows = [{n: draw(st.none() | VALUES[types[n]]) for n in names} for _ in range(n_rows)]
    return names, types, rows


@settings(max_examples=150, deadline=None)
@given(tables())
def test_every_protocol_shape_decodes_to_the_rows_it_encodes(
    table: tuple[list[str], dict[str, str], list[dict[str, Any]]],
) -> None:
    names, types, rows = table
    columns = {n: [r[n] for r in rows] for n in names}
    as_lists = [[r[n] for n in names] for r in rows]

    assert rows_from_native({"rows": rows}) == rows
    assert rows_from_native({"columns": columns, "key": "k"}) == rows

    split = {"columns": names, "data": as_lists, "index": list(range(len(rows)))}
    assert rows_from_mlflow({"dataframe_split": split}, names) == rows
    assert rows_from_mlflow({"dataframe_split": {"data": as_lists}}, names) == rows
    assert rows_from_mlflow({"dataframe_records": rows}, names) == rows
    for key in ("instances", "inputs"):
        assert rows_from_mlflow({key: rows, "params": {}}, names) == rows
        assert rows_from_mlflow({key: as_lists}, names) == rows
        assert rows_from_mlflow({key: columns}, names) == rows

    n = len(rows)
    flat = v2(*(tensor(c, [n], V2_DATATYPE_OF[types[c]], columns[c]) for c in names))
    nested = v2(
        *(tensor(c, [n, 1], V2_DATATYPE_OF[types[c]], [[v] for v in columns[c]]) for c in names),
        id="r",
    )
    assert rows_from_v2(flat, names, types) == (rows, None, None)
    assert rows_from_v2(nested, names, types) == (rows, "r", None)
    kinds = {V2_DATATYPE_OF[t] for t in types.values()}
    if len(kinds) == 1:  # one tensor holds every column only when they share a datatype
        datatype = kinds.pop()
        matrix = [v for row in as_lists for v in row]
        one = v2(tensor("input-0", [n, len(names)], datatype, matrix))
        nested_one = v2(tensor("input-0", [n, len(names)], datatype, as_lists))
        assert rows_from_v2(one, names, types)[0] == rows
        assert rows_from_v2(nested_one, names, types)[0] == rows
