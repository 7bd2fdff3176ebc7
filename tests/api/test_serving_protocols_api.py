"""Each serving protocol end to end through the app (mloop's rows and columns, MLflow's
/invocations shapes, Open Inference Protocol V2), bad input with its status and one error shape,
and the concurrency limit of a real server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from helpers import is_error
from mloop.api import create_app
from mloop.demo.data import transactions
from mloop.demo.runner import free_port, wait_ready
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"
INPUTS = [
    "amount",
    "merchant_category",
    "country",
    "hour",
    "customer_age",
    "card_present",
    "account_age_days",
    "tx_last_24h",
    "distance_from_home_km",
]
V2_TYPES = {"float": "FP64", "string": "BYTES", "integer": "INT64", "boolean": "BOOL"}
NUMERIC = ["amount", "hour", "customer_age", "account_age_days", "tx_last_24h"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fraud@1 (every column) and numeric@1 (numeric columns only), trained once."""
    home = tmp_path_factory.mktemp("protocols") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("MLOOP_") and key != "MLOOP_TEST_PG_URL":
                mp.delenv(key)
        ws = Workspace.open(home)
        try:
            ws.datasets.ingest(transactions(400, seed=21), name="tx")
            ws.training.train(
                "tx",
                "is_fraud",
                model=LOGREG,
                exclude=["transaction_id"],
                register="fraud",
                plots=False,
            )
            ws.training.train(
                "tx",
                "is_fraud",
                model=LOGREG,
                exclude=[
                    "transaction_id",
                    "merchant_category",
                    "country",
                    "card_present",
                    "distance_from_home_km",
                ],
                register="numeric",
                plots=False,
            )
        finally:
            ws.close()
    return home


def _open(template: Path, tmp_path: Path, **settings: Any) -> Workspace:
    home = tmp_path / "ws"
    if not home.exists():
        shutil.copytree(template, home)
    return Workspace.open(home, **settings)


@pytest.fixture
def fws(template: Path, tmp_path: Path) -> Iterator[Workspace]:
    ws = _open(template, tmp_path)
    ws.deployments.create("fraud", {"variants": [{"name": "primary", "model": "fraud@1"}]})
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def client(fws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(fws, log_predictions=False)) as c:
        yield c


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    """Client rows with some missing values (nullable columns)."""
    found: list[dict[str, Any]] = (
        transactions(8, seed=22).drop("transaction_id", "is_fraud").to_dicts()
    )
    found[1]["country"] = None
    found[2]["customer_age"] = None
    return found


@pytest.fixture
def reference(fws: Workspace, rows: list[dict[str, Any]]) -> Any:
    return fws.predict("fraud@1", rows)


def _tensors(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    types = {
        "amount": "FP64",
        "merchant_category": "BYTES",
        "country": "BYTES",
        "hour": "INT64",
        "customer_age": "INT64",
        "card_present": "BOOL",
        "account_age_days": "INT64",
        "tx_last_24h": "INT64",
        "distance_from_home_km": "FP64",
    }
    return [
        {"name": c, "shape": [len(rows)], "datatype": types[c], "data": [r[c] for r in rows]}
        for c in INPUTS
    ]


# -- mloop's protocol ---------------------------------------------------------------------------


def test_native_rows_and_columns(
    client: TestClient, rows: list[dict[str, Any]], reference: Any
) -> None:
    by_rows = client.post("/v1/deployments/fraud/predict", json={"rows": rows})
    assert by_rows.status_code == 200, by_rows.text
    body = by_rows.json()
    assert (body["deployment"], body["variant"], body["model"], body["version"]) == (
        "fraud",
        "primary",
        "fraud",
        1,
    )
    assert body["predictions"] == reference.predictions
    for got, want in zip(body["probabilities"], reference.probabilities, strict=True):
        assert got == pytest.approx(want)
    assert body["request_id"]
    assert body["latency_ms"] >= 0

    columns = {c: [r[c] for r in rows] for c in INPUTS}
    by_columns = client.post("/v1/deployments/fraud/predict", json={"columns": columns})
    assert by_columns.status_code == 200, by_columns.text
    assert by_columns.json()["predictions"] == reference.predictions
    assert by_columns.json()["request_id"] != body["request_id"]

    # the other JSON media types, and a charset, are JSON too
    for media in ("application/json; charset=utf-8", "text/json", "application/x-json"):
        answer = client.post(
            "/v1/deployments/fraud/predict",
            content=httpx.Request("POST", "/", json={"rows": rows}).content,
            headers={"content-type": media},
        )
        assert answer.status_code == 200, (media, answer.text)


# -- MLflow /invocations ------------------------------------------------------------------------


def _mlflow_bodies(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "dataframe_split": {
            "dataframe_split": {"columns": INPUTS, "data": [[r[c] for c in INPUTS] for r in rows]}
        },
        "dataframe_split reordered, with index": {
            "dataframe_split": {
                "columns": INPUTS[::-1],
                "data": [[r[c] for c in INPUTS[::-1]] for r in rows],
                "index": list(range(len(rows))),
            }
        },
        "dataframe_split without columns": {
            "dataframe_split": {"data": [[r[c] for c in INPUTS] for r in rows]}
        },
        "dataframe_records": {"dataframe_records": rows},
        "instances as records": {"instances": rows},
        "instances as lists": {"instances": [[r[c] for c in INPUTS] for r in rows]},
        "inputs as columns": {"inputs": {c: [r[c] for r in rows] for c in INPUTS}},
        "inputs as records, with params": {"inputs": rows, "params": {"ignored": 1}},
    }


@pytest.mark.parametrize(
    "shape", list(_mlflow_bodies([dict.fromkeys(INPUTS)])), ids=lambda s: s.replace(" ", "-")
)
def test_mlflow_shapes_on_both_invocations_routes(
    client: TestClient, rows: list[dict[str, Any]], reference: Any, shape: str
) -> None:
    body = _mlflow_bodies(rows)[shape]
    for path in ("/invocations", "/v1/deployments/fraud/invocations"):
        answer = client.post(path, json=body)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json() == {"predictions": reference.predictions}


def test_mlflow_inputs_as_one_row_object(client: TestClient, rows: list[dict[str, Any]]) -> None:
    answer = client.post("/invocations", json={"inputs": rows[0]})
    assert answer.status_code == 200, answer.text
    assert (
        answer.json()["predictions"]
        == client.post("/v1/deployments/fraud/predict", json={"rows": rows[:1]}).json()[
            "predictions"
        ]
    )


def test_invocations_needs_one_deployment_or_a_default(
    fws: Workspace, rows: list[dict[str, Any]], reference: Any
) -> None:
    fws.deployments.create("numbers", {"variants": [{"name": "p", "model": "numeric@1"}]})
    body = {"dataframe_records": rows}
    with TestClient(create_app(fws, log_predictions=False)) as client:
        answer = client.post("/invocations", json=body)
        error = is_error(answer, 404, "NOT_FOUND")
        assert "2 deployments" in error["message"]
        assert "--deployment" in error["message"]
        named = client.post("/v1/deployments/fraud/invocations", json=body)
        assert named.json() == {"predictions": reference.predictions}
    with TestClient(create_app(fws, log_predictions=False, default_deployment="fraud")) as client:
        answer = client.post("/invocations", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": reference.predictions}


def test_invocations_without_any_deployment(template: Path, tmp_path: Path) -> None:
    ws = _open(template, tmp_path)
    try:
        with TestClient(create_app(ws, log_predictions=False)) as client:
            error = is_error(
                client.post("/invocations", json={"inputs": [{"amount": 1}]}), 404, "NOT_FOUND"
            )
            assert "no deployments" in error["message"]
            assert client.get("/ping").json() == {"status": "ok"}
    finally:
        ws.close()


# -- Open Inference Protocol V2 -----------------------------------------------------------------


def test_v2_server_health_and_model_metadata(client: TestClient, fws: Workspace) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert client.get("/v2").json()["name"] == "mloop"
    assert client.get("/v2/models/fraud/ready").json() == {"name": "fraud", "ready": True}
    assert client.get("/v2/models/fraud/versions/1/ready").json() == {
        "name": "fraud",
        "ready": True,
    }
    meta = client.get("/v2/models/fraud").json()
    signature = fws.registry.resolve("fraud@1").require_signature()
    assert meta["name"] == "fraud"
    assert meta["versions"] == ["1"]
    assert meta["platform"].startswith("mloop_")
    assert meta["inputs"] == [
        {"name": c.name, "datatype": V2_TYPES[c.type], "shape": [-1, 1]} for c in signature.inputs
    ]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "probabilities"]
    assert meta["outputs"][1]["shape"] == [-1, 2]
    assert client.get("/v2/models/fraud/versions/1").json()["versions"] == ["1"]


def test_v2_infer_with_named_tensors(
    client: TestClient, rows: list[dict[str, Any]], reference: Any
) -> None:
    answer = client.post("/v2/models/fraud/infer", json={"id": "req-1", "inputs": _tensors(rows)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("fraud", "1", "req-1")
    predict, probabilities = body["outputs"]
    assert predict == {
        "name": "predict",
        "shape": [len(rows)],
        "datatype": "INT64",
        "data": reference.predictions,
    }
    assert probabilities["shape"] == [len(rows), 2]
    classes = probabilities["parameters"]["classes"]
    want = [p[c] for p in reference.probabilities for c in classes]
    assert probabilities["data"] == pytest.approx(want)
    # [N, 1] tensors, nested data, on the version's route, without an id
    nested = [
        {**t, "shape": [len(rows), 1], "data": [[v] for v in t["data"]]} for t in _tensors(rows)
    ]
    answer = client.post("/v2/models/fraud/versions/1/infer", json={"inputs": nested})
    assert answer.status_code == 200, answer.text
    assert "id" not in answer.json()
    assert answer.json()["outputs"][0]["data"] == reference.predictions


def test_v2_infer_with_one_matrix_tensor(fws: Workspace, rows: list[dict[str, Any]]) -> None:
    fws.deployments.create("numbers", {"variants": [{"name": "p", "model": "numeric@1"}]})
    signature = fws.registry.resolve("numeric@1").require_signature()
    names = signature.input_names
    assert sorted(names) == sorted(NUMERIC)
    expected = fws.predict("numeric@1", [{c: r[c] for c in names} for r in rows]).predictions
    matrix = [[r[c] for c in names] for r in rows]
    with TestClient(create_app(fws, log_predictions=False)) as client:
        for data in (matrix, [v for row in matrix for v in row]):  # nested and flat
            answer = client.post(
                "/v2/models/numbers/infer",
                json={
                    "inputs": [
                        {
                            "name": "x",
                            "shape": [len(rows), len(names)],
                            "datatype": "FP64",
                            "data": data,
                        }
                    ]
                },
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == expected
        # the fraud model mixes strings, booleans and numbers: no one datatype fits a matrix
        mixed = client.post(
            "/v2/models/fraud/infer",
            json={
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, len(INPUTS)],
                        "datatype": "FP64",
                        "data": [[rows[0][c] for c in INPUTS]],
                    }
                ]
            },
        )
        assert "merchant_category" in is_error(mixed, 400, "INVALID_INPUT")["message"]


def test_v2_requested_outputs(
    client: TestClient, rows: list[dict[str, Any]], reference: Any
) -> None:
    only = client.post(
        "/v2/models/fraud/infer",
        json={"inputs": _tensors(rows), "outputs": [{"name": "probabilities"}]},
    )
    assert only.status_code == 200, only.text
    assert [o["name"] for o in only.json()["outputs"]] == ["probabilities"]
    both = client.post(
        "/v2/models/fraud/infer",
        json={
            "inputs": _tensors(rows),
            "outputs": [{"name": "probabilities"}, {"name": "predict"}],
        },
    )
    assert [o["name"] for o in both.json()["outputs"]] == ["probabilities", "predict"]
    assert both.json()["outputs"][1]["data"] == reference.predictions
    unknown = client.post(
        "/v2/models/fraud/infer", json={"inputs": _tensors(rows), "outputs": [{"name": "logits"}]}
    )
    assert "logits" in is_error(unknown, 400, "INVALID_INPUT")["message"]


# -- bad input ----------------------------------------------------------------------------------

PREDICT = "/v1/deployments/fraud/predict"


def _bad_requests(row: dict[str, Any]) -> list[tuple[str, str, Any, int, str, str]]:
    """(method, path, JSON body or raw bytes, status, code, words of the message)."""
    without = {k: v for k, v in row.items() if k != "amount"}
    return [
        # malformed JSON
        ("POST", PREDICT, b'{"rows": [', 400, "INVALID_INPUT", "not valid JSON"),
        ("POST", "/invocations", b"{nope}", 400, "INVALID_INPUT", "not valid JSON"),
        ("POST", "/v2/models/fraud/infer", b"", 400, "INVALID_INPUT", "empty"),
        # wrong shape
        ("POST", PREDICT, {"rows": "all"}, 400, "INVALID_INPUT", "list of row objects"),
        ("POST", PREDICT, {"rows": []}, 400, "INVALID_INPUT", "empty"),
        ("POST", PREDICT, {"rows": [[1, 2]]}, 400, "INVALID_INPUT", "not an object"),
        ("POST", PREDICT, {"row": [row]}, 400, "INVALID_INPUT", "unknown key 'row'"),
        ("POST", PREDICT, [row], 400, "INVALID_INPUT", "JSON object"),
        ("POST", PREDICT, {"rows": [row], "key": [1]}, 400, "INVALID_INPUT", "'key'"),
        (
            "POST",
            PREDICT,
            {"columns": {"amount": [1.0, 2.0], "hour": [1]}},
            400,
            "INVALID_INPUT",
            "has 1 values",
        ),
        ("POST", "/invocations", {"rows": [row]}, 400, "INVALID_INPUT", "exactly one of"),
        (
            "POST",
            "/invocations",
            {"instances": [row], "inputs": [row]},
            400,
            "INVALID_INPUT",
            "exactly one of",
        ),
        (
            "POST",
            "/invocations",
            {"dataframe_split": {"columns": INPUTS, "data": [[1, 2]]}},
            400,
            "INVALID_INPUT",
            "2 values for 9 columns",
        ),
        (
            "POST",
            "/v2/models/fraud/infer",
            {"inputs": [{"name": "amount", "shape": [2], "datatype": "FP64", "data": [1.0]}]},
            400,
            "INVALID_INPUT",
            "shape [2] but 1 values",
        ),
        (
            "POST",
            "/v2/models/fraud/infer",
            {"inputs": [{"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]},
            400,
            "INVALID_INPUT",
            "not an input",
        ),
        (
            "POST",
            "/v2/models/fraud/infer",
            {"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": ["x"]}]},
            400,
            "INVALID_INPUT",
            "holds a string",
        ),
        ("POST", "/v2/models/fraud/infer", {"inputs": []}, 400, "INVALID_INPUT", "'inputs'"),
        # rows that do not fit the signature
        (
            "POST",
            PREDICT,
            {"rows": [{**row, "amount": "lots"}]},
            422,
            "SCHEMA_MISMATCH",
            "amount",
        ),
        ("POST", PREDICT, {"rows": [without]}, 422, "SCHEMA_MISMATCH", "amount"),
        (
            "POST",
            PREDICT,
            {"rows": [{**row, "colour": "red"}]},
            422,
            "SCHEMA_MISMATCH",
            "colour",
        ),
        (
            "POST",
            "/invocations",
            {"dataframe_records": [{**row, "hour": "noon"}]},
            422,
            "SCHEMA_MISMATCH",
            "hour",
        ),
        # unknown deployment, version, route
        ("POST", "/v1/deployments/nosuch/predict", {"rows": [row]}, 404, "NOT_FOUND", "nosuch"),
        ("POST", "/v1/deployments/nosuch/invocations", {"inputs": [row]}, 404, "NOT_FOUND", ""),
        ("GET", "/v2/models/nosuch", None, 404, "NOT_FOUND", "nosuch"),
        ("POST", "/v2/models/fraud/versions/7/infer", {"inputs": []}, 404, "NOT_FOUND", "7"),
        ("GET", "/v2/models/fraud/versions/7", None, 404, "NOT_FOUND", "version 7"),
        ("GET", "/v2/models/fraud/versions/one/ready", None, 404, "NOT_FOUND", "'one'"),
        ("GET", "/v2/models/fraud/explain", None, 404, "NOT_FOUND", "no route"),
        # the wrong method
        ("GET", PREDICT, None, 405, "METHOD_NOT_ALLOWED", ""),
        ("GET", "/v1/deployments/fraud/invocations", None, 405, "METHOD_NOT_ALLOWED", ""),
        ("GET", "/invocations", None, 405, "METHOD_NOT_ALLOWED", ""),
        ("GET", "/v2/models/fraud/infer", None, 405, "METHOD_NOT_ALLOWED", ""),
        ("POST", "/v2/health/ready", {}, 405, "METHOD_NOT_ALLOWED", ""),
        ("DELETE", "/ping", None, 405, "METHOD_NOT_ALLOWED", ""),
    ]


def test_bad_input_gets_its_status_and_one_error_shape_and_the_server_keeps_answering(
    client: TestClient, rows: list[dict[str, Any]], reference: Any
) -> None:
    failures = []
    for method, path, body, status, code, words in _bad_requests(rows[0]):
        if isinstance(body, bytes):
            answer = client.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
        else:
            answer = client.request(method, path, json=body)
        try:
            error = is_error(answer, status, code)
            assert words in error["message"], error["message"]
        except AssertionError as exc:
            failures.append(f"{method} {path} {body!r:.80}: {exc}")
    assert not failures, "\n".join(failures)
    answer = client.post(PREDICT, json={"rows": rows})
    assert answer.status_code == 200
    assert answer.json()["predictions"] == reference.predictions
    metrics = client.get("/metrics").text
    assert 'mloop_deployment_errors_total{code="SCHEMA_MISMATCH",deployment="fraud"}' in metrics


def test_a_body_that_is_not_json_is_unsupported(
    client: TestClient, rows: list[dict[str, Any]]
) -> None:
    for path in (PREDICT, "/invocations", "/v2/models/fraud/infer"):
        for media in ("text/csv", "application/x-www-form-urlencoded", "text/plain"):
            answer = client.post(path, content=b"amount\n1.0\n", headers={"content-type": media})
            error = is_error(answer, 415, "UNSUPPORTED_MEDIA_TYPE")
            assert media.split(";")[0] in error["message"]
    assert client.post(PREDICT, json={"rows": rows}).status_code == 200


def test_an_oversized_body_is_refused(
    template: Path, tmp_path: Path, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOOP_SERVE_MAX_BODY_BYTES", "4000")
    ws = _open(template, tmp_path)
    try:
        assert ws.settings.serve_max_body_bytes == 4000
        ws.deployments.create("fraud", {"variants": [{"name": "p", "model": "fraud@1"}]})
        big = {"rows": rows * 10}
        assert len(httpx.Request("POST", "/", json=big).content) > 4000
        with TestClient(create_app(ws, log_predictions=False)) as client:
            for path in (PREDICT, "/invocations", "/v2/models/fraud/infer"):
                body = {"inputs": rows * 10} if path != PREDICT else big
                error = is_error(client.post(path, json=body), 413, "PAYLOAD_TOO_LARGE")
                assert "4000 bytes" in error["message"]
            small = client.post(PREDICT, json={"rows": rows[:2]})
            assert small.status_code == 200, small.text
    finally:
        ws.close()


# -- the concurrency limit, on a real server ----------------------------------------------------


@pytest.mark.slow
def test_at_the_concurrency_limit_requests_get_503_with_retry_after(
    template: Path, tmp_path: Path, rows: list[dict[str, Any]]
) -> None:
    ws = _open(template, tmp_path)
    ws.deployments.create("fraud", {"variants": [{"name": "p", "model": "fraud@1"}]})
    home = ws.home
    ws.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLOOP_HOME": str(home), "MLOOP_SERVE_MAX_CONCURRENCY": "1"}
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mloop", "--workspace", str(home), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    statuses: list[int] = []
    bad: list[str] = []
    lock = threading.Lock()
    body = {"rows": rows * 4}

    def worker(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(n):
                answer = http.post("/v1/deployments/fraud/predict", json=body)
                with lock:
                    statuses.append(answer.status_code)
                    if answer.status_code == 503:
                        if answer.headers.get("retry-after") != "1":
                            bad.append(f"503 without Retry-After: {answer.headers}")
                        if answer.json().get("error") != "UNAVAILABLE":
                            bad.append(f"503 body: {answer.text}")
                    elif answer.status_code != 200:
                        bad.append(f"{answer.status_code}: {answer.text}")

    try:
        wait_ready(url, process)
        for _round in range(5):  # 200 requests over 16 threads a round, until one is refused
            threads = [
                threading.Thread(target=worker, args=(13 if i < 8 else 12,)) for i in range(16)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            if 503 in statuses:
                break
        assert not bad, bad[:5]
        assert 503 in statuses
        assert 200 in statuses
        assert set(statuses) <= {200, 503}
        after = httpx.post(f"{url}/v1/deployments/fraud/predict", json={"rows": rows}, timeout=30)
        assert after.status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'mloop_rejected_requests_total{reason="overloaded"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, (tmp_path / "server.log").read_text()
