"""``/v1/alerts``: create, list, get, change, delete, evaluate at a given time, history,
Prometheus rules; every mistake in the one error shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from helpers import is_error
from mloop.api import create_app
from mloop.monitoring import SeriesPoint, SeriesService
from mloop.monitoring.series import SeriesQuery
from mloop.workspace import Workspace

RULE: dict[str, Any] = {
    "name": "hot",
    "model": "scorer",
    "series": "knob",
    "op": ">",
    "threshold": 1,
    "window": "1m",
    "for": "0s",
}


@pytest.fixture
def client(ws: Workspace) -> Iterator[TestClient]:
    def knob(_service: SeriesService, q: SeriesQuery) -> list[SeriesPoint]:
        return [SeriesPoint(q.until - q.width, q.until, 5.0)]

    ws.series.register("knob", knob)
    with TestClient(create_app(ws, log_predictions=False)) as c:
        yield c


def test_rules_over_http(client: TestClient) -> None:
    created = client.post("/v1/alerts", json=RULE)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["for"], body["state"], body["enabled"]) == ("hot", "0s", "ok", True)
    assert [a["name"] for a in client.get("/v1/alerts").json()] == ["hot"]
    changed = client.patch("/v1/alerts/hot", json={"threshold": 2, "for": "5m"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["threshold"], changed.json()["for"]) == (2, "5m")
    client.patch("/v1/alerts/hot", json={"for": "0s"})
    events = client.post("/v1/alerts/evaluate", json={"at": "2026-01-05T12:00:00Z"})
    assert events.status_code == 200, events.text
    assert [e["kind"] for e in events.json()] == ["firing", "notified"]
    assert events.json()[0]["ts"].startswith("2026-01-05T12:00:00")
    assert client.get("/v1/alerts/hot").json()["state"] == "firing"
    history = client.get("/v1/alerts/hot/history", params={"limit": 1})
    assert [e["kind"] for e in history.json()] == ["notified"]
    assert len(client.get("/v1/alerts/history").json()) == 2
    disabled = client.patch("/v1/alerts/hot", json={"enabled": False})
    assert (disabled.json()["enabled"], disabled.json()["state"]) == (False, "ok")
    client.patch("/v1/alerts/hot", json={"enabled": True})
    rules = client.get("/v1/alerts/prometheus-rules")
    assert rules.status_code == 200
    assert rules.headers["content-type"].startswith("application/yaml")
    [rule] = yaml.safe_load(rules.text)["groups"][0]["rules"]
    assert rule["expr"] == 'mloop_alert_value{rule="hot"} > 2'
    metrics = client.get("/metrics").text
    assert 'mloop_alert_state{rule="hot",severity="warning"} 0.0' in metrics
    assert client.delete("/v1/alerts/hot").status_code == 204
    assert client.get("/v1/alerts").json() == []


def test_mistakes_are_4xx_with_a_message(client: TestClient) -> None:
    body = is_error(
        client.post("/v1/alerts", json={**RULE, "series": "nope"}), 400, "INVALID_INPUT"
    )
    assert "unknown series 'nope'" in body["message"]
    body = is_error(client.post("/v1/alerts", json={**RULE, "op": "!="}), 400, "INVALID_INPUT")
    assert "op must be one of" in body["message"]
    body = is_error(client.post("/v1/alerts", json={**RULE, "for": "-1m"}), 400, "INVALID_INPUT")
    assert "for '-1m'" in body["message"]
    assert client.post("/v1/alerts", json=RULE).status_code == 201
    is_error(client.post("/v1/alerts", json=RULE), 409, "ALREADY_EXISTS")
    is_error(client.get("/v1/alerts/cold"), 404, "NOT_FOUND")
    is_error(client.delete("/v1/alerts/cold"), 404, "NOT_FOUND")
    is_error(client.patch("/v1/alerts/cold", json={"threshold": 1}), 404, "NOT_FOUND")
    is_error(client.get("/v1/alerts/cold/history"), 404, "NOT_FOUND")
    is_error(client.patch("/v1/alerts/hot", json={"colour": "red"}), 422, "SCHEMA_MISMATCH")
    is_error(client.get("/v1/alerts/history", params={"limit": 0}), 422, "SCHEMA_MISMATCH")
