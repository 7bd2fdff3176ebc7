"""XGBoost and LightGBM estimators through the trainer, with text labels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mloop.workspace import Workspace


@pytest.mark.parametrize("model", ["xgboost.XGBClassifier", "lightgbm.LGBMClassifier"])
def test_boosting_classifiers_learn_text_labels(sqlite_ws: Workspace, model: str) -> None:
    ws = sqlite_ws
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    ws.datasets.write_version(
        "d",
        pa.table({"x": x, "kind": rng.choice(["a", "b"], 400), "y": np.where(x > 0, "up", "down")}),
    )
    result = ws.training.train(
        "d", "y", model=model, params={"n_estimators": 30}, register="m", plots=False
    )
    assert result.metrics["roc_auc"] > 0.95
    served = ws.predict("m", [{"x": 2.0, "kind": "a"}, {"x": -2.0, "kind": None}])
    assert served.predictions == ["up", "down"]
    assert served.probabilities is not None
    assert set(served.probabilities[0]) == {"down", "up"}
    assert served.probabilities[0]["up"] > 0.5
    # the estimator's package is captured with the model, for whoever loads it
    dist = "xgboost-cpu" if model.startswith("xgboost") else "lightgbm"
    assert f"mloop.package.{dist}" in result.run.tags
    version = ws.registry.resolve("m")
    requirements = ws.registry.files(version)["requirements.txt"]
    assert dist in ws.artifacts.get_bytes(requirements).decode()


@pytest.mark.parametrize("model", ["xgboost.XGBRegressor", "lightgbm.LGBMRegressor"])
def test_boosting_regressors(sqlite_ws: Workspace, model: str) -> None:
    ws = sqlite_ws
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    ws.datasets.write_version("d", pa.table({"x": x, "y": 3 * x + rng.normal(0, 0.1, 400)}))
    result = ws.training.train("d", "y", model=model, params={"n_estimators": 50}, plots=False)
    assert result.metrics["r2"] > 0.8
