"""``GET /v1/models/{ref}/drift?since=&until=`` on both backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from helpers import drift_frame
from mloop.api import create_app
from mloop.core.clock import now
from mloop.monitoring import DriftReport
from mloop.workspace import Workspace

MODEL = "scorer"
ROWS = 1200


@dataclass
class Served:
    client: TestClient
    t_shift: datetime  # unshifted traffic before, shifted traffic (x, cat) after


@pytest.fixture
def served(ws: Workspace) -> Iterator[Served]:
    ws.datasets.ingest(drift_frame(3000, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register=MODEL
    )
    app = create_app(ws)
    with TestClient(app) as client:
        t_shift = now()
        for seed, shifted in ((10, False), (11, True)):
            if shifted:
                time.sleep(0.01)
                t_shift = now()
                time.sleep(0.01)
            rows = drift_frame(ROWS, seed, shifted=shifted, labelled=False).to_dicts()
            for i in range(0, ROWS, 400):
                response = client.post(
                    f"/v1/models/{MODEL}/predict", json={"rows": rows[i : i + 400]}
                )
                assert response.status_code == 200, response.text
        assert app.state.prediction_logger.flush()  # the server keeps running
        yield Served(client, t_shift)


def drift(served: Served, ref: str = MODEL, **params: str) -> DriftReport:
    response = served.client.get(f"/v1/models/{ref}/drift", params=params)
    assert response.status_code == 200, response.text
    return DriftReport.model_validate(response.json())


def test_whole_traffic(served: Served) -> None:
    report = drift(served)
    assert (report.model, report.version, report.current_rows) == (MODEL, 1, 2 * ROWS)
    assert report.since is None
    assert [f.column for f in report.features] == ["x", "y", "cat"]
    assert [o.column for o in report.outputs] == ["prediction", "prediction_score"]
    spec = served.client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/models/{ref}/drift"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"ref", "since", "until"}


def test_iso_since_and_until(served: Served) -> None:
    t = served.t_shift.isoformat()  # 2026-...+00:00: the "+" must survive the query string
    for text in (t, t.replace("+00:00", "Z"), t.replace("+00:00", "")):  # naive means UTC
        after = drift(served, since=text)
        before = drift(served, f"{MODEL}@champion", until=text)
        assert after.since == served.t_shift
        assert before.until == served.t_shift
        assert (after.current_rows, before.current_rows) == (ROWS, ROWS)
        assert sorted(after.drifted_features) == ["cat", "x"]
        assert before.drifted_features == []
        assert "prediction_score" in after.drifted_outputs
        assert before.drifted_outputs == []
    between = drift(
        served,
        f"{MODEL}@1",
        since=(served.t_shift - timedelta(hours=1)).isoformat(),
        until=t,
    )
    assert between.current_rows == ROWS


def test_relative_since(served: Served) -> None:
    for since in ("30m", "-30m", "2h", "1d", "1800s", "0.5h"):
        report = drift(served, since=since)
        assert report.current_rows == 2 * ROWS
        assert report.since is not None
        assert report.since < served.t_shift


def test_bad_time_is_400(served: Served) -> None:
    for params, message in [
        ({"since": "yesterday"}, "cannot read time 'yesterday'"),
        ({"until": "soon"}, "cannot read time 'soon'"),
        ({"since": "30x"}, "cannot read time '30x'"),
    ]:
        response = served.client.get(f"/v1/models/{MODEL}/drift", params=params)
        assert response.status_code == 400, params
        body = response.json()
        assert body["error"] == "INVALID_INPUT"
        assert message in body["message"]


def test_not_found_is_404(served: Served) -> None:
    for ref, params, message in [
        ("nope", {}, "model 'nope' is not registered"),
        (f"{MODEL}@nope", {}, "has no alias 'nope'"),
        (f"{MODEL}@7", {}, "7"),
        (
            MODEL,
            {"since": "2999-01-01T00:00:00Z", "until": "2999-01-02T00:00:00Z"},
            f"no predictions of {MODEL}@1",
        ),
    ]:
        response = served.client.get(f"/v1/models/{ref}/drift", params=params)
        assert response.status_code == 404, response.text
        body = response.json()
        assert body["error"] == "NOT_FOUND"
        assert message in body["message"]
