"""Evaluation on a named dataset, promotion through gates, rollback, and the audit trail."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mloop.core.errors import GateFailed, InvalidInput, NotFound
from mloop.workspace import Workspace

LOGISTIC = "sklearn.linear_model.LogisticRegression"
DUMMY = "sklearn.dummy.DummyClassifier"
BOOSTED = "sklearn.ensemble.HistGradientBoostingClassifier"


def _churn(seed: int, rows: int) -> pa.Table:
    """A label that depends on x1 * x2 (a tree finds it, a line hardly) and on x3 a little."""
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=(3, rows))
    score = 2.5 * np.sign(x1 * x2) + 0.4 * x3 + rng.normal(scale=0.5, size=rows)
    return pa.table(
        {
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "plan": rng.choice(["basic", "pro"], rows),
            "churned": np.where(score > 0, "yes", "no"),
        }
    )


@pytest.fixture
def churn_ws(ws: Workspace) -> Workspace:
    ws.datasets.write_version("churn_train", _churn(1, 1500))
    ws.datasets.write_version("churn_holdout", _churn(2, 600))
    return ws


def _train(ws: Workspace, model: str, **params: object) -> int:
    result = ws.training.train(
        "churn_train", "churned", model=model, params=params, register="churn"
    )
    assert result.model_version is not None
    return result.model_version.version


def test_gates_refuse_a_worse_challenger_promote_a_better_one_and_rollback(
    churn_ws: Workspace,
) -> None:
    ws = churn_ws
    first = _train(ws, LOGISTIC)
    assert ws.registry.get_model("churn").aliases == {"champion": first}
    policy = ws.registry.set_policy(
        "churn",
        gates=["roc_auc >= champion.roc_auc - 0.005", "pr_auc >= 0.3"],
        dataset="churn_holdout",
        sensitive=["plan"],
        slices=["plan"],
        latency_rows=20,
        reason="holdout gates for churn",
    )
    assert policy.dataset == "churn_holdout"
    assert ws.registry.get_policy("churn") == policy

    worse = _train(ws, DUMMY, strategy="prior")
    with pytest.raises(GateFailed, match=r"roc_auc >= champion.roc_auc - 0.005") as refused:
        ws.promotion.promote("churn", worse, reason="try the baseline")
    assert refused.value.details["failed"] == ["roc_auc >= champion.roc_auc - 0.005"]
    assert "pr_auc >= 0.3" not in refused.value.message  # only the failing gate
    assert ws.registry.get_model("churn").aliases["champion"] == first  # nothing moved

    better = _train(ws, BOOSTED, max_iter=60)
    promoted = ws.promotion.promote("churn", better, reason="boosting beats the line")
    assert promoted.passed
    assert promoted.previous == first
    assert promoted.candidate is not None
    assert promoted.champion is not None
    assert promoted.candidate.metrics["roc_auc"] > promoted.champion.metrics["roc_auc"] + 0.05
    # the champion's evaluation on the holdout was stored when the worse one was checked
    assert promoted.champion.reused
    assert ws.registry.get_model("churn").aliases["champion"] == better

    back = ws.promotion.rollback("churn", reason="alerts after the switch")
    assert back.version == first
    assert ws.registry.get_model("churn").aliases["champion"] == first

    # the audit trail: each step, newest first, with its reason
    trail = [
        (r.action, r.detail.get("version"), r.detail.get("reason"))
        for r in reversed(ws.audit.list(object_type="model", object_id="churn"))
        if r.action.startswith(("model.promote", "model.rollback", "model.policy"))
    ]
    assert trail == [
        ("model.policy.set", None, "holdout gates for churn"),
        ("model.promote.refused", worse, "try the baseline"),
        ("model.promote", better, "boosting beats the line"),
        ("model.rollback", first, "alerts after the switch"),
    ]
    moves = [(c.action, c.version, c.previous) for c in ws.registry.alias_history("churn")]
    assert moves == [
        ("set", first, None),
        ("promote", better, first),
        ("rollback", first, better),
    ]


def test_evaluation_metrics_slices_fairness_and_reuse(churn_ws: Workspace) -> None:
    ws = churn_ws
    version = _train(ws, LOGISTIC)
    evaluation = ws.evaluation.evaluate(
        f"churn@{version}", "churn_holdout", sensitive=["plan"], slices=["plan"], latency_rows=10
    )
    assert evaluation.rows == 600
    for name in ("accuracy", "f1", "roc_auc", "pr_auc", "log_loss", "brier", "latency_p99_ms"):
        assert name in evaluation.metrics
    assert evaluation.metrics["latency_p50_ms"] <= evaluation.metrics["latency_p99_ms"]
    assert 0 <= evaluation.metrics["demographic_parity_difference"] <= 1
    assert sum(evaluation.details["calibration"]["count"]) == 600
    assert evaluation.details["slices"]
    assert not evaluation.reused
    again = ws.evaluation.evaluate(
        f"churn@{version}", "churn_holdout", sensitive=["plan"], slices=["plan"], latency_rows=10
    )
    assert again.reused
    assert again.evaluation_id == evaluation.evaluation_id
    assert again.metrics == evaluation.metrics


def test_first_promotion_without_a_champion_skips_champion_gates(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("churn_train", _churn(1, 800))
    ws.datasets.write_version("churn_holdout", _churn(2, 300))
    first = _train(ws, LOGISTIC)
    ws.registry.delete_alias("churn", "champion")
    ws.registry.set_policy(
        "churn", gates=["roc_auc >= champion.roc_auc", "accuracy >= 0.5"], dataset="churn_holdout"
    )
    result = ws.promotion.promote("churn", first, reason="the first")
    assert [r.passed for r in result.report.results] == [None, True]
    assert ws.registry.get_model("churn").aliases["champion"] == first


def test_bad_promotion_input_is_refused_and_changes_nothing(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("churn_train", _churn(1, 800))
    ws.datasets.write_version("other", pa.table({"x1": [1.0, 2.0], "y": [0, 1]}))
    first = _train(ws, LOGISTIC)
    with pytest.raises(InvalidInput, match="not a valid expression"):
        ws.registry.set_policy("churn", gates=["roc_auc >="], dataset="churn_train")
    with pytest.raises(InvalidInput, match="must be a comparison"):
        ws.registry.set_policy("churn", gates=["roc_auc"], dataset="churn_train")
    assert ws.registry.get_policy("churn") is None
    with pytest.raises(NotFound):
        ws.registry.set_policy("nope", gates=["f1 > 0"], dataset="churn_train")
    with pytest.raises(NotFound):
        ws.promotion.promote("churn", 99, reason="no such version")
    with pytest.raises(InvalidInput, match="already"):
        ws.promotion.promote("churn", first)
    with pytest.raises(InvalidInput, match="needs a reason"):
        ws.promotion.promote("churn", first, force=True)
    with pytest.raises(InvalidInput, match="no earlier version"):
        ws.promotion.rollback("churn")
    with pytest.raises(InvalidInput, match="no target column 'churned'"):
        ws.evaluation.evaluate("churn", "other")
    with pytest.raises(InvalidInput, match="no sensitive column 'sex'"):
        ws.evaluation.evaluate("churn", "churn_train", sensitive=["sex"])
    assert ws.registry.get_model("churn").aliases == {"champion": first}


def test_forced_promotion_passes_failing_gates_and_says_so(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.datasets.write_version("churn_train", _churn(1, 800))
    first = _train(ws, LOGISTIC)
    ws.registry.set_policy("churn", gates=["accuracy >= 0.99"], dataset="churn_train")
    second = _train(ws, DUMMY)
    result = ws.promotion.promote("churn", second, force=True, reason="incident hotfix")
    assert result.forced
    assert not result.passed
    assert ws.registry.get_model("churn").aliases["champion"] == second
    last = ws.registry.alias_history("churn")[-1]
    assert (last.action, last.version, last.previous) == ("promote", second, first)
    assert last.detail["forced"] is True


def test_evaluation_times_rows_as_clients_send_them_nullable_booleans_included(
    ws: Workspace,
) -> None:
    # a boolean with nulls is 1.0 / 0.0 / NaN in the model's frame, but true / false / None in
    # a request: the latency rows must be the latter, or the signature check refuses them
    rng = np.random.default_rng(3)
    x = rng.normal(size=400)
    flag = pa.array([None if i % 7 == 0 else bool(i % 2) for i in range(400)], pa.bool_())
    table = pa.table({"x": x, "flag": flag, "y": np.where(x > 0, "yes", "no")})
    ws.datasets.write_version("flags", table)
    ws.training.train("flags", "y", model=LOGISTIC, register="flags", plots=False)
    evaluation = ws.evaluation.evaluate("flags@1", "flags", latency_rows=20)
    assert evaluation.rows == 400
    assert evaluation.metrics["latency_p50_ms"] > 0
    assert evaluation.metrics["accuracy"] > 0.9
