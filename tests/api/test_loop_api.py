"""The closed loop over REST: /v1/loop."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from helpers import is_error
from loop_helpers import LOGREG, concept
from mloop.api import create_app
from mloop.workspace import Workspace

POLICY = {"triggers": [{"type": "labels", "min_new": 1000}], "recipe": "retrain"}


@pytest.fixture
def client(ws: Workspace) -> TestClient:
    ws.datasets.ingest(concept(500, seed=1), name="loans")
    ws.training.train(
        "loans", "label", model=LOGREG, register="loans", alias="champion", plots=False
    )
    return TestClient(create_app(ws, log_predictions=False))


def test_policy_status_trigger_and_runs(client: TestClient) -> None:
    assert client.get("/v1/loop").json() == []
    answer = client.put("/v1/loop/loans/policy", json=POLICY)
    assert answer.status_code == 200, answer.text
    assert answer.json()["triggers"][0] == {"type": "labels", "min_new": 1000}
    assert client.get("/v1/loop/loans/policy").json()["recipe"]["name"] == "retrain"

    answer = client.post("/v1/loop/loans/trigger", json={"reason": "quarterly refresh"})
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert (run["state"], run["trigger"], run["reason"]) == (
        "promoted",
        "manual",
        "quarterly refresh",
    )
    (status,) = client.get("/v1/loop").json()
    assert (status["model"], status["state"], status["champion"]) == ("loans", "idle", 2)
    runs = client.get("/v1/loop/runs", params={"model": "loans"}).json()
    assert [r["id"] for r in runs] == [run["id"]]
    assert client.get(f"/v1/loop/runs/{run['id']}").json()["candidate_version"] == 2

    assert client.delete("/v1/loop/loans/policy").status_code == 204
    is_error(client.get("/v1/loop/loans/policy"), 404, "NOT_FOUND")


def test_bad_requests_are_clear_errors(client: TestClient) -> None:
    body = is_error(
        client.put("/v1/loop/loans/policy", json={**POLICY, "recipe": "nope"}),
        400,
        "INVALID_INPUT",
    )
    assert "no training recipe named 'nope'" in body["message"]
    body = is_error(
        client.put("/v1/loop/loans/policy", json={**POLICY, "triggers": "often"}),
        400,
        "INVALID_INPUT",
    )
    assert "triggers" in body["message"]
    is_error(client.put("/v1/loop/ghost/policy", json=POLICY), 404, "NOT_FOUND")
    is_error(client.post("/v1/loop/loans/trigger"), 404, "NOT_FOUND")  # no policy
    is_error(client.get("/v1/loop/runs/nope"), 404, "NOT_FOUND")
    assert client.get("/v1/loop/runs", params={"limit": 0}).status_code == 422
