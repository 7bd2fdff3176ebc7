"""Models through the unmodified MLflow client: ``mlflow.sklearn.log_model`` (MLflow 3's logged
models), the registry calls, ``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` — for a model
the client logged and for one mloop trained — and that they are ordinary mloop models."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import run_cli
from mloop.demo.data import transactions
from mloop.models import MLMODEL_FILE, frame_from_rows
from mloop.workspace import Workspace

pytest.importorskip("mlflow")
PIP = ["scikit-learn"]  # given, so log_model skips inferring requirements (seconds)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 3))
    return X, (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)


def test_log_model_register_alias_and_load(
    mlflow_client: Any, server_ws: Workspace, mlflow_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    name = _name("sk")
    X, y = _data()
    model = LogisticRegression().fit(X, y)
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, pip_requirements=PIP
        )
    assert str(info.registered_model_version) == "1"
    assert info.model_uri == f"models:/{info.model_id}"

    logged = client.get_logged_model(info.model_id)
    assert logged.status.to_proto() == mlflow.entities.LoggedModelStatus.READY.to_proto()
    assert logged.source_run_id == run.info.run_id
    assert logged.params == {"C": "1.0"}
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [info.model_id]

    client.set_registered_model_alias(name, "prod", 1)
    by_alias = client.get_model_version_by_alias(name, "prod")
    assert (by_alias.version, by_alias.run_id) == ("1", run.info.run_id)
    assert "prod" in by_alias.aliases

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@prod")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    again = mlflow.sklearn.load_model(info.model_uri)  # the logged model itself
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(by_run.predict(X), model.predict(X))

    # an ordinary row of mloop's registry, holding the logged model's files
    assert name in [m.name for m in server_ws.registry.list_models()]
    version = server_ws.registry.resolve(f"{name}@prod")
    assert (version.flavor, version.run_id, version.logged_model_id) == (
        "mlflow",
        run.info.run_id,
        info.model_id,
    )
    assert version.signature is None
    files = server_ws.registry.files(version)
    assert MLMODEL_FILE in files
    assert set(files) == set(server_ws.logged_models.files(info.model_id))
    assert server_ws.logged_models.outputs([run.info.run_id])[run.info.run_id][0].model_id == (
        info.model_id
    )
    # mloop's aliases and MLflow's are the same
    server_ws.registry.set_alias(name, "canary", 1)
    assert client.get_model_version_by_alias(name, "canary").version == "1"
    if mlflow_server.database_url:
        monkeypatch.setenv("MLOOP_DATABASE_URL", mlflow_server.database_url)
    code, out, _ = run_cli(server_ws, "models", "show", name)
    assert code == 0
    assert "canary" in out


def test_registry_calls(mlflow_client: Any, server_ws: Workspace, tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    name = _name("reg")
    X, y = _data(1)
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)
    # MLflow 2's way: the model's files in the run's artifacts, then a version from them
    with mlflow.start_run() as run:
        mlflow.sklearn.save_model(
            model, str(tmp_path / "m"), pip_requirements=PIP, serialization_format="cloudpickle"
        )
        mlflow.log_artifacts(str(tmp_path / "m"), artifact_path="model")

    created = client.create_registered_model(name, tags={"team": "risk"}, description="trees")
    assert (created.name, created.tags, created.description) == (name, {"team": "risk"}, "trees")
    v1 = client.create_model_version(
        name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags={"k": "v"}
    )
    v2 = client.create_model_version(name, f"runs:/{run.info.run_id}/model")
    assert (v1.version, v2.version, v1.status, v1.tags) == ("1", "2", "READY", {"k": "v"})

    client.update_registered_model(name, description="decision trees")
    client.update_model_version(name, "2", description="second")
    client.set_registered_model_tag(name, "owner", "me")
    client.delete_registered_model_tag(name, "team")
    client.set_model_version_tag(name, "2", "checked", "yes")
    client.delete_model_version_tag(name, "1", "k")
    got = client.get_registered_model(name)
    assert (got.description, got.tags) == ("decision trees", {"owner": "me"})
    assert [v.version for v in got.latest_versions] == ["2"]
    assert got.aliases == {"champion": "1"}  # mloop: a new model's first version is champion
    mv2 = client.get_model_version(name, "2")
    assert (mv2.description, mv2.tags) == ("second", {"checked": "yes"})
    assert client.get_model_version(name, "1").tags == {}

    found = client.search_registered_models(filter_string=f"name = '{name}'")
    assert [m.name for m in found] == [name]
    found = client.search_registered_models(filter_string="tags.owner = 'me'")
    assert name in [m.name for m in found]
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["2", "1"]
    by_run = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert {(v.name, v.version) for v in by_run} == {(name, "1"), (name, "2")}
    with pytest.warns(FutureWarning):  # stages are deprecated; mloop has none
        assert [v.version for v in client.get_latest_versions(name)] == ["2"]
    assert client.get_model_version_download_uri(name, "1").startswith("mlflow-artifacts:/")

    loaded = mlflow.pyfunc.load_model(f"models:/{name}/1")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    latest = mlflow.sklearn.load_model(f"models:/{name}/latest")
    np.testing.assert_array_equal(latest.predict(X), model.predict(X))

    client.delete_model_version(name, "1")
    assert [v.version for v in server_ws.registry.versions(name)] == [2]
    renamed = _name("renamed")
    client.rename_registered_model(name, renamed)
    assert server_ws.registry.get_model(renamed).latest_version == 2
    client.delete_registered_model(renamed)
    assert renamed not in [m.name for m in server_ws.registry.list_models()]


def test_a_model_trained_by_mloop_loads_through_mlflow(
    mlflow_client: Any, server_ws: Workspace
) -> None:
    mlflow = mlflow_client
    name = _name("native")
    if not server_ws.datasets.list():
        server_ws.datasets.ingest(transactions(300, seed=3), name="tx")
    server_ws.training.train(
        "tx",
        "is_fraud",
        model="sklearn.linear_model.LogisticRegression",
        exclude=["transaction_id"],
        register=name,
    )
    rows = transactions(25, seed=4).drop("transaction_id", "is_fraud").to_dicts()
    expected = server_ws.predict(name, rows).predictions
    version = server_ws.registry.resolve(name)
    assert version.signature is not None
    frame = frame_from_rows(rows, version.signature)

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert loaded.predict(frame).tolist() == expected
    pipeline = mlflow.sklearn.load_model(f"models:/{name}/1")
    assert pipeline.predict(frame).tolist() == expected
    mv = mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    assert mv.source == f"runs:/{version.run_id}/model"
