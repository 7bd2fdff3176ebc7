"""OpenLineage export: one COMPLETE RunEvent per ingest, transform run and training run, each
with what the spec requires, datasets in namespace ``mloop://<workspace>`` with schema facets."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from lineage.support import Chain, check_run_event
from mloop.workspace import Workspace

embedded = pytest.mark.parametrize("backend", ["sqlite"])


def by_job(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    jobs = [event["job"]["name"] for event in events]
    assert len(jobs) == len(set(jobs)), jobs
    return {event["job"]["name"]: event for event in events}


def versions_of(datasets: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(d["namespace"], d["name"], d["facets"]["version"]["datasetVersion"]) for d in datasets]


def test_the_whole_workspace_exports_one_event_per_step(chain: Chain) -> None:
    ws = chain.ws
    events = ws.lineage.openlineage()
    for event in events:
        check_run_event(event)
        assert event["eventType"] == "COMPLETE"
    ns = f"mloop://{ws.home.as_posix()}"
    assert {e["job"]["namespace"] for e in events} == {ns}
    jobs = by_job(events)
    assert set(jobs) == {"ingest.raw", "ingest.unrelated", "transform.features", "train.churn"}
    assert [e["eventTime"] for e in events] == sorted(e["eventTime"] for e in events)

    ingest = jobs["ingest.raw"]
    raw = ws.datasets.get("raw@1")
    assert ingest["run"]["runId"] == str(uuid.UUID(hex=raw.id))
    assert ingest["inputs"] == [{"namespace": "file", "name": str(chain.csv.resolve())}]
    assert versions_of(ingest["outputs"]) == [(ns, "raw", "1")]
    schema = ingest["outputs"][0]["facets"]["schema"]["fields"]
    assert schema == [{"name": c.name, "type": c.type} for c in raw.schema_.columns]
    assert ingest["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 300
    assert ingest["job"]["facets"]["jobType"]["jobType"] == "INGEST"

    step = jobs["transform.features"]
    assert step["run"]["runId"] == str(uuid.UUID(hex=chain.transform_run.id))
    assert versions_of(step["inputs"]) == [(ns, "raw", "1")]
    assert versions_of(step["outputs"]) == [(ns, "features", "1")]
    fields = [f["name"] for f in step["outputs"][0]["facets"]["schema"]["fields"]]
    assert fields == ["x", "y", "cat", "label", "x2"]
    code = step["job"]["facets"]["sourceCode"]
    assert code["language"] == "python"
    assert "def add_features(raw" in code["sourceCode"]

    train = jobs["train.churn"]
    assert train["run"]["runId"] == str(uuid.UUID(hex=chain.run.id))
    assert versions_of(train["inputs"]) == [(ns, "features", "1")]
    assert versions_of(train["outputs"]) == [(ns, "models/churn", "1")]
    assert train["job"]["facets"]["jobType"]["jobType"] == "TRAINING"


def test_an_export_around_a_node_holds_only_its_steps(chain: Chain) -> None:
    ws = chain.ws
    around_model = by_job(ws.lineage.openlineage("model:churn@champion"))
    assert set(around_model) == {"ingest.raw", "transform.features", "train.churn"}
    around_raw = by_job(ws.lineage.openlineage("dataset:raw@1"))
    assert set(around_raw) == {"ingest.raw", "transform.features", "train.churn"}
    assert set(by_job(ws.lineage.openlineage("unrelated@1"))) == {"ingest.unrelated"}


@embedded
def test_sql_transforms_carry_their_query_and_every_input(chain: Chain) -> None:
    ws = chain.ws
    sql = "SELECT r.cat, count(*) AS n, max(u.a) AS a FROM raw r CROSS JOIN unrelated u GROUP BY 1"
    ws.transforms.register("counts", sql, inputs=["raw", "unrelated"], output="counts")
    ws.transforms.run("counts")
    events = ws.lineage.openlineage("dataset:counts@1", namespace="mloop://team")
    for event in events:
        check_run_event(event)
    jobs = by_job(events)
    assert set(jobs) == {"transform.counts", "ingest.raw", "ingest.unrelated"}
    step = jobs["transform.counts"]
    assert step["job"]["namespace"] == "mloop://team"
    assert step["job"]["facets"]["sql"]["query"] == sql
    assert versions_of(step["inputs"]) == [
        ("mloop://team", "raw", "1"),
        ("mloop://team", "unrelated", "1"),
    ]


@embedded
def test_an_empty_workspace_exports_nothing_and_uploads_name_their_digest(
    ws: Workspace,
) -> None:
    assert ws.lineage.openlineage() == []
    ws.datasets.ingest_bytes(b"a,b\n1,2\n", name="up", format="csv")
    (event,) = ws.lineage.openlineage()
    check_run_event(event)
    (source,) = event["inputs"]
    assert source["namespace"] == "upload"
    assert source["name"].startswith("sha256:")
