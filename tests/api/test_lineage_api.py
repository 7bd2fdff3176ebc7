"""The REST face of lineage and transforms: ``/v1/lineage``, ``/v1/lineage/openlineage`` and
``/v1/transforms``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from helpers import is_error
from lineage.support import Chain, build_chain, check_run_event
from mloop.api import create_app
from mloop.workspace import Workspace

embedded = pytest.mark.parametrize("backend", ["sqlite"])


@pytest.fixture
def chain(ws: Workspace, tmp_path: Path) -> Chain:
    return build_chain(ws, tmp_path)


@pytest.fixture
def client(chain: Chain) -> Iterator[TestClient]:
    with TestClient(create_app(chain.ws, log_predictions=False)) as c:
        yield c


def test_the_graph_around_a_node(chain: Chain, client: TestClient) -> None:
    response = client.get(
        "/v1/lineage", params={"node": "model:churn@champion", "direction": "upstream"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["root"] == f"model_version:{chain.model.id}"
    refs = [n["ref"] for n in body["nodes"]]
    assert refs[:3] == ["model:churn@1", f"run:{chain.run.id}", "dataset:features@1"]
    assert {"dataset:raw@1", "transform:features@1"} <= set(refs)
    labels = {n["ref"]: n["label"] for n in body["nodes"]}
    assert labels[f"run:{chain.run.id}"] == "lr"
    assert len(body["edges"]) == 5
    assert {"src", "dst", "relation"} == set(body["edges"][0])

    down = client.get("/v1/lineage", params={"node": "raw@1", "direction": "downstream"}).json()
    assert "model:churn@1" in [n["ref"] for n in down["nodes"]]
    assert "transform:features@1" not in [n["ref"] for n in down["nodes"]]

    near = client.get("/v1/lineage", params={"node": "dataset:features@1", "depth": 1}).json()
    assert (near["direction"], near["depth"]) == ("both", 1)
    assert "model:churn@1" not in [n["ref"] for n in near["nodes"]]


@embedded
def test_bad_lineage_requests(client: TestClient) -> None:
    is_error(client.get("/v1/lineage", params={"node": "dataset:nope@1"}), 404, "NOT_FOUND")
    is_error(client.get("/v1/lineage", params={"node": "model:churn@gold"}), 404, "NOT_FOUND")
    is_error(client.get("/v1/lineage", params={"node": "run:" + "a" * 32}), 404, "NOT_FOUND")
    is_error(client.get("/v1/lineage"), 422, "SCHEMA_MISMATCH")
    is_error(
        client.get("/v1/lineage", params={"node": "raw@1", "depth": 1000}), 422, "SCHEMA_MISMATCH"
    )
    is_error(
        client.get("/v1/lineage", params={"node": "raw@1", "direction": "up"}),
        422,
        "SCHEMA_MISMATCH",
    )
    is_error(client.get("/v1/lineage/openlineage", params={"node": "x@9"}), 404, "NOT_FOUND")


@embedded
def test_the_old_route_still_answers_with_edges(chain: Chain, client: TestClient) -> None:
    response = client.get(f"/v1/lineage/run/{chain.run.id}")
    assert response.status_code == 200, response.text
    features = chain.ws.datasets.get("features@1")
    assert response.json() == [
        {
            "src": {"type": "dataset_version", "id": features.id},
            "dst": {"type": "run", "id": chain.run.id},
            "relation": "trained_on",
        },
        {
            "src": {"type": "dataset_version", "id": chain.ws.datasets.get("raw@1").id},
            "dst": {"type": "dataset_version", "id": features.id},
            "relation": "transformed",
        },
        {
            "src": {"type": "transform", "id": chain.transform.id},
            "dst": {"type": "dataset_version", "id": features.id},
            "relation": "produced",
        },
        {
            "src": {"type": "source", "id": chain.csv.resolve().as_uri()},
            "dst": {"type": "dataset_version", "id": chain.ws.datasets.get("raw@1").id},
            "relation": "ingested",
        },
    ]


def test_openlineage_events(chain: Chain, client: TestClient) -> None:
    everything = client.get("/v1/lineage/openlineage")
    assert everything.status_code == 200, everything.text
    events = everything.json()
    for event in events:
        check_run_event(event)
    assert len(events) == 4
    around = client.get(
        "/v1/lineage/openlineage", params={"node": "unrelated@1", "namespace": "mloop://x"}
    ).json()
    assert [(e["job"]["name"], e["job"]["namespace"]) for e in around] == [
        ("ingest.unrelated", "mloop://x")
    ]


@embedded
def test_transforms_list_show_and_run(chain: Chain, client: TestClient) -> None:
    ws = chain.ws
    ws.transforms.register(
        "picked", "SELECT x, label FROM raw WHERE x > 0", inputs=["raw"], output="picked"
    )
    listed = client.get("/v1/transforms").json()
    assert [t["name"] for t in listed] == ["features", "picked"]
    shown = client.get("/v1/transforms/picked@1").json()
    assert (shown["kind"], shown["inputs"], shown["output"]) == ("sql", ["raw"], "picked")
    assert client.get("/v1/transforms/features").json()["id"] == chain.transform.id
    assert [v["version"] for v in client.get("/v1/transforms/picked/versions").json()] == [1]
    assert client.get("/v1/transforms/picked/runs").json() == []

    first = client.post("/v1/transforms/picked/runs")
    assert first.status_code == 201, first.text
    run = first.json()
    assert (run["cached"], run["inputs"], run["output"]) == (False, ["raw@1"], "picked@1")
    again = client.post("/v1/transforms/picked@1/runs", json={"inputs": {"raw": 1}})
    assert again.status_code == 200, again.text
    assert again.json()["cached"] is True
    assert again.json()["id"] == run["id"]
    assert [r["id"] for r in client.get("/v1/transforms/picked/runs").json()] == [run["id"]]

    cached = client.post("/v1/transforms/features/runs", json={})
    assert cached.status_code == 200
    assert cached.json()["id"] == chain.transform_run.id


@embedded
def test_transform_errors(chain: Chain, client: TestClient) -> None:
    ws = chain.ws
    ws.transforms.register("broken", "SELECT no_such FROM raw", inputs=["raw"], output="broken_out")
    is_error(client.get("/v1/transforms/nope"), 404, "NOT_FOUND")
    is_error(client.get("/v1/transforms/features@7"), 404, "NOT_FOUND")
    is_error(client.post("/v1/transforms/nope/runs"), 404, "NOT_FOUND")
    body = is_error(client.post("/v1/transforms/broken/runs"), 400, "INVALID_INPUT")
    assert "SQL of transform broken@1 failed" in body["message"]
    is_error(
        client.post("/v1/transforms/features/runs", json={"inputs": {"raw": 9}}), 404, "NOT_FOUND"
    )
    is_error(
        client.post("/v1/transforms/features/runs", json={"inputs": {"other": 1}}),
        400,
        "INVALID_INPUT",
    )
    assert [d.name for d in ws.datasets.list()].count("broken_out") == 0
