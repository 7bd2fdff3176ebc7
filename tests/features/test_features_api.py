"""The feature store over REST: online reads (SQLite and Redis), definitions, status,
materializations and materializing, and every bad input's status and message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from conftest import service_unavailable
from helpers import is_error
from mloop.api import create_app
from mloop.api.auth import authenticate
from mloop.api.routers.features import MAX_ONLINE_ROWS
from mloop.core.errors import Unauthorized
from mloop.features import Entity, FeatureView, OnDemandFeatureView
from mloop.workspace import Workspace

DRIVER = Entity("driver", join_keys={"driver_id": "integer"})
REDIS_URL = "redis://127.0.0.1:6379/15"
FEATURES = ["stats:rate", "stats:trips"]


def _now() -> datetime:
    """Now as naive UTC (the source's event times), taken when called."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _source(now: datetime) -> list[tuple[int, datetime, float, int]]:
    return [
        (1, now - timedelta(minutes=50), 0.5, 3),
        (1, now - timedelta(minutes=5), 0.7, 4),  # the latest of driver 1
        (2, now - timedelta(minutes=30), 0.9, 8),
        (3, now - timedelta(hours=3), 0.1, 1),  # older than the 1 h TTL when read
    ]


def _write(ws: Workspace, rows: list[tuple[int, datetime, float, int]]) -> None:
    frame = pl.DataFrame(
        {
            "driver_id": [r[0] for r in rows],
            "ts": [r[1] for r in rows],
            "rate": [r[2] for r in rows],
            "trips": [r[3] for r in rows],
        },
        schema={
            "driver_id": pl.Int64,
            "ts": pl.Datetime("us"),
            "rate": pl.Float64,
            "trips": pl.Int64,
        },
    )
    if ws.datasets.list():
        ws.datasets.append_rows("ds", frame.to_arrow())
    else:
        ws.datasets.write_version("ds", frame.to_arrow())


def _stats_view(name: str = "stats") -> FeatureView:
    return FeatureView(
        name,
        entities=[DRIVER],
        source="ds",
        timestamp_column="ts",
        features=["rate", "trips"],
        ttl="1h",
    )


FARE = OnDemandFeatureView(
    "fare",
    request={"distance": "float"},
    sources=["stats:rate"],
    features=["price"],
    transform={"price": pl.col("distance") * pl.col("rate")},
)


def _setup(ws: Workspace, *, materialize: bool = True) -> list[tuple[int, datetime, float, int]]:
    rows = _source(_now())
    _write(ws, rows)
    ws.features.apply([DRIVER, _stats_view(), FARE])
    if materialize:
        ws.features.materialize(["stats"])
    return rows


@pytest.fixture
def client(sqlite_ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_ws, log_predictions=False)) as c:
        yield c


def _check_online(client: TestClient, rows: list[tuple[int, datetime, float, int]]) -> None:
    keys = [2, 1, 3, 99]
    response = client.post(
        "/v1/features/online",
        json={"features": FEATURES, "entities": [{"driver_id": k} for k in keys]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["features"] == FEATURES
    latest = {r[0]: r for r in sorted(rows, key=lambda r: r[1])}  # the newest per driver
    assert body["rows"] == [
        {"driver_id": 2, "rate": latest[2][2], "trips": latest[2][3]},
        {"driver_id": 1, "rate": latest[1][2], "trips": latest[1][3]},
        {"driver_id": 3, "rate": None, "trips": None},  # expired: null
        {"driver_id": 99, "rate": None, "trips": None},  # never materialized
    ]
    assert body["rows"][1] == {"driver_id": 1, "rate": 0.7, "trips": 4}
    assert body["statuses"] == [
        {"rate": "present", "trips": "present"},
        {"rate": "present", "trips": "present"},
        {"rate": "expired", "trips": "expired"},
        {"rate": "missing", "trips": "missing"},
    ]


def test_online_values_and_statuses_from_the_source(
    sqlite_ws: Workspace, client: TestClient
) -> None:
    rows = _setup(sqlite_ws)
    _check_online(client, rows)
    # an on-demand feature computed from a request field and a materialized feature
    response = client.post(
        "/v1/features/online",
        json={"features": ["fare:price"], "entities": [{"driver_id": 2, "distance": 2.0}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"driver_id": 2, "price": pytest.approx(1.8)}]
    assert response.json()["statuses"] == [{"price": "present"}]


def test_online_on_redis(tmp_path: Path) -> None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # the server is down or the client missing
        service_unavailable(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")
    namespace = f"test-{uuid.uuid4().hex}"
    ws = Workspace.open(tmp_path / "ws", online_store=REDIS_URL, online_namespace=namespace)
    try:
        rows = _setup(ws)
        assert ws.features.online_store.display.startswith("redis://")
        with TestClient(create_app(ws, log_predictions=False)) as client:
            _check_online(client, rows)
            status = client.get("/v1/features/status").json()
            assert [s["store"] for s in status] == [ws.features.online_store.display]
    finally:
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
        assert keys, "the view was written under the test's namespace"
        r.delete(*keys)
        r.close()
        ws.close()


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (
            {"features": ["nope:rate"], "entities": [{"driver_id": 1}]},
            400,
            "INVALID_INPUT",
            "unknown feature view 'nope'",
        ),
        (
            {"features": ["stats:speed"], "entities": [{"driver_id": 1}]},
            400,
            "INVALID_INPUT",
            "has no feature 'speed'",
        ),
        (
            {"features": ["stats_rate"], "entities": [{"driver_id": 1}]},
            400,
            "INVALID_INPUT",
            "use 'view:feature'",
        ),
        (
            {"features": [], "entities": [{"driver_id": 1}]},
            400,
            "INVALID_INPUT",
            "at least one feature",
        ),
        (
            {"features": FEATURES, "entities": [{"driver_id": 1}, {"driver": 2}]},
            400,
            "INVALID_INPUT",
            "entity row 1 has no join key 'driver_id'",
        ),
        (
            {"features": FEATURES, "entities": [{"driver_id": "1"}]},
            400,
            "INVALID_INPUT",
            "join key 'driver_id' is str '1', but the entity declares it integer",
        ),
        (
            {"features": FEATURES, "entities": [{"driver_id": 1.5}]},
            400,
            "INVALID_INPUT",
            "join key 'driver_id' is float",
        ),
        (
            {"features": FEATURES, "entities": [{"driver_id": True}]},
            400,
            "INVALID_INPUT",
            "join key 'driver_id' is bool",
        ),
        (
            {"features": FEATURES, "entities": []},
            400,
            "INVALID_INPUT",
            "give at least one entity row",
        ),
        (
            {"features": ["fare:price"], "entities": [{"driver_id": 1}]},
            400,
            "INVALID_INPUT",
            "no request field 'distance'",
        ),
        (
            {"entities": [{"driver_id": 1}]},
            422,
            "SCHEMA_MISMATCH",
            "features: Field required",
        ),
        (
            {"features": "stats:rate", "entities": [{"driver_id": 1}]},
            422,
            "SCHEMA_MISMATCH",
            "features: Input should be a valid list",
        ),
        (
            {"features": FEATURES, "entities": {"driver_id": 1}},
            422,
            "SCHEMA_MISMATCH",
            "entities: Input should be a valid list",
        ),
        (
            {"features": FEATURES, "entities": [1, 2]},
            422,
            "SCHEMA_MISMATCH",
            "entities.0: Input should be a valid dictionary",
        ),
        (
            [{"driver_id": 1}],
            422,
            "SCHEMA_MISMATCH",
            "Input should be a valid dictionary",
        ),
    ],
)
def test_online_bad_input(
    sqlite_ws: Workspace,
    client: TestClient,
    body: Any,
    status: int,
    code: str,
    message: str,
) -> None:
    _setup(sqlite_ws)
    error = is_error(client.post("/v1/features/online", json=body), status, code)
    assert message in error["message"]


def test_online_bad_json_too_many_rows_and_unmaterialized_view(
    sqlite_ws: Workspace, client: TestClient
) -> None:
    _setup(sqlite_ws, materialize=False)
    error = is_error(
        client.post(
            "/v1/features/online", json={"features": FEATURES, "entities": [{"driver_id": 1}]}
        ),
        400,
        "INVALID_INPUT",
    )
    assert "'stats@1' has not been materialized" in error["message"]
    error = is_error(
        client.post(
            "/v1/features/online",
            content=b'{"features": [',
            headers={"content-type": "application/json"},
        ),
        400,
        "INVALID_INPUT",
    )
    assert "not valid JSON" in error["message"]
    sqlite_ws.features.materialize(["stats"])
    too_many = [{"driver_id": 1}] * (MAX_ONLINE_ROWS + 1)
    error = is_error(
        client.post("/v1/features/online", json={"features": FEATURES, "entities": too_many}),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert f"the limit is {MAX_ONLINE_ROWS:,}" in error["message"]
    at_limit = [{"driver_id": 1 + i % 3} for i in range(MAX_ONLINE_ROWS)]
    response = client.post("/v1/features/online", json={"features": FEATURES, "entities": at_limit})
    assert response.status_code == 200, response.text
    assert len(response.json()["rows"]) == MAX_ONLINE_ROWS
    assert response.json()["rows"][1] == {"driver_id": 2, "rate": 0.9, "trips": 8}


def test_views_list_and_show(sqlite_ws: Workspace, client: TestClient) -> None:
    _setup(sqlite_ws, materialize=False)
    listed = client.get("/v1/features/views").json()
    assert [e["ref"] for e in listed["entities"]] == ["driver@1"]
    assert listed["entities"][0]["join_keys"] == {"driver_id": "integer"}
    assert [v["ref"] for v in listed["views"]] == ["stats@1"]
    assert [v["ref"] for v in listed["ondemand"]] == ["fare@1"]
    assert listed["ondemand"][0]["request"] == {"distance": "float"}

    view = client.get("/v1/features/views/stats").json()
    assert view["kind"] == "feature_view"
    assert view["version"] == 1
    assert view["ttl"] == 3600
    assert view["source"] == "ds"
    assert [f["name"] for f in view["features"]] == ["rate", "trips"]
    assert [f["dtype"] for f in view["features"]] == ["float", "integer"]

    sqlite_ws.features.apply([_stats_view().model_copy(update={"ttl": 7200})])
    assert client.get("/v1/features/views/stats").json()["version"] == 2
    assert client.get("/v1/features/views/stats@1").json()["ttl"] == 3600
    assert client.get("/v1/features/views/stats@2").json()["ttl"] == 7200
    fare = client.get("/v1/features/views/fare").json()
    assert fare["kind"] == "ondemand_view"
    assert fare["sources"] == ["stats:rate"]

    error = is_error(client.get("/v1/features/views/nope"), 404, "NOT_FOUND")
    assert "feature view 'nope' does not exist" in error["message"]
    error = is_error(client.get("/v1/features/views/stats@9"), 404, "NOT_FOUND")
    assert "has no version 9" in error["message"]
    error = is_error(client.get("/v1/features/views/stats@x"), 400, "INVALID_INPUT")
    assert "use NAME or NAME@N" in error["message"]


def test_materialize_materializations_and_status(sqlite_ws: Workspace, client: TestClient) -> None:
    rows = _setup(sqlite_ws, materialize=False)
    assert client.get("/v1/features/status").json()[0]["last_materialization"] is None

    response = client.post("/v1/features/materialize", json={"views": ["stats"]})
    assert response.status_code == 200, response.text
    [run] = response.json()
    assert run["view"] == "stats@1"
    assert run["mode"] == "range"
    assert run["status"] == "succeeded"
    assert run["rows_read"] == len(rows)
    assert run["entities_written"] == 3
    assert run["seconds"] >= 0
    newest = max(r[1] for r in rows).replace(tzinfo=UTC)
    assert datetime.fromisoformat(run["max_event_time"]) == newest

    # two new rows: an incremental run reads only them
    later = _now()
    _write(sqlite_ws, [(2, later - timedelta(minutes=1), 1.5, 9), (7, later, 2.5, 1)])
    response = client.post("/v1/features/materialize", json={"incremental": True})
    [run2] = response.json()
    assert run2["mode"] == "incremental"
    assert (run2["rows_read"], run2["entities_written"]) == (2, 2)
    online = client.post(
        "/v1/features/online",
        json={"features": FEATURES, "entities": [{"driver_id": 2}, {"driver_id": 7}]},
    ).json()
    assert online["rows"] == [
        {"driver_id": 2, "rate": 1.5, "trips": 9},
        {"driver_id": 7, "rate": 2.5, "trips": 1},
    ]

    runs = client.get("/v1/features/materializations", params={"view": "stats"}).json()
    assert [r["id"] for r in runs] == [run2["id"], run["id"]]  # newest first
    assert [r["id"] for r in client.get("/v1/features/materializations?limit=1").json()] == [
        run2["id"]
    ]
    is_error(client.get("/v1/features/materializations?limit=0"), 422, "SCHEMA_MISMATCH")
    is_error(client.get("/v1/features/materializations?view=nope"), 404, "NOT_FOUND")

    [status] = client.get("/v1/features/status").json()
    assert status["view"] == "stats@1"
    assert status["last_materialization"] == "succeeded"
    assert datetime.fromisoformat(status["newest_event"]) == later.replace(tzinfo=UTC)
    assert 0 <= status["freshness_seconds"] < 600
    assert status["fresh"] is True


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"views": ["nope"]}, 404, "NOT_FOUND", "feature view 'nope' does not exist"),
        ({"start": "yesterday"}, 400, "INVALID_INPUT", "invalid start 'yesterday'"),
        (
            {"start": "2024-02-01T00:00", "end": "2024-01-01T00:00"},
            400,
            "INVALID_INPUT",
            "is after end",
        ),
        (
            {"start": "2024-01-01T00:00", "incremental": True},
            400,
            "INVALID_INPUT",
            "an incremental materialization starts where the last ended",
        ),
        ({"views": "stats"}, 422, "SCHEMA_MISMATCH", "views: Input should be a valid list"),
        ({"incremental": "often"}, 422, "SCHEMA_MISMATCH", "incremental"),
    ],
)
def test_materialize_bad_input(
    sqlite_ws: Workspace, client: TestClient, body: Any, status: int, code: str, message: str
) -> None:
    _setup(sqlite_ws, materialize=False)
    error = is_error(client.post("/v1/features/materialize", json=body), status, code)
    assert message in error["message"]
    assert sqlite_ws.features.materializations() == []  # nothing ran


def test_materialize_with_nothing_applied(client: TestClient) -> None:
    error = is_error(client.post("/v1/features/materialize"), 400, "INVALID_INPUT")
    assert "no feature view to materialize" in error["message"]


def test_every_feature_route_passes_the_auth_dependency(
    sqlite_ws: Workspace,
) -> None:
    _setup(sqlite_ws)
    app = create_app(sqlite_ws, log_predictions=False)

    async def refuse() -> str:
        raise Unauthorized("no credentials")

    app.dependency_overrides[authenticate] = refuse
    with TestClient(app) as client:
        for method, path in [
            ("post", "/v1/features/online"),
            ("get", "/v1/features/views"),
            ("get", "/v1/features/views/stats"),
            ("get", "/v1/features/status"),
            ("get", "/v1/features/materializations"),
            ("post", "/v1/features/materialize"),
        ]:
            is_error(getattr(client, method)(path), 401, "UNAUTHORIZED")
