"""Bad input through the MLflow client gets MLflow's error codes — and never a 5xx, which the
client would retry for minutes. The route sweep runs in-process over every MLflow route."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mloop.api import create_app
from mloop.api import mlflow as mlflow_api
from mloop.workspace import Workspace

pytest.importorskip("mlflow")


def _raises(code: str, status: int, call: Any, *args: Any, **kwargs: Any) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as caught:
        call(*args, **kwargs)
    assert caught.value.error_code == code, caught.value.message
    assert caught.value.get_http_status_code() == status
    return str(caught.value.message)


def test_client_mistakes_get_mlflow_error_codes(mlflow_client: Any) -> None:
    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    missing = uuid.uuid4().hex
    _raises("RESOURCE_DOES_NOT_EXIST", 404, client.get_run, missing)
    _raises("RESOURCE_DOES_NOT_EXIST", 404, client.log_param, missing, "p", "1")
    _raises("RESOURCE_DOES_NOT_EXIST", 404, client.get_metric_history, missing, "loss")
    _raises("RESOURCE_DOES_NOT_EXIST", 404, client.get_experiment, uuid.uuid4().hex)
    _raises("RESOURCE_DOES_NOT_EXIST", 404, client.get_registered_model, "no-such-model")
    _raises("RESOURCE_DOES_NOT_EXIST", 404, client.get_model_version_by_alias, "nope", "prod")

    name = f"dup-{uuid.uuid4().hex[:8]}"
    client.create_experiment(name)
    _raises("RESOURCE_ALREADY_EXISTS", 400, client.create_experiment, name)
    client.create_registered_model(name)
    _raises("RESOURCE_ALREADY_EXISTS", 400, client.create_registered_model, name)

    with mlflow.start_run() as run:
        mlflow.log_param("alpha", "1")
        mlflow.log_param("alpha", "1")  # the same value again is fine
        message = _raises("INVALID_PARAMETER_VALUE", 400, mlflow.log_param, "alpha", "2")
        assert "alpha" in message
        _raises(
            "INVALID_PARAMETER_VALUE",
            400,
            mlflow.search_runs,
            filter_string="metrics.loss >",
        )
        _raises(
            "INVALID_PARAMETER_VALUE",
            400,
            mlflow.search_runs,
            filter_string="params.a = 'x' OR params.b = 'y'",
        )
        _raises("INVALID_PARAMETER_VALUE", 400, mlflow.search_runs, order_by=["metrics.x SIDEWAYS"])
        message = _raises("INVALID_PARAMETER_VALUE", 400, mlflow.log_param, "long", "x" * 7000)
        assert "6000" in message  # the limit, as MLflow's
        mlflow.log_param("longest", "x" * 6000)
    assert len(client.get_run(run.info.run_id).data.params["longest"]) == 6000

    # mloop refuses changes to a finished run (MLflow allows them): the client sees 400
    # INVALID_PARAMETER_VALUE; resuming the run (start_run(run_id=...)) lifts it
    message = _raises("INVALID_PARAMETER_VALUE", 400, client.log_param, run.info.run_id, "b", "1")
    assert "FINISHED" in message
    _raises("INVALID_PARAMETER_VALUE", 400, client.log_metric, run.info.run_id, "m", 1.0)
    _raises("INVALID_PARAMETER_VALUE", 400, client.set_tag, run.info.run_id, "t", "v")

    _raises("INVALID_PARAMETER_VALUE", 400, client.set_registered_model_alias, name, "v1", 1)
    _raises("INVALID_PARAMETER_VALUE", 400, client.delete_experiment, "0")


def test_raw_requests_get_mlflow_error_codes(mlflow_client: Any, mlflow_server: Any) -> None:
    url = f"{mlflow_server.url}/api/2.0/mlflow"
    with mlflow_client.start_run() as run:
        run_id = run.info.run_id
        oversized = httpx.post(
            f"{url}/runs/log-parameter", json={"run_id": run_id, "key": "k", "value": "x" * 7000}
        )
        bad_metric = httpx.post(
            f"{url}/runs/log-metric",
            json={"run_id": run_id, "key": "m", "value": "high", "timestamp": 0},
        )
        bad_json = httpx.post(f"{url}/runs/log-batch", content=b"{not json")
        wrong_type = httpx.post(f"{url}/runs/log-batch", json={"run_id": run_id, "params": 3})
    for response in (oversized, bad_metric, wrong_type):
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert (bad_json.status_code, bad_json.json()["error_code"]) == (400, "MALFORMED_REQUEST")
    unknown = httpx.get(f"{url}/no/such/endpoint")
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    artifact = httpx.get(f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/y")
    assert artifact.status_code == 400
    assert set(artifact.json()) == {"error_code", "message"}


# -- the sweep ---------------------------------------------------------------------------------

GARBAGE: list[Any] = [
    None,
    {},
    {
        "run_id": 5,
        "experiment_id": ["x"],
        "name": {"a": 1},
        "version": "one",
        "key": None,
        "value": [],
        "tags": "t",
        "metrics": [{"key": "m", "value": {}}],
        "params": [1, 2],
        "experiment_ids": 7,
        "max_results": -1,
        "page_token": "%%%",
        "status": "SIDEWAYS",
        "source": "s3://bucket/model",
        "models": [{"model_id": 1}],
        "datasets": [{"dataset": "x"}],
        "order_by": [{"field_name": 3}],
    },
    {
        "run_id": "f" * 32,
        "run_uuid": "f" * 32,
        "experiment_id": "f" * 32,
        "experiment_name": "nope",
        "name": "nope",
        "new_name": "nope2",
        "alias": "prod",
        "version": "3",
        "key": "k",
        "value": "v",
        "metric_key": "m",
        "source": "models:/m-" + "f" * 32,
        "model_json": "{",
        "status": "LOGGED_MODEL_READY",
        "filter": "name = ",
    },
]


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    ws = Workspace.open(tmp_path_factory.mktemp("sweep") / "ws")
    try:
        with TestClient(create_app(ws, log_predictions=False)) as client:
            yield client
    finally:
        ws.close()


def _mlflow_routes() -> list[tuple[str, str]]:
    """Every MLflow route, with its path parameters filled in."""
    areas: list[tuple[str, APIRouter]] = [
        ("/api/2.0/mlflow", mlflow_api.tracking.router),
        ("/api/2.0/mlflow", mlflow_api.logged_models.router),
        ("/api/2.0/mlflow", mlflow_api.registry.router),
        ("/api/2.0/mlflow-artifacts", mlflow_api.artifacts.router),
        ("/api/3.0/mlflow", mlflow_api.server),
        ("/ajax-api/2.0/mlflow", mlflow_api.unknown),
    ]
    found = []
    for prefix, router in areas:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            path = prefix + route.path
            path = path.replace("{path:path}", "0/" + "e" * 32 + "/artifacts/a.txt")
            path = path.replace("{model_id}", "m-" + "e" * 32).replace("{key:path}", "k")
            found.extend((method, path) for method in sorted(route.methods))
    assert len(found) > 60
    return found


@pytest.mark.parametrize(("method", "path"), _mlflow_routes())
def test_no_route_answers_a_client_mistake_with_a_5xx(
    app_client: TestClient, method: str, path: str
) -> None:
    for body in GARBAGE:
        if method == "GET":
            query = {k: str(v) for k, v in (body or {}).items()}
            response = app_client.get(path, params=query)
        else:
            response = app_client.request(method, path, json=body)
        assert response.status_code < 500, (method, path, body, response.text)
        if response.status_code >= 400:
            payload = response.json()
            assert set(payload) == {"error_code", "message"}, payload
            assert payload["message"]
    broken = app_client.request(method, path, content=b"{oops", params={"path": "0"})
    assert broken.status_code < 500, broken.text
