"""The registry and prediction over REST: TestClient over create_app(ws)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from helpers import is_error
from mloop.api import create_app
from mloop.core.ids import is_id, new_id
from mloop.demo.data import transactions
from mloop.models import frame_from_rows
from mloop.serving import MAX_ROWS_PER_REQUEST
from mloop.storage import tables
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


def _train(ws: Workspace, register: str | None = "fraud", **params: Any) -> str:
    if not ws.datasets.list():
        ws.datasets.ingest(transactions(400, seed=31), name="tx")
    result = ws.training.train(
        "tx",
        "is_fraud",
        model=LOGREG,
        params=params,
        exclude=["transaction_id"],
        register=register,
    )
    return result.run.id


def _rows(n: int, seed: int = 32) -> list[dict[str, Any]]:
    return transactions(n, seed=seed).drop("transaction_id", "is_fraud").to_dicts()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, TestClient]]:
    """One SQLite workspace with a served model, for the many request-shape checks."""
    home = tmp_path_factory.mktemp("served") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home.parent)
        for key in [k for k in __import__("os").environ if k.startswith("MLOOP_")]:
            if key != "MLOOP_TEST_PG_URL":
                mp.delenv(key)
        ws = Workspace.open(home)
    _train(ws)
    try:
        with TestClient(create_app(ws, log_predictions=False)) as client:
            yield ws, client
    finally:
        ws.close()


# -- the registry ----------------------------------------------------------------------------


def test_register_list_show_and_alias(ws: Workspace) -> None:
    first = _train(ws, register=None)
    second = _train(ws, register=None, C=0.5)
    with TestClient(create_app(ws)) as client:
        made = client.post("/v1/models/fraud/versions", json={"run_id": first})
        assert made.status_code == 201, made.text
        assert (made.json()["version"], made.json()["aliases"]) == (1, ["champion"])
        made = client.post(
            "/v1/models/fraud/versions", json={"run_id": second, "description": "smaller C"}
        )
        assert (made.json()["version"], made.json()["aliases"]) == (2, [])
        assert made.json()["description"] == "smaller C"

        listed = client.get("/v1/models").json()
        assert [(m["name"], m["latest_version"], m["aliases"]) for m in listed] == [
            ("fraud", 2, {"champion": 1})
        ]
        assert client.get("/v1/models/fraud").json()["latest_version"] == 2
        versions = client.get("/v1/models/fraud/versions").json()
        assert [(v["version"], v["run_id"]) for v in versions] == [(1, first), (2, second)]

        moved = client.put(
            "/v1/models/fraud/aliases/champion", json={"version": 2, "reason": "better"}
        )
        assert moved.status_code == 200
        assert (moved.json()["version"], moved.json()["aliases"]) == (2, ["champion"])
        assert client.get("/v1/models/fraud/resolve").json()["version"] == 2
        assert client.get("/v1/models/fraud@1/resolve").json()["version"] == 1
        assert client.get("/v1/models/fraud@latest/resolve").json()["version"] == 2
        assert client.get("/v1/models/fraud@champion/resolve").json()["run_id"] == second

        assert client.delete("/v1/models/fraud/aliases/champion").status_code == 204
        assert client.get("/v1/models/fraud").json()["aliases"] == {}
    audit = [r.detail for r in ws.audit.list(object_type="model", object_id="fraud")]
    assert {"alias": "champion", "version": 2, "previous": 1, "reason": "better"} in audit


def test_registry_errors(ws: Workspace) -> None:
    run_id = _train(ws, register="fraud")
    bare = ws.tracking.start_run().id
    with TestClient(create_app(ws)) as client:
        is_error(client.get("/v1/models/nope"), 404, "NOT_FOUND")
        is_error(client.get("/v1/models/nope/versions"), 404, "NOT_FOUND")
        body = is_error(client.get("/v1/models/fraud@7/resolve"), 404, "NOT_FOUND")
        assert body["message"] == "model 'fraud' has no version 7 (latest is 1)"
        is_error(client.get("/v1/models/fraud@gold/resolve"), 404, "NOT_FOUND")
        is_error(
            client.post("/v1/models/fraud/versions", json={"run_id": new_id()}), 404, "NOT_FOUND"
        )
        body = is_error(
            client.post("/v1/models/fraud/versions", json={"run_id": bare}), 400, "INVALID_INPUT"
        )
        assert "has no model" in body["message"]
        is_error(
            client.post("/v1/models/bad%20name/versions", json={"run_id": run_id}),
            400,
            "INVALID_INPUT",
        )
        is_error(client.post("/v1/models/fraud/versions", json={}), 422, "SCHEMA_MISMATCH")
        for alias in ("latest", "v1"):
            body = is_error(
                client.put(f"/v1/models/fraud/aliases/{alias}", json={"version": 1}),
                400,
                "INVALID_INPUT",
            )
            assert "reserved" in body["message"]
        is_error(client.put("/v1/models/fraud/aliases/gold", json={"version": 9}), 404, "NOT_FOUND")
        is_error(
            client.put("/v1/models/fraud/aliases/gold", json={"version": 0}),
            422,
            "SCHEMA_MISMATCH",
        )
        is_error(client.delete("/v1/models/fraud/aliases/gold"), 404, "NOT_FOUND")
    assert [v.version for v in ws.registry.versions("fraud")] == [1]
    assert ws.registry.get_model("fraud").aliases == {"champion": 1}


# -- prediction ------------------------------------------------------------------------------


def test_predict_by_name_alias_and_version(ws: Workspace) -> None:
    _train(ws)
    rows = _rows(20)
    model = ws.registry.load("fraud@1")
    frame = frame_from_rows(rows, model.signature)
    expected = model.estimator.predict(frame).tolist()
    expected_proba = model.estimator.predict_proba(frame)[:, 1].tolist()
    with TestClient(create_app(ws)) as client:
        for ref in ("fraud", "fraud@champion", "fraud@1", "fraud@latest"):
            response = client.post(f"/v1/models/{ref}/predict", json={"rows": rows})
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"predictions", "probabilities", "model", "version", "request_id"}
            assert body["predictions"] == expected
            assert body["predictions"] == ws.predict(ref, rows).predictions
            assert [p["1"] for p in body["probabilities"]] == pytest.approx(expected_proba)
            assert all(p["0"] + p["1"] == pytest.approx(1.0) for p in body["probabilities"])
            assert (body["model"], body["version"]) == ("fraud", 1)
            assert is_id(body["request_id"])


def test_every_prediction_is_logged_by_the_end_of_the_lifespan(ws: Workspace) -> None:
    _train(ws)
    rows = _rows(12)
    with TestClient(create_app(ws)) as client:
        answers = [
            client.post("/v1/models/fraud/predict", json={"rows": rows[:5]}).json(),
            client.post("/v1/models/fraud@1/predict", json={"rows": rows[5:]}).json(),
            client.post("/v1/models/fraud/predict", json={"rows": [{"amount": 1}]}).json(),
        ]
    t = tables.predictions
    with ws.db.read() as conn:
        logged = conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()
    assert len(logged) == 12  # the refused request logged nothing
    expected = [
        (answer["request_id"], i, row, {"prediction": p, "probabilities": probs})
        for answer, chunk in ((answers[0], rows[:5]), (answers[1], rows[5:]))
        for i, (row, p, probs) in enumerate(
            zip(chunk, answer["predictions"], answer["probabilities"], strict=True)
        )
    ]
    for record, (request_id, index, row, outputs) in zip(logged, expected, strict=True):
        assert record["request_id"] == request_id
        assert record["row_index"] == index
        assert (record["model_name"], record["model_version"]) == ("fraud", 1)
        assert json.loads(record["inputs"]) == row
        assert json.loads(record["outputs"]) == outputs
        assert record["latency_ms"] >= 0
        assert record["ts"] > 0


def test_moving_the_champion_moves_the_traffic(tmp_path: Path, database_url: str) -> None:
    ws = Workspace.open(tmp_path / "ws", database_url=database_url, alias_cache_seconds=0)
    try:
        _train(ws)
        _train(ws, C=0.01)  # version 2
        rows = _rows(10)
        with TestClient(create_app(ws)) as client:
            before = client.post("/v1/models/fraud/predict", json={"rows": rows}).json()
            moved = client.put("/v1/models/fraud/aliases/champion", json={"version": 2})
            assert moved.status_code == 200
            after = client.post("/v1/models/fraud/predict", json={"rows": rows}).json()
        assert (before["version"], after["version"]) == (1, 2)
        assert after["probabilities"] == ws.predict("fraud@2", rows).probabilities
        assert after["probabilities"] != before["probabilities"]
        t = tables.predictions
        with ws.db.read() as conn:
            versions = conn.execute(sa.select(t.c.model_version).order_by(t.c.id)).scalars()
            assert list(versions) == [1] * 10 + [2] * 10
    finally:
        ws.close()


ROW = _rows(1)[0]


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([{k: v for k, v in ROW.items() if k != "amount"}], "missing column 'amount'"),
        ([{**ROW, "colour": "red"}], "unknown column 'colour'"),
        ([{**ROW, "amount": "12.5"}], "column 'amount' must be a number"),
        ([{**ROW, "hour": True}], "column 'hour' must be a number"),
        ([{**ROW, "merchant_category": True}], "column 'merchant_category' must be a string"),
        ([{**ROW, "card_present": "yes"}], "column 'card_present' must be true or false"),
        ([ROW, 5], "rows.1"),
        (["row"], "rows.0"),
        ([], "'rows' must be a non-empty list"),
    ],
)
def test_rows_that_do_not_fit_are_422_naming_the_problem(
    shared: tuple[Workspace, TestClient], rows: list[Any], fragment: str
) -> None:
    _, client = shared
    response = client.post("/v1/models/fraud/predict", json={"rows": rows})
    body = is_error(response, 422, "SCHEMA_MISMATCH")
    assert fragment in body["message"]


@pytest.mark.parametrize(
    "payload", [{"rows": {"amount": 1}}, {"rows": "all"}, {"rows": None}, {}, [ROW], {"row": []}]
)
def test_a_body_without_a_list_of_rows_is_422(
    shared: tuple[Workspace, TestClient], payload: Any
) -> None:
    _, client = shared
    is_error(client.post("/v1/models/fraud/predict", json=payload), 422, "SCHEMA_MISMATCH")


@pytest.mark.parametrize("raw", [b'{"rows": [', b"{rows: []}", b"\xff\xfe", b'{"rows": [1,]}'])
def test_malformed_json_is_400(shared: tuple[Workspace, TestClient], raw: bytes) -> None:
    _, client = shared
    response = client.post(
        "/v1/models/fraud/predict", content=raw, headers={"content-type": "application/json"}
    )
    body = is_error(response, 400, "INVALID_INPUT")
    assert "not valid JSON" in body["message"] or "body" in body["message"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "model 'nope' is not registered"),
        ("nope@2", "model 'nope' is not registered"),
        ("fraud@canary", "model 'fraud' has no alias 'canary'"),
        ("fraud@42", "model 'fraud' has no version 42"),
    ],
)
def test_unknown_model_alias_or_version_is_404(
    shared: tuple[Workspace, TestClient], ref: str, message: str
) -> None:
    _, client = shared
    response = client.post(f"/v1/models/{ref}/predict", json={"rows": [ROW]})
    assert message in is_error(response, 404, "NOT_FOUND")["message"]


def test_too_many_rows_is_400(shared: tuple[Workspace, TestClient]) -> None:
    _, client = shared
    rows = [ROW] * (MAX_ROWS_PER_REQUEST + 1)
    body = is_error(
        client.post("/v1/models/fraud/predict", json={"rows": rows}), 400, "INVALID_INPUT"
    )
    assert f"the limit is {MAX_ROWS_PER_REQUEST}" in body["message"]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_requests_and_predicted_rows(ws: Workspace) -> None:
    _train(ws)
    rows = _rows(5)
    with TestClient(create_app(ws)) as client:
        assert client.post("/v1/models/fraud/predict", json={"rows": rows[:2]}).status_code == 200
        assert client.post("/v1/models/fraud@1/predict", json={"rows": rows}).status_code == 200
        assert client.post("/v1/models/fraud/predict", json={"rows": []}).status_code == 422
        assert client.post("/v1/models/nope/predict", json={"rows": rows}).status_code == 404
        assert client.get("/healthz").status_code == 200
        samples = _samples(client.get("/metrics").text)
    route = "/v1/models/{ref}/predict"
    assert samples[("mloop_requests_total", (("route", route), ("status", "200")))] == 2
    assert samples[("mloop_requests_total", (("route", route), ("status", "422")))] == 1
    assert samples[("mloop_requests_total", (("route", route), ("status", "404")))] == 1
    assert samples[("mloop_requests_total", (("route", "/healthz"), ("status", "200")))] == 1
    assert samples[("mloop_predictions_total", (("model", "fraud"), ("version", "1")))] == 7
    errors = (("code", "SCHEMA_MISMATCH"), ("model", "fraud"))
    assert samples[("mloop_prediction_errors_total", errors)] == 1
    # a model that does not exist is labelled _unknown: clients cannot grow the label set
    unknown = (("code", "NOT_FOUND"), ("model", "_unknown"))
    assert samples[("mloop_prediction_errors_total", unknown)] == 1
    assert not [k for k in samples if ("model", "nope") in k[1]]
    count = ("mloop_request_latency_seconds_count", (("route", route),))
    assert samples[count] == 4
