# mypy: disable-error-code="import-untyped"
# (onnxruntime, skl2onnx and onnxmltools ship no type information)
"""ONNX packaging: a trained pipeline exported to ONNX, checked against itself, quantized.

    model_bytes = export_onnx(pipeline, signature)
    check = verify_onnx(model_bytes, pipeline, holdout_frame, signature)
    predictor = OnnxPredictor(model_bytes, signature)
    labels, probabilities = predictor.predict_rows([{"age": 41, "plan": "pro"}])

The exported graph takes one input per signature column, named after it, each of shape
``[rows, 1]``: ``tensor(double)`` for integer, float and boolean columns (null → NaN, as in
:func:`~mloop.models.signature.frame_from_columns`), ``tensor(string)`` for string columns, where
a null is the string :data:`NULL_STRING` (an ONNX string tensor has no null). A classifier gives
``label`` and ``probabilities`` (one column per class, in the order of ``mloop.classes`` in the
model's metadata); a regressor gives ``variable``. The preprocessing runs in float64, the
estimator in float32 (see :func:`_with_float32_estimator`).

skl2onnx's converters are used as they are except for three, wrapped once per process
(:func:`_register_converters`): HistGradientBoosting (a bool where protobuf wants an int),
SimpleImputer (NaN over strings, and float64 over numbers) and OneHotEncoder (infrequent and
unseen categories). LightGBM's and XGBoost's come from onnxmltools.

onnx, onnxruntime, skl2onnx (and onnxmltools for LightGBM and XGBoost) are the ``onnx`` extra;
they are imported on first use only.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.core.errors import InvalidInput, SchemaMismatch
from mloop.core.lazy import lazy_module
from mloop.models.signature import Signature, frame_from_rows

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")

ONNX_FILE = "model.onnx"
ONNX_QUANTIZED_FILE = "model.quant.onnx"
NULL_STRING = "__mloop_null__"  # what a null of a string column is fed to the graph as
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
METADATA_CLASSES = "mloop.classes"
METADATA_NULL_STRING = "mloop.null_string"
METADATA_SIGNATURE = "mloop.signature"
NUMERIC_TYPES = ("integer", "float", "boolean")
_EXTRA_HINT = "pip install 'mloop[onnx]'"


def _require_runtime() -> None:
    """What predicting needs: onnx (to read the graph) and ONNX Runtime — not the converters,
    whose import pulls in scikit-learn (seconds of a server's or a batch job's start-up)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise InvalidInput(f"ONNX models need onnx and onnxruntime: {_EXTRA_HINT}") from exc


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError as exc:
        raise InvalidInput(
            f"ONNX export needs onnx, onnxruntime and skl2onnx: {_EXTRA_HINT}"
        ) from exc


# --- converters -----------------------------------------------------------------------------

Converter = Callable[[Any, Any, Any], None]


def _int_missing_tracks(convert: Converter) -> Converter:
    """skl2onnx 1.20's HistGradientBoosting converter puts Python ``False`` (leaves) beside
    ``np.uint8`` (splits) into ``nodes_missing_value_tracks_true``; protobuf ≥ 5 refuses a bool
    in an int list ("Expected an int, got a boolean"). For the duration of this one converter
    call the container's ``add_node`` coerces that attribute to ints; nothing else changes."""

    def converter(scope: Any, operator: Any, container: Any) -> None:
        add_node = container.add_node

        def coercing_add_node(*args: Any, **attrs: Any) -> Any:
            tracks = attrs.get("nodes_missing_value_tracks_true")
            if tracks is not None:
                attrs["nodes_missing_value_tracks_true"] = [int(v) for v in tracks]
            return add_node(*args, **attrs)

        container.add_node = coercing_add_node  # an instance attribute shadows the method
        try:
            convert(scope, operator, container)
        finally:
            del container.add_node

    return converter


def _simple_imputer(convert: Converter) -> Converter:
    """Two gaps in skl2onnx's SimpleImputer converter, for mloop's imputers (``missing_values``
    NaN, pandas' null):

    - over strings it wants ``missing_values`` to be a string. The graph cannot hold a null
      string, so nulls are fed as :data:`NULL_STRING` and the converter sees a copy of the
      imputer whose ``missing_values`` is that string;
    - over float64 it emits ONNX-ML's ``Imputer``, which ONNX Runtime runs in float32 only:
      ``Where(IsNaN(x), statistics, x)`` instead, in float64."""

    def converter(scope: Any, operator: Any, container: Any) -> None:
        from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

        imputer = operator.raw_operator
        missing = imputer.missing_values
        is_nan = missing is None or (isinstance(missing, float) and math.isnan(missing))
        kinds = {type(i.type) for i in operator.inputs}
        if kinds == {DoubleTensorType} and is_nan:
            _impute_float64(scope, operator, container, imputer.statistics_)
        elif kinds == {StringTensorType} and is_nan:
            import copy

            swapped = copy.copy(imputer)
            swapped.missing_values = NULL_STRING
            operator.raw_operator = swapped
            try:
                convert(scope, operator, container)
            finally:
                operator.raw_operator = imputer
        else:
            convert(scope, operator, container)

    return converter


def _impute_float64(scope: Any, operator: Any, container: Any, statistics: Any) -> None:
    from skl2onnx.proto import onnx_proto

    names = [i.full_name for i in operator.inputs]
    source = names[0]
    if len(names) > 1:
        source = scope.get_unique_variable_name("impute_in")
        container.add_node("Concat", names, [source], axis=1)
    fill = scope.get_unique_variable_name("impute_fill")
    values = np.asarray(statistics, dtype=np.float64)
    container.add_initializer(fill, onnx_proto.TensorProto.DOUBLE, [1, len(values)], values)
    mask = scope.get_unique_variable_name("impute_mask")
    container.add_node("IsNaN", [source], [mask])
    container.add_node("Where", [mask, fill, source], [operator.outputs[0].full_name])


def _one_hot_layout(encoder: Any) -> list[tuple[list[str], list[int], int, int]]:
    """Per input column: its categories, the output column of each, the output column of an
    unseen category (``width`` itself: none, a row of zeros) and the column's output width —
    scikit-learn's layout, frequent categories in order, then one column for the infrequent."""
    infrequent_all = getattr(encoder, "infrequent_categories_", None) or []
    layout = []
    for j, categories in enumerate(encoder.categories_):
        infrequent = infrequent_all[j] if j < len(infrequent_all) else None
        rare = {str(c) for c in infrequent} if infrequent is not None else set()
        frequent = [str(c) for c in categories if str(c) not in rare]
        width = len(frequent) + (1 if rare else 0)
        position = {c: i for i, c in enumerate(frequent)}
        keys = [str(c) for c in categories]
        outputs = [position.get(c, len(frequent)) for c in keys]  # rare → the last column
        unseen = (
            len(frequent) if rare and encoder.handle_unknown == "infrequent_if_exist" else width
        )
        layout.append((keys, outputs, unseen, width))
    return layout


def _own_one_hot(operator: Any) -> bool:
    """Strings in one input, no dropped category, unseen categories allowed: mloop's own
    conversion. skl2onnx's refuses infrequent categories for a single input (what a
    ColumnTransformer branch feeds it) and fails on an unseen category unless
    ``handle_unknown='ignore'``."""
    from skl2onnx.common.data_types import StringTensorType

    encoder = operator.raw_operator
    return (
        len(operator.inputs) == 1
        and isinstance(operator.inputs[0].type, StringTensorType)
        and getattr(encoder, "drop_idx_", None) is None
        and encoder.handle_unknown in ("ignore", "infrequent_if_exist")
        and not np.issubdtype(encoder.dtype, np.integer)
    )


def _one_hot_shape(calculate: Callable[[Any], None]) -> Callable[[Any], None]:
    def calculator(operator: Any) -> None:
        if not _own_one_hot(operator):
            calculate(operator)
            return
        from skl2onnx.common.data_types import FloatTensorType

        width = sum(w for *_, w in _one_hot_layout(operator.raw_operator))
        rows = operator.inputs[0].get_first_dimension()
        operator.outputs[0].type = FloatTensorType([rows, width])

    return calculator


def _one_hot_encoder(convert: Converter) -> Converter:
    """Per column: Gather it, LabelEncoder category → output column (an unseen one → the
    infrequent column, or one past the end), OneHot (an index past the end is a row of zeros);
    then Concat. The same output as scikit-learn's, infrequent and unseen categories included."""

    def converter(scope: Any, operator: Any, container: Any) -> None:
        if not _own_one_hot(operator):
            convert(scope, operator, container)
            return
        from skl2onnx.proto import onnx_proto

        source = operator.inputs[0].full_name
        values = scope.get_unique_variable_name("onehot_values")
        container.add_initializer(values, onnx_proto.TensorProto.FLOAT, [2], [0.0, 1.0])
        parts = []
        for j, (keys, outputs, unseen, width) in enumerate(_one_hot_layout(operator.raw_operator)):
            index = scope.get_unique_variable_name(f"onehot_col{j}")
            container.add_initializer(index, onnx_proto.TensorProto.INT64, [1], [j])
            column = scope.get_unique_variable_name(f"onehot_in{j}")
            container.add_node("Gather", [source, index], [column], axis=1)
            position = scope.get_unique_variable_name(f"onehot_pos{j}")
            container.add_node(
                "LabelEncoder",
                [column],
                [position],
                op_domain="ai.onnx.ml",
                op_version=2,
                keys_strings=keys,
                values_int64s=outputs,
                default_int64=unseen,
            )
            depth = scope.get_unique_variable_name(f"onehot_depth{j}")
            container.add_initializer(depth, onnx_proto.TensorProto.INT64, [], [width])
            encoded = scope.get_unique_variable_name(f"onehot_enc{j}")
            container.add_node("OneHot", [position, depth, values], [encoded], axis=-1)
            axes = scope.get_unique_variable_name(f"onehot_axes{j}")
            container.add_initializer(axes, onnx_proto.TensorProto.INT64, [1], [1])
            flat = scope.get_unique_variable_name(f"onehot_out{j}")
            container.add_node("Squeeze", [encoded, axes], [flat])  # [rows, 1, w] → [rows, w]
            parts.append(flat)
        container.add_node("Concat", parts, operator.outputs[0].full_name, axis=1)

    return converter


def _rewrap(
    model: type,
    wrap: Callable[[Converter], Converter],
    wrap_shape: Callable[[Callable[[Any], None]], Callable[[Any], None]] | None = None,
) -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter, get_shape_calculator

    alias = sklearn_operator_name_map[model]
    registered = get_converter(alias)
    shape = get_shape_calculator(alias)
    update_registered_converter(
        model,
        alias,
        wrap_shape(shape) if wrap_shape else shape,
        wrap(registered),  # the registered object checks the options, then converts
        overwrite=True,
        options=registered.get_allowed_options(),
    )


@functools.cache
def _register_converters() -> None:
    """Once per process: the wrappers above, and onnxmltools' LightGBM and XGBoost converters
    under skl2onnx (so they convert inside a Pipeline)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    _rewrap(HistGradientBoostingClassifier, _int_missing_tracks)
    _rewrap(HistGradientBoostingRegressor, _int_missing_tracks)
    _rewrap(SimpleImputer, _simple_imputer)
    _rewrap(OneHotEncoder, _one_hot_encoder, _one_hot_shape)
    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(
            LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            options={"split": None},
        )
    except ImportError:
        pass
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(
            XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
        )
    except ImportError:
        pass


# --- export ---------------------------------------------------------------------------------


def _final_estimator(pipeline: Any) -> Any:
    steps = getattr(pipeline, "steps", None)
    return steps[-1][1] if steps else pipeline


def _initial_types(signature: Signature) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    return [
        (
            c.name,
            DoubleTensorType([None, 1]) if c.type in NUMERIC_TYPES else StringTensorType([None, 1]),
        )
        for c in signature.inputs
    ]


def _with_float32_estimator(pipeline: Any) -> Any:
    """The same fitted steps, with a cast to float32 between the preprocessing and the
    estimator. The preprocessing runs in float64 as in scikit-learn, so a value that sits
    exactly on a split threshold (an imputed median, a repeated integer after scaling — the
    bin edges of HistGradientBoosting fall on such mass points) stays on the same side of it;
    in float32 it lands either side. The estimator then runs in float32, the only precision
    ONNX-ML's tree operators give in ONNX Runtime, with thresholds skl2onnx adjusts to it."""
    from skl2onnx.sklapi import CastTransformer
    from sklearn.pipeline import Pipeline

    steps = getattr(pipeline, "steps", None)
    if not steps or len(steps) < 2:
        return pipeline
    return Pipeline([*steps[:-1], ("mloop_float32", CastTransformer(dtype=np.float32)), steps[-1]])


def export_onnx(pipeline: Any, signature: Signature) -> bytes:
    """The fitted ``pipeline`` (as :func:`~mloop.training.build_pipeline` makes it) as an ONNX
    model; :class:`InvalidInput` naming the step that has no converter."""
    _require_onnx()
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.exceptions import MissingConverter, MissingShapeCalculator

    _register_converters()
    estimator = _final_estimator(pipeline)
    options = {id(estimator): {"zipmap": False}} if signature.task == "classification" else None
    name = type(estimator).__name__
    try:
        model = convert_sklearn(
            _with_float32_estimator(pipeline),
            name=f"mloop-{name}",
            initial_types=_initial_types(signature),
            options=options,
            target_opset=TARGET_OPSET,
        )
    except (MissingConverter, MissingShapeCalculator) as exc:
        raise InvalidInput(
            f"{name} cannot be exported to ONNX: skl2onnx has no converter for {_missing_name(exc)}"
        ) from exc
    except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"{name} cannot be exported to ONNX: {exc}") from exc
    metadata = {
        METADATA_NULL_STRING: NULL_STRING,
        METADATA_SIGNATURE: signature.model_dump_json(),
    }
    classes = getattr(estimator, "classes_", None)
    if signature.task == "classification" and classes is not None:
        metadata[METADATA_CLASSES] = json.dumps([_plain(c) for c in classes], default=str)
    onnx.helper.set_model_props(model, metadata)
    return bytes(model.SerializeToString())


def _missing_name(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


# --- prediction -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


class OnnxPredictor:
    """An ONNX model ready to predict on raw rows, with :class:`~mloop.models.LoadedModel`'s
    interface: ``predict_frame`` and ``predict_rows`` give the labels (or values) and, for a
    classifier, one ``{class: probability}`` per row.

    One ONNX Runtime session, one intra-op thread (a single row gains nothing from more, and a
    server runs one predictor per worker); ``run`` is safe to call from several threads."""

    def __init__(self, model_bytes: bytes, signature: Signature) -> None:
        _require_runtime()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # a graph that only concatenates its numeric inputs takes the matrix directly: ONNX
        # Runtime binds one tensor instead of one per column (90 -> 40 µs a row, 20 columns)
        fused = _fuse_numeric_inputs(model_bytes, signature)
        self._fused: str | None = None
        if fused is not None:
            model_bytes, self._fused = fused
        self.session = ort.InferenceSession(
            model_bytes, options, providers=["CPUExecutionProvider"]
        )
        self.signature = signature
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.null_string = metadata.get(METADATA_NULL_STRING, NULL_STRING)
        inputs = {i.name: i.type for i in self.session.get_inputs()}
        if self._fused is not None:
            inputs = dict.fromkeys(signature.input_names, inputs[self._fused])
        missing = [n for n in signature.input_names if n not in inputs]
        if missing:
            raise SchemaMismatch(f"the ONNX model has no input {missing[0]!r}")
        # (name, signature type, numpy dtype) per input, in signature order
        self._inputs: list[tuple[str, str, Any]] = []
        for col in signature.inputs:
            kind = inputs[col.name]
            if kind == "tensor(string)":
                dtype: Any = object
            else:
                dtype = np.float32 if kind == "tensor(float)" else np.float64
            self._inputs.append((col.name, col.type, dtype))
        self._outputs = [o.name for o in self.session.get_outputs()]
        dtypes = {dtype for _, _, dtype in self._inputs}
        self._all_numeric = bool(self._inputs) and object not in dtypes and len(dtypes) == 1
        self.is_classifier = signature.task == "classification"
        if self.is_classifier:
            if METADATA_CLASSES in metadata:
                self.classes: list[Any] = json.loads(metadata[METADATA_CLASSES])
            else:
                self.classes = list(signature.classes or [])
            self._class_keys = [str(c) for c in self.classes]

    def run(self, feeds: dict[str, Any]) -> tuple[Any, Any]:
        """Labels (or values) and probabilities (None for a regressor) as arrays.

        A label is the class of highest probability, the first on a tie, as scikit-learn's
        ``predict`` has it (the graph's own label output breaks exact ties its own way)."""
        outputs = self.session.run(self._outputs, feeds)
        if not self.is_classifier:
            return np.asarray(outputs[0]).ravel(), None
        probabilities = outputs[1]
        labels = np.asarray(self.classes, dtype=object)[np.argmax(probabilities, axis=1)]
        return labels, probabilities

    def feeds_from_frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        if self._fused is not None:
            dtype = self._inputs[0][2]
            columns = [frame[name].to_numpy(dtype=dtype) for name, _, _ in self._inputs]
            return {
                self._fused: np.column_stack(columns)
                if len(frame)
                else np.empty((0, len(columns)), dtype=dtype)
            }
        feeds: dict[str, Any] = {}
        for name, _kind, dtype in self._inputs:
            series = frame[name]
            if dtype is object:
                values = series.to_numpy(dtype=object, copy=True)
                nulls = pd.isna(values)
                if nulls.any():
                    values[nulls] = self.null_string
                feeds[name] = values.astype(str).astype(object).reshape(-1, 1)
            else:
                feeds[name] = series.to_numpy(dtype=dtype).reshape(-1, 1)
        return feeds

    def feeds_from_rows(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        """Feeds straight from JSON rows, without pandas; None when a row does not fit the
        signature exactly (the caller then lets :func:`frame_from_rows` say what is wrong)."""
        table = self.table_from_rows(rows)
        return None if table is None else self.feeds_from_table(table)

    def table_from_rows(self, rows: Sequence[dict[str, Any]]) -> list[list[Any]] | None:
        """The rows' values in input order (nulls filled as the graph expects), or None when a
        row does not fit the signature exactly. Tables of several requests concatenate into
        one batch with ``+``."""
        width = len(self._inputs)
        null_string = self.null_string
        table: list[list[Any]] = []
        for row in rows:
            if type(row) is not dict or len(row) != width:
                return None
            values = []
            for name, kind, _dtype in self._inputs:
                value = row.get(name, _ABSENT)
                if value is None:
                    values.append(null_string if kind == "string" else math.nan)
                    continue
                # the same rules as frame_from_rows, which reports any row failing them
                if kind == "string":
                    ok = type(value) is str
                elif kind == "boolean":
                    ok = type(value) is bool
                else:
                    ok = type(value) is int or (type(value) is float and not math.isinf(value))
                if not ok:
                    return None
                values.append(value)
            table.append(values)
        return table

    def feeds_from_table(self, table: list[list[Any]]) -> dict[str, Any]:
        if self._fused is not None:
            return {self._fused: np.array(table, dtype=self._inputs[0][2])}
        if self._all_numeric:
            # one array, a column of it per input: a column of a Fortran-ordered array is
            # contiguous, so ONNX Runtime takes it without a copy
            array = np.array(table, dtype=self._inputs[0][2], order="F")
            return {name: array[:, j : j + 1] for j, (name, _, _) in enumerate(self._inputs)}
        columns = list(zip(*table, strict=True))
        return {
            name: np.array(columns[j], dtype=dtype).reshape(-1, 1)
            for j, (name, _, dtype) in enumerate(self._inputs)
        }

    def predict_feeds(
        self, feeds: dict[str, Any]
    ) -> tuple[list[Any], list[dict[str, float]] | None]:
        outputs = self.session.run(self._outputs, feeds)
        if not self.is_classifier:
            return [float(v) for v in np.asarray(outputs[0]).ravel().tolist()], None
        keys, classes = self._class_keys, self.classes
        rows = outputs[1].tolist()
        probs = [dict(zip(keys, row, strict=True)) for row in rows]
        if len(rows) > 8:
            labels = np.asarray(classes, dtype=object)[outputs[1].argmax(axis=1)].tolist()
        else:  # a few rows: plain Python is quicker than NumPy's call overhead
            labels = [classes[row.index(max(row))] for row in rows]  # first of equals, as argmax
        return labels, probs

    def predict_frame(self, frame: pd.DataFrame) -> tuple[list[Any], list[dict[str, float]] | None]:
        return self.predict_feeds(self.feeds_from_frame(frame))

    def predict_rows(self, rows: Any) -> tuple[list[Any], list[dict[str, float]] | None]:
        """Validate ``rows`` against the signature, then predict. Rows that fit exactly take a
        path without pandas; any other input goes through :func:`frame_from_rows`, which names
        the problem (or builds the same frame for what it accepts)."""
        feeds = None
        if isinstance(rows, list) and rows:
            feeds = self.feeds_from_rows(rows)
        if feeds is None:
            return self.predict_frame(frame_from_rows(rows, self.signature))
        return self.predict_feeds(feeds)


_ABSENT = object()


def _fuse_numeric_inputs(model_bytes: bytes, signature: Signature) -> tuple[bytes, str] | None:
    """When every input is a numeric column of one element type and the graph's only use of
    them is one ``Concat`` along the columns, in signature order, the same graph with that
    node removed and its output as the one input: a ``[rows, columns]`` matrix. None when the
    graph has another shape."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    names = signature.input_names
    if not names or [i.name for i in graph.input] != names:
        return None
    types = {i.type.tensor_type.elem_type for i in graph.input}
    if len(types) != 1 or types & {onnx.TensorProto.STRING}:
        return None
    users = [n for n in graph.node if any(x in names for x in n.input)]
    if len(users) != 1 or users[0].op_type != "Concat" or list(users[0].input) != names:
        return None
    concat = users[0]
    axis = next((a.i for a in concat.attribute if a.name == "axis"), None)
    if axis not in (1, -1) or len(concat.output) != 1:
        return None
    matrix = helper.make_tensor_value_info(concat.output[0], types.pop(), [None, len(names)])
    graph.node.remove(concat)
    del graph.input[:]
    graph.input.append(matrix)
    return model.SerializeToString(), concat.output[0]


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxCheck:
    """ONNX against the native pipeline on the same rows.

    ONNX-ML's tree operators compare in float32: a value within one float32 step (≈6e-8
    relative) of a split threshold can go the other way than scikit-learn sends it in float64,
    and that row's prediction then differs by a leaf. Over thousands of rows and continuous
    features that happens now and then (1 row in 10,000 in ``bench/onnx.py``), so a check allows
    a small share of rows (``max_share``) beyond ``tolerance``; every such row is counted."""

    rows: int
    max_abs_diff: float  # largest |Δ| of a probability (classification) or a prediction
    rows_over_tolerance: int  # rows with a |Δ| over the tolerance
    tolerance: float
    max_share: float
    label_agreement: float | None = None  # share of rows with the same label (classification)
    label_ties: int = 0  # rows whose labels differ where the native top two are within tolerance

    @property
    def ok(self) -> bool:
        """At most ``max_share`` of the rows beyond ``tolerance``, and at most that share of
        labels differing, not counting rows where the native model itself had a tie within
        ``tolerance`` (float32 may break it the other way). For a regressor the tolerance is
        relative to the predictions' scale (the largest |value|, at least 1): a tree ensemble
        adds its leaves in float32, whose rounding grows with the magnitude of the target."""
        allowed = self.max_share * self.rows
        if self.rows_over_tolerance > allowed:
            return False
        if self.label_agreement is None:
            return True
        differing = round((1.0 - self.label_agreement) * self.rows)
        return differing - self.label_ties <= allowed


def _native(pipeline: Any, frame: pd.DataFrame, signature: Signature) -> tuple[Any, Any]:
    values = np.asarray(pipeline.predict(frame))
    probabilities = None
    if signature.task == "classification":
        probabilities = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
    return values, probabilities


def _compare(
    native: tuple[Any, Any],
    onnx_out: tuple[Any, Any],
    signature: Signature,
    tolerance: float,
    max_share: float,
) -> OnnxCheck:
    values, probabilities = native
    onnx_values, onnx_probabilities = onnx_out
    rows = len(values)
    if signature.task == "classification":
        ours = np.array([str(_plain(v)) for v in np.asarray(onnx_values).ravel().tolist()])
        theirs = np.array([str(_plain(v)) for v in values.tolist()])
        differ = ours != theirs
        diff = np.abs(np.asarray(onnx_probabilities, dtype=np.float64) - probabilities)
        row_diff = diff.max(axis=1, initial=0.0)
        ties = 0
        if differ.any():
            top2 = np.sort(probabilities[differ], axis=1)[:, -2:]
            ties = int((top2[:, 1] - top2[:, 0] <= tolerance).sum())
        return OnnxCheck(
            rows,
            float(row_diff.max(initial=0.0)),
            int((row_diff > tolerance).sum()),
            tolerance,
            max_share,
            float(1.0 - differ.mean()) if rows else 1.0,
            ties,
        )
    expected = values.astype(np.float64).ravel()
    diff = np.abs(np.asarray(onnx_values, dtype=np.float64).ravel() - expected)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    over = int((diff > tolerance * scale).sum())
    return OnnxCheck(rows, float(diff.max(initial=0.0)), over, tolerance, max_share)


def verify_onnx(
    model_bytes: bytes,
    pipeline: Any,
    frame: pd.DataFrame,
    signature: Signature,
    *,
    tolerance: float = 1e-4,
    max_share: float = 1e-3,
) -> OnnxCheck:
    """Predict ``frame`` (held-out rows) with the ONNX model and the native pipeline; compare."""
    predictor = OnnxPredictor(model_bytes, signature)
    native = _native(pipeline, frame, signature)
    onnx_out = predictor.run(predictor.feeds_from_frame(frame))
    return _compare(native, onnx_out, signature, tolerance, max_share)


# --- quantization ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedOnnx:
    model: bytes
    quantized_nodes: int  # nodes quantize_dynamic added (0: nothing in the graph to quantize)


_QUANTIZED_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "DynamicQuantizeMatMul",
        "QLinearMatMul",
        "DequantizeLinear",
        "QuantizeLinear",
    }
)


class _DropPreProcessAdvice(logging.Filter):
    """quantize_dynamic logs (on the root logger) advice to pre-process image models."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_onnx(model_bytes: bytes) -> QuantizedOnnx:
    """Dynamic (weights int8, activations quantized at run time) quantization with ONNX
    Runtime. It rewrites MatMul / Gemm / Conv-like nodes; the tree ensembles and the linear
    models of ``ai.onnx.ml`` have none, so for them the graph comes back essentially unchanged
    (``quantized_nodes == 0``) — the report says so rather than claiming a smaller model."""
    _require_onnx()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _DropPreProcessAdvice()
    root.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="mloop-quant-") as tmp:
            source, target = Path(tmp) / "model.onnx", Path(tmp) / "model.quant.onnx"
            source.write_bytes(model_bytes)
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
            data = target.read_bytes()
    finally:
        root.removeFilter(quiet)
    graph = onnx.load_from_string(data).graph
    count = sum(1 for node in graph.node if node.op_type in _QUANTIZED_OPS)
    return QuantizedOnnx(data, count)


# --- everything, for the trainer ------------------------------------------------------------


def _scores(
    signature: Signature, y: Any, values: Any, probabilities: Any, classes: list[str] | None
) -> dict[str, float]:
    y_true = np.asarray(y)
    if signature.task == "classification":
        predicted = np.array([str(_plain(v)) for v in np.asarray(values).ravel().tolist()])
        truth = np.array([str(_plain(v)) for v in y_true.tolist()])
        out = {"accuracy": float((predicted == truth).mean()) if len(truth) else math.nan}
        if classes and len(classes) == 2 and probabilities is not None and len(truth):
            from sklearn.metrics import roc_auc_score

            positive = truth == classes[-1]
            if 0 < positive.sum() < len(positive):
                out["roc_auc"] = float(roc_auc_score(positive, np.asarray(probabilities)[:, -1]))
        return out
    errors = np.asarray(values, dtype=np.float64).ravel() - y_true.astype(np.float64)
    return {"rmse": float(np.sqrt(np.mean(errors**2))) if len(errors) else math.nan}


def onnx_files(
    pipeline: Any,
    signature: Signature,
    holdout_frame: pd.DataFrame,
    holdout_y: Any,
    *,
    tolerance: float = 1e-4,
    max_share: float = 1e-3,
) -> tuple[dict[str, bytes], dict[str, float]]:
    """Export, verify on the held-out rows, quantize, score all three: the package's ONNX files
    (``model.onnx``, ``model.quant.onnx``) and a flat report for the run's metrics.

    ``onnx_ok`` is 1.0 when the ONNX model agrees with the native one (:attr:`OnnxCheck.ok`:
    at most ``max_share`` of the rows beyond ``tolerance`` or with another label), else 0.0 —
    a caller should not serve an ONNX model whose ``onnx_ok`` is 0. ``onnx_max_abs_diff`` and
    ``onnx_rows_over_tolerance`` say how far and how often it differs. ``onnx_<metric>``,
    ``onnx_native_<metric>`` and ``onnx_quantized_<metric>`` (accuracy and, for two classes,
    roc_auc; rmse for a regressor) score the three on ``holdout_y``;
    ``onnx_quantized_<metric>_delta`` is quantized minus native. Raises :class:`InvalidInput`
    when the pipeline has no ONNX converter."""
    model = export_onnx(pipeline, signature)
    quantized = quantize_onnx(model)
    predictor = OnnxPredictor(model, signature)
    quant_predictor = OnnxPredictor(quantized.model, signature)
    native = _native(pipeline, holdout_frame, signature)
    onnx_out = predictor.run(predictor.feeds_from_frame(holdout_frame))
    quant_out = quant_predictor.run(quant_predictor.feeds_from_frame(holdout_frame))
    check = _compare(native, onnx_out, signature, tolerance, max_share)
    quant_check = _compare(native, quant_out, signature, tolerance, max_share)
    classes = predictor.classes if predictor.is_classifier else None
    report: dict[str, float] = {
        "onnx_ok": 1.0 if check.ok else 0.0,
        "onnx_rows": float(check.rows),
        "onnx_max_abs_diff": check.max_abs_diff,
        "onnx_rows_over_tolerance": float(check.rows_over_tolerance),
        "onnx_bytes": float(len(model)),
        "onnx_quantized_bytes": float(len(quantized.model)),
        "onnx_quantized_nodes": float(quantized.quantized_nodes),
        "onnx_quantized_ok": 1.0 if quant_check.ok else 0.0,
        "onnx_quantized_max_abs_diff": quant_check.max_abs_diff,
    }
    if check.label_agreement is not None:
        report["onnx_label_agreement"] = check.label_agreement
        report["onnx_label_ties"] = float(check.label_ties)
    if quant_check.label_agreement is not None:
        report["onnx_quantized_label_agreement"] = quant_check.label_agreement
    scores = {
        "native": _scores(signature, holdout_y, *native, classes),
        "onnx": _scores(signature, holdout_y, *onnx_out, classes),
        "quantized": _scores(signature, holdout_y, *quant_out, classes),
    }
    for metric, value in scores["native"].items():
        report[f"onnx_native_{metric}"] = value
        report[f"onnx_{metric}"] = scores["onnx"][metric]
        report[f"onnx_quantized_{metric}"] = scores["quantized"][metric]
        report[f"onnx_quantized_{metric}_delta"] = scores["quantized"][metric] - value
    return {ONNX_FILE: model, ONNX_QUANTIZED_FILE: quantized.model}, report
