"""The tracking routes (``api/routers/runs.py``) with good and bad input, on SQLite and PostgreSQL:
experiments, the all-or-nothing tracking batch, run search, runs, tags, inputs, metric history
and artifacts. Errors are ``{"error", "message"}`` with 400/404/409 (422 for a body that does not
fit the schema)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from helpers import is_error
from mloop.api import create_app
from mloop.api.routers import runs as runs_router
from mloop.core.ids import new_id
from mloop.workspace import Workspace

MAX_FLOAT = 1.7976931348623157e308


@pytest.fixture
def client(ws: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(ws, log_predictions=False)) as c:
        yield c


def create_run(client: TestClient, experiment_id: str = "0", **fields: Any) -> str:
    run_id = new_id()
    op = {"op": "create_run", "run_id": run_id, "experiment_id": experiment_id, **fields}
    response = client.post("/v1/tracking/batch", json={"operations": [op]})
    assert response.status_code == 204, response.text
    return run_id


def log(client: TestClient, run_id: str, **fields: Any) -> Any:
    return client.post(
        "/v1/tracking/batch", json={"operations": [{"op": "log", "run_id": run_id, **fields}]}
    )


# -- the spec ----------------------------------------------------------------------------------


def test_openapi_lists_every_tracking_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    routes = [r for r in runs_router.router.routes if isinstance(r, APIRoute)]
    assert len(routes) == 24  # each one is exercised below: a new route needs tests here
    for route in routes:
        assert route.path_format in paths, route.path
        for method in route.methods:
            operation = paths[route.path_format][method.lower()]
            assert operation["summary"], route.path
    upload = paths["/v1/runs/{run_id}/artifacts/{path}"]["put"]["requestBody"]
    assert "application/octet-stream" in upload["content"]


# -- experiments -------------------------------------------------------------------------------


def test_experiments_are_created_read_renamed_tagged_deleted_and_restored(
    client: TestClient,
) -> None:
    created = client.post("/v1/experiments", json={"name": "churn", "tags": {"team": "risk"}})
    assert created.status_code == 201, created.text
    exp = created.json()
    assert (exp["name"], exp["lifecycle_stage"], exp["tags"]) == (
        "churn",
        "active",
        {"team": "risk"},
    )
    assert client.get(f"/v1/experiments/{exp['id']}").json() == exp
    assert client.get("/v1/experiments/by-name/churn").json() == exp
    assert [e["name"] for e in client.get("/v1/experiments").json()] == ["Default", "churn"]

    renamed = client.patch(f"/v1/experiments/{exp['id']}", json={"name": "churn-v2"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "churn-v2"
    is_error(client.get("/v1/experiments/by-name/churn"), 404, "NOT_FOUND")

    assert (
        client.put(f"/v1/experiments/{exp['id']}/tags/owner", json={"value": "ann"}).status_code
        == 204
    )
    assert (
        client.put(f"/v1/experiments/{exp['id']}/tags/owner", json={"value": "bob"}).status_code
        == 204
    )
    assert client.get(f"/v1/experiments/{exp['id']}").json()["tags"] == {
        "team": "risk",
        "owner": "bob",
    }

    deleted = client.delete(f"/v1/experiments/{exp['id']}")
    assert deleted.json()["lifecycle_stage"] == "deleted"
    assert [e["name"] for e in client.get("/v1/experiments").json()] == ["Default"]
    is_error(client.patch(f"/v1/experiments/{exp['id']}", json={"name": "x"}), 409, "CONFLICT")
    restored = client.post(f"/v1/experiments/{exp['id']}/restore")
    assert restored.json()["lifecycle_stage"] == "active"


def test_experiment_mistakes_are_clear_errors(client: TestClient) -> None:
    exp = client.post("/v1/experiments", json={"name": "a"}).json()
    client.post("/v1/experiments", json={"name": "b"})
    body = is_error(client.post("/v1/experiments", json={"name": "a"}), 409, "ALREADY_EXISTS")
    assert "already exists" in body["message"]
    is_error(client.post("/v1/experiments", json={"name": "  "}), 400, "INVALID_INPUT")
    is_error(client.post("/v1/experiments", json={"name": "x" * 256}), 400, "INVALID_INPUT")
    is_error(client.post("/v1/experiments", json={}), 422, "SCHEMA_MISMATCH")
    is_error(
        client.post("/v1/experiments", json={"name": "c", "tags": {"bad key!": "1"}}),
        400,
        "INVALID_INPUT",
    )
    is_error(
        client.post(
            "/v1/experiments", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
        "INVALID_INPUT",
    )
    is_error(client.get(f"/v1/experiments/{new_id()}"), 404, "NOT_FOUND")
    is_error(client.get(f"/v1/experiments/{'9' * 33}"), 400, "INVALID_INPUT")
    is_error(client.get("/v1/experiments/by-name/nope"), 404, "NOT_FOUND")
    is_error(
        client.patch(f"/v1/experiments/{exp['id']}", json={"name": "b"}), 409, "ALREADY_EXISTS"
    )
    is_error(client.patch(f"/v1/experiments/{new_id()}", json={"name": "z"}), 404, "NOT_FOUND")
    is_error(client.patch(f"/v1/experiments/{exp['id']}", json={}), 422, "SCHEMA_MISMATCH")
    is_error(client.delete("/v1/experiments/0"), 400, "INVALID_INPUT")
    is_error(client.delete(f"/v1/experiments/{new_id()}"), 404, "NOT_FOUND")
    is_error(client.post(f"/v1/experiments/{new_id()}/restore"), 404, "NOT_FOUND")
    is_error(
        client.put(f"/v1/experiments/{exp['id']}/tags/bad key!", json={"value": "1"}),
        400,
        "INVALID_INPUT",
    )
    is_error(
        client.put(f"/v1/experiments/{new_id()}/tags/k", json={"value": "1"}), 404, "NOT_FOUND"
    )
    is_error(client.put(f"/v1/experiments/{exp['id']}/tags/k", json={}), 422, "SCHEMA_MISMATCH")


def test_experiments_are_searched_filtered_ordered_and_paged(client: TestClient) -> None:
    for name, team in [("risk-a", "risk"), ("risk-b", "risk"), ("ops-a", "ops")]:
        client.post("/v1/experiments", json={"name": name, "tags": {"team": team}})

    def search(**body: Any) -> Any:
        return client.post("/v1/experiments/search", json=body)

    found = search(filter="tags.team = 'risk'", order_by=["name DESC"]).json()
    assert [e["name"] for e in found["items"]] == ["risk-b", "risk-a"]
    first = search(filter="name LIKE '%-a'", order_by=["name"], max_results=1).json()
    assert [e["name"] for e in first["items"]] == ["ops-a"]
    second = search(
        filter="name LIKE '%-a'",
        order_by=["name"],
        max_results=1,
        page_token=first["next_page_token"],
    ).json()
    assert [e["name"] for e in second["items"]] == ["risk-a"]
    assert second["next_page_token"] is None
    assert len(search().json()["items"]) == 4  # with Default
    body = is_error(search(filter="colour = 'red'"), 400, "INVALID_INPUT")
    assert "unknown field 'colour'" in body["message"]
    is_error(search(filter="name = 3"), 400, "INVALID_INPUT")
    is_error(search(order_by=["colour"]), 400, "INVALID_INPUT")
    is_error(search(view="gone"), 400, "INVALID_INPUT")
    is_error(search(max_results=0), 400, "INVALID_INPUT")
    is_error(search(page_token="%%%"), 400, "INVALID_INPUT")


def test_keys_with_a_slash_reach_their_routes(client: TestClient) -> None:
    run_id = create_run(client)
    assert (
        log(
            client, run_id, metrics=[{"key": "train/loss", "value": 1.0}], tags={"a/b": "1"}
        ).status_code
        == 204
    )
    history = client.get(f"/v1/runs/{run_id}/metrics/train/loss")
    assert history.status_code == 200, history.text
    assert [p["value"] for p in history.json()] == [1.0]
    assert client.delete(f"/v1/runs/{run_id}/tags/a/b").status_code == 204
    assert client.put("/v1/experiments/0/tags/a/b", json={"value": "1"}).status_code == 204


# -- the tracking batch ------------------------------------------------------------------------


def test_a_batch_creates_logs_and_ends_runs_in_one_request(client: TestClient) -> None:
    exp = client.post("/v1/experiments", json={"name": "e"}).json()
    parent, child = new_id(), new_id()
    ops = [
        {
            "op": "create_run",
            "run_id": parent,
            "experiment_id": exp["id"],
            "name": "p",
            "start_time": 1_700_000_000_000,
            "user": "ann",
            "tags": {"t": "1"},
        },
        {"op": "create_run", "run_id": child, "experiment_id": exp["id"], "parent_run_id": parent},
        {
            "op": "log",
            "run_id": parent,
            "params": {"lr": "0.1", "n": 3},
            "metrics": [
                {"key": "loss", "value": 0.5, "step": 0, "timestamp": 1_700_000_000_001},
                {"key": "loss", "value": 0.25, "step": 1, "timestamp": 1_700_000_000_002},
                {"key": "nan", "value": "NaN"},
                {"key": "inf", "value": "Infinity"},
                {"key": "ninf", "value": "-Infinity"},
            ],
            "tags": {"t": "2"},
        },
        {"op": "update_run", "run_id": parent, "status": "FINISHED", "end_time": 1_700_000_001_000},
    ]
    response = client.post("/v1/tracking/batch", json={"operations": ops})
    assert response.status_code == 204, response.text
    run = client.get(f"/v1/runs/{parent}").json()
    assert (run["name"], run["status"], run["user"], run["experiment"]) == (
        "p",
        "FINISHED",
        "ann",
        "e",
    )
    assert run["start_time"].startswith("2023-11-14T22:13:20")
    assert run["end_time"].startswith("2023-11-14T22:13:21")
    assert run["params"] == {"lr": "0.1", "n": "3"}
    assert run["tags"] == {"t": "2"}
    assert run["metrics"] == {"inf": MAX_FLOAT, "loss": 0.25, "nan": "NaN", "ninf": -MAX_FLOAT}
    assert client.get(f"/v1/runs/{child}").json()["parent_run_id"] == parent
    history = client.get(f"/v1/runs/{parent}/metrics/loss").json()
    assert [(p["step"], p["value"], p["timestamp"][:23]) for p in history] == [
        (0, 0.5, "2023-11-14T22:13:20.001"),
        (1, 0.25, "2023-11-14T22:13:20.002"),
    ]
    assert client.post("/v1/tracking/batch", json={"operations": []}).status_code == 204


BAD_OPS = [
    (
        {"op": "log", "run_id": "RUN", "metrics": [{"key": "bad key!", "value": 1}]},
        400,
        "INVALID_INPUT",
        "metric key",
    ),
    (
        {"op": "log", "run_id": "RUN", "params": {"big": "x" * 6001}},
        400,
        "INVALID_INPUT",
        "limit is 6000",
    ),
    (
        {"op": "log", "run_id": "RUN", "params": {"p": "other"}},
        409,
        "CONFLICT",
        "params cannot change",
    ),
    (
        {"op": "log", "run_id": "OTHER", "metrics": [{"key": "m", "value": 1}]},
        404,
        "NOT_FOUND",
        "does not exist",
    ),
    (
        {"op": "log", "run_id": "FINISHED", "metrics": [{"key": "m", "value": 1}]},
        409,
        "CONFLICT",
        "resume it first",
    ),
    ({"op": "log", "run_id": "nope"}, 400, "INVALID_INPUT", "not a run id"),
    (
        {"op": "create_run", "run_id": "NEW", "experiment_id": "missing"},
        404,
        "NOT_FOUND",
        "experiment",
    ),
    (
        {"op": "create_run", "run_id": "NEW", "parent_run_id": "OTHER"},
        404,
        "NOT_FOUND",
        "parent run",
    ),
    (
        {"op": "create_run", "run_id": "NEW", "name": "x" * 256},
        400,
        "INVALID_INPUT",
        "run name",
    ),
    ({"op": "update_run", "run_id": "RUN", "status": "DONE"}, 422, "SCHEMA_MISMATCH", "status"),
    (
        {"op": "log", "run_id": "RUN", "metrics": [{"key": "m", "value": "abc"}]},
        422,
        "SCHEMA_MISMATCH",
        "value",
    ),
    ({"op": "delete_everything", "run_id": "RUN"}, 422, "SCHEMA_MISMATCH", "op"),
]


def test_a_batch_with_one_bad_op_writes_nothing(client: TestClient) -> None:
    """Each bad op, in the middle of a batch of good ones: the batch is refused as a whole."""
    run_id = create_run(client)
    finished = create_run(client)
    client.patch(f"/v1/runs/{finished}", json={"status": "FINISHED"})
    assert log(client, run_id, params={"p": "mine"}).status_code == 204
    for bad_op, status, code, says in BAD_OPS:
        names = {"RUN": run_id, "FINISHED": finished, "OTHER": new_id(), "NEW": new_id()}
        bad = {k: names.get(v, v) if isinstance(v, str) else v for k, v in bad_op.items()}
        new_run = new_id()
        ops = [
            {"op": "create_run", "run_id": new_run},
            {
                "op": "log",
                "run_id": run_id,
                "metrics": [{"key": "m", "value": 1}],
                "tags": {"t": "v"},
                "params": {"q": "1"},
            },
            {"op": "update_run", "run_id": run_id, "name": "renamed"},
            bad,
            {"op": "log", "run_id": run_id, "metrics": [{"key": "after", "value": 2}]},
        ]
        response = client.post("/v1/tracking/batch", json={"operations": ops})
        body = is_error(response, status, code)
        assert says in body["message"], bad_op
        is_error(client.get(f"/v1/runs/{new_run}"), 404, "NOT_FOUND")
        run = client.get(f"/v1/runs/{run_id}").json()
        assert (run["name"], run["params"], run["metrics"], run["tags"]) == (
            f"run-{run_id[-8:]}",
            {"p": "mine"},
            {},
            {},
        ), bad_op


def test_a_batch_that_is_not_json_or_not_a_batch_is_refused(client: TestClient) -> None:
    is_error(
        client.post(
            "/v1/tracking/batch", content=b"[", headers={"content-type": "application/json"}
        ),
        400,
        "INVALID_INPUT",
    )
    is_error(client.post("/v1/tracking/batch", json={"ops": []}), 422, "SCHEMA_MISMATCH")
    is_error(client.post("/v1/tracking/batch", json=[1, 2]), 422, "SCHEMA_MISMATCH")


# -- runs ----------------------------------------------------------------------------------------


def _runs(client: TestClient) -> tuple[str, list[str]]:
    exp = client.post("/v1/experiments", json={"name": "search"}).json()["id"]
    ids = []
    for i in range(5):
        run_id = create_run(client, exp, name=f"r{i}", start_time=1_700_000_000_000 + i)
        log(
            client,
            run_id,
            params={"model": "xgb" if i < 3 else "lr"},
            metrics=[{"key": "score", "value": i / 10}],
            tags={"team": "risk" if i % 2 else "ops"},
        )
        ids.append(run_id)
    return exp, ids


def test_runs_are_searched_with_mlflows_grammar_and_paged(client: TestClient) -> None:
    exp, ids = _runs(client)

    def search(**body: Any) -> Any:
        return client.post("/v1/runs/search", json={"experiment_ids": [exp], **body})

    found = search(
        filter="metrics.score >= 0.1 and params.model = 'xgb'", order_by=["metrics.score DESC"]
    )
    assert [r["id"] for r in found.json()["items"]] == [ids[2], ids[1]]
    assert [r["id"] for r in search().json()["items"]] == ids[::-1]  # newest first
    pages, token = [], None
    while True:
        page = search(order_by=["metrics.score"], max_results=2, page_token=token).json()
        pages.append([r["id"] for r in page["items"]])
        token = page["next_page_token"]
        if token is None:
            break
    assert pages == [ids[:2], ids[2:4], ids[4:]]
    everywhere = client.post("/v1/runs/search", json={"filter": "tags.team = 'ops'"}).json()
    assert {r["id"] for r in everywhere["items"]} == {ids[0], ids[2], ids[4]}
    listed = client.get(
        "/v1/runs", params={"experiment": "search", "filter": "metrics.score < 0.2"}
    )
    assert [r["id"] for r in listed.json()] == [ids[1], ids[0]]

    body = is_error(search(filter="metrics.score > high"), 400, "INVALID_INPUT")
    assert "compares with a number, found 'high'" in body["message"]
    is_error(search(filter="metrics.a > 1 or metrics.b > 1"), 400, "INVALID_INPUT")
    is_error(search(order_by=["metrics.score SIDEWAYS"]), 400, "INVALID_INPUT")
    is_error(search(page_token="nope"), 400, "INVALID_INPUT")
    is_error(search(max_results=0), 400, "INVALID_INPUT")
    is_error(search(max_results=50_001), 400, "INVALID_INPUT")
    is_error(search(view="gone"), 400, "INVALID_INPUT")
    is_error(search(experiment_ids=[new_id()]), 404, "NOT_FOUND")
    is_error(client.post("/v1/runs/search", json={"max_results": "many"}), 422, "SCHEMA_MISMATCH")
    is_error(client.get("/v1/runs", params={"filter": "params.model = 3"}), 400, "INVALID_INPUT")


def test_runs_are_compared(client: TestClient) -> None:
    _, ids = _runs(client)
    comparison = client.post("/v1/runs/compare", json={"run_ids": [ids[0], ids[4]]}).json()
    assert comparison == {
        "runs": [ids[0], ids[4]],
        "names": ["r0", "r4"],
        "params": {"model": ["xgb", "lr"]},
        "metrics": {"score": [0.0, 0.4]},
        "differing_params": ["model"],
    }
    is_error(client.post("/v1/runs/compare", json={"run_ids": []}), 400, "INVALID_INPUT")
    is_error(client.post("/v1/runs/compare", json={"run_ids": [new_id()]}), 404, "NOT_FOUND")
    is_error(client.post("/v1/runs/compare", json={}), 422, "SCHEMA_MISMATCH")


def test_a_run_is_renamed_ended_resumed_deleted_and_restored(client: TestClient) -> None:
    run_id = create_run(client)
    assert client.patch(f"/v1/runs/{run_id}", json={"name": "better"}).json()["name"] == "better"
    ended = client.patch(
        f"/v1/runs/{run_id}", json={"status": "KILLED", "end_time": 1_700_000_000_000}
    )
    assert (ended.json()["status"], ended.json()["end_time"][:19]) == (
        "KILLED",
        "2023-11-14T22:13:20",
    )
    is_error(log(client, run_id, metrics=[{"key": "m", "value": 1}]), 409, "CONFLICT")
    resumed = client.patch(f"/v1/runs/{run_id}", json={"status": "RUNNING"}).json()
    assert (resumed["status"], resumed["end_time"]) == ("RUNNING", None)
    assert log(client, run_id, metrics=[{"key": "m", "value": 1}]).status_code == 204

    deleted = client.delete(f"/v1/runs/{run_id}").json()
    assert deleted["lifecycle_stage"] == "deleted"
    assert client.post("/v1/runs/search", json={}).json()["items"] == []
    assert [
        r["id"] for r in client.post("/v1/runs/search", json={"view": "deleted"}).json()["items"]
    ] == [run_id]
    is_error(log(client, run_id, metrics=[{"key": "m", "value": 2}]), 409, "CONFLICT")
    is_error(client.patch(f"/v1/runs/{run_id}", json={"name": "x"}), 409, "CONFLICT")
    assert client.post(f"/v1/runs/{run_id}/restore").json()["lifecycle_stage"] == "active"

    is_error(client.patch(f"/v1/runs/{run_id}", json={"status": "DONE"}), 422, "SCHEMA_MISMATCH")
    is_error(client.patch(f"/v1/runs/{run_id}", json={"name": ""}), 400, "INVALID_INPUT")
    is_error(client.patch(f"/v1/runs/{new_id()}", json={"name": "x"}), 404, "NOT_FOUND")
    is_error(client.get("/v1/runs/nope"), 400, "INVALID_INPUT")
    is_error(client.delete(f"/v1/runs/{new_id()}"), 404, "NOT_FOUND")
    is_error(client.post(f"/v1/runs/{new_id()}/restore"), 404, "NOT_FOUND")


def test_a_tag_is_removed(client: TestClient) -> None:
    run_id = create_run(client)
    log(client, run_id, tags={"a": "1", "b": "2"})
    assert client.delete(f"/v1/runs/{run_id}/tags/a").status_code == 204
    assert client.get(f"/v1/runs/{run_id}").json()["tags"] == {"b": "2"}
    body = is_error(client.delete(f"/v1/runs/{run_id}/tags/a"), 404, "NOT_FOUND")
    assert "no tag 'a'" in body["message"]
    is_error(client.delete(f"/v1/runs/{new_id()}/tags/b"), 404, "NOT_FOUND")
    client.patch(f"/v1/runs/{run_id}", json={"status": "FINISHED"})
    is_error(client.delete(f"/v1/runs/{run_id}/tags/b"), 409, "CONFLICT")


def test_inputs_are_recorded_once(client: TestClient) -> None:
    run_id = create_run(client)
    item = {"name": "train", "digest": "abc123", "context": "training", "schema": '{"x": "int"}'}
    for _ in range(2):
        response = client.post(
            f"/v1/runs/{run_id}/inputs", json=[item, {**item, "context": "eval"}]
        )
        assert response.status_code == 204, response.text
    inputs = client.get(f"/v1/runs/{run_id}").json()["inputs"]
    assert [(i["name"], i["context"], i["schema"]) for i in inputs] == [
        ("train", "training", '{"x": "int"}'),
        ("train", "eval", '{"x": "int"}'),
    ]
    found = client.post("/v1/runs/search", json={"filter": "datasets.context = 'eval'"}).json()
    assert [r["id"] for r in found["items"]] == [run_id]
    is_error(client.post(f"/v1/runs/{new_id()}/inputs", json=[item]), 404, "NOT_FOUND")
    is_error(client.post(f"/v1/runs/{run_id}/inputs", json=[{"name": "x"}]), 422, "SCHEMA_MISMATCH")
    is_error(client.post(f"/v1/runs/{run_id}/inputs", json=item), 422, "SCHEMA_MISMATCH")


def test_metric_history(client: TestClient) -> None:
    run_id = create_run(client)
    log(
        client,
        run_id,
        metrics=[
            {"key": "loss", "value": v, "step": s, "timestamp": 1_700_000_000_000 + s}
            for s, v in [(2, 0.2), (0, 0.9), (1, "NaN")]
        ],
    )
    history = client.get(f"/v1/runs/{run_id}/metrics/loss").json()
    assert [(p["step"], p["value"]) for p in history] == [(0, 0.9), (1, "NaN"), (2, 0.2)]
    assert client.get(f"/v1/runs/{run_id}/metrics/none").json() == []
    is_error(client.get(f"/v1/runs/{new_id()}/metrics/loss"), 404, "NOT_FOUND")
    is_error(client.get("/v1/runs/nope/metrics/loss"), 400, "INVALID_INPUT")


# -- artifacts -----------------------------------------------------------------------------------


def test_artifacts_are_uploaded_listed_and_downloaded(client: TestClient) -> None:
    run_id = create_run(client)
    url = f"/v1/runs/{run_id}/artifacts"
    uploaded = client.put(f"{url}/model/weights.bin", content=b"\x00\x01\x02")
    assert uploaded.status_code == 200, uploaded.text
    info = uploaded.json()
    assert (info["path"], info["size_bytes"], info["is_dir"]) == ("model/weights.bin", 3, False)
    assert client.put(f"{url}/model/weights.bin", content=b"\x00\x01\x02").json() == info
    client.put(f"{url}/model/card.md", content=b"# card")
    client.put(f"{url}/readme.txt", content=b"hi")
    client.put(f"{url}/empty.txt", content=b"")

    top = client.get(url).json()
    assert [(a["path"], a["is_dir"]) for a in top] == [
        ("empty.txt", False),
        ("model", True),
        ("readme.txt", False),
    ]
    inside = client.get(url, params={"path": "model"}).json()
    assert [a["path"] for a in inside] == ["model/card.md", "model/weights.bin"]
    assert client.get(url, params={"path": "nothing"}).json() == []
    download = client.get(f"{url}/model/weights.bin")
    assert (download.status_code, download.content) == (200, b"\x00\x01\x02")
    assert download.headers["content-type"] == "application/octet-stream"
    assert client.get(f"{url}/empty.txt").content == b""
    assert [a["path"] for a in client.get(f"/v1/runs/{run_id}").json()["artifacts"]] == [
        "empty.txt",
        "model/card.md",
        "model/weights.bin",
        "readme.txt",
    ]

    is_error(client.get(f"{url}/missing.bin"), 404, "NOT_FOUND")
    is_error(client.get(f"/v1/runs/{new_id()}/artifacts"), 404, "NOT_FOUND")
    is_error(client.get(f"/v1/runs/{new_id()}/artifacts/a.txt"), 404, "NOT_FOUND")
    is_error(client.put(f"/v1/runs/{new_id()}/artifacts/a.txt", content=b"x"), 404, "NOT_FOUND")
    is_error(client.get(url, params={"path": "../up"}), 400, "INVALID_INPUT")
    is_error(client.put(f"{url}/a%2F..%2F..%2Fup.txt", content=b"x"), 400, "INVALID_INPUT")
    client.patch(f"/v1/runs/{run_id}", json={"status": "FINISHED"})
    body = is_error(client.put(f"{url}/late.txt", content=b"x"), 409, "CONFLICT")
    assert "FINISHED" in body["message"]
    assert len(client.get(url).json()) == 3


# -- training ------------------------------------------------------------------------------------


def test_training_an_unknown_dataset_is_not_found(client: TestClient) -> None:
    is_error(
        client.post("/v1/training-runs", json={"dataset": "nope", "target": "y"}), 404, "NOT_FOUND"
    )
    is_error(client.post("/v1/training-runs", json={"dataset": "nope"}), 422, "SCHEMA_MISMATCH")


def test_nan_in_a_response_is_a_string_not_invalid_json(client: TestClient) -> None:
    run_id = create_run(client)
    log(client, run_id, metrics=[{"key": "m", "value": "NaN"}])
    response = client.post("/v1/runs/compare", json={"run_ids": [run_id]})
    assert response.json()["metrics"] == {"m": ["NaN"]}
    assert math.isnan(float(response.json()["metrics"]["m"][0]))
