"""Traffic routing through the app: canary shares, sticky A/B assignment, shadows, version pins.

Every test runs the application with its lifespan (``TestClient`` as a context manager), so the
serving runtime is loaded and the prediction log is written when the client closes.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from helpers import drift_frame
from mloop.api import create_app
from mloop.demo.data import transactions
from mloop.serving.runtime import route_point
from mloop.storage import tables
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace folder with fraud@1 (champion), fraud@2 and other@1 (another signature),
    trained once for the module; each test works on a copy."""
    home = tmp_path_factory.mktemp("routing") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("MLOOP_") and key != "MLOOP_TEST_PG_URL":
                mp.delenv(key)
        ws = Workspace.open(home)
        try:
            ws.datasets.ingest(transactions(400, seed=21), name="tx")
            for c in (1.0, 0.01):
                ws.training.train(
                    "tx",
                    "is_fraud",
                    model=LOGREG,
                    params={"C": c},
                    exclude=["transaction_id"],
                    register="fraud",
                    plots=False,
                )
            ws.datasets.ingest(drift_frame(200, seed=3), name="drift")
            ws.training.train("drift", "label", model=LOGREG, register="other", plots=False)
        finally:
            ws.close()
    return home


@pytest.fixture
def fws(template: Path, tmp_path: Path) -> Iterator[Workspace]:
    home = tmp_path / "ws"
    shutil.copytree(template, home)
    ws = Workspace.open(home)
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def one_row() -> dict[str, Any]:
    row: dict[str, Any] = transactions(1, seed=5).drop("transaction_id", "is_fraud").to_dicts()[0]
    return row


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    return transactions(6, seed=22).drop("transaction_id", "is_fraud").to_dicts()


def _logged(ws: Workspace) -> list[dict[str, Any]]:
    """Every prediction record, oldest first, inputs and outputs decoded."""
    t = tables.predictions
    with ws.db.read() as conn:
        found = conn.execute(sa.select(t).order_by(t.c.id)).mappings().all()
    return [
        {**r, "inputs": json.loads(r["inputs"]), "outputs": json.loads(r["outputs"])} for r in found
    ]


Call = tuple[str, dict[str, Any], dict[str, str]]  # path, JSON body, headers


def _post_all(client: TestClient, calls: list[Call], parallel: int = 128) -> list[Any]:
    """POST every call through the whole ASGI app on the event loop the client's lifespan
    started (the one the runtime's batchers live on), up to ``parallel`` at once, so that
    concurrent requests share model calls as they do under real traffic. Answers in order."""
    app = client.app

    async def run() -> list[Any]:
        gate = asyncio.Semaphore(parallel)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def one(call: Call) -> Any:
                path, body, headers = call
                async with gate:
                    answer = await http.post(path, json=body, headers=headers)
                assert answer.status_code == 200, answer.text
                return answer.json()

            return list(await asyncio.gather(*(one(c) for c in calls)))

    assert client.portal is not None  # the client is open (a context manager)
    return client.portal.call(run)


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _expected_variant(deployment: str, key: str, shares: list[tuple[str, float]]) -> str:
    bounds, total = [], 0.0
    for _, share in shares:
        total += share
        bounds.append(total)
    index = bisect.bisect_right(bounds, route_point(deployment, key))
    return shares[min(index, len(shares) - 1)][0]


# -- canary share -------------------------------------------------------------------------------


def test_a_ten_percent_canary_takes_ten_percent_of_requests(
    fws: Workspace, one_row: dict[str, Any]
) -> None:
    fws.deployments.create(
        "fraud",
        {
            "strategy": "canary",
            "variants": [
                {"name": "stable", "model": "fraud@1"},
                {"name": "canary", "model": "fraud@2", "weight": 10},
            ],
        },
    )
    n = 5000
    calls: list[Call] = []
    for i in range(n):
        body: dict[str, Any] = {"rows": [one_row]}
        if i % 2:  # half with distinct keys (hashed), half without (random)
            body["key"] = f"user-{i}"
        calls.append(("/v1/deployments/fraud/predict", body, {}))
    with TestClient(create_app(fws, log_predictions=False)) as client:
        answers = _post_all(client, calls)
        metrics = client.get("/metrics").text
    seen = Counter((a["variant"], a["version"]) for a in answers)
    assert set(seen) == {("stable", 1), ("canary", 2)}  # each variant serves its own version
    share = seen["canary", 2] / n
    assert 0.08 <= share <= 0.12, seen
    for variant, version in seen:
        counted = _metric(
            metrics,
            "mloop_deployment_requests_total",
            deployment="fraud",
            variant=variant,
            version=str(version),
            status="200",
        )
        assert counted == seen[variant, version]


# -- sticky A/B ---------------------------------------------------------------------------------

AB = {
    "strategy": "ab",
    "sticky_key": "merchant_category",
    "variants": [
        {"name": "a", "model": "fraud@1", "weight": 50},
        {"name": "b", "model": "fraud@2", "weight": 50},
    ],
}


def test_ab_assignment_is_sticky_per_key_by_body_header_and_column(
    fws: Workspace, one_row: dict[str, Any]
) -> None:
    fws.deployments.create("ab", AB)
    shares = [("a", 0.5), ("b", 0.5)]
    keys = [f"customer-{i}" for i in range(40)]
    path = "/v1/deployments/ab/predict"
    calls: list[Call] = []
    for _ in range(5):
        for key in keys:
            calls.append((path, {"rows": [one_row], "key": key}, {}))
            calls.append((path, {"rows": [one_row]}, {"X-Mloop-Key": key}))
            second = {**one_row, "merchant_category": "other"}  # only the first row's counts
            calls.append((path, {"rows": [{**one_row, "merchant_category": key}, second]}, {}))
    calls += [(path, {"rows": [one_row], "key": 7}, {})] * 5
    calls += [(path, {"rows": [one_row], "key": "7"}, {})] * 5
    with TestClient(create_app(fws, log_predictions=False)) as client:
        answers = _post_all(client, calls)
    by_key: dict[str, set[str]] = {}
    for (_, body, headers), answer in zip(calls, answers, strict=True):
        key = body.get("key") or headers.get("X-Mloop-Key") or body["rows"][0]["merchant_category"]
        by_key.setdefault(str(key), set()).add(answer["variant"])
    assert len(by_key) == len(keys) + 1
    for key, variants in by_key.items():
        assert variants == {_expected_variant("ab", key, shares)}, key  # one variant per key
    assert {v for (v,) in by_key.values()} == {"a", "b"}  # and the keys spread over both


def test_the_body_key_takes_precedence_over_the_header_and_the_column(
    fws: Workspace, one_row: dict[str, Any]
) -> None:
    fws.deployments.create("ab", AB)
    shares = [("a", 0.5), ("b", 0.5)]
    keys = [f"k{i}" for i in range(40)]
    a_key = next(k for k in keys if _expected_variant("ab", k, shares) == "a")
    b_key = next(k for k in keys if _expected_variant("ab", k, shares) == "b")
    with TestClient(create_app(fws, log_predictions=False)) as client:
        body_wins = client.post(
            "/v1/deployments/ab/predict",
            json={"rows": [{**one_row, "merchant_category": b_key}], "key": a_key},
            headers={"X-Mloop-Key": b_key},
        ).json()
        header_wins = client.post(
            "/v1/deployments/ab/predict",
            json={"rows": [{**one_row, "merchant_category": a_key}]},
            headers={"X-Mloop-Key": b_key},
        ).json()
    assert body_wins["variant"] == "a"
    assert header_wins["variant"] == "b"


def test_routed_predictions_are_logged_with_deployment_and_variant(
    fws: Workspace, rows: list[dict[str, Any]]
) -> None:
    fws.deployments.create("ab", AB)
    answers = []
    with TestClient(create_app(fws)) as client:
        for i in range(12):
            answer = client.post("/v1/deployments/ab/predict", json={"rows": rows, "key": str(i)})
            assert answer.status_code == 200
            answers.append(answer.json())
    logged = _logged(fws)
    assert len(logged) == 12 * len(rows)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for record in logged:
        by_request.setdefault(record["request_id"], []).append(record)
    for answer in answers:
        records = by_request[answer["request_id"]]
        assert [r["row_index"] for r in sorted(records, key=lambda r: r["row_index"])] == list(
            range(len(rows))
        )
        for r in records:
            assert (r["deployment"], r["variant"], r["model_version"], r["shadow"]) == (
                "ab",
                answer["variant"],
                answer["version"],
                False,
            )
        assert [r["outputs"]["prediction"] for r in records] == answer["predictions"]


# -- shadows ------------------------------------------------------------------------------------


def test_shadow_answers_never_reach_the_client_and_are_logged(
    fws: Workspace, rows: list[dict[str, Any]]
) -> None:
    fws.deployments.create(
        "fraud",
        {
            "variants": [
                {"name": "primary", "model": "fraud@1"},
                {"name": "mirror", "model": "fraud@2", "shadow": True},
            ]
        },
    )
    reference = fws.predict("fraud@1", rows)
    answers = []
    with TestClient(create_app(fws)) as client:
        for i in range(20):
            answer = client.post("/v1/deployments/fraud/predict", json={"rows": rows, "key": i})
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        metrics = client.get("/metrics").text
    for answer in answers:
        assert (answer["variant"], answer["version"]) == ("primary", 1)
        assert answer["predictions"] == reference.predictions
        assert reference.probabilities is not None
        for got, want in zip(answer["probabilities"], reference.probabilities, strict=True):
            assert got == pytest.approx(want)
    assert _metric(
        metrics,
        "mloop_shadow_predictions_total",
        deployment="fraud",
        variant="mirror",
        outcome="ok",
    ) == 20 * len(rows)
    shadow_reference = fws.predict("fraud@2", rows)
    logged = _logged(fws)
    shadows = [r for r in logged if r["shadow"]]
    served = [r for r in logged if not r["shadow"]]
    assert len(served) == len(shadows) == 20 * len(rows)
    assert {r["request_id"] for r in shadows} == {a["request_id"] for a in answers}
    assert {(r["variant"], r["model_version"]) for r in shadows} == {("mirror", 2)}
    assert {(r["variant"], r["model_version"]) for r in served} == {("primary", 1)}
    first = sorted(
        (r for r in shadows if r["request_id"] == answers[0]["request_id"]),
        key=lambda r: r["row_index"],
    )
    assert [r["outputs"]["prediction"] for r in first] == shadow_reference.predictions


def test_a_failing_shadow_never_fails_the_client_and_is_counted(
    fws: Workspace, rows: list[dict[str, Any]]
) -> None:
    # other@1 takes x, y, cat: the fraud rows do not fit it
    fws.deployments.create(
        "fraud",
        {
            "variants": [
                {"name": "primary", "model": "fraud@1"},
                {"name": "broken", "model": "other@1", "shadow": True},
            ]
        },
    )
    reference = fws.predict("fraud@1", rows)
    with TestClient(create_app(fws)) as client:
        for _ in range(4):
            answer = client.post("/v1/deployments/fraud/predict", json={"rows": rows})
            assert answer.status_code == 200, answer.text
            assert answer.json()["variant"] == "primary"
            assert answer.json()["predictions"] == reference.predictions
        metrics = client.get("/metrics").text
    assert _metric(
        metrics,
        "mloop_shadow_predictions_total",
        deployment="fraud",
        variant="broken",
        outcome="error",
    ) == 4 * len(rows)
    assert (
        _metric(
            metrics,
            "mloop_shadow_predictions_total",
            deployment="fraud",
            variant="broken",
            outcome="ok",
        )
        == 0
    )
    logged = _logged(fws)
    assert len(logged) == 4 * len(rows)
    assert not any(r["shadow"] for r in logged)


def test_a_request_the_variant_fails_is_logged_as_one_error_row(
    fws: Workspace, rows: list[dict[str, Any]]
) -> None:
    # a canary of other@1 (x, y, cat) refuses the fraud rows: its failures are logged, with the
    # variant and version they belong to, and no prediction; the stable variant's answers are not
    fws.deployments.create(
        "fraud",
        {
            "strategy": "canary",
            "variants": [
                {"name": "stable", "model": "fraud@1"},
                {"name": "canary", "model": "other@1", "weight": 50},
            ],
        },
    )
    statuses: Counter[tuple[str, int]] = Counter()
    with TestClient(create_app(fws)) as client:
        for i in range(40):
            answer = client.post("/v1/deployments/fraud/predict", json={"rows": rows, "key": i})
            statuses[("ok" if answer.status_code == 200 else "refused", answer.status_code)] += 1
    refused = sum(n for (kind, _), n in statuses.items() if kind == "refused")
    assert 0 < refused < 40
    assert {code for (kind, code) in statuses if kind == "refused"} <= {400, 422}
    logged = _logged(fws)
    errors = [r for r in logged if r["error"] is not None]
    served = [r for r in logged if r["error"] is None]
    assert len(errors) == refused
    assert {(r["variant"], r["model_name"], r["model_version"]) for r in errors} == {
        ("canary", "other", 1)
    }
    assert all(r["outputs"] == {} and r["row_index"] == 0 for r in errors)
    assert {r["error"] for r in errors} <= {"INVALID_INPUT", "SCHEMA_MISMATCH"}
    assert len(served) == (40 - refused) * len(rows)
    assert {r["variant"] for r in served} == {"stable"}


# -- version pins -------------------------------------------------------------------------------


def test_a_version_pinned_v2_infer_routes_to_that_versions_variant(
    fws: Workspace, rows: list[dict[str, Any]]
) -> None:
    fws.deployments.create(
        "fraud",
        {
            "strategy": "canary",
            "variants": [
                {"name": "stable", "model": "fraud@1"},
                {"name": "canary", "model": "fraud@2", "weight": 50},
            ],
        },
    )
    tensors = [
        {
            "name": "amount",
            "shape": [1],
            "datatype": "FP64",
            "data": [rows[0]["amount"]],
        },
        {
            "name": "merchant_category",
            "shape": [1],
            "datatype": "BYTES",
            "data": [rows[0]["merchant_category"]],
        },
        {"name": "country", "shape": [1], "datatype": "BYTES", "data": [rows[0]["country"]]},
        {"name": "hour", "shape": [1], "datatype": "INT64", "data": [rows[0]["hour"]]},
        {
            "name": "customer_age",
            "shape": [1],
            "datatype": "INT64",
            "data": [rows[0]["customer_age"]],
        },
        {
            "name": "card_present",
            "shape": [1],
            "datatype": "BOOL",
            "data": [rows[0]["card_present"]],
        },
        {
            "name": "account_age_days",
            "shape": [1],
            "datatype": "INT64",
            "data": [rows[0]["account_age_days"]],
        },
        {
            "name": "tx_last_24h",
            "shape": [1],
            "datatype": "INT64",
            "data": [rows[0]["tx_last_24h"]],
        },
        {
            "name": "distance_from_home_km",
            "shape": [1],
            "datatype": "FP64",
            "data": [rows[0]["distance_from_home_km"]],
        },
    ]
    versions: dict[str, set[str]] = {"1": set(), "2": set()}
    with TestClient(create_app(fws)) as client:
        for pinned in ("1", "2"):
            for i in range(15):
                answer = client.post(
                    f"/v2/models/fraud/versions/{pinned}/infer",
                    json={"id": f"r{i}", "inputs": tensors},
                    headers={"X-Mloop-Key": f"key-{i}"},  # a key never overrides the pin
                )
                assert answer.status_code == 200, answer.text
                versions[pinned].add(answer.json()["model_version"])
        unpinned = {
            client.post("/v2/models/fraud/infer", json={"inputs": tensors}).json()["model_version"]
            for _ in range(40)
        }
        missing = client.post("/v2/models/fraud/versions/3/infer", json={"inputs": tensors})
    assert versions == {"1": {"1"}, "2": {"2"}}
    assert unpinned == {"1", "2"}  # without a pin the split applies
    assert missing.status_code == 404
    assert missing.json()["error"] == "NOT_FOUND"
    logged = _logged(fws)
    assert {(r["variant"], r["model_version"]) for r in logged} == {("stable", 1), ("canary", 2)}
