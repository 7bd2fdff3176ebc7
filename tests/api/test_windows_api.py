"""GET /v1/models/{ref}/windows/drift, /quality and /report over traffic served by the app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from helpers import drift_frame, is_error
from mloop.api import create_app
from mloop.workspace import Workspace

MODEL = "scorer"


@pytest.fixture
def client(sqlite_ws: Workspace) -> TestClient:
    ws = sqlite_ws
    ws.datasets.ingest(drift_frame(2000, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL,
        plots=False,
    )  # fmt: skip
    ws.deployments.create("live", {"variants": [{"name": "p", "model": f"{MODEL}@1"}]})
    return TestClient(create_app(ws))


def test_window_drift_quality_and_report(client: TestClient) -> None:
    shifted = drift_frame(1500, 2, shifted=True)
    with client:
        answer = client.post(
            "/v1/deployments/live/predict", json={"rows": shifted.drop("label").to_dicts()}
        )
        assert answer.status_code == 200, answer.text
        client.app.state.prediction_logger.flush()  # type: ignore[attr-defined]
        labels = [
            {"request_id": answer.json()["request_id"], "row_index": i, "label": v}
            for i, v in enumerate(shifted["label"].to_list())
        ]
        assert client.post("/v1/feedback", json={"labels": labels}).status_code == 200

        drift = client.get(f"/v1/models/{MODEL}/windows/drift", params={"window": "1h"})
        assert drift.status_code == 200, drift.text
        (window,) = drift.json()
        assert window["rows"] == 1500
        assert set(window["drifted_columns"]) == {"x", "cat"}  # what drift_frame shifts
        quality = client.get(f"/v1/models/{MODEL}/windows/quality", params={"last": 1})
        assert quality.status_code == 200, quality.text
        assert quality.json()[0]["rows"] == 1500
        report = client.get(f"/v1/models/{MODEL}/windows/report", params={"window": "1h"})
        assert report.status_code == 200, report.text
        assert report.headers["content-type"].startswith("text/html")
        assert "<svg" in report.text
        assert "accuracy" in report.text  # the live performance section

        is_error(client.get("/v1/models/nobody/windows/drift"), 404, "NOT_FOUND")
        is_error(
            client.get(f"/v1/models/{MODEL}/windows/drift", params={"window": "soon"}),
            400,
            "INVALID_INPUT",
        )
        bad = client.get(f"/v1/models/{MODEL}/windows/drift", params={"against": "yesterday"})
        assert bad.status_code == 422


def test_absurd_numbers_are_clear_errors_not_crashes(client: TestClient) -> None:
    with client:
        for path in ("performance", "windows/drift", "windows/quality", "decay"):
            is_error(
                client.get(f"/v1/models/{MODEL}/{path}", params={"window": "99999999999d"}),
                400,
                "INVALID_INPUT",
            )
        huge = {"labels": [{"request_id": "x", "row_index": 10**20, "label": 1}]}
        assert client.post("/v1/feedback", json=huge).status_code == 422
        policy = {
            "triggers": [{"type": "labels", "min_new": 1}],
            "recipe": "retrain",
            "cooldown": "99999999999d",
        }
        body = is_error(client.put(f"/v1/loop/{MODEL}/policy", json=policy), 400, "INVALID_INPUT")
        assert "cooldown" in body["message"]
