"""SHAP explanations of a fitted pipeline, in terms of the columns the caller sent.

Two paths, recorded in :attr:`Explanation.method`:

* ``"tree"`` — the final estimator is a tree ensemble (scikit-learn's forests, gradient
  boosting and decision trees, LightGBM, XGBoost): SHAP's ``TreeExplainer`` runs on the matrix
  the preprocessing makes (exact, path-dependent, no background needed), and the values of the
  columns one source column became (one-hot categories) are summed back into that column.
  Values are in the model's raw output: log-odds for a boosted binary classifier, the
  per-class margin for a boosted multiclass one, probability for forests and trees, the
  prediction for a regressor.
* ``"exact"`` / ``"permutation"`` — any other model: model-agnostic interventional Shapley
  values over the raw input columns, the quantity SHAP's Exact and Permutation explainers
  compute with an independent masker, computed here in NumPy (SHAP's maskers JIT-compile for
  over ten seconds in every new process). A column is masked by putting in the values of
  background rows, and the whole pipeline is called, so a column is one player however the
  pipeline encodes it. Exact over all coalitions for at most eight columns; beyond, a mean
  over antithetic random orderings (seeded; still exactly additive). Values are in
  probability (``predict_proba``), else ``decision_function``, else the prediction.

Classification: a binary model explains its positive (last) class; a multiclass model explains,
for each row, the class it predicted for that row (:attr:`Explanation.explained_class`).
For every row ``base_value + sum(values) == output`` in :attr:`Explanation.output_space`.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")

DEFAULT_BACKGROUND_ROWS = 100
MAX_ROWS_TREE = 1000
MAX_ROWS_AGNOSTIC = 200
MAX_EXACT_FEATURES = 8  # 2^8 coalitions per row; more columns are sampled
PERMUTATION_EVALS = 256  # coalitions per row on the permutation path
EVAL_BATCH_ROWS = 100_000  # rows per model call

# (module prefix, class name prefix) of final estimators TreeExplainer reads
TREE_MODELS: tuple[tuple[str, str], ...] = (
    ("sklearn.ensemble", "HistGradientBoosting"),
    ("sklearn.ensemble", "GradientBoosting"),
    ("sklearn.ensemble", "RandomForest"),
    ("sklearn.ensemble", "ExtraTrees"),
    ("sklearn.tree", "DecisionTree"),
    ("sklearn.tree", "ExtraTree"),
    ("lightgbm", "LGBM"),
    ("xgboost", "XGB"),
)
# tree models whose raw output is a probability (averaged leaf class frequencies)
PROBABILITY_TREES = ("RandomForest", "ExtraTrees", "DecisionTree", "ExtraTree")


class RowExplanation(BaseModel):
    """One prediction: what each input column added to the base value to reach the output."""

    model_config = ConfigDict(frozen=True)

    row: int  # position in the frame that was explained
    method: str
    output_space: str
    explained_class: Any = None
    base_value: float
    output: float  # base_value + sum of contributions
    contributions: dict[str, float]  # by column, largest |value| first
    inputs: dict[str, Any]  # the row's input values (None for null)


@dataclass
class Explanation:
    """SHAP values of ``rows`` (positions in the explained frame) by input column."""

    method: str  # "tree", "exact" or "permutation"
    explainer: str  # what computed them: shap.TreeExplainer or mloop's Shapley estimator
    output_space: str  # "log_odds", "margin", "probability", "decision_function", "prediction"
    task: str  # "classification" or "regression"
    features: list[str]
    rows: np.ndarray  # (n,) int positions in the input frame
    values: np.ndarray  # (n, features)
    base_values: np.ndarray  # (n,)
    data: pd.DataFrame  # the explained rows' inputs, index = rows
    classes: list[Any] | None = None
    explained_class: list[Any] | None = None  # per row; None for a regressor
    background_rows: int = 0  # rows the agnostic explainer masked with (0 for "tree")
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def outputs(self) -> np.ndarray:
        """The model output each row's values add up to (base value + their sum)."""
        return np.asarray(self.base_values + self.values.sum(axis=1), dtype="float64")

    def importance(self) -> dict[str, float]:
        """Global importance: mean |SHAP value| per column over the explained rows, largest
        first."""
        means = np.abs(self.values).mean(axis=0) if len(self.values) else np.zeros(0)
        pairs = sorted(
            zip(self.features, (float(m) for m in means), strict=True),
            key=lambda t: (-t[1], t[0]),
        )
        return dict(pairs)

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        return list(self.importance().items())[:k]

    def row(self, i: int) -> RowExplanation:
        """The explanation of the ``i``-th explained row (not the frame position)."""
        if not -len(self.rows) <= i < len(self.rows):
            raise InvalidInput(f"row {i} was not explained ({len(self.rows)} rows were)")
        values = self.values[i]
        order = sorted(range(len(self.features)), key=lambda j: (-abs(values[j]), j))
        record = self.data.iloc[i]
        return RowExplanation(
            row=int(self.rows[i]),
            method=self.method,
            output_space=self.output_space,
            explained_class=None if self.explained_class is None else self.explained_class[i],
            base_value=float(self.base_values[i]),
            output=float(self.base_values[i] + values.sum()),
            contributions={self.features[j]: float(values[j]) for j in order},
            inputs={c: _json_value(record[c]) for c in self.features},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every number a float, nulls as None."""
        return {
            "method": self.method,
            "explainer": self.explainer,
            "output_space": self.output_space,
            "task": self.task,
            "features": list(self.features),
            "classes": None if self.classes is None else [_json_value(c) for c in self.classes],
            "importance": self.importance(),
            "rows": [int(r) for r in self.rows],
            "base_values": [float(b) for b in self.base_values],
            "values": [[float(v) for v in row] for row in self.values],
            "explained_class": None
            if self.explained_class is None
            else [_json_value(c) for c in self.explained_class],
            "data": [
                {c: _json_value(v) for c, v in zip(self.features, rec, strict=True)}
                for rec in self.data[self.features].itertuples(index=False, name=None)
            ],
            "background_rows": self.background_rows,
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> Explanation:
        features = list(body["features"])
        rows = np.asarray(body["rows"], dtype="int64")
        values = np.asarray(body["values"], dtype="float64").reshape(len(rows), len(features))
        data = pd.DataFrame.from_records(body["data"], columns=features, index=rows)
        return cls(
            method=body["method"],
            explainer=body["explainer"],
            output_space=body["output_space"],
            task=body["task"],
            features=features,
            rows=rows,
            values=values,
            base_values=np.asarray(body["base_values"], dtype="float64"),
            data=data,
            classes=body.get("classes"),
            explained_class=body.get("explained_class"),
            background_rows=int(body.get("background_rows", 0)),
            info=dict(body.get("info") or {}),
        )

    def to_table(self) -> pa.Table:
        """Long format for Parquet, one row per (explained row, column): ``row``, ``feature``,
        ``shap_value``, ``input`` (the input value as text), ``base_value``,
        ``explained_class`` (text); method, output space, classes and column order in the
        schema metadata."""
        n, m = self.values.shape
        inputs = self.data[self.features].to_numpy(dtype=object)
        text = [None if _json_value(v) is None else str(_json_value(v)) for v in inputs.ravel()]
        classes = (
            [None] * (n * m)
            if self.explained_class is None
            else [str(c) for c in self.explained_class for _ in range(m)]
        )
        meta = {
            "method": self.method,
            "explainer": self.explainer,
            "output_space": self.output_space,
            "task": self.task,
            "features": self.features,
            "classes": None if self.classes is None else [_json_value(c) for c in self.classes],
            "explained_class": None
            if self.explained_class is None
            else [_json_value(c) for c in self.explained_class],
            "background_rows": self.background_rows,
            "info": self.info,
        }
        return pa.table(
            {
                "row": pa.array(np.repeat(self.rows, m), pa.int64()),
                "feature": pa.array(self.features * n, pa.string()),
                "shap_value": pa.array(self.values.ravel(), pa.float64()),
                "input": pa.array(text, pa.string()),
                "base_value": pa.array(np.repeat(self.base_values, m), pa.float64()),
                "explained_class": pa.array(classes, pa.string()),
            }
        ).replace_schema_metadata({"mloop.explanation": json.dumps(meta)})

    @classmethod
    def from_table(cls, table: pa.Table) -> Explanation:
        """Back from :meth:`to_table`; input values come back as text."""
        raw = (table.schema.metadata or {}).get(b"mloop.explanation")
        if raw is None:
            raise InvalidInput("not an explanation table (no mloop.explanation metadata)")
        meta = json.loads(raw)
        features = list(meta["features"])
        m = len(features)
        n = table.num_rows // m if m else 0
        every = np.asarray(table.column("row").to_numpy(), dtype="int64")
        rows: np.ndarray = every[::m] if m else every
        values = np.asarray(table.column("shap_value").to_numpy(), dtype="float64").reshape(n, m)
        base = np.asarray(table.column("base_value").to_numpy(), dtype="float64")[::m]
        text = np.asarray(table.column("input").to_pylist(), dtype=object).reshape(n, m)
        return cls(
            method=meta["method"],
            explainer=meta["explainer"],
            output_space=meta["output_space"],
            task=meta["task"],
            features=features,
            rows=np.asarray(rows, dtype="int64"),
            values=values,
            base_values=base,
            data=pd.DataFrame(text, columns=features, index=rows),
            classes=meta.get("classes"),
            explained_class=meta.get("explained_class"),
            background_rows=int(meta.get("background_rows", 0)),
            info=dict(meta.get("info") or {}),
        )


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


# ---------------------------------------------------------------------------------------------
# the pipeline's parts


def _split(pipeline: Any) -> tuple[Any | None, Any]:
    """(preprocessing or None, final estimator)."""
    steps = getattr(pipeline, "steps", None)
    if steps:
        model = steps[-1][1]
        pre = pipeline[:-1] if len(steps) > 1 else None
        return pre, model
    return None, pipeline


def _task(model: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        return "classification"
    if is_regressor(model):
        return "regression"
    raise InvalidInput(f"cannot explain {type(model).__name__}: neither classifier nor regressor")


def _is_tree(model: Any) -> bool:
    cls = type(model)
    return any(
        cls.__module__.startswith(mod) and cls.__name__.startswith(prefix)
        for mod, prefix in TREE_MODELS
    )


def _source_of_outputs(pre: Any, columns: list[str]) -> list[str] | None:
    """For each column of ``pre``'s output, the input column it came from, or None when the
    preprocessing is not one this module can trace (then the tree path is not taken)."""
    steps = getattr(pre, "steps", None)
    if steps is None or len(steps) != 1:
        return None
    ct = steps[0][1]
    transformers = getattr(ct, "transformers_", None)
    if transformers is None:
        return None
    out: list[str] = []
    for _name, trans, cols in transformers:
        if trans == "drop" or (isinstance(cols, Sequence) and len(cols) == 0):
            continue
        names = [columns[c] if isinstance(c, int) else str(c) for c in cols]
        if trans == "passthrough":
            out.extend(names)
            continue
        try:
            produced = list(trans.get_feature_names_out(names))
        except (AttributeError, ValueError, TypeError):
            return None
        if len(produced) == len(names):
            out.extend(names)
            continue
        widths = _one_hot_widths(trans, len(names))
        if widths is not None and sum(widths) == len(produced):
            for name, width in zip(names, widths, strict=True):
                out.extend([name] * width)
            continue
        # name prefixes: "<column>_<category>", longest column name first
        by_length = sorted(names, key=len, reverse=True)
        for feature in produced:
            source = next((c for c in by_length if feature.startswith(f"{c}_")), None)
            if source is None:
                return None
            out.append(source)
    return out


def _one_hot_widths(trans: Any, n_inputs: int) -> list[int] | None:
    encoder = trans
    steps = getattr(trans, "steps", None)
    if steps:
        encoder = steps[-1][1]
    widths = getattr(encoder, "_n_features_outs", None)  # scikit-learn's OneHotEncoder
    if widths is None or len(widths) != n_inputs:
        return None
    return [int(w) for w in widths]


def _sample(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _class_index(model: Any, predicted: np.ndarray) -> np.ndarray:
    classes = list(model.classes_)
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[p] for p in predicted.tolist()], dtype="int64")


# ---------------------------------------------------------------------------------------------
# the two paths


def _tree(
    pipeline: Any, pre: Any, model: Any, frame: pd.DataFrame, task: str
) -> tuple[np.ndarray, np.ndarray, list[Any] | None, str, str] | None:
    """(values by input column, base values, explained classes, output space, explainer), or
    None when TreeExplainer cannot read this model or its preprocessing."""
    columns = [str(c) for c in frame.columns]
    matrix: Any
    if pre is None:
        sources = columns
        matrix = frame
    else:
        sources_or_none = _source_of_outputs(pre, columns)
        if sources_or_none is None:
            return None
        sources = sources_or_none
        matrix = pre.transform(frame)
        if hasattr(matrix, "toarray"):
            matrix = matrix.toarray()
    matrix = np.asarray(matrix, dtype="float64")
    if matrix.shape[1] != len(sources):
        return None
    shap = importlib.import_module("shap")
    try:
        explainer = shap.TreeExplainer(model)
        result = explainer(matrix)
    except Exception:  # a model or option TreeExplainer does not read: take the agnostic path
        return None
    raw = np.asarray(result.values, dtype="float64")
    base = np.asarray(result.base_values, dtype="float64")
    name = type(model).__name__
    explained: list[Any] | None = None
    if task == "regression":
        space = "prediction"
        if raw.ndim == 3:
            raw, base = raw[:, :, 0], base[:, 0]
    else:
        classes = list(model.classes_)
        probability = name.startswith(PROBABILITY_TREES)
        if raw.ndim == 2:  # one output: the positive class of a binary model
            index = np.full(len(frame), len(classes) - 1)
            base = base.reshape(len(frame), -1)[:, -1] if base.ndim else np.full(len(frame), base)
        else:
            if len(classes) == 2:
                index = np.full(len(frame), 1)
            else:
                index = _class_index(model, np.asarray(model.predict(matrix)))
            rows = np.arange(len(frame))
            raw = raw[rows, :, index]
            base = base.reshape(len(frame), -1)[rows, index]
        explained = [classes[i] for i in index]
        binary = len(classes) == 2
        space = "probability" if probability else ("log_odds" if binary else "margin")
    base = np.broadcast_to(base, (len(frame),)).astype("float64")
    # one-hot and other derived columns summed back into the input column they came from
    values = np.zeros((len(frame), len(columns)))
    position = {c: i for i, c in enumerate(columns)}
    for j, source in enumerate(sources):
        values[:, position[source]] += raw[:, j]
    if task == "regression" and len(frame):
        # a regressor's raw output is its prediction unless its loss has a link (poisson, ...)
        check = slice(0, min(len(frame), 20))
        predicted = np.asarray(pipeline.predict(frame.iloc[check]), dtype="float64")
        if not np.allclose(base[check] + values[check].sum(axis=1), predicted, atol=1e-6):
            space = "margin"
    return values, base, explained, space, f"shap.{type(explainer).__name__}"


class _Codec:
    """Raw columns ↔ a float matrix the agnostic explainer can mask: numbers as they are,
    strings as codes into their distinct values, null as NaN."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.columns = list(frame.columns)
        self.categories: dict[Any, np.ndarray] = {}
        for c in self.columns:
            series = frame[c]
            if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(
                series.dtype
            ):
                present = series[series.notna()].astype(object)
                self.categories[c] = np.array(
                    sorted(set(present.tolist()), key=lambda v: (type(v).__name__, str(v))),
                    dtype=object,
                )
        self.dtypes = frame.dtypes

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype="float64")
        for j, c in enumerate(self.columns):
            if c in self.categories:
                lookup = {v: i for i, v in enumerate(self.categories[c].tolist())}
                series = frame[c]
                out[:, j] = [
                    np.nan if pd.isna(v) else float(lookup[v]) for v in series.astype(object)
                ]
            else:
                out[:, j] = np.asarray(frame[c], dtype="float64")
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        data: dict[Any, Any] = {}
        for j, c in enumerate(self.columns):
            column = matrix[:, j]
            if c in self.categories:
                # the last entry stands for null: code -1 (NaN) looks it up
                lookup = np.append(self.categories[c], np.nan).astype(object)
                codes = np.nan_to_num(column, nan=-1).astype("int64")
                # object dtype, as frame_from_columns makes it (not pandas' inferred strings)
                data[c] = pd.Series(lookup[codes], dtype=object, copy=False)
            else:
                data[c] = pd.Series(column.astype(self.dtypes[c]), copy=False)
        return pd.DataFrame(data, columns=self.columns)


def _agnostic(
    pipeline: Any,
    model: Any,
    frame: pd.DataFrame,
    background: pd.DataFrame,
    task: str,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, list[Any] | None, str, str]:
    codec = _Codec(pd.concat([background, frame], ignore_index=True))
    classes = list(model.classes_) if task == "classification" else None
    if task == "regression":
        space = "prediction"

        def output(x: np.ndarray) -> np.ndarray:
            return np.asarray(pipeline.predict(codec.decode(x)), dtype="float64")
    elif _has(pipeline, "predict_proba"):
        space = "probability"

        def output(x: np.ndarray) -> np.ndarray:
            proba = np.asarray(pipeline.predict_proba(codec.decode(x)), dtype="float64")
            return proba[:, -1] if proba.shape[1] == 2 else proba
    elif _has(pipeline, "decision_function"):
        space = "decision_function"

        def output(x: np.ndarray) -> np.ndarray:
            return np.asarray(pipeline.decision_function(codec.decode(x)), dtype="float64")
    else:
        raise InvalidInput(
            f"cannot explain {type(model).__name__}: it has neither predict_proba nor "
            "decision_function"
        )
    x = codec.encode(frame)
    bg = codec.encode(background)
    if x.shape[1] <= MAX_EXACT_FEATURES:
        raw, base = _exact_shapley(output, x, bg)
        name = "exact Shapley (interventional, mloop)"
    else:
        raw, base = _permutation_shapley(output, x, bg, seed)
        name = "permutation Shapley (interventional, mloop)"
    explained: list[Any] | None = None
    if classes is not None:
        if raw.ndim == 3:  # one output per class: each row's predicted class
            index = _class_index(model, np.asarray(pipeline.predict(frame)))
            rows = np.arange(len(frame))
            raw = raw[rows, :, index]
            base = np.asarray(base)[index]  # the base value of each row's class
        else:
            index = np.full(len(frame), len(classes) - 1)
        explained = [classes[i] for i in index]
    base = np.broadcast_to(np.asarray(base, dtype="float64"), (len(frame),))
    return raw, base.astype("float64"), explained, space, name


def _coalition_values(
    output: Callable[[np.ndarray], np.ndarray], x: np.ndarray, bg: np.ndarray, masks: np.ndarray
) -> np.ndarray:
    """v[r, s] = mean over background rows b of output(x[r] where masks[r, s] else b): the
    interventional value of coalition s for row r, shape (rows, coalitions[, outputs])."""
    rows, coalitions, m = masks.shape
    chunk = max(1, EVAL_BATCH_ROWS // (coalitions * len(bg)))
    parts = []
    for start in range(0, rows, chunk):
        mask = masks[start : start + chunk]
        z = np.where(mask[:, :, None, :], x[start : start + chunk, None, None, :], bg[None, None])
        out = np.asarray(output(z.reshape(-1, m)), dtype="float64")
        parts.append(out.reshape(len(mask), coalitions, len(bg), *out.shape[1:]).mean(axis=2))
    return np.concatenate(parts)


def _exact_shapley(
    output: Callable[[np.ndarray], np.ndarray], x: np.ndarray, bg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Shapley values over all 2^m coalitions: (values (rows, m[, outputs]), base)."""
    m = x.shape[1]
    subsets = np.arange(2**m)
    members = (subsets[:, None] >> np.arange(m)[None, :]) & 1 == 1  # (2^m, m)
    v = _coalition_values(output, x, bg, np.broadcast_to(members, (len(x), *members.shape)))
    sizes = members.sum(axis=1)
    weight = np.array(
        [math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)]
    )
    values = np.zeros((len(x), m, *v.shape[2:]))
    for i in range(m):
        without = subsets[~members[:, i]]
        w = weight[sizes[without]].reshape(-1, *([1] * (v.ndim - 2)))
        values[:, i] = (w * (v[:, without | (1 << i)] - v[:, without])).sum(axis=1)
    return values, v[0, 0]


def _permutation_shapley(
    output: Callable[[np.ndarray], np.ndarray], x: np.ndarray, bg: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values estimated from antithetic random orderings of the m columns: each
    ordering adds the columns one by one and credits each with the change it makes, so every
    ordering (and their mean) adds up exactly to output(x) - base."""
    rows, m = x.shape
    pairs = max(2, PERMUTATION_EVALS // (2 * (m + 1)))
    rng = np.random.default_rng(seed)
    orders = np.empty((rows, 2 * pairs, m), dtype="int64")
    for r in range(rows):
        for p in range(pairs):
            order = rng.permutation(m)
            orders[r, 2 * p], orders[r, 2 * p + 1] = order, order[::-1]
    rank = np.argsort(orders, axis=2)  # rank[r, p, feature] = its place in the ordering
    steps = np.arange(m + 1)
    masks = rank[:, :, None, :] < steps[None, None, :, None]  # (rows, orders, m + 1, m)
    v = _coalition_values(output, x, bg, masks.reshape(rows, -1, m))
    v = v.reshape(rows, 2 * pairs, m + 1, *v.shape[2:])
    gains = v[:, :, 1:] - v[:, :, :-1]  # gains[r, p, t]: of the column added at step t
    values = np.zeros((rows, m, *v.shape[3:]))
    for r in range(rows):
        for p in range(2 * pairs):
            values[r, orders[r, p]] += gains[r, p]
    return values / (2 * pairs), v[0, 0, 0]


def _has(obj: Any, attr: str) -> bool:
    try:
        return callable(getattr(obj, attr))
    except AttributeError:  # SVC(probability=False).predict_proba raises on access
        return False


def _check(pipeline: Any, given: Any) -> pd.DataFrame:
    if not isinstance(given, pd.DataFrame):
        raise InvalidInput(f"explain() takes a pandas DataFrame, not {type(given).__name__}")
    frame: pd.DataFrame = given
    if len(frame) == 0:
        raise InvalidInput("no rows to explain")
    if len(frame.columns) == 0:
        raise InvalidInput("the frame has no columns")
    expected = getattr(pipeline, "feature_names_in_", None)
    if expected is not None:
        missing = [c for c in expected if c not in frame.columns]
        if missing:
            raise InvalidInput(
                f"the frame lacks column {missing[0]!r} the model was fitted on "
                f"(it takes: {', '.join(map(str, expected))})"
            )
        frame = frame[list(expected)]
    return frame


def explain(
    pipeline: Any,
    frame: pd.DataFrame,
    *,
    background_rows: int = DEFAULT_BACKGROUND_ROWS,
    max_rows: int | None = None,
    seed: int = 0,
    method: str = "auto",
) -> Explanation:
    """SHAP values of ``pipeline``'s predictions on ``frame`` (its raw input columns).

    At most ``max_rows`` rows are explained, a seeded sample when the frame has more (default
    1000 on the tree path, 200 on the agnostic one, which calls the model many times per row).
    The agnostic path masks with a sample of ``background_rows`` rows of ``frame``.
    ``method``: ``"auto"`` (tree when the model allows, else agnostic), ``"tree"`` (refused
    when impossible) or ``"agnostic"``.
    """
    if method not in ("auto", "tree", "agnostic"):
        raise InvalidInput(f"method must be 'auto', 'tree' or 'agnostic', not {method!r}")
    if background_rows < 1:
        raise InvalidInput(f"background_rows must be at least 1, not {background_rows}")
    if max_rows is not None and max_rows < 1:
        raise InvalidInput(f"max_rows must be at least 1, not {max_rows}")
    frame = _check(pipeline, frame)
    background = frame.iloc[_sample(len(frame), background_rows, seed + 1)]
    return _explain(pipeline, frame, background, max_rows=max_rows, seed=seed, method=method)


def _explain(
    pipeline: Any,
    frame: pd.DataFrame,
    background: pd.DataFrame | None,
    *,
    max_rows: int | None,
    seed: int,
    method: str,
) -> Explanation:
    pre, model = _split(pipeline)
    task = _task(model)
    tree_possible = method != "agnostic" and _is_tree(model)
    limit = max_rows or (MAX_ROWS_TREE if tree_possible else MAX_ROWS_AGNOSTIC)
    rows = _sample(len(frame), limit, seed)
    chosen = frame.iloc[rows]
    result = _tree(pipeline, pre, model, chosen, task) if tree_possible else None
    used_background = 0
    if result is None:
        if method == "tree":
            raise InvalidInput(
                f"TreeExplainer cannot explain {type(model).__name__} behind this preprocessing; "
                "use method='auto' or 'agnostic'"
            )
        if background is None:
            raise InvalidInput(
                f"{type(model).__name__} is explained by masking with background rows: "
                "pass background="
            )
        result = _agnostic(pipeline, model, chosen, background, task, seed)
        used_background = len(background)
    values, base, explained, space, explainer_name = result
    kind = explainer_name.split()[0] if "Shapley" in explainer_name else "tree"
    return Explanation(
        method=kind,
        explainer=explainer_name,
        output_space=space,
        task=task,
        features=[str(c) for c in frame.columns],
        rows=np.asarray(rows, dtype="int64"),
        values=np.asarray(values, dtype="float64"),
        base_values=np.asarray(base, dtype="float64"),
        data=chosen.set_axis(rows, axis=0),
        classes=None if task == "regression" else [_json_value(c) for c in model.classes_],
        explained_class=None if explained is None else [_json_value(c) for c in explained],
        background_rows=used_background,
        info={"estimator": type(model).__name__},
    )


def explain_row(
    pipeline: Any,
    row: pd.DataFrame | Mapping[str, Any],
    *,
    background: pd.DataFrame | None = None,
    background_rows: int = DEFAULT_BACKGROUND_ROWS,
    seed: int = 0,
) -> RowExplanation:
    """One prediction's explanation. A tree model needs nothing else; any other model needs
    ``background`` rows (a sample of the training or hold-out frame) to mask with."""
    frame = pd.DataFrame([dict(row)]) if isinstance(row, Mapping) else row
    frame = _check(pipeline, frame)
    if len(frame) != 1:
        raise InvalidInput(f"explain_row() takes one row, got {len(frame)}")
    if background is not None:
        background = _check(pipeline, background)
        background = background.iloc[_sample(len(background), background_rows, seed + 1)]
        frame = frame.astype(background.dtypes.to_dict())
    return _explain(pipeline, frame, background, max_rows=1, seed=seed, method="auto").row(0)
