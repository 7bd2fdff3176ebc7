"""Issue 6 end to end: train → tune → evaluate → a worse challenger refused by the gates →
a better one promoted → rollback restores the previous champion → the audit trail lists each
step with its reason. Then the champion's card and an export that loads on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mloop.core.errors import GateFailed
from mloop.models import load_folder
from mloop.workspace import Workspace


def _loans(seed: int, rows: int) -> pa.Table:
    """Default depends on income × debt (non-linear), a region that matters a little."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.4, rows)
    debt = rng.uniform(0, 1, rows)
    region = rng.choice(["north", "south"], rows)
    risk = debt * 2 - np.log(income) / 10 + (region == "south") * 0.1
    risk += np.where((debt > 0.6) & (income < 20_000), 1.0, 0.0)
    return pa.table(
        {
            "income": income,
            "debt_ratio": debt,
            "region": region,
            "defaulted": np.where(risk + rng.normal(scale=0.2, size=rows) > 0.4, "yes", "no"),
        }
    )


def test_train_tune_gate_promote_rollback_audit(sqlite_ws: Workspace, tmp_path: Path) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("loans", _loans(1, 1500))
    ws.datasets.write_version("loans_eval", _loans(2, 500))

    # 1. train: a linear baseline becomes the first champion
    baseline = ws.training.train(
        "loans", "defaulted", model="sklearn.linear_model.LogisticRegression", register="credit"
    )
    assert baseline.model_version is not None
    assert ws.registry.get_model("credit").aliases == {"champion": 1}
    ws.registry.set_policy(
        "credit",
        gates=[
            "roc_auc >= champion.roc_auc - 0.005",
            "`demographic_parity_difference[region]` <= 0.5",
        ],
        dataset="loans_eval",
        sensitive=["region"],
        latency_rows=20,
        reason="credit models must not lose AUC on the evaluation set",
    )

    # 2. a worse challenger (a constant model) is refused, naming the gate
    worse = ws.training.train(
        "loans", "defaulted", model="sklearn.dummy.DummyClassifier", register="credit"
    )
    assert worse.model_version is not None
    with pytest.raises(GateFailed) as refused:
        ws.promotion.promote("credit", worse.model_version.version, reason="cheaper model")
    assert refused.value.details["failed"] == ["roc_auc >= champion.roc_auc - 0.005"]
    assert ws.registry.get_model("credit").aliases["champion"] == 1

    # 3. tune boosting; the best trial is refitted as a candidate version
    tuned = ws.tuning.tune(
        "loans",
        "defaulted",
        model="sklearn.ensemble.HistGradientBoostingClassifier",
        space={
            "learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
            "max_depth": {"type": "int", "low": 2, "high": 6},
        },
        params={"max_iter": 40},
        n_trials=4,
        cv=2,
        register="credit",
        alias="challenger",
    )
    assert tuned.refit is not None
    assert tuned.refit.model_version is not None
    candidate = tuned.refit.model_version.version
    assert ws.registry.get_model("credit").aliases["challenger"] == candidate

    # 4. evaluate, then promote through the gates
    options = {"sensitive": ["region"], "latency_rows": 20}  # the policy's
    evaluation = ws.evaluation.evaluate(f"credit@{candidate}", "loans_eval", **options)
    champion = ws.evaluation.evaluate("credit@champion", "loans_eval", **options)
    assert evaluation.metrics["roc_auc"] > champion.metrics["roc_auc"]
    promoted = ws.promotion.promote("credit", candidate, reason="tuned boosting wins on AUC")
    assert promoted.passed
    assert promoted.candidate is not None
    assert promoted.candidate.reused  # the evaluation above, stored with the version
    assert ws.registry.get_model("credit").aliases["champion"] == candidate

    # 5. rollback restores the previous champion in one call
    back = ws.promotion.rollback("credit", reason="complaints from the south region")
    assert back.version == 1
    assert ws.registry.get_model("credit").aliases["champion"] == 1

    # 6. the audit trail lists each step with its reason, oldest first
    steps = [
        (r.action, r.detail.get("version"), r.detail.get("reason"))
        for r in reversed(ws.audit.list(object_type="model", object_id="credit"))
        if r.action
        in ("model.policy.set", "model.promote", "model.promote.refused", "model.rollback")
    ]
    assert steps == [
        ("model.policy.set", None, "credit models must not lose AUC on the evaluation set"),
        ("model.promote.refused", worse.model_version.version, "cheaper model"),
        ("model.promote", candidate, "tuned boosting wins on AUC"),
        ("model.rollback", 1, "complaints from the south region"),
    ]
    # the tuning study's trials are child runs of its run
    children = [
        r
        for r in ws.tracking.search_runs().items
        if r.tags.get("mlflow.parentRunId") == tuned.run.id
    ]
    assert len(children) == tuned.complete + tuned.pruned + tuned.failed

    # 7. the champion exported loads without the workspace, predicting as served
    folder = ws.registry.export("credit@champion", tmp_path / "credit")
    rows = [{"income": 15_000.0, "debt_ratio": 0.9, "region": "south"}]
    assert load_folder(folder).predict_rows(rows)[0] == ws.predict("credit", rows).predictions
