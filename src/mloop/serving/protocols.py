"""Request protocols of the model server: JSON bodies → rows, predictions → JSON bodies.

The model layer takes **rows**: a list of objects, one per row, keyed by input column name
(``null`` is a missing value, which the model imputes). These codecs only check the *shape* of
each protocol and raise :class:`~mloop.core.errors.InvalidInput` (HTTP 400) with one sentence
naming what is wrong. Whether the columns and value types fit the model is the model layer's
check (:class:`~mloop.core.errors.SchemaMismatch`, HTTP 422): an unknown or missing column in a
row, or a string where a number belongs, passes through here and is named there.

mloop's own protocol
--------------------
``{"rows": [{"amount": 12.5, "city": "Oslo"}, ...]}``, or the same rows by column,
``{"columns": {"amount": [12.5, ...], "city": ["Oslo", ...]}}`` (every column the same
length). Exactly one of ``rows`` and ``columns``; an optional ``"key"`` (a string or an
integer) pins a caller to one side of a traffic split; any other key is refused, so that a typo
is not silently ignored.

MLflow ``/invocations``
-----------------------
The JSON bodies MLflow 2.x and 3.x scoring servers accept, with exactly one of these keys
(MLflow refuses none or several):

- ``{"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}``: pandas'
  split orient. ``data`` is required; each row has one value per column. Without
  ``columns`` the values are taken in the model's input order (pandas would name them 0, 1, …,
  which no mloop model takes). ``index`` is optional and ignored (one entry per row if given);
  other keys are refused, as MLflow does. With a single column a row may be a bare value.
- ``{"dataframe_records": [{...}, ...]}``: pandas' records orient, a list of row objects.
- ``{"instances": ...}`` and ``{"inputs": ...}`` (TF-serving style, treated alike): a list of
  row objects; a list of lists, each holding one value per input in the model's input order;
  an object of column → list (every list the same length); an object of column → value (one
  row); or, for a model with a single input, a list of bare values (one row each, as MLflow
  matches a list to a single-column schema).

``params`` is accepted and ignored: mloop models take no inference parameters, and MLflow
likewise ignores (with a warning) params sent to a model whose signature declares none. Other
top-level keys are ignored, as MLflow ignores them. The response is
``{"predictions": [...]}``.

Open Inference Protocol (KServe V2)
-----------------------------------
``{"id": "...", "parameters": {...}, "inputs": [tensor, ...], "outputs": [{"name": ...}]}``,
where a tensor is ``{"name", "shape", "datatype", "parameters"?, "data"}``. ``id``,
``parameters`` and ``outputs`` are optional; other keys are ignored. Two ways to send rows:

- **one tensor per input column**, named after it, of shape ``[N]`` or ``[N, 1]``; every tensor
  has the same ``N``; a tensor whose name is not an input is refused, and so is a name sent
  twice (a missing column is the model layer's 422);
- **a single tensor of shape** ``[N, F]``, any name, whose ``F`` columns are the model's inputs
  in order (``F`` = number of inputs).

``data`` is flat (row-major, ``prod(shape)`` values) or nested as the shape says (``N`` lists
of ``F`` values). ``datatype`` is a V2 type: ``BOOL``, ``UINT8``…``UINT64``, ``INT8``…``INT64``,
``FP16``, ``FP32``, ``FP64`` or ``BYTES``; values must fit it: ``true``/``false`` for ``BOOL``,
integers for the integer types (non-negative for ``UINT*``), numbers for ``FP*``, strings for
``BYTES``. ``null`` is accepted in any tensor as a missing value (an mloop extension; V2 itself
has no nulls). The declared datatype must also suit the model's column, as the model metadata
publishes it: a numeric type for an ``integer`` or ``float`` column, ``BOOL`` for a ``boolean``
column, ``BYTES`` for a ``string`` column; anything else is a 400 naming the tensor and the
column. These are checks of the declared tensor, made once per tensor; values are checked per
element only for their JSON type.

The response has the outputs ``predict`` (shape ``[N]``; ``BYTES`` for string labels,
``INT64`` for integers, ``BOOL`` for booleans, ``FP64`` otherwise) and, for a classifier,
``probabilities`` (shape ``[N, C]``, ``FP64``, flat row-major, the classes listed in the
output's ``parameters.classes``). When ``outputs`` names some, only those are returned, in that
order; a name that is not an output of the model is a 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from numbers import Integral, Real
from operator import itemgetter
from typing import Any

from mloop.core.errors import InvalidInput

Rows = list[dict[str, Any]]

NATIVE_KEYS: frozenset[str] = frozenset({"rows", "columns", "key"})
MLFLOW_FORMATS: tuple[str, ...] = ("dataframe_split", "dataframe_records", "instances", "inputs")
SPLIT_KEYS: frozenset[str] = frozenset({"columns", "data", "index"})

V2_INTEGER_TYPES: frozenset[str] = frozenset(
    {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
)
V2_FLOAT_TYPES: frozenset[str] = frozenset({"FP16", "FP32", "FP64"})
V2_NUMERIC_TYPES: frozenset[str] = V2_INTEGER_TYPES | V2_FLOAT_TYPES
V2_DATATYPES: frozenset[str] = V2_NUMERIC_TYPES | {"BOOL", "BYTES"}
V2_OUTPUTS: tuple[str, str] = ("predict", "probabilities")

#: signature column type → the V2 datatype the model metadata publishes for it
V2_DATATYPE_OF: dict[str, str] = {
    "integer": "INT64",
    "float": "FP64",
    "boolean": "BOOL",
    "string": "BYTES",
}
#: signature column type → the V2 datatypes a request may declare for it
_ACCEPTED_DATATYPES: dict[str, frozenset[str]] = {
    "integer": V2_NUMERIC_TYPES,
    "float": V2_NUMERIC_TYPES,
    "boolean": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
}
_WANTED: dict[str, str] = {
    "integer": "a numeric datatype (INT64, FP64, …)",
    "float": "a numeric datatype (FP64, INT64, …)",
    "boolean": "BOOL",
    "string": "BYTES",
}

_NONE = type(None)
_BOOL_ELEMENTS: frozenset[type] = frozenset({bool, _NONE})
_INT_ELEMENTS: frozenset[type] = frozenset({int, _NONE})
_FLOAT_ELEMENTS: frozenset[type] = frozenset({int, float, _NONE})
_STR_ELEMENTS: frozenset[type] = frozenset({str, _NONE})
_ELEMENT_TYPES: dict[str, frozenset[type]] = {
    "BOOL": _BOOL_ELEMENTS,
    "BYTES": _STR_ELEMENTS,
    **dict.fromkeys(V2_INTEGER_TYPES, _INT_ELEMENTS),
    **dict.fromkeys(V2_FLOAT_TYPES, _FLOAT_ELEMENTS),
}
_ELEMENT_WANTED: dict[frozenset[type], str] = {
    _BOOL_ELEMENTS: "true or false",
    _INT_ELEMENTS: "integers",
    _FLOAT_ELEMENTS: "numbers",
    _STR_ELEMENTS: "strings",
}


def _kind(value: Any) -> str:
    """A JSON value's kind, with its article, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


# --- shared pieces ----------------------------------------------------------------------------


def _zip_rows(names: list[str], columns: Iterable[list[Any]]) -> Rows:
    """Columns of equal length (the caller checked) → rows keyed by ``names``."""
    return [dict(zip(names, values, strict=False)) for values in zip(*columns, strict=False)]


def _object_rows(rows: Any, where: str) -> Rows:
    """A non-empty list of row objects, returned as is (no copy)."""
    if type(rows) is not list:
        raise InvalidInput(f"{where} must be a list of row objects, got {_kind(rows)}")
    if not rows:
        raise InvalidInput(f"{where} is empty: send at least one row")
    if len(set(map(type, rows))) != 1 or type(rows[0]) is not dict:
        i = next(i for i, row in enumerate(rows) if type(row) is not dict)
        raise InvalidInput(f"{where}[{i}] is {_kind(rows[i])}, not an object of column values")
    return rows


def _columnar_rows(columns: dict[str, Any], where: str) -> Rows:
    """``{column: [values]}`` with equal, non-zero lengths → rows."""
    if not columns:
        raise InvalidInput(f"{where} has no columns")
    first: str | None = None
    n = 0
    for name, values in columns.items():
        if type(values) is not list:
            raise InvalidInput(f"{where}[{name!r}] must be a list of values, got {_kind(values)}")
        if first is None:
            first, n = name, len(values)
        elif len(values) != n:
            raise InvalidInput(
                f"{where}[{name!r}] has {len(values)} values but {where}[{first!r}] has {n}"
            )
    if n == 0:
        raise InvalidInput(f"{where} has no rows: every column is empty")
    names = list(columns)
    return _zip_rows(names, columns.values())


def _positional_rows(data: list[Any], names: list[str], row_label: str) -> Rows:
    """A non-empty list of lists, each holding one value per name → rows. ``row_label`` names
    row ``i`` in messages, e.g. ``"instances[{i}]"``."""
    width = len(names)
    if len(set(map(type, data))) != 1 or type(data[0]) is not list:
        i = next(i for i, row in enumerate(data) if type(row) is not list)
        raise InvalidInput(f"{row_label.format(i=i)} is {_kind(data[i])}, not a list of values")
    if len(set(map(len, data))) != 1 or len(data[0]) != width:
        i = next(i for i, row in enumerate(data) if len(row) != width)
        raise InvalidInput(
            f"{row_label.format(i=i)} has {len(data[i])} values for {width} columns "
            f"({', '.join(names)})"
        )
    return [dict(zip(names, row, strict=False)) for row in data]  # widths checked above


# --- mloop's own protocol ---------------------------------------------------------------------


def rows_from_native(body: Any) -> Rows:
    """mloop's body, ``{"rows": [...]}`` or ``{"columns": {...}}`` (optional ``"key"``), → rows.

    Row objects are passed on as they came, not copied. The ``key`` is only checked for its
    type here; the routing layer reads it from the body."""
    if type(body) is not dict:
        raise InvalidInput(
            f'the body must be a JSON object {{"rows": [...]}} or {{"columns": {{...}}}}, '
            f"got {_kind(body)}"
        )
    if not NATIVE_KEYS.issuperset(body):
        unknown = next(k for k in body if k not in NATIVE_KEYS)
        raise InvalidInput(f"unknown key {unknown!r} in the body (it takes: rows, columns, key)")
    key = body.get("key")
    if key is not None and type(key) is not str and type(key) is not int:
        raise InvalidInput(f"'key' must be a string or an integer, got {_kind(key)}")
    if "rows" in body:
        if "columns" in body:
            raise InvalidInput("send either 'rows' or 'columns', not both")
        return _object_rows(body["rows"], "rows")
    if "columns" not in body:
        raise InvalidInput("the body has neither 'rows' nor 'columns'")
    columns = body["columns"]
    if type(columns) is not dict:
        raise InvalidInput(f"'columns' must be an object of column → list, got {_kind(columns)}")
    return _columnar_rows(columns, "columns")


# --- MLflow /invocations ----------------------------------------------------------------------


def rows_from_mlflow(body: Any, input_names: list[str]) -> Rows:
    """An MLflow scoring-server JSON body → rows; ``input_names`` in the model's input order
    give positional values (lists of lists, ``dataframe_split`` without columns) their names.

    See the module docstring for the accepted shapes; ``params`` and unknown keys are ignored,
    as MLflow ignores them."""
    if type(body) is not dict:
        raise InvalidInput(
            "the body must be a JSON object with exactly one of "
            f"{', '.join(MLFLOW_FORMATS)}; got {_kind(body)}"
        )
    found = [k for k in MLFLOW_FORMATS if k in body]
    if len(found) != 1:
        if found:
            got = f"got {', '.join(found)}"
        elif body:
            got = f"got keys: {', '.join(map(str, body))}"
        else:
            got = "got an empty object"
        raise InvalidInput(f"the body must have exactly one of {', '.join(MLFLOW_FORMATS)}; {got}")
    form = found[0]
    value = body[form]
    if form == "dataframe_split":
        return _rows_from_split(value, input_names)
    if form == "dataframe_records":
        return _object_rows(value, form)
    return _rows_from_tensor_input(value, form, input_names)


def _rows_from_split(split: Any, input_names: list[str]) -> Rows:
    where = "dataframe_split"
    if type(split) is not dict:
        raise InvalidInput(
            f"{where} must be an object with 'columns' and 'data', got {_kind(split)}"
        )
    if not SPLIT_KEYS.issuperset(split):
        unknown = next(k for k in split if k not in SPLIT_KEYS)
        raise InvalidInput(f"{where} has unknown key {unknown!r} (it takes: columns, data, index)")
    if "data" not in split:
        raise InvalidInput(f"{where} has no 'data'")
    data = split["data"]
    columns = split.get("columns")
    if columns is None:
        columns = input_names
    elif type(columns) is not list or (columns and set(map(type, columns)) != {str}):
        raise InvalidInput(f"{where}.columns must be a list of column names")
    elif len(set(columns)) != len(columns):
        twice = next(c for i, c in enumerate(columns) if c in columns[:i])
        raise InvalidInput(f"{where}.columns names {twice!r} twice")
    if type(data) is not list:
        raise InvalidInput(f"{where}.data must be a list of rows, got {_kind(data)}")
    if not data:
        raise InvalidInput(f"{where}.data is empty: send at least one row")
    index = split.get("index")
    if index is not None and (type(index) is not list or len(index) != len(data)):
        raise InvalidInput(f"{where}.index must be a list with one entry per row of data")
    if len(columns) == 1 and list not in set(map(type, data)):
        name = columns[0]
        return [{name: value} for value in data]
    return _positional_rows(data, columns, where + ".data row {i}")


def _rows_from_tensor_input(value: Any, where: str, input_names: list[str]) -> Rows:
    if type(value) is dict:
        if not value:
            raise InvalidInput(f"{where} has no columns")
        kinds = set(map(type, value.values()))
        if list not in kinds:
            return [value]  # column → value: one row
        if len(kinds) != 1:
            name = next(k for k, v in value.items() if type(v) is not list)
            raise InvalidInput(
                f"{where}[{name!r}] is {_kind(value[name])} but other columns are lists: "
                "send every column as a list of values"
            )
        return _columnar_rows(value, where)
    if type(value) is not list:
        raise InvalidInput(f"{where} must be a list of rows or an object of columns")
    if not value:
        raise InvalidInput(f"{where} is empty: send at least one row")
    first = type(value[0])
    if first is dict:
        return _object_rows(value, where)
    if first is list:
        return _positional_rows(value, input_names, where + "[{i}]")
    kinds = set(map(type, value))
    if len(input_names) == 1 and dict not in kinds and list not in kinds:
        name = input_names[0]
        return [{name: v} for v in value]
    raise InvalidInput(
        f"{where}[0] is {_kind(value[0])}: send each row as an object of column values "
        f"or as a list of {len(input_names)} values ({', '.join(input_names)})"
    )


def mlflow_response(predictions: list[Any]) -> dict[str, Any]:
    """The body of an MLflow ``/invocations`` response."""
    return {"predictions": predictions}


# --- Open Inference Protocol (KServe V2) ------------------------------------------------------


def rows_from_v2(
    body: Any, input_names: list[str], input_types: dict[str, str]
) -> tuple[Rows, str | None, list[str] | None]:
    """An Open Inference Protocol inference request → (rows, request id, requested outputs).

    ``input_names`` are the model's inputs in order, ``input_types`` their signature types
    (``integer``, ``float``, ``boolean``, ``string``). The requested outputs are ``None`` when
    the request names none (``outputs`` absent or empty): then every output is returned.
    Whether a requested name is an output of the model is checked by :func:`v2_response`."""
    if type(body) is not dict:
        raise InvalidInput(f"the body must be a V2 inference request object, got {_kind(body)}")
    request_id = body.get("id")
    if request_id is not None and type(request_id) is not str:
        raise InvalidInput(f"'id' must be a string, got {_kind(request_id)}")
    parameters = body.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise InvalidInput(f"'parameters' must be an object, got {_kind(parameters)}")
    requested = _requested_outputs(body.get("outputs"))
    tensors = body.get("inputs")
    if type(tensors) is not list or not tensors:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    if len(tensors) == 1:
        tensor = _tensor(tensors[0], 0)
        shape = tensor[1]
        if len(shape) == 2 and shape[1] == len(input_names):  # [N,1] for one input: either way
            return _matrix_rows(tensor, input_names, input_types), request_id, requested
        return _named_rows([tensor], input_names, input_types), request_id, requested
    parsed = [_tensor(t, i) for i, t in enumerate(tensors)]
    return _named_rows(parsed, input_names, input_types), request_id, requested


_Tensor = tuple[str, list[int], str, list[Any], int]  # name, shape, datatype, data, position


def _label(tensor: _Tensor) -> str:
    """How messages name a request tensor: ``inputs[2] 'x3'``."""
    return f"inputs[{tensor[4]}] {tensor[0]!r}"


def _requested_outputs(outputs: Any) -> list[str] | None:
    if outputs is None:
        return None
    if type(outputs) is not list:
        raise InvalidInput(f"'outputs' must be a list of {{\"name\": ...}}, got {_kind(outputs)}")
    names: list[str] = []
    for i, item in enumerate(outputs):
        name = item.get("name") if type(item) is dict else None
        if type(name) is not str:
            raise InvalidInput(f'outputs[{i}] must be an object with a "name" string')
        if name not in names:
            names.append(name)
    return names or None


def _tensor(raw: Any, i: int) -> _Tensor:
    """Check one request tensor's fields; its data is checked against its shape later."""
    if type(raw) is not dict:
        raise InvalidInput(f"inputs[{i}] must be a tensor object, got {_kind(raw)}")
    name = raw.get("name")
    if type(name) is not str:
        raise InvalidInput(f"inputs[{i}] has no 'name' string")
    shape = raw.get("shape")
    if type(shape) is not list or not shape or not _is_shape(shape):
        raise InvalidInput(
            f"inputs[{i}] {name!r} has shape {shape!r}: a shape is a list of non-negative integers"
        )
    datatype = raw.get("datatype")
    if datatype not in V2_DATATYPES:
        raise InvalidInput(
            f"inputs[{i}] {name!r} has datatype {datatype!r}, not a V2 datatype "
            "(BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64, BYTES)"
        )
    data = raw.get("data")
    if type(data) is not list:
        raise InvalidInput(f"inputs[{i}] {name!r} has no 'data' list")
    parameters = raw.get("parameters")
    if parameters is not None and type(parameters) is not dict:
        raise InvalidInput(f"inputs[{i}] {name!r} has 'parameters' that are not an object")
    return name, shape, datatype, data, i


def _is_shape(shape: list[Any]) -> bool:
    """A list of non-negative integers (the common ranks without a generator)."""
    if len(shape) == 1:
        return type(shape[0]) is int and shape[0] >= 0
    if len(shape) == 2:
        n, width = shape
        return type(n) is int and type(width) is int and n >= 0 and width >= 0
    return all(type(d) is int and d >= 0 for d in shape)


def _flat(tensor: _Tensor) -> list[Any]:
    """The tensor's data, flat row-major, checked against its shape (rank 1 or 2) and type."""
    _, shape, datatype, data, _ = tensor
    if len(shape) == 1:
        if len(data) != shape[0]:
            raise InvalidInput(
                f"{_label(tensor)} has shape {_shape_text(shape)} but {len(data)} values"
            )
        flat = data
    elif len(shape) == 2:
        n, width = shape
        if data and type(data[0]) is list:  # nested: n lists of width values
            if len(data) != n:
                raise InvalidInput(
                    f"{_label(tensor)} has shape {_shape_text(shape)} but {len(data)} nested rows"
                )
            if len(set(map(type, data))) != 1:
                i = next(i for i, row in enumerate(data) if type(row) is not list)
                raise InvalidInput(
                    f"{_label(tensor)} has shape {_shape_text(shape)} but nested row {i} is "
                    f"{_kind(data[i])}, not a list"
                )
            if len(set(map(len, data))) != 1 or len(data[0]) != width:
                i = next(i for i, row in enumerate(data) if len(row) != width)
                raise InvalidInput(
                    f"{_label(tensor)} has shape {_shape_text(shape)} but nested row {i} has "
                    f"{len(data[i])} values"
                )
            flat = list(chain.from_iterable(data))
        else:
            if len(data) != n * width:
                raise InvalidInput(
                    f"{_label(tensor)} has shape {_shape_text(shape)} but {len(data)} values"
                )
            flat = data
    else:
        raise InvalidInput(
            f"{_label(tensor)} has shape {_shape_text(shape)}: inputs take [N], [N,1] or [N,F]"
        )
    allowed = _ELEMENT_TYPES[datatype]
    found = set(map(type, flat))
    if not found <= allowed:
        bad = next(v for v in flat if type(v) not in allowed)
        raise InvalidInput(
            f"{_label(tensor)} is {datatype}, whose values are {_ELEMENT_WANTED[allowed]}, "
            f"but holds {_kind(bad)} ({bad!r})"
        )
    if datatype[0] == "U" and int in found:
        values = flat if _NONE not in found else [v for v in flat if v is not None]
        if min(values) < 0:
            raise InvalidInput(f"{_label(tensor)} is {datatype} but holds {min(values)}")
    return flat


def _check_column(tensor: _Tensor, column: str, input_types: dict[str, str]) -> None:
    expected = input_types.get(column)
    if expected is None or tensor[2] in _ACCEPTED_DATATYPES.get(expected, V2_DATATYPES):
        return
    raise InvalidInput(
        f"{_label(tensor)} is {tensor[2]} but column {column!r} is {expected}: "
        f"send {_WANTED[expected]}"
    )


def _named_rows(
    tensors: list[_Tensor], input_names: list[str], input_types: dict[str, str]
) -> Rows:
    known = set(input_names)
    columns: dict[str, list[Any]] = {}
    first: _Tensor | None = None
    for tensor in tensors:
        name, shape = tensor[0], tensor[1]
        if name not in known:
            raise InvalidInput(
                f"{_label(tensor)} is not an input of the model "
                f"(it takes: {', '.join(input_names)}); "
                f"send one tensor per input, or one tensor of shape [N,{len(input_names)}]"
            )
        if name in columns:
            raise InvalidInput(f"{_label(tensor)} is sent twice")
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInput(
                f"{_label(tensor)} has shape {_shape_text(shape)}: a named input takes [N] or [N,1]"
            )
        if first is None:
            first = tensor
        elif shape[0] != first[1][0]:
            raise InvalidInput(
                f"{_label(tensor)} has {shape[0]} rows but {_label(first)} has {first[1][0]}"
            )
        _check_column(tensor, name, input_types)
        columns[name] = _flat(tensor)
    if first is None or first[1][0] == 0:
        raise InvalidInput("the request has no rows: every input has shape [0]")
    names = list(columns)  # every column has first's row count, checked above
    return _zip_rows(names, columns.values())


def _matrix_rows(tensor: _Tensor, input_names: list[str], input_types: dict[str, str]) -> Rows:
    n, width = tensor[1]
    if len(set(map(input_types.get, input_names))) == 1:  # one type: check one column
        _check_column(tensor, input_names[0], input_types)
    else:
        for column in input_names:
            _check_column(tensor, column, input_types)
    flat = _flat(tensor)
    if n == 0:
        raise InvalidInput(f"{_label(tensor)} has no rows: its shape is [0,{width}]")
    return _zip_rows(input_names, [flat[j::width] for j in range(width)])


def _datatype(values: list[Any]) -> str:
    """The V2 datatype of a list of predictions."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return "BYTES"
    if kinds == {bool}:
        return "BOOL"
    if kinds == {int}:
        return "INT64"
    if kinds <= {int, float, _NONE}:
        return "FP64"
    # NumPy scalars and other registered number types, if any reach here
    if all(isinstance(v, str) for v in values):
        return "BYTES"
    if all(isinstance(v, Integral) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in values):
        return "FP64"
    return "BYTES"


def v2_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    predictions: list[Any],
    probabilities: list[dict[str, float]] | None,
    requested: list[str] | None,
) -> dict[str, Any]:
    """The body of an Open Inference Protocol inference response.

    ``requested`` (from :func:`rows_from_v2`) limits the outputs to those named, in that order;
    a name that is not an output of this model (``predict``, and ``probabilities`` for a
    classifier) is an :class:`InvalidInput`."""
    available = V2_OUTPUTS if probabilities is not None else V2_OUTPUTS[:1]
    names = available if requested is None else requested
    for name in names:
        if name not in available:
            raise InvalidInput(
                f"output {name!r} is not an output of model {model_name!r} "
                f"(its outputs: {', '.join(available)})"
            )
    n = len(predictions)
    outputs: list[dict[str, Any]] = []
    for name in names:
        if name == "predict":
            outputs.append(
                {
                    "name": "predict",
                    "shape": [n],
                    "datatype": _datatype(predictions),
                    "data": predictions,
                }
            )
        else:
            assert probabilities is not None
            classes = list(probabilities[0]) if probabilities else []
            if len(classes) == 1:
                only = classes[0]
                flat = [p[only] for p in probabilities]
            elif classes:
                flat = list(chain.from_iterable(map(itemgetter(*classes), probabilities)))
            else:
                flat = []
            outputs.append(
                {
                    "name": "probabilities",
                    "shape": [len(probabilities), len(classes)],
                    "datatype": "FP64",
                    "parameters": {"classes": classes},
                    "data": flat,
                }
            )
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = outputs
    return response


def v2_model_metadata(
    name: str,
    versions: list[str],
    platform: str,
    inputs: list[tuple[str, str]],
    classes: list[Any] | None,
) -> dict[str, Any]:
    """The Open Inference Protocol model-metadata body.

    ``inputs`` are (column name, signature type) in the model's order, published as
    ``[-1, 1]`` tensors; ``classes`` (a classifier's labels, else ``None``) set the
    ``predict`` output's datatype and add the ``probabilities`` output ``[-1, C]``."""
    tensors = [
        {"name": column, "datatype": V2_DATATYPE_OF.get(kind, "BYTES"), "shape": [-1, 1]}
        for column, kind in inputs
    ]
    outputs: list[dict[str, Any]] = [
        {
            "name": "predict",
            "datatype": _datatype(list(classes)) if classes else "FP64",
            "shape": [-1],
        }
    ]
    if classes is not None:
        outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(classes)]})
    return {
        "name": name,
        "versions": versions,
        "platform": platform,
        "inputs": tensors,
        "outputs": outputs,
    }


__all__ = [
    "MLFLOW_FORMATS",
    "V2_DATATYPES",
    "V2_DATATYPE_OF",
    "V2_OUTPUTS",
    "mlflow_response",
    "rows_from_mlflow",
    "rows_from_native",
    "rows_from_v2",
    "v2_model_metadata",
    "v2_response",
]
