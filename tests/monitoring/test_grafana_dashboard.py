"""The Grafana dashboard shipped in deploy/grafana: valid, and every metric its PromQL reads is
one a served app really exports on /metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from helpers import drift_frame
from mloop.api import create_app
from mloop.serving import ServingMetrics
from mloop.workspace import Workspace

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "mloop-dashboard.json"
METRIC = re.compile(r"\b(mloop_[a-zA-Z0-9_]+)")
# the alert rules' gauges, exported when alert rules exist (monitoring/prometheus.py)
ALERT_GAUGES = {"mloop_alert_state", "mloop_alert_value"}


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(_panels(panel.get("panels", [])))
    return out


def _queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
    return exprs


def _sample_names(metrics: ServingMetrics) -> set[str]:
    """What each metric of the registry is exported as, observed or not yet."""
    names = set()
    for family in metrics.registry.collect():
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
        }.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboard_is_valid() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = _panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("latency", "error", "predictions", "in-flight", "shadow", "backlog", "alert"):
        assert topic in titles


def test_every_metric_it_reads_is_exported(sqlite_ws: Workspace) -> None:
    sqlite_ws.datasets.ingest(drift_frame(500, 1), name="ref")
    sqlite_ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register="scorer"
    )
    rows = drift_frame(5, 2, labelled=False).to_dicts()
    with TestClient(create_app(sqlite_ws)) as client:
        assert client.post("/v1/models/scorer/predict", json={"rows": rows}).status_code == 200
        text = client.get("/metrics").text
    served = set(METRIC.findall(text))
    for name in ("mloop_requests_total", "mloop_predictions_total", "mloop_in_flight_requests"):
        assert name in served  # what the app really exported for this traffic
    assert "mloop_request_latency_seconds_bucket" in served
    # metrics with labels appear once observed: the rest as the server's registry declares them
    exported = served | _sample_names(ServingMetrics())
    used = {
        name
        for expr in _queries(json.loads(DASHBOARD.read_text()))
        for name in METRIC.findall(expr)
    }
    assert used, "the dashboard reads no mloop metric"
    unknown = used - exported - ALERT_GAUGES
    assert not unknown, f"the dashboard reads metrics no server exports: {sorted(unknown)}"
    assert used >= ALERT_GAUGES  # a panel for the alert rules
    assert "mloop_prediction_log_queued" in served  # the logger's backlog, with a logger running
