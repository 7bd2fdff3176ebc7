"""SHAP explanations: additive in the model's output, by input column, tree or model-agnostic."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from mloop import InvalidInput
from mloop.core.schema import Column
from mloop.training import build_pipeline
from mloop.training.explain import Explanation, explain, explain_row

pytest.importorskip("shap")

FEATURES = [
    Column(name="age", type="float"),
    Column(name="city", type="string"),
    Column(name="income", type="float"),
]


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    city = rng.choice(np.array(["paris", "lyon", "nice", None], dtype=object), size=n)
    age = rng.normal(40, 12, n)
    age[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "city": pd.Series(city, dtype=object).where(pd.notna(city), np.nan),
            "income": rng.normal(50, 15, n),
        }
    )


def _binary_target(frame: pd.DataFrame) -> np.ndarray:
    return ((frame["age"].fillna(40) > 40) ^ (frame["city"] == "paris")).astype(int).to_numpy()


def _fit(estimator: Any, frame: pd.DataFrame, y: np.ndarray) -> Any:
    return build_pipeline(estimator, FEATURES).fit(frame, y)


def test_tree_values_add_up_to_the_log_odds_and_one_hot_columns_fold_back() -> None:
    shap = importlib.import_module("shap")  # untyped

    frame = _frame()
    pipe = _fit(
        HistGradientBoostingClassifier(max_iter=40, random_state=0), frame, _binary_target(frame)
    )
    got = explain(pipe, frame)

    assert got.method == "tree"
    assert got.explainer == "shap.TreeExplainer"
    assert got.output_space == "log_odds"
    assert got.features == ["age", "city", "income"]
    assert got.values.shape == (400, 3)
    assert got.explained_class == [1] * 400
    # additivity in the model's own output space
    np.testing.assert_allclose(got.outputs, pipe.decision_function(frame), atol=1e-6)
    # the city value is the sum of SHAP's values for its one-hot columns
    matrix = pipe[:-1].transform(frame)
    raw = shap.TreeExplainer(pipe[-1])(matrix).values
    names = list(pipe[:-1].get_feature_names_out())
    city_cols = [i for i, n in enumerate(names) if n.startswith("categorical__city_")]
    assert len(city_cols) == 4  # paris, lyon, nice and the __missing__ category
    np.testing.assert_allclose(got.values[:, 1], raw[:, city_cols].sum(axis=1), atol=1e-9)
    # the target depends on age and city, not income
    importance = got.importance()
    assert list(importance)[:2] in (["age", "city"], ["city", "age"])
    assert importance["income"] < importance["city"]
    assert list(importance.values()) == sorted(importance.values(), reverse=True)


def test_a_forest_explains_each_rows_predicted_class_in_probability() -> None:
    frame = _frame(300)
    y = np.digitize(frame["income"], [40, 60])  # three classes
    pipe = _fit(RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0), frame, y)
    got = explain(pipe, frame, max_rows=100)
    assert (got.method, got.output_space) == ("tree", "probability")
    assert len(got.rows) == 100
    assert len(set(got.rows.tolist())) == 100
    chosen = frame.iloc[got.rows]
    predicted = pipe.predict(chosen)
    assert got.explained_class == predicted.tolist()
    proba = pipe.predict_proba(chosen)[np.arange(100), predicted]
    np.testing.assert_allclose(got.outputs, proba, atol=1e-6)
    assert got.top(1)[0][0] == "income"


def test_a_tree_regressor_adds_up_to_its_prediction() -> None:
    frame = _frame(300)
    y = 3 * frame["income"].to_numpy() + (frame["city"] == "nice") * 20
    pipe = _fit(HistGradientBoostingRegressor(max_iter=30, random_state=0), frame, y)
    got = explain(pipe, frame)
    assert (got.method, got.output_space, got.explained_class) == ("tree", "prediction", None)
    np.testing.assert_allclose(got.outputs, pipe.predict(frame), atol=1e-6)


def test_other_models_take_the_model_agnostic_path() -> None:
    frame = _frame(200)
    y = _binary_target(frame)
    knn = _fit(KNeighborsClassifier(n_neighbors=7), frame, y)
    got = explain(knn, frame, background_rows=30, max_rows=40)
    assert got.method == "exact"
    assert got.output_space == "probability"
    assert got.background_rows == 30
    assert got.features == ["age", "city", "income"]
    chosen = frame.iloc[got.rows]
    np.testing.assert_allclose(got.outputs, knn.predict_proba(chosen)[:, 1], atol=1e-9)
    assert got.importance()["income"] < max(got.importance()["age"], got.importance()["city"])

    svc = _fit(SVC(), frame, y)  # no predict_proba: the decision function is explained
    got = explain(svc, frame, background_rows=20, max_rows=10)
    assert (got.method, got.output_space) == ("exact", "decision_function")
    np.testing.assert_allclose(got.outputs, svc.decision_function(frame.iloc[got.rows]), atol=1e-9)

    # a tree model can be sent down the agnostic path on request
    hgb = _fit(HistGradientBoostingClassifier(max_iter=10), frame, y)
    assert explain(hgb, frame, method="agnostic", background_rows=10, max_rows=5).method == "exact"


@pytest.mark.parametrize(("columns", "method"), [(4, "exact"), (11, "permutation")])
def test_agnostic_values_of_a_linear_model_are_its_weighted_deviations(
    columns: int, method: str
) -> None:
    # for f(x) = w·x + c and a background B, every column's Shapley value is
    # w_i (x_i - mean B_i), whatever the coalitions or orderings sampled
    rng = np.random.default_rng(1)
    names = [f"x{i}" for i in range(columns)]
    frame = pd.DataFrame(rng.normal(size=(150, columns)) * np.arange(1, columns + 1), columns=names)
    y = frame.to_numpy() @ rng.normal(size=columns) + 5
    pipe = build_pipeline(Ridge(alpha=1.0), [Column(name=n, type="float") for n in names]).fit(
        frame, y
    )
    got = explain(pipe, frame, background_rows=40, max_rows=15, seed=3)
    assert got.method == method
    scaler = pipe[0].named_transformers_["numeric"].named_steps["scale"]
    weight = pipe[-1].coef_ / scaler.scale_
    background = frame.iloc[_background_positions(150, 40, seed=3)]
    expected = weight * (frame.iloc[got.rows].to_numpy() - background.to_numpy().mean(axis=0))
    np.testing.assert_allclose(got.values, expected, atol=1e-8)
    np.testing.assert_allclose(got.outputs, pipe.predict(frame.iloc[got.rows]), atol=1e-8)


def _background_positions(n: int, k: int, seed: int) -> np.ndarray:
    # explain() masks with a seeded sample of the frame (seed + 1), as documented
    return np.sort(np.random.default_rng(seed + 1).choice(n, size=k, replace=False))


def test_explanations_round_trip_through_json_and_parquet(tmp_path: Path) -> None:
    frame = _frame(120)
    pipe = _fit(HistGradientBoostingClassifier(max_iter=10), frame, _binary_target(frame))
    got = explain(pipe, frame, max_rows=25)

    body = json.loads(json.dumps(got.to_dict()))
    assert body["method"] == "tree"
    assert list(body["importance"]) == list(got.importance())
    back = Explanation.from_dict(body)
    np.testing.assert_allclose(back.values, got.values)
    np.testing.assert_allclose(back.base_values, got.base_values)
    assert back.rows.tolist() == got.rows.tolist()
    assert back.row(3) == got.row(3)

    pq.write_table(got.to_table(), tmp_path / "shap.parquet")
    table = pq.read_table(tmp_path / "shap.parquet")
    assert table.num_rows == 25 * 3
    assert table.column_names == [
        "row",
        "feature",
        "shap_value",
        "input",
        "base_value",
        "explained_class",
    ]
    again = Explanation.from_table(table)
    np.testing.assert_allclose(again.values, got.values)
    assert again.importance() == pytest.approx(got.importance())
    assert again.explained_class == got.explained_class
    assert (again.method, again.output_space) == (got.method, got.output_space)


def test_explain_row_gives_one_predictions_contributions() -> None:
    frame = _frame(200)
    y = _binary_target(frame)
    row = {"age": 55.0, "city": "paris", "income": None}
    tree = _fit(HistGradientBoostingClassifier(max_iter=20), frame, y)
    one = explain_row(tree, row)  # a tree needs no background
    assert one.method == "tree"
    assert list(one.contributions) == sorted(
        one.contributions, key=lambda k: -abs(one.contributions[k])
    )
    assert one.inputs == {"age": 55.0, "city": "paris", "income": None}
    expected = tree.decision_function(pd.DataFrame([row]).astype({"income": "float64"}))[0]
    assert one.output == pytest.approx(expected)
    assert one.base_value + sum(one.contributions.values()) == pytest.approx(one.output)

    knn = _fit(KNeighborsClassifier(), frame, y)
    with pytest.raises(InvalidInput, match="background"):
        explain_row(knn, row)
    one = explain_row(knn, row, background=frame, background_rows=25)
    assert one.method == "exact"
    assert one.output == pytest.approx(
        knn.predict_proba(pd.DataFrame([row]).astype({"income": "float64"}))[0, 1]
    )


def test_explain_refuses_bad_input() -> None:
    frame = _frame(50)
    pipe = _fit(HistGradientBoostingClassifier(max_iter=5), frame, _binary_target(frame))
    with pytest.raises(InvalidInput, match="pandas DataFrame"):
        explain(pipe, frame.to_numpy())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="lacks column 'city'"):
        explain(pipe, frame.drop(columns=["city"]))
    with pytest.raises(InvalidInput, match="no rows"):
        explain(pipe, frame.iloc[:0])
    with pytest.raises(InvalidInput, match="method must be"):
        explain(pipe, frame, method="kernel")
    with pytest.raises(InvalidInput, match="background_rows"):
        explain(pipe, frame, background_rows=0)
    with pytest.raises(InvalidInput, match="one row"):
        explain_row(pipe, frame.iloc[:2])
    knn = _fit(KNeighborsClassifier(), frame, _binary_target(frame))
    with pytest.raises(InvalidInput, match="TreeExplainer cannot"):
        explain(knn, frame, method="tree")
    with pytest.raises(InvalidInput, match="was not explained"):
        explain(pipe, frame, max_rows=3).row(5)
