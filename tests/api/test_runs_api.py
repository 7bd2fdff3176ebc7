"""Experiments, runs and training over REST."""

from __future__ import annotations

from typing import Any

import polars as pl
from fastapi.testclient import TestClient

from helpers import is_error
from mloop.api import create_app
from mloop.core.ids import new_id
from mloop.demo.data import transactions
from mloop.workspace import Workspace

HGB = "sklearn.ensemble.HistGradientBoostingClassifier"


def test_runs_are_listed_and_shown(ws: Workspace) -> None:
    a = ws.tracking.start_run("exp-a", tags={"t": "1"})
    ws.tracking.log_param(a.id, "p", 3)
    for step, value in enumerate([0.9, 0.5]):
        ws.tracking.log_metric(a.id, "loss", value, step=step)
    ws.tracking.log_artifact_bytes(a.id, "out/data.bin", b"\x00\x01bytes")
    ws.tracking.end_run(a.id)
    b = ws.tracking.start_run("exp-b")
    with TestClient(create_app(ws)) as client:
        names = [e["name"] for e in client.get("/v1/experiments").json()]
        assert names == ["Default", "exp-a", "exp-b"]
        assert [r["id"] for r in client.get("/v1/runs").json()] == [b.id, a.id]
        assert [r["id"] for r in client.get("/v1/runs?experiment=exp-a").json()] == [a.id]
        assert [r["id"] for r in client.get("/v1/runs?status=RUNNING").json()] == [b.id]
        assert [r["id"] for r in client.get("/v1/runs?limit=1").json()] == [b.id]

        run = client.get(f"/v1/runs/{a.id}").json()
        assert run["status"] == "FINISHED"
        assert (run["params"], run["metrics"], run["tags"]) == (
            {"p": "3"},
            {"loss": 0.5},
            {"t": "1"},
        )
        assert [x["path"] for x in run["artifacts"]] == ["out/data.bin"]

        history = client.get(f"/v1/runs/{a.id}/metrics/loss").json()
        assert [(p["step"], p["value"]) for p in history] == [(0, 0.9), (1, 0.5)]

        blob = client.get(f"/v1/runs/{a.id}/artifacts/out/data.bin")
        assert blob.status_code == 200
        assert blob.content == b"\x00\x01bytes"

        is_error(client.get(f"/v1/runs/{new_id()}"), 404, "NOT_FOUND")
        is_error(client.get("/v1/runs/not-an-id"), 400, "INVALID_INPUT")
        is_error(client.get(f"/v1/runs/{a.id}/artifacts/none.bin"), 404, "NOT_FOUND")
        is_error(client.get("/v1/runs?experiment=nope"), 404, "NOT_FOUND")
        is_error(client.get("/v1/runs?status=DONE"), 400, "INVALID_INPUT")
        is_error(client.get("/v1/runs?limit=0"), 422, "SCHEMA_MISMATCH")


def test_train_and_register_over_rest(ws: Workspace) -> None:
    version = ws.datasets.ingest(transactions(1000, seed=41), name="tx")
    with TestClient(create_app(ws)) as client:
        response = client.post(
            "/v1/training-runs",
            json={
                "dataset": "tx@1",
                "target": "is_fraud",
                "model": HGB,
                "params": {"max_iter": 20},
                "exclude": ["transaction_id"],
                "experiment": "rest",
                "register": "fraud",
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        run_id = body["run"]["id"]
        assert body["run"]["status"] == "FINISHED"
        assert body["run"]["experiment"] == "rest"
        assert body["run"]["params"]["estimator"] == HGB
        assert body["run"]["params"]["model.max_iter"] == "20"
        assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(body["metrics"])
        assert body["metrics"] == {k: body["run"]["metrics"][k] for k in body["metrics"]}
        assert (body["model_version"]["version"], body["alias"]) == (1, "champion")
        assert body["model_version"]["run_id"] == run_id

        rows = transactions(3, seed=42).drop("transaction_id", "is_fraud").to_dicts()
        predicted = client.post("/v1/models/fraud/predict", json={"rows": rows})
        assert predicted.status_code == 200
        assert predicted.json()["predictions"] == ws.predict("fraud", rows).predictions

    run = ws.tracking.get_run(run_id)
    assert run.status == "FINISHED"
    edges = ws.lineage.upstream("run", run_id)
    assert ("dataset_version", version.id) in [(e.src.type, e.src.id) for e in edges]


def test_bad_training_requests_are_refused_before_any_run(ws: Workspace) -> None:
    ws.datasets.ingest(transactions(200, seed=43), name="tx")
    ws.datasets.ingest(pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}), name="tiny")
    ws.datasets.ingest(
        pl.DataFrame({"x": [float(i) for i in range(10)], "y": [1] * 10}), name="one-class"
    )
    base = {"dataset": "tx", "target": "is_fraud", "exclude": ["transaction_id"]}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"dataset": "nope"}, 404, "NOT_FOUND", "dataset 'nope' does not exist"),
        ({"dataset": "tx@4"}, 404, "NOT_FOUND", "no version 4"),
        ({"target": "fraud"}, 400, "INVALID_INPUT", "its columns: transaction_id, amount"),
        ({"model": "sklearn.nope.Model"}, 400, "INVALID_INPUT", "unknown estimator"),
        ({"model": HGB, "params": {"max_itr": 5}}, 400, "INVALID_INPUT", "max_itr"),
        ({"model": HGB, "params": {"max_iter": -1}}, 400, "INVALID_INPUT", "max_iter"),
        (
            {"dataset": "one-class", "target": "y", "exclude": []},
            400,
            "INVALID_INPUT",
            "one class only",
        ),
        (
            {"target": "merchant_category", "model": "sklearn.linear_model.Ridge"},
            400,
            "INVALID_INPUT",
            "a regressor needs numbers",
        ),
        ({"dataset": "tiny", "target": "y", "exclude": []}, 400, "INVALID_INPUT", "too few"),
        ({"register": "bad name!"}, 400, "INVALID_INPUT", "model name"),
        ({"register": "ok", "alias": "latest"}, 400, "INVALID_INPUT", "reserved"),
        ({"target": None}, 422, "SCHEMA_MISMATCH", "target"),
        ({"params": [1, 2]}, 422, "SCHEMA_MISMATCH", "params"),
    ]
    with TestClient(create_app(ws)) as client:
        for change, status, code, fragment in cases:
            response = client.post("/v1/training-runs", json={**base, **change})
            body = is_error(response, status, code)
            assert fragment in body["message"], (change, body)
    assert ws.tracking.list_runs() == []
    assert ws.registry.list_models() == []
