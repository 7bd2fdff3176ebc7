"""Any Python function as a model: model="pyfunc:module.function"."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mloop.core.errors import InvalidInput
from mloop.workspace import Workspace


@pytest.fixture
def data_ws(sqlite_ws: Workspace) -> Workspace:
    rng = np.random.default_rng(2)
    x = rng.normal(size=300)
    sqlite_ws.datasets.write_version(
        "d",
        pa.table(
            {
                "x": x,
                "kind": rng.choice(["a", "b"], 300),
                "label": np.where(x > 0, "up", "down"),
                "value": 2 * x + 1,
            }
        ),
    )
    return sqlite_ws


def test_a_function_classifier_is_trained_registered_and_served(data_ws: Workspace) -> None:
    ws = data_ws
    result = ws.training.train(
        "d",
        "label",
        model="pyfunc:pyfunc_models.logistic",
        exclude=["value"],
        register="fn",
        cv="stratified",
        folds=3,
    )
    assert result.metrics["roc_auc"] > 0.95  # predict_proba passes through
    assert result.metrics["cv_accuracy_mean"] > 0.9
    served = ws.predict("fn", [{"x": 3.0, "kind": "a"}])
    assert served.predictions == ["up"]
    assert served.probabilities is not None
    assert served.probabilities[0]["up"] > 0.5
    # params reach the function; a model without predict_proba has no probabilities
    plain = ws.training.train(
        "d",
        "label",
        model="pyfunc:pyfunc_models.threshold",
        params={"cutoff": 0.0},
        exclude=["value"],
        register="plain",
    )
    assert plain.metrics["accuracy"] > 0.9
    assert "roc_auc" not in plain.metrics
    assert ws.predict("plain", [{"x": -3.0, "kind": "b"}]).probabilities is None


def test_a_function_regressor(data_ws: Workspace) -> None:
    result = data_ws.training.train(
        "d", "value", model="pyfunc:pyfunc_models.least_squares", exclude=["label"]
    )
    assert result.metrics["rmse"] < 1e-6


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("pyfunc:pyfunc_models.nope", "unknown function"),
        ("pyfunc:nowhere.fn", "unknown function"),
        ("pyfunc:fn", "give pyfunc:package.module.function"),
        ("pyfunc:pyfunc_models.unmarked", "does not say its task"),
        ("pyfunc:pyfunc_models.np", "is not a function"),
    ],
)
def test_bad_functions_are_refused_before_any_run(data_ws: Workspace, model: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        data_ws.training.train("d", "label", model=model, exclude=["value"])
    assert data_ws.tracking.search_runs().items == []


def test_a_function_that_returns_no_model_fails_the_run_clearly(data_ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="returned NoneType, which has no predict"):
        data_ws.training.train(
            "d", "label", model="pyfunc:pyfunc_models.returns_nothing", exclude=["value"]
        )


def test_a_model_that_cannot_be_saved_is_a_clear_error(data_ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="cannot be saved"):
        data_ws.training.train(
            "d", "label", model="pyfunc:pyfunc_models.local_model", exclude=["value"]
        )
    (run,) = data_ws.tracking.search_runs().items
    assert run.status == "FAILED"
