"""The application shell: health, readiness, metrics, OpenAPI, error shape, body limit."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from helpers import is_error
from mloop import __version__
from mloop.api import create_app
from mloop.api.middleware import BodyLimitMiddleware
from mloop.storage import HEAD_REVISION
from mloop.workspace import Workspace


def test_health_and_readiness(ws: Workspace) -> None:
    with TestClient(create_app(ws)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "schema_revision": HEAD_REVISION}


def test_readiness_fails_when_the_database_is_gone(sqlite_ws: Workspace) -> None:
    app = create_app(sqlite_ws, log_predictions=False)
    with TestClient(app) as client:
        db_file = sqlite_ws.home / "mloop.db"
        sqlite_ws.db.close()
        db_file.unlink()
        db_file.mkdir()  # a folder where the database was: nothing can open it
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["error"] == "STORAGE_ERROR"


def test_metrics_are_prometheus_text(sqlite_ws: Workspace) -> None:
    with TestClient(create_app(sqlite_ws)) as client:
        client.get("/healthz")
        client.get("/healthz")
        client.get("/no/such/route")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'mloop_requests_total{route="/healthz",status="200"} 2.0' in text
    assert 'mloop_requests_total{route="unmatched",status="404"} 1.0' in text
    assert "# TYPE mloop_predictions_total counter" in text
    assert "# TYPE mloop_request_latency_seconds histogram" in text
    assert "mloop_prediction_log_dropped 0.0" in text


def test_metrics_without_prediction_logging(sqlite_ws: Workspace) -> None:
    with TestClient(create_app(sqlite_ws, log_predictions=False)) as client:
        text = client.get("/metrics").text
    assert "# TYPE mloop_requests_total counter" in text
    assert "mloop_prediction_log_queued" not in text


def test_each_app_has_its_own_metrics(sqlite_ws: Workspace) -> None:
    with TestClient(create_app(sqlite_ws)) as first:
        first.get("/healthz")
    with TestClient(create_app(sqlite_ws)) as second:
        text = second.get("/metrics").text
    assert 'route="/healthz"' not in text


def test_openapi_lists_every_face_of_the_api(sqlite_ws: Workspace) -> None:
    with TestClient(create_app(sqlite_ws)) as client:
        spec = client.get("/openapi.json").json()
    assert spec["info"]["version"] == __version__
    paths = spec["paths"]
    assert "post" in paths["/v1/models/{ref}/predict"]
    predict = paths["/v1/models/{ref}/predict"]["post"]
    assert {"200", "404", "422"} <= set(predict["responses"])
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/training-runs",
        "/v1/models",
        "/v1/models/{name}/versions",
        "/v1/models/{name}/aliases/{alias}",
        "/v1/models/{ref}/resolve",
    ):
        assert path in paths, path


def test_unknown_routes_and_methods_have_the_error_shape(sqlite_ws: Workspace) -> None:
    with TestClient(create_app(sqlite_ws)) as client:
        is_error(client.get("/v1/nothing-here"), 404, "NOT_FOUND")
        is_error(client.delete("/v1/runs"), 405, "METHOD_NOT_ALLOWED")


def test_an_oversized_body_is_413_whether_declared_or_streamed(sqlite_ws: Workspace) -> None:
    app = BodyLimitMiddleware(create_app(sqlite_ws, log_predictions=False), limit=1000)
    big = {"rows": [{"amount": 1.0, "pad": "x" * 2000}]}
    with TestClient(app) as client:
        declared = client.post("/v1/models/fraud/predict", json=big)
        body = is_error(declared, 413, "PAYLOAD_TOO_LARGE")
        assert "1000 bytes" in body["message"]

        def chunks() -> Any:
            yield b'{"rows": [{"pad": "'
            for _ in range(10):
                yield b"x" * 200
            yield b'"}]}'

        streamed = client.post(
            "/v1/models/fraud/predict",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        is_error(streamed, 413, "PAYLOAD_TOO_LARGE")

        # under the limit the request goes through (here: to a 404 for the unknown model)
        small = client.post("/v1/models/fraud/predict", json={"rows": [{"amount": 1.0}]})
        is_error(small, 404, "NOT_FOUND")


def test_the_app_limits_bodies_by_default(sqlite_ws: Workspace) -> None:
    from mloop.api.middleware import MAX_BODY_BYTES

    app = create_app(sqlite_ws, log_predictions=False)
    with TestClient(app) as client:
        response = client.post(
            "/v1/models/fraud/predict",
            content=b"{}",
            headers={"content-type": "application/json", "content-length": str(MAX_BODY_BYTES + 1)},
        )
    is_error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("path", ["/healthz", "/v1/models", "/v1/runs"])
def test_every_route_passes_the_auth_dependency(sqlite_ws: Workspace, path: str) -> None:
    app = create_app(sqlite_ws, log_predictions=False)
    seen: list[str] = []

    @app.middleware("http")
    async def capture(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        seen.append(getattr(request.state, "actor", ""))
        return response

    with TestClient(app) as client:
        assert client.get(path).status_code == 200
    assert seen
    assert seen[0]
