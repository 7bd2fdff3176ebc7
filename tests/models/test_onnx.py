"""ONNX export: what the graph predicts on held-out rows is what the native pipeline predicts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from mloop import InvalidInput, SchemaMismatch
from mloop.core.schema import Column
from mloop.models import (
    FLAVOR_SKLEARN,
    NULL_STRING,
    ONNX_FILE,
    ONNX_QUANTIZED_FILE,
    LoadedModel,
    ModelMeta,
    OnnxCheck,
    OnnxPredictor,
    Signature,
    captured_dependencies,
    export_onnx,
    onnx_files,
    quantize_onnx,
    verify_onnx,
)
from mloop.models.signature import frame_from_columns
from mloop.training import build_pipeline

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("skl2onnx", reason="the onnx extra is not installed")

COLUMNS = [
    Column(name="age", type="integer"),
    Column(name="income", type="float"),
    Column(name="member", type="boolean"),
    Column(name="plan", type="string"),
]
TRAIN, HOLDOUT = 1500, 600


def _data(seed: int = 7, rows: int = TRAIN + HOLDOUT) -> tuple[pd.DataFrame, np.ndarray]:
    """Four typed columns with nulls in each; a target that depends on all of them."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    income = rng.lognormal(10, 0.5, rows)
    member = rng.random(rows) < 0.4
    plan = rng.choice(["free", "basic", "pro", "team"], rows, p=[0.4, 0.3, 0.2, 0.1])
    score = (
        (age - 45) / 15
        + np.log(income)
        - 10
        + member * 0.8
        + np.select([plan == "pro", plan == "team"], [1.0, 1.5], 0.0)
        + rng.normal(0, 0.5, rows)
    )
    columns: dict[str, Any] = {
        "age": [None if i % 11 == 0 else v for i, v in enumerate(age)],
        "income": [None if i % 13 == 0 else v for i, v in enumerate(income)],
        "member": [None if i % 17 == 0 else bool(v) for i, v in enumerate(member)],
        "plan": [None if i % 9 == 0 else str(v) for i, v in enumerate(plan)],
    }
    signature = _signature("classification")
    return frame_from_columns(columns, signature), score


def _signature(task: str, classes: list[Any] | None = None) -> Signature:
    return Signature(
        inputs=COLUMNS,
        target="y",
        target_type="string" if task == "classification" else "float",
        task=task,
        classes=classes,
    )


def _fit(estimator: Any, task: str, labels: tuple[Any, Any] = ("no", "yes")) -> tuple[Any, ...]:
    frame, score = _data()
    if task == "classification":
        y = np.where(score > 0.3, labels[1], labels[0])
        signature = _signature(task, sorted(set(y.tolist())))
    else:
        y = score * 1000.0  # a scale where float32 rounding shows
        signature = _signature(task)
    pipeline = build_pipeline(estimator, COLUMNS).fit(frame[:TRAIN], y[:TRAIN])
    return pipeline, signature, frame[TRAIN:].reset_index(drop=True), y[TRAIN:]


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """OpenMP's spinning threads slow small fits a lot on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def boosted() -> tuple[Any, ...]:
    """A HistGradientBoostingClassifier pipeline, its signature, held-out frame and labels."""
    return _fit(HistGradientBoostingClassifier(max_iter=40), "classification")


@pytest.fixture(scope="module")
def logistic() -> tuple[Any, ...]:
    return _fit(LogisticRegression(max_iter=500), "classification")


def _assert_same_as_native(pipeline: Any, signature: Signature, frame: pd.DataFrame) -> None:
    predictor = OnnxPredictor(export_onnx(pipeline, signature), signature)
    labels, probabilities = predictor.predict_frame(frame)
    native = np.asarray(pipeline.predict(frame))
    if signature.task == "classification":
        assert probabilities is not None
        ours = np.array([[p[str(c)] for c in pipeline.classes_] for p in probabilities])
        np.testing.assert_allclose(ours, pipeline.predict_proba(frame), atol=1e-5)
        assert labels == native.tolist()
    else:
        assert probabilities is None
        # float32 sums of leaves: an error relative to the target's scale, not to each value
        np.testing.assert_allclose(labels, native, atol=1e-5 * np.abs(native).max())


# --- agreement per estimator ------------------------------------------------------------------


def test_hist_gradient_boosting_classifier_with_strings_and_nulls(
    boosted: tuple[Any, ...],
) -> None:
    pipeline, signature, frame, y = boosted
    files, report = onnx_files(pipeline, signature, frame, y)

    assert set(files) == {ONNX_FILE, ONNX_QUANTIZED_FILE}
    assert report["onnx_ok"] == 1.0
    assert report["onnx_rows"] == HOLDOUT
    assert report["onnx_label_agreement"] == 1.0
    assert report["onnx_max_abs_diff"] < 1e-5
    assert report["onnx_accuracy"] == report["onnx_native_accuracy"]
    assert abs(report["onnx_roc_auc"] - report["onnx_native_roc_auc"]) < 1e-6
    assert report["onnx_bytes"] == len(files[ONNX_FILE])
    _assert_same_as_native(pipeline, signature, frame)


def test_hist_gradient_boosting_regressor() -> None:
    pipeline, signature, frame, _y = _fit(HistGradientBoostingRegressor(max_iter=40), "regression")
    check = verify_onnx(export_onnx(pipeline, signature), pipeline, frame, signature)

    assert check.ok
    assert check.rows == HOLDOUT
    assert check.label_agreement is None
    native = np.abs(pipeline.predict(frame)).max()
    assert check.max_abs_diff <= 1e-5 * native  # float32 inside the graph, relative to the scale
    _assert_same_as_native(pipeline, signature, frame)


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        (LogisticRegression(max_iter=500), "classification"),
        (RandomForestClassifier(n_estimators=15, random_state=0), "classification"),
        (LinearRegression(), "regression"),
        (Ridge(), "regression"),
        (RandomForestRegressor(n_estimators=15, random_state=0), "regression"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v,
)
def test_scikit_learn_estimators(estimator: Any, task: str) -> None:
    pipeline, signature, frame, y = _fit(estimator, task)
    _files, report = onnx_files(pipeline, signature, frame, y)

    assert report["onnx_ok"] == 1.0
    if task == "classification":
        # a forest's vote can tie at 0.5 exactly, which float32 may break the other way
        agreement = report["onnx_label_agreement"]
        assert agreement == 1.0 or (1 - agreement) * HOLDOUT == report["onnx_label_ties"]
        assert report["onnx_max_abs_diff"] < 1e-5
    else:
        assert abs(report["onnx_rmse"] - report["onnx_native_rmse"]) < 1e-3


@pytest.mark.parametrize(
    "estimator",
    [HistGradientBoostingClassifier(max_iter=30), LogisticRegression(max_iter=500)],
    ids=lambda v: type(v).__name__,
)
def test_three_classes(estimator: Any) -> None:
    frame, score = _data()
    y = np.select([score < -0.5, score > 0.8], ["low", "high"], "mid")
    signature = _signature("classification", ["high", "low", "mid"])
    pipeline = build_pipeline(estimator, COLUMNS).fit(frame[:TRAIN], y[:TRAIN])
    held_out = frame[TRAIN:].reset_index(drop=True)

    _files, report = onnx_files(pipeline, signature, held_out, y[TRAIN:])

    assert report["onnx_ok"] == 1.0
    assert report["onnx_label_agreement"] == 1.0
    assert "onnx_roc_auc" not in report  # two classes only
    _assert_same_as_native(pipeline, signature, held_out)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_lightgbm_and_xgboost(library: str, task: str) -> None:
    pytest.importorskip(library)
    pytest.importorskip("onnxmltools")
    if library == "lightgbm":
        from lightgbm import LGBMClassifier, LGBMRegressor

        cls: Any = LGBMClassifier if task == "classification" else LGBMRegressor
        estimator = cls(n_estimators=30, verbose=-1, n_jobs=1)
    else:
        from xgboost import XGBClassifier, XGBRegressor

        cls = XGBClassifier if task == "classification" else XGBRegressor
        estimator = cls(n_estimators=30, max_depth=4, n_jobs=1)
    # XGBoost takes classes 0..n-1 only
    pipeline, signature, frame, y = _fit(estimator, task, labels=(0, 1))
    _files, report = onnx_files(pipeline, signature, frame, y)

    assert report["onnx_ok"] == 1.0
    if task == "classification":
        assert report["onnx_label_agreement"] == 1.0
    _assert_same_as_native(pipeline, signature, frame)


def test_verification_catches_a_model_that_disagrees(boosted: tuple[Any, ...]) -> None:
    pipeline, signature, frame, y = boosted
    other = build_pipeline(HistGradientBoostingClassifier(max_iter=5), COLUMNS).fit(frame, y)

    check = verify_onnx(export_onnx(other, signature), pipeline, frame, signature)

    assert not check.ok
    assert check.rows_over_tolerance > 0.5 * HOLDOUT
    assert check.max_abs_diff > 0.01


def test_a_check_allows_a_few_float32_split_flips_and_counts_them() -> None:
    """One row in 10,000 on the other side of a split (float32) passes; twenty do not."""
    few = OnnxCheck(10_000, 4.8e-3, 1, 1e-4, 1e-3, label_agreement=0.9999)
    many = OnnxCheck(10_000, 4.8e-3, 20, 1e-4, 1e-3, label_agreement=1.0)
    labels = OnnxCheck(10_000, 1e-7, 0, 1e-4, 1e-3, label_agreement=0.99, label_ties=80)
    ties = OnnxCheck(10_000, 1e-7, 0, 1e-4, 1e-3, label_agreement=0.99, label_ties=100)

    assert few.ok
    assert not many.ok
    assert not labels.ok
    assert ties.ok


# --- string columns ---------------------------------------------------------------------------


def test_rare_and_unseen_categories_are_encoded_as_scikit_learn_does() -> None:
    """More categories than the one-hot keeps (50): the rare ones share the 'infrequent'
    column; a category never seen in training goes there too. A linear model sees every
    one-hot column, so any difference in the encoding shows in its probabilities."""
    rng = np.random.default_rng(3)
    rows = 3000
    city = [f"city{int(i)}" for i in rng.zipf(1.3, rows) % 120]
    x = rng.normal(size=rows)
    y = np.where(x + np.isin(city, ["city1", "city2"]) + rng.normal(0, 0.3, rows) > 0.5, "a", "b")
    columns = [Column(name="x", type="float"), Column(name="city", type="string")]
    signature = Signature(
        inputs=columns, target="y", target_type="string", task="classification", classes=["a", "b"]
    )
    frame = frame_from_columns({"x": x, "city": city}, signature)
    pipeline = build_pipeline(LogisticRegression(max_iter=500), columns).fit(frame, y)
    encoder = pipeline.named_steps["preprocess"].named_transformers_["categorical"][-1]
    assert encoder.infrequent_categories_[0] is not None  # the case under test

    held_out = frame_from_columns(
        {
            "x": [0.1, -0.4, 1.2, 0.0, 0.5],
            "city": ["city1", "city97", "never-seen", None, "city0"],
        },
        signature,
    )
    _assert_same_as_native(pipeline, signature, held_out)
    check = verify_onnx(export_onnx(pipeline, signature), pipeline, frame, signature)
    assert check.ok
    assert check.max_abs_diff < 1e-5


def test_an_unseen_category_predicts_instead_of_failing(boosted: tuple[Any, ...]) -> None:
    pipeline, signature, _, _ = boosted
    predictor = OnnxPredictor(export_onnx(pipeline, signature), signature)
    row = {"age": 30, "income": 52000.0, "member": True, "plan": "enterprise"}

    labels, probabilities = predictor.predict_rows([row])

    native = LoadedModel(_meta(signature), pipeline).predict_rows([row])
    assert labels == native[0]
    assert probabilities is not None
    assert native[1] is not None
    assert probabilities[0] == pytest.approx(native[1][0], abs=1e-6)


# --- the predictor ----------------------------------------------------------------------------


def _meta(signature: Signature) -> ModelMeta:
    return ModelMeta(
        flavor=FLAVOR_SKLEARN,
        signature=signature,
        estimator="test",
        dependencies=captured_dependencies(),
    )


def test_predictor_single_row_equals_native_loaded_model(boosted: tuple[Any, ...]) -> None:
    pipeline, signature, _, _ = boosted
    predictor = OnnxPredictor(export_onnx(pipeline, signature), signature)
    native = LoadedModel(_meta(signature), pipeline)
    rows = [
        {"age": 41, "income": 61000.5, "member": False, "plan": "pro"},
        {"age": None, "income": None, "member": None, "plan": None},
        {"age": 19.0, "income": 12000, "member": True, "plan": "free"},
    ]
    for row in rows:
        labels, probabilities = predictor.predict_rows([row])
        want_labels, want_probabilities = native.predict_rows([row])
        assert labels == want_labels
        assert isinstance(labels[0], str)
        assert probabilities is not None
        assert want_probabilities is not None
        assert set(probabilities[0]) == set(want_probabilities[0]) == {"no", "yes"}
        for key, value in want_probabilities[0].items():
            assert probabilities[0][key] == pytest.approx(value, abs=1e-6)
            assert isinstance(probabilities[0][key], float)
    # many rows at once: the same as one by one
    batch_labels, batch_probabilities = predictor.predict_rows(rows)
    assert batch_labels == native.predict_rows(rows)[0]
    assert batch_probabilities is not None
    assert len(batch_probabilities) == 3


def test_predictor_regression_rows() -> None:
    pipeline, signature, _frame, _ = _fit(Ridge(), "regression")
    predictor = OnnxPredictor(export_onnx(pipeline, signature), signature)
    row = {"age": 52, "income": 40000.0, "member": True, "plan": "team"}

    values, probabilities = predictor.predict_rows([row])

    assert probabilities is None
    want = LoadedModel(_meta(signature), pipeline).predict_rows([row])[0]
    assert values == pytest.approx(want, rel=1e-5)
    assert isinstance(values[0], float)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"age": 1, "income": 2.0, "member": True}], "missing column 'plan'"),
        ([{"age": 1, "income": 2.0, "member": True, "plan": "pro", "x": 1}], "unknown column 'x'"),
        ([{"age": "1", "income": 2.0, "member": True, "plan": "pro"}], "'age' must be a number"),
        ([{"age": 1, "income": 2.0, "member": 1, "plan": "pro"}], "'member' must be true or false"),
        ([{"age": True, "income": 2.0, "member": True, "plan": "pro"}], "'age' must be a number"),
        ([{"age": 1, "income": float("inf"), "member": True, "plan": "pro"}], "'income'"),
        ([{"age": 1, "income": 2.0, "member": True, "plan": 3}], "'plan' must be a string"),
        (["not a row"], "row 0 is a string"),
        ([], "non-empty list"),
    ],
)
def test_predictor_refuses_rows_as_the_native_model_does(
    rows: Any, message: str, logistic: tuple[Any, ...]
) -> None:
    pipeline, signature, _, _ = logistic
    predictor = OnnxPredictor(export_onnx(pipeline, signature), signature)

    with pytest.raises(SchemaMismatch, match=message):
        predictor.predict_rows(rows)
    with pytest.raises(SchemaMismatch, match=message):
        LoadedModel(_meta(signature), pipeline).predict_rows(rows)


# --- the graph, quantization, refusals ----------------------------------------------------------


def test_graph_inputs_and_metadata(logistic: tuple[Any, ...]) -> None:
    pipeline, signature, _, _ = logistic
    model = onnx.load_from_string(export_onnx(pipeline, signature))
    onnx.checker.check_model(model)

    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    double, string = onnx.TensorProto.DOUBLE, onnx.TensorProto.STRING
    assert inputs == {"age": double, "income": double, "member": double, "plan": string}
    assert all(i.type.tensor_type.shape.dim[1].dim_value == 1 for i in model.graph.input)
    assert [o.name for o in model.graph.output] == ["label", "probabilities"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["mloop.null_string"] == NULL_STRING
    assert props["mloop.classes"] == '["no", "yes"]'
    assert Signature.model_validate_json(props["mloop.signature"]) == signature


def test_quantized_model_loads_and_its_change_is_reported(logistic: tuple[Any, ...]) -> None:
    pipeline, signature, frame, y = logistic
    files, report = onnx_files(pipeline, signature, frame, y)

    quantized = OnnxPredictor(files[ONNX_QUANTIZED_FILE], signature)
    labels, probabilities = quantized.predict_frame(frame)
    assert len(labels) == HOLDOUT
    assert probabilities is not None
    for metric in ("accuracy", "roc_auc"):
        delta = report[f"onnx_quantized_{metric}_delta"]
        assert delta == pytest.approx(
            report[f"onnx_quantized_{metric}"] - report[f"onnx_native_{metric}"]
        )
    assert report["onnx_quantized_bytes"] == len(files[ONNX_QUANTIZED_FILE])
    # ONNX-ML's linear and tree operators hold no MatMul for dynamic quantization to rewrite:
    # the report says nothing was quantized, and the predictions are unchanged
    assert report["onnx_quantized_nodes"] == 0
    assert report["onnx_quantized_max_abs_diff"] == report["onnx_max_abs_diff"]


def test_quantize_onnx_rewrites_a_matmul() -> None:
    """Where the graph has weights to quantize, it is quantized and says so."""
    from onnx import helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "dense",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8

    quantized = quantize_onnx(model.SerializeToString())

    assert quantized.quantized_nodes > 0
    assert len(quantized.model) < len(model.SerializeToString())


class _NoConverter(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    def fit(self, X: Any, y: Any) -> _NoConverter:
        self.classes_ = np.unique(y)
        return self

    def predict(self, X: Any) -> Any:
        return np.repeat(self.classes_[0], len(X))


def test_an_estimator_without_a_converter_is_invalid_input() -> None:
    pipeline, signature, _, _ = _fit(_NoConverter(), "classification")

    with pytest.raises(InvalidInput, match="_NoConverter cannot be exported to ONNX"):
        export_onnx(pipeline, signature)
