"""Model packages: written, stored file by file, loaded back to predict the same."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LinearRegression, LogisticRegression

from mloop import IntegrityError, InvalidInput
from mloop.core.schema import Column
from mloop.models import (
    FLAVOR_SKLEARN,
    META_FILE,
    MODEL_FILE,
    ModelMeta,
    Signature,
    captured_dependencies,
    load_package,
    store_package,
    write_sklearn_package,
)
from mloop.storage import LocalArtifactStore


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _classifier() -> tuple[LogisticRegression, ModelMeta]:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    y = np.array(["no", "no", "no", "yes", "yes", "yes"])
    model = LogisticRegression().fit(X, y)
    signature = Signature(
        inputs=[Column(name="x", type="float")],
        target="y",
        target_type="string",
        task="classification",
        classes=["no", "yes"],
    )
    meta = ModelMeta(
        flavor=FLAVOR_SKLEARN,
        signature=signature,
        estimator="sklearn.linear_model.LogisticRegression",
        dependencies=captured_dependencies(),
        info={"note": "test"},
    )
    return model, meta


def test_captured_dependencies() -> None:
    deps = captured_dependencies()
    assert deps["python"] == platform.python_version()
    assert deps["scikit-learn"] == sklearn.__version__
    assert deps["numpy"] == np.__version__


def test_a_package_round_trips_and_predicts_the_same(store: LocalArtifactStore) -> None:
    model, meta = _classifier()
    files = write_sklearn_package(model, meta)
    assert set(files) == {MODEL_FILE, META_FILE, "MLmodel", "model.pkl", "requirements.txt"}
    assert ModelMeta.model_validate_json(files[META_FILE]) == meta

    digest, manifest = store_package(store, files)
    assert json.loads(store.get_bytes(digest)) == {"files": manifest}
    assert store_package(store, files) == (digest, manifest)  # content-addressed: same again

    loaded = load_package(store, digest)
    assert loaded.meta == meta
    assert loaded.is_classifier
    labels, probabilities = loaded.predict_rows([{"x": 0.5}, {"x": 4.5}])
    frame = pd.DataFrame({"x": [0.5, 4.5]})
    assert labels == model.predict(frame).tolist() == ["no", "yes"]
    assert all(type(label) is str for label in labels)  # plain Python, ready for JSON
    assert probabilities is not None
    expected = model.predict_proba(frame)
    for got, row in zip(probabilities, expected, strict=True):
        assert got == {"no": pytest.approx(row[0]), "yes": pytest.approx(row[1])}


def test_a_regressor_gives_no_probabilities(store: LocalArtifactStore) -> None:
    model = LinearRegression().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}), [0.0, 2.0, 4.0])
    _, meta = _classifier()
    meta = meta.model_copy(
        update={
            "signature": meta.signature.model_copy(
                update={"task": "regression", "classes": None, "target_type": "float"}
            )
        }
    )
    digest, _ = store_package(store, write_sklearn_package(model, meta))
    predictions, probabilities = load_package(store, digest).predict_rows([{"x": 3.0}])
    assert probabilities is None
    assert predictions == [pytest.approx(6.0)]
    assert isinstance(predictions[0], float)


def test_an_unknown_flavor_is_refused(store: LocalArtifactStore) -> None:
    model, meta = _classifier()
    files = write_sklearn_package(model, meta.model_copy(update={"flavor": "onnx"}))
    digest, _ = store_package(store, files)
    with pytest.raises(InvalidInput, match="flavor 'onnx'"):
        load_package(store, digest)


def test_an_unreadable_manifest_is_an_integrity_error(store: LocalArtifactStore) -> None:
    digest = store.put_bytes(b"not json")
    with pytest.raises(IntegrityError, match="unreadable"):
        load_package(store, digest)


def test_a_manifest_without_the_model_file_is_an_integrity_error(
    store: LocalArtifactStore,
) -> None:
    model, meta = _classifier()
    files = write_sklearn_package(model, meta)
    digest, _ = store_package(store, {META_FILE: files[META_FILE]})
    with pytest.raises(IntegrityError, match=f"lists no {MODEL_FILE}"):
        load_package(store, digest)


def test_a_package_is_also_an_mlflow_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MLmodel`` + ``model.pkl``: what ``mlflow.sklearn`` and ``mlflow.pyfunc`` load."""
    import pickle

    import yaml

    model, meta = _classifier()
    files = write_sklearn_package(model, meta)
    description = yaml.safe_load(files["MLmodel"])
    assert description["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert description["flavors"]["sklearn"]["serialization_format"] == "pickle"
    assert description["flavors"]["python_function"]["loader_module"] == "mlflow.sklearn"
    assert description["flavors"]["python_function"]["model_path"] == "model.pkl"
    frame = pd.DataFrame({"x": [0.5, 4.5]})
    assert pickle.loads(files["model.pkl"]).predict(frame).tolist() == ["no", "yes"]
    assert f"scikit-learn=={sklearn.__version__}" in files["requirements.txt"].decode()

    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    folder = tmp_path / "model"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    assert mlflow.sklearn.load_model(str(folder)).predict(frame).tolist() == ["no", "yes"]
    assert mlflow.pyfunc.load_model(str(folder)).predict(frame).tolist() == ["no", "yes"]
