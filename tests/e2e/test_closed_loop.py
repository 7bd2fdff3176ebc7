"""The closed loop end to end, with no human step.

1. The champion serves; traffic drifts and its labels say it has decayed; the alert on live
   accuracy fires; the controller retrains on the fresh data; the challenger passes the gates,
   runs as a canary beside the champion, and is promoted automatically.
2. A challenger that passes the gates offline but does worse on live labels during its canary
   is rolled back automatically; the champion keeps serving, untouched.

Everything runs for real: the served app (its runtime, prediction log and feedback route), the
alert service, the controller's training, gates and deployment changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import polars as pl
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from loop_helpers import LOGREG, concept, rows_of
from mloop.api import create_app
from mloop.storage import tables
from mloop.workspace import Workspace


@pytest.fixture
def champion_ws(ws: Workspace) -> Iterator[Workspace]:
    """``loans`` version 1 (concept A) as champion, served by deployment ``loans``, with gates
    on the evaluation dataset ``loans_eval``."""
    ws.datasets.ingest(concept(1500, seed=1), name="loans")
    ws.datasets.ingest(concept(600, seed=2), name="loans_eval")
    ws.training.train(
        "loans", "label", model=LOGREG, register="loans", alias="champion", plots=False
    )
    ws.registry.set_policy(
        "loans", gates=["accuracy >= champion.accuracy", "accuracy >= 0.7"], dataset="loans_eval"
    )
    ws.deployments.create("loans", {"variants": [{"name": "main", "model": "loans@champion"}]})
    return ws


def serve(
    client: TestClient, frame: pl.DataFrame, *, batch: int = 1, key_base: int = 0
) -> list[tuple[str, str, int, int]]:
    """POST the rows (``batch`` per request, sticky keys spread them over the variants);
    returns (request id, variant, version, label) of each single-row request."""
    out = []
    rows, labels = rows_of(frame), frame.get_column("label").to_list()
    for i in range(0, len(rows), batch):
        answer = client.post(
            "/v1/deployments/loans/predict",
            json={"rows": rows[i : i + batch], "key": f"k{key_base + i}"},
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        out.append((body["request_id"], body["variant"], body["version"], labels[i]))
    return out


def send_labels(client: TestClient, served: list[tuple[str, str, int, int]]) -> None:
    answer = client.post(
        "/v1/feedback",
        json={"labels": [{"request_id": r, "label": label} for r, _, _, label in served]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(served)


def flush(client: TestClient) -> None:
    client.app.state.prediction_logger.flush()  # type: ignore[attr-defined]


def wait_for(client: TestClient, frame: pl.DataFrame, wanted: set[tuple[str, int]]) -> None:
    """Until the server has picked up the deployment change (it re-reads within a second):
    20 requests answered by exactly the ``wanted`` (variant, version) pairs."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        served = serve(client, frame.head(20), key_base=10_000_000)
        if {(v, version) for _, v, version, _ in served} == wanted:
            return
        time.sleep(0.2)
    raise AssertionError(f"the server never answered with {wanted}")


def audit_actions(ws: Workspace) -> list[str]:
    t = tables.audit_log
    with ws.db.read() as conn:
        return [
            r.action
            for r in conn.execute(
                sa.select(t.c.action).where(t.c.action.like("loop.%")).order_by(t.c.ts, t.c.id)
            )
        ]


def test_drift_and_decay_fire_the_alert_and_the_loop_promotes_a_retrained_model(
    champion_ws: Workspace,
) -> None:
    ws = champion_ws
    ws.alerts.add(
        {
            "name": "loans-accuracy",
            "model": "loans@champion",
            "series": "metric:accuracy",
            "op": "<",
            "threshold": 0.8,
            "window": "1h",
        }
    )
    ws.loop.set_policy(
        "loans",
        {
            "triggers": [{"type": "alert", "rule": "loans-accuracy"}],
            "recipe": {"name": "retrain"},
            "deployment": "loans",
            "canary": {
                "percent": 50,
                "requests": 60,
                "guardrails": {"max_metric_drop": 0.02, "min_labels": 30},
            },
            "cooldown": "1h",
        },
    )
    assert ws.loop.tick() == []  # nothing wrong yet: the alert has no data
    with TestClient(create_app(ws)) as client:
        # the world changes: x1 and x3 shift, and the label now follows the opposite of x1
        drifted = concept(240, seed=3, flipped=True, shift=1.5)
        served = serve(client, drifted)
        assert {v for _, v, _, _ in served} == {"main"}
        flush(client)
        send_labels(client, served)
        live = ws.performance.by_version("loans")[1]
        assert live.labeled == 240
        assert live.metrics["accuracy"] < 0.5
        assert ws.monitoring.window_drift("loans@champion", last=1)[-1].drifted_columns

        # fresh labeled data arrives for the recipe, and for the gates
        ws.datasets.ingest(concept(1500, seed=4, flipped=True, shift=1.5), name="loans")
        ws.datasets.ingest(concept(600, seed=5, flipped=True, shift=1.5), name="loans_eval")

        events = ws.alerts.evaluate()
        assert [(e.rule, e.kind) for e in events if e.kind == "firing"] == [
            ("loans-accuracy", "firing")
        ]
        moved = ws.loop.tick()
        assert [(r.state, r.trigger, r.candidate_version) for r in moved] == [
            ("canary", "alert", 2)
        ]
        assert "loans-accuracy" in moved[0].reason
        spec = ws.deployments.get("loans").spec()
        assert spec.strategy == "canary"
        assert [(v.name, v.model, v.weight) for v in spec.served()] == [
            ("main", "loans@champion", 100.0),
            ("challenger", "loans@2", 50.0),
        ]
        assert ws.registry.get_model("loans").aliases["champion"] == 1  # not yet

        wait_for(client, drifted, {("main", 1), ("challenger", 2)})
        canary_traffic = concept(200, seed=6, flipped=True, shift=1.5)
        served = serve(client, canary_traffic, key_base=1000)
        by_variant = {v for _, v, _, _ in served}
        assert by_variant == {"main", "challenger"}
        flush(client)
        send_labels(client, served)
        moved = ws.loop.tick()
        assert [r.state for r in moved] == ["promoted"], moved[0].outcome
        run = moved[0]
        assert "canary answered" in run.outcome
        metric = run.detail["progress"]["metric"]
        assert metric["challenger"] > metric["champion"] + 0.3

        assert ws.registry.get_model("loans").aliases["champion"] == 2
        spec = ws.deployments.get("loans").spec()
        assert (spec.strategy, [(v.name, v.model) for v in spec.served()]) == (
            "single",
            [("main", "loans@champion")],
        )
        wait_for(client, drifted, {("main", 2)})
        after = serve(client, canary_traffic.head(30), key_base=5000)
        assert {(v, version) for _, v, version, _ in after} == {("main", 2)}

    assert audit_actions(ws) == [
        "loop.policy.set",
        "loop.trigger",
        "loop.gating",
        "loop.canary",
        "loop.promote",
    ]
    status = {s.model: s for s in ws.loop.status()}["loans"]
    assert (status.state, status.champion, status.last and status.last.state) == (
        "idle",
        2,
        "promoted",
    )
    # lineage: champion 1 → the pass → version 2, and version 2's run is tagged with the pass
    graph = ws.lineage.downstream("model:loans@1")
    (node,) = [n for n in graph.nodes if n.type == "loop_run"]
    assert (node.id, node.ref) == (run.id, f"loop_run:{run.id}")
    assert node.label == "loop pass of loans (alert, promoted)"
    upstream = ws.lineage.upstream("model:loans@2")
    assert {n.ref for n in upstream.nodes} >= {f"loop_run:{run.id}", "model:loans@1"}
    v2 = ws.registry.get_version("loans", 2)
    assert v2.run_id is not None
    assert ws.tracking.get_run(v2.run_id).tags["mloop.loop_run"] == run.id


def test_a_challenger_worse_on_live_labels_is_rolled_back_and_the_champion_keeps_serving(
    champion_ws: Workspace,
) -> None:
    ws = champion_ws
    # a bad batch of training data (labels flipped) lands as the newest version of both the
    # training and the evaluation dataset: offline, the challenger looks better than the champion
    ws.datasets.ingest(concept(1500, seed=7, flipped=True), name="loans")
    ws.datasets.ingest(concept(600, seed=8, flipped=True), name="loans_eval")
    ws.loop.set_policy(
        "loans",
        {
            "triggers": [{"type": "labels", "min_new": 100}],
            "recipe": "retrain",
            "deployment": "loans",
            "canary": {
                "percent": 50,
                "requests": 400,
                "guardrails": {"max_metric_drop": 0.05, "min_labels": 30},
            },
        },
    )
    with TestClient(create_app(ws)) as client:
        live = concept(150, seed=9)  # the world has NOT changed: labels follow concept A
        served = serve(client, live)
        flush(client)
        send_labels(client, served)
        moved = ws.loop.tick()
        assert [(r.state, r.trigger) for r in moved] == [("canary", "labels")]
        assert "150 new labeled predictions" in moved[0].reason

        wait_for(client, live, {("main", 1), ("challenger", 2)})
        served = serve(client, concept(160, seed=10), key_base=1000)
        flush(client)
        send_labels(client, served)
        moved = ws.loop.tick()
        assert [r.state for r in moved] == ["rolled_back"]
        run = moved[0]
        assert "live accuracy" in run.outcome
        assert "champion" in run.outcome
        assert run.detail["progress"]["challenger"]["requests"] < 400  # stopped early

        assert ws.registry.get_model("loans").aliases["champion"] == 1
        spec = ws.deployments.get("loans").spec()
        assert [(v.name, v.model) for v in spec.served()] == [("main", "loans@champion")]
        assert ws.registry.get_version("loans", 2).tags["mloop.loop"] == "rolled_back"
        wait_for(client, live, {("main", 1)})
        after = serve(client, concept(40, seed=11), key_base=9000)
        assert {(v, version) for _, v, version, _ in after} == {("main", 1)}
    assert audit_actions(ws)[-2:] == ["loop.canary", "loop.rollback"]
    assert ws.loop.tick() == []  # the cooldown holds the next pass back
