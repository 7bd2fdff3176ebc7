"""A model version exported to a folder loads and predicts without the workspace."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from helpers import run_cli
from mloop.core.errors import IntegrityError, InvalidInput
from mloop.models import EXPORT_FILE, load_folder
from mloop.workspace import Workspace


def _train(ws: Workspace) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    ws.datasets.write_version(
        "d",
        pa.table({"x": x, "kind": rng.choice(["a", "b"], 300), "y": np.where(x > 0, "up", "down")}),
    )
    ws.training.train(
        "d", "y", model="sklearn.ensemble.HistGradientBoostingClassifier", register="m"
    )


def test_exported_folder_loads_without_the_workspace(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    _train(ws)
    rows = [{"x": 1.5, "kind": "a"}, {"x": -2.0, "kind": None}]
    served = ws.predict("m", rows)
    code, out, _ = run_cli(ws, "models", "export", "m@champion", str(tmp_path / "out"), "--json")
    assert code == 0
    assert json.loads(out)["model"] == "m@1"
    described = json.loads((tmp_path / "out" / EXPORT_FILE).read_text())
    assert (described["model"], described["version"]) == ("m", 1)
    assert described["signature"]["target"] == "y"
    assert "roc_auc" in described["info"]["metrics"]
    # the workspace is gone: the folder alone predicts the same
    home = ws.home
    ws.close()
    shutil.rmtree(home)
    loaded = load_folder(tmp_path / "out")
    labels, probabilities = loaded.predict_rows(rows)
    assert labels == served.predictions
    assert probabilities == served.probabilities
    # and MLflow loads it as its own
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    model = mlflow_pyfunc.load_model(str(tmp_path / "out"))
    import pandas as pd

    assert list(model.predict(pd.DataFrame(rows))) == labels


def test_export_refuses_a_used_folder_and_load_refuses_corrupt_files(
    sqlite_ws: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_ws
    _train(ws)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not an empty folder"):
        ws.registry.export("m", tmp_path / "used")
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
    # nothing half-written left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used", "ws"]
    with pytest.raises(InvalidInput, match="not an exported model"):
        load_folder(tmp_path / "used")
    folder = ws.registry.export("m", tmp_path / "out")
    model_file = folder / "model.joblib"
    model_file.write_bytes(model_file.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match="corrupt"):
        load_folder(folder)
