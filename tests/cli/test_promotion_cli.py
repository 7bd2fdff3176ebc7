"""mloop models policy / evaluate / promote / rollback / history, and the same over REST."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from helpers import is_error, run_cli
from mloop.api import create_app
from mloop.workspace import Workspace

LOGISTIC = "sklearn.linear_model.LogisticRegression"
DUMMY = "sklearn.dummy.DummyClassifier"


def _data(seed: int, rows: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    return pa.table({"x": x, "noise": rng.normal(size=rows), "label": np.where(x > 0, "yes", "no")})


@pytest.fixture
def promo(sqlite_ws: Workspace) -> Workspace:
    ws = sqlite_ws
    ws.datasets.write_version("train", _data(1, 400))
    ws.datasets.write_version("holdout", _data(2, 200))
    for model in (LOGISTIC, DUMMY, LOGISTIC):
        ws.training.train("train", "label", model=model, register="m")
    return ws


def test_policy_promote_refused_then_rollback_from_the_cli(promo: Workspace) -> None:
    ws = promo
    code, _, err = run_cli(ws, "models", "policy", "m")
    assert code == 2
    assert "has no promotion policy" in err
    code, out, _ = run_cli(
        ws,
        "models",
        "policy",
        "m",
        "--gate",
        "roc_auc >= champion.roc_auc - 0.01",
        "--gate",
        "accuracy >= 0.8",
        "--dataset",
        "holdout",
        "--reason",
        "guard m",
    )
    assert code == 0
    assert "roc_auc >= champion.roc_auc - 0.01" in out
    code, out, _ = run_cli(ws, "models", "policy", "m", "--json")
    assert json.loads(out)["gates"] == ["roc_auc >= champion.roc_auc - 0.01", "accuracy >= 0.8"]

    code, out, err = run_cli(ws, "models", "promote", "m", "2", "--reason", "baseline")
    assert code == 1  # a failed check, not a usage error
    assert "FAIL" in out
    assert "roc_auc >= champion.roc_auc - 0.01" in err
    assert ws.registry.get_model("m").aliases["champion"] == 1

    code, out, _ = run_cli(ws, "models", "promote", "m", "3", "--reason", "retrained", "--json")
    assert code == 0
    body = json.loads(out)
    assert (body["passed"], body["previous"], body["version"]) == (True, 1, 3)
    assert ws.registry.get_model("m").aliases["champion"] == 3

    code, out, _ = run_cli(ws, "models", "evaluate", "m@3", "--dataset", "holdout", "--json")
    assert code == 0
    evaluation = json.loads(out)
    assert evaluation["reused"] is True  # stored when it was promoted
    assert evaluation["rows"] == 200

    code, out, _ = run_cli(ws, "models", "rollback", "m", "--reason", "paged at night")
    assert code == 0
    assert "m@champion → version 1 (rolled back from 3)" in out
    code, out, _ = run_cli(ws, "models", "history", "m", "--json")
    assert [(h["action"], h["version"], h["reason"]) for h in json.loads(out)] == [
        ("set", 1, "first version"),
        ("promote", 3, "retrained"),
        ("rollback", 1, "paged at night"),
    ]
    code, _, err = run_cli(ws, "models", "policy", "m", "--gate", "f1 >")
    assert code == 2
    assert "needs at least one --gate and the --dataset" in err
    code, _, err = run_cli(ws, "models", "policy", "m", "--gate", "f1 >", "--dataset", "holdout")
    assert code == 2
    assert "not a valid expression" in err
    code, _, err = run_cli(ws, "models", "promote", "m", "2", "--force")
    assert code == 2
    assert "needs a reason" in err


def test_promotion_over_rest(promo: Workspace) -> None:
    ws = promo
    with TestClient(create_app(ws, log_predictions=False)) as client:
        missing = client.get("/v1/models/m/policy")
        assert is_error(missing, 404, "NOT_FOUND")
        bad = client.put("/v1/models/m/policy", json={"gates": ["f1 >"], "dataset": "holdout"})
        assert is_error(bad, 400, "INVALID_INPUT")
        set_ = client.put(
            "/v1/models/m/policy",
            json={"gates": ["roc_auc >= champion.roc_auc - 0.01"], "dataset": "holdout"},
        )
        assert set_.status_code == 200
        assert set_.json()["gates"] == ["roc_auc >= champion.roc_auc - 0.01"]
        refused = client.post("/v1/models/m/promote", json={"version": 2, "reason": "try"})
        assert is_error(refused, 409, "GATE_FAILED")
        assert refused.json()["details"]["failed"] == ["roc_auc >= champion.roc_auc - 0.01"]
        promoted = client.post("/v1/models/m/promote", json={"version": 3, "reason": "better"})
        assert promoted.status_code == 200
        assert promoted.json()["passed"] is True
        assert promoted.json()["report"]["results"][0]["passed"] is True
        evaluated = client.post("/v1/models/m@2/evaluate", json={"dataset": "holdout"})
        assert evaluated.status_code == 200
        assert evaluated.json()["reused"] is True
        assert "roc_auc" in evaluated.json()["metrics"]
        back = client.post("/v1/models/m/rollback", json={"reason": "incident"})
        assert back.status_code == 200
        assert back.json()["version"] == 1
        again = client.post("/v1/models/m/rollback", json={})
        assert is_error(again, 400, "INVALID_INPUT")
        moves = client.get("/v1/models/m/history").json()
        assert [m["action"] for m in moves] == ["set", "promote", "rollback"]
        assert is_error(
            client.post("/v1/models/m/promote", json={"version": 0}), 422, "SCHEMA_MISMATCH"
        )


def test_explain_and_card_are_kept_with_the_version(promo: Workspace, tmp_path: Path) -> None:
    ws = promo
    code, out, _ = run_cli(ws, "models", "explain", "m@1", "--dataset", "holdout", "--json")
    assert code == 0
    ranked = json.loads(out)["importance"]
    assert next(iter(ranked)) == "x"  # the label is x's sign: x explains the most
    version = ws.registry.resolve("m@1")
    assert ws.registry.attachment(version, "explanation") is not None
    page = tmp_path / "card.html"
    code, out, _ = run_cli(
        ws,
        "models",
        "card",
        "m@1",
        "--dataset",
        "holdout",
        "--intended-use",
        "<script>alert(1)</script> sorting tickets",
        "--out",
        str(page),
    )
    assert code == 0
    html = page.read_text()
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    assert "roc_auc" in html
    with TestClient(create_app(ws, log_predictions=False)) as client:
        stored = client.get("/v1/models/m@1/card", params={"format": "md"})
        assert stored.status_code == 200
        assert stored.headers["content-type"].startswith("text/markdown")
        assert "sorting tickets" in stored.text
        assert is_error(client.get("/v1/models/m@2/card"), 404, "NOT_FOUND")
        assert is_error(client.get("/v1/models/m@1/card?format=pdf"), 400, "INVALID_INPUT")
    code, _, err = run_cli(ws, "models", "card", "m@1", "--dataset", "holdout", "--out", "c.pdf")
    assert code == 2
    assert ".html or .md" in err
