"""POST /v1/feedback for predictions served through the app (the request_id a predict response
carries), GET /v1/models/{name}/performance and /decay; every refusal a JSON error."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from helpers import drift_frame, is_error
from mloop.api import create_app
from mloop.workspace import Workspace

MODEL = "scorer"


@pytest.fixture
def ws(ws: Workspace) -> Workspace:
    ws.datasets.ingest(drift_frame(2000, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL
    )
    ws.deployments.create("live", {"variants": [{"name": "p", "model": f"{MODEL}@1"}]})
    return ws


def _labels(request_id: str, values: list[Any]) -> dict[str, Any]:
    return {
        "labels": [
            {"request_id": request_id, "row_index": i, "label": v} for i, v in enumerate(values)
        ]
    }


def test_labels_for_served_predictions(ws: Workspace) -> None:
    frame = drift_frame(120, 2)
    rows, truth = frame.drop("label").to_dicts(), frame["label"].to_list()
    with TestClient(create_app(ws)) as client:
        # through the data plane's fast path and through the registry's route
        served = client.post("/v1/deployments/live/predict", json={"rows": rows[:60]})
        assert served.status_code == 200, served.text
        direct = client.post(f"/v1/models/{MODEL}/predict", json={"rows": rows[60:]})
        assert direct.status_code == 200, direct.text
        # sent at once: the prediction log (written off the request path) is flushed first
        first = client.post("/v1/feedback", json=_labels(served.json()["request_id"], truth[:60]))
        assert first.status_code == 200, first.text
        assert first.json() == {"accepted": 60, "replaced": 0, "source": "api"}
        whole = {"labels": [{"request_id": direct.json()["request_id"], "labels": truth[60:]}]}
        assert client.post("/v1/feedback", json=whole).json()["accepted"] == 60
        again = client.post("/v1/feedback", json=_labels(served.json()["request_id"], truth[:1]))
        assert again.json() == {"accepted": 1, "replaced": 1, "source": "api"}

        windows = client.get(f"/v1/models/{MODEL}/performance", params={"window": "1h"})
        assert windows.status_code == 200, windows.text
        (window,) = windows.json()
        assert (window["version"], window["predictions"], window["labeled"]) == (1, 120, 120)
        predicted = served.json()["predictions"] + direct.json()["predictions"]
        accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / 120
        assert window["metrics"]["accuracy"] == pytest.approx(accuracy)
        assert "roc_auc" in window["metrics"]
        assert client.get(f"/v1/models/{MODEL}/performance?last=1").json() == [window]

        decay = client.get(f"/v1/models/{MODEL}/decay", params={"min_labels": 500})
        assert decay.status_code == 200, decay.text
        body = decay.json()
        assert (body["verdict"], body["decayed"], body["labeled"]) == (False, False, 120)
        assert "fewer than 500" in body["reason"]
        flipped = [1 - t for t in truth[:60]]
        client.post("/v1/feedback", json=_labels(served.json()["request_id"], flipped))
        client.post(
            "/v1/feedback",
            json={
                "labels": [
                    {
                        "request_id": direct.json()["request_id"],
                        "labels": [1 - t for t in truth[60:]],
                    }
                ]
            },
        )
        decayed = client.get(f"/v1/models/{MODEL}/decay", params={"min_labels": 100}).json()
        assert decayed["decayed"] is True, decayed


def test_refusals_are_json_errors(ws: Workspace) -> None:
    with TestClient(create_app(ws)) as client:
        served = client.post(
            "/v1/deployments/live/predict",
            json={"rows": drift_frame(3, 3, labelled=False).to_dicts()},
        )
        rid = served.json()["request_id"]
        unknown = client.post("/v1/feedback", json=_labels("ghost-request", [1]))
        assert "ghost-request" in is_error(unknown, 404, "NOT_FOUND")["message"]
        wrong = client.post("/v1/feedback", json=_labels(rid, [1, "cat", 0]))
        assert "not a class" in is_error(wrong, 422, "SCHEMA_MISMATCH")["message"]
        mixed = client.post(
            "/v1/feedback",
            json={"labels": [*_labels(rid, [1])["labels"], {"request_id": "ghost", "label": 0}]},
        )
        is_error(mixed, 404, "NOT_FOUND")
        for body in (
            {},
            {"labels": []},
            {"labels": [{"row_index": 0, "label": 1}]},
            {"labels": [{"request_id": rid, "row_index": -1, "label": 1}]},
            {"labels": [{"request_id": rid, "rowindex": 1, "label": 1}]},
        ):
            is_error(client.post("/v1/feedback", json=body), 422, "SCHEMA_MISMATCH")
        is_error(
            client.post("/v1/feedback", json={"labels": [{"request_id": rid}]}),
            400,
            "INVALID_INPUT",
        )
        is_error(
            client.post("/v1/feedback", content=b"{", headers={"content-type": "application/json"}),
            400,
            "INVALID_INPUT",
        )
        is_error(client.get(f"/v1/models/{MODEL}/performance?window=soon"), 400, "INVALID_INPUT")
        is_error(client.get("/v1/models/nobody/performance"), 404, "NOT_FOUND")
        is_error(client.get(f"/v1/models/{MODEL}/decay?metric=vibes"), 400, "INVALID_INPUT")
        # nothing of any refused batch was written
        performance = client.get(f"/v1/models/{MODEL}/performance").json()
        assert [w["labeled"] for w in performance] == [0]
