"""PyTorch models through the trainer: trained, cross-validated, registered, served, seeded."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mloop.core.errors import InvalidInput
from mloop.workspace import Workspace

pytest.importorskip("torch", reason="the torch extra is not installed")

CLASSIFIER = "mloop.training.torch_models.TorchMLPClassifier"
REGRESSOR = "mloop.training.torch_models.TorchMLPRegressor"


@pytest.fixture
def data_ws(sqlite_ws: Workspace) -> Workspace:
    rng = np.random.default_rng(3)
    x1, x2 = rng.normal(size=(2, 500))
    sqlite_ws.datasets.write_version(
        "d",
        pa.table(
            {
                "x1": x1,
                "x2": x2,
                "kind": rng.choice(["a", "b", "c"], 500),
                "label": np.where(x1 * x2 > 0, "same", "differ"),  # not linear
                "value": np.sin(x1) + x2**2,
            }
        ),
    )
    return sqlite_ws


def test_a_torch_classifier_learns_trains_again_the_same_and_serves(data_ws: Workspace) -> None:
    ws = data_ws
    params = {"hidden": (32, 16), "epochs": 60, "lr": 0.01}
    first = ws.training.train(
        "d",
        "label",
        model=CLASSIFIER,
        params=params,
        exclude=["value"],
        register="net",
        cv="stratified",
        folds=3,
        plots=False,
    )
    assert first.metrics["roc_auc"] > 0.9  # x1·x2: a line cannot, the network can
    assert first.metrics["cv_roc_auc_mean"] > 0.85
    again = ws.training.train(
        "d", "label", model=CLASSIFIER, params=params, exclude=["value"], plots=False
    )
    assert again.metrics["roc_auc"] == first.metrics["roc_auc"]  # seeded by the trainer
    served = ws.predict("net", [{"x1": 2.0, "x2": 2.0, "kind": "a"}])
    assert served.predictions == ["same"]
    assert served.probabilities is not None
    assert sum(served.probabilities[0].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_torch_regressor(data_ws: Workspace) -> None:
    result = data_ws.training.train(
        "d",
        "value",
        model=REGRESSOR,
        params={"epochs": 80, "lr": 0.01},
        exclude=["label"],
        plots=False,
    )
    assert result.metrics["r2"] > 0.8


def test_bad_torch_params_are_refused(data_ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="hidden must list layer sizes"):
        data_ws.training.train(
            "d", "label", model=CLASSIFIER, params={"hidden": ()}, exclude=["value"]
        )
    assert data_ws.tracking.search_runs().items == []  # refused before any run
