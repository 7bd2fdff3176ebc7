"""The loop controller's rules, one at a time: what a policy may name, what each trigger
reads, and that every way a pass can go wrong leaves the champion serving."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from croniter import croniter
from fastapi.testclient import TestClient

from loop_helpers import LOGREG, concept, rows_of
from mloop.api import create_app
from mloop.core.clock import from_ms
from mloop.core.errors import InvalidInput, NotFound
from mloop.loop import RecipeContext, recipe
from mloop.storage import tables
from mloop.workspace import Workspace

POLICY: dict[str, Any] = {
    "triggers": [{"type": "schedule", "cron": "*/5 * * * *"}],
    "recipe": "retrain",
    "deployment": "loans",
    "canary": {"percent": 50, "requests": 40},
    "cooldown": "1h",
}


@recipe("test-broken")
def broken(ctx: RecipeContext) -> int:
    raise RuntimeError("the training cluster is down")


@recipe("test-dummy")
def dummy(ctx: RecipeContext) -> Any:
    """A challenger that always predicts the majority class: the gates must refuse it."""
    result = ctx.ws.training.train(
        "loans",
        "label",
        model="sklearn.dummy.DummyClassifier",
        register=ctx.model,
        tags=ctx.tags,
        plots=False,
    )
    return result.model_version


@recipe("test-new-feature")
def new_feature(ctx: RecipeContext) -> Any:
    """A challenger that needs a column the clients do not send: it fails its requests."""
    frame = concept(800, seed=31).with_columns(x4=concept(800, seed=32).get_column("x1"))
    ctx.ws.datasets.ingest(frame, name="loans_x4")
    return ctx.ws.training.train(
        "loans_x4", "label", model=LOGREG, register=ctx.model, plots=False
    ).model_version


@pytest.fixture
def lws(ws: Workspace) -> Workspace:
    ws.datasets.ingest(concept(800, seed=1), name="loans")
    ws.datasets.ingest(concept(400, seed=2), name="loans_eval")
    ws.training.train(
        "loans", "label", model=LOGREG, register="loans", alias="champion", plots=False
    )
    ws.registry.set_policy("loans", gates=["accuracy >= 0.7"], dataset="loans_eval")
    ws.deployments.create("loans", {"variants": [{"name": "main", "model": "loans@champion"}]})
    return ws


def _spec(ws: Workspace) -> list[tuple[str, str]]:
    return [(v.name, v.model) for v in ws.deployments.get("loans").served()]


# -- what a policy may name ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"recipe": "no-such-recipe"}, "no training recipe named 'no-such-recipe'"),
        ({"recipe": "nowhere.at_all:train"}, "module 'nowhere.at_all' cannot be imported"),
        ({"recipe": "json:no_such_function"}, "json has no function 'no_such_function'"),
        ({"triggers": [{"type": "alert", "rule": "ghost"}]}, "alert rule 'ghost'"),
        ({"triggers": [{"type": "schedule", "cron": "every day"}]}, "not a cron expression"),
        ({"triggers": []}, "triggers"),
        ({"triggers": [{"type": "sometimes"}]}, "'sometimes'"),
        ({"cooldown": "soon"}, "cooldown must be a positive duration"),
        ({"canary": {"percent": 10, "requests": None}}, "'requests', 'duration' or both"),
        ({"canary": {"percent": 150}}, "percent"),
        ({"alias": "staging"}, "does not serve loans@staging"),
    ],
)
def test_a_bad_policy_is_refused_with_a_clear_message(
    lws: Workspace, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        lws.loop.set_policy("loans", {**POLICY, **change})
    with pytest.raises(NotFound):
        lws.loop.get_policy("loans")  # nothing was written


def test_a_policy_for_a_missing_model_or_deployment_is_not_found(lws: Workspace) -> None:
    with pytest.raises(NotFound):
        lws.loop.set_policy("nobody", POLICY)
    with pytest.raises(NotFound):
        lws.loop.set_policy("loans", {**POLICY, "deployment": "elsewhere"})


# -- passes that end early leave the champion serving ---------------------------------------


def _runs(ws: Workspace) -> list[tuple[str, str]]:
    return [(r.state, r.trigger) for r in ws.loop.runs("loans")]


def test_a_failed_retraining_leaves_the_champion_serving(lws: Workspace) -> None:
    lws.loop.set_policy("loans", {**POLICY, "recipe": "test-broken"})
    run = lws.loop.trigger("loans", "testing a broken recipe")
    assert run.state == "failed"
    assert "the training cluster is down" in run.outcome
    assert run.ended_at is not None
    assert lws.registry.get_model("loans").aliases["champion"] == 1
    assert [v.version for v in lws.registry.versions("loans")] == [1]
    assert _spec(lws) == [("main", "loans@champion")]
    assert lws.deployments.get("loans").strategy == "single"
    # and the champion still answers, through the served app
    with TestClient(create_app(lws, log_predictions=False)) as client:
        answer = client.post(
            "/v1/deployments/loans/predict", json={"rows": rows_of(concept(3, seed=5))}
        )
    assert answer.status_code == 200
    assert answer.json()["version"] == 1


def test_a_challenger_the_gates_refuse_never_reaches_traffic(lws: Workspace) -> None:
    lws.loop.set_policy("loans", {**POLICY, "recipe": "test-dummy"})
    run = lws.loop.trigger("loans")
    assert (run.state, run.candidate_version) == ("refused", 2)
    assert "failed the gates" in run.outcome
    assert "accuracy >= 0.7" in run.outcome
    assert lws.registry.get_model("loans").aliases["champion"] == 1
    assert _spec(lws) == [("main", "loans@champion")]


def test_a_pass_runs_one_at_a_time(lws: Workspace) -> None:
    lws.loop.set_policy("loans", POLICY)
    run = lws.loop.trigger("loans")
    assert run.state == "canary"
    with pytest.raises(InvalidInput, match="is running"):
        lws.loop.trigger("loans")


def test_without_a_canary_a_challenger_that_passes_the_gates_is_promoted(
    lws: Workspace,
) -> None:
    lws.loop.set_policy("loans", {**POLICY, "deployment": None})
    run = lws.loop.trigger("loans")
    assert run.state == "promoted"
    assert lws.registry.get_model("loans").aliases["champion"] == 2
    history = lws.registry.alias_history("loans", "champion")
    assert history[-1].version == 2
    assert f"loop {run.id}" in (history[-1].reason or "")


# -- triggers -------------------------------------------------------------------------------


def test_the_schedule_fires_once_per_due_time_and_the_cooldown_holds(lws: Workspace) -> None:
    lws.loop.set_policy("loans", {**POLICY, "deployment": None, "cooldown": "20m"})
    set_at = lws.loop.runs("loans")  # no pass yet
    assert set_at == []
    t = tables.loop_policies
    with lws.db.read() as conn:
        updated = conn.execute(sa.select(t.c.updated_at)).scalar_one()
    start = from_ms(updated)
    due = croniter("*/5 * * * *", start).get_next(datetime)
    assert lws.loop.tick(now=due - timedelta(seconds=1)) == []  # not due yet
    first = lws.loop.tick(now=due)
    assert [(r.trigger, r.state) for r in first] == [("schedule", "promoted")]
    assert "*/5 * * * *" in first[0].reason
    start = due
    # a due time has passed again, but the cooldown (20m after the last pass) holds it back
    assert lws.loop.tick(now=start + timedelta(minutes=12)) == []
    # once the cooldown is over, the due time that passed meanwhile fires the next pass
    second = lws.loop.tick(now=start + timedelta(minutes=21))
    assert [(r.trigger, r.state) for r in second] == [("schedule", "promoted")]
    assert second[0].id != first[0].id


def test_a_drift_trigger_names_the_drifted_inputs(lws: Workspace) -> None:
    lws.loop.set_policy(
        "loans",
        {**POLICY, "triggers": [{"type": "drift", "window": "1h", "share": 0.5, "min_rows": 100}]},
    )
    with TestClient(create_app(lws)) as client:
        answer = client.post(
            "/v1/deployments/loans/predict",
            json={"rows": rows_of(concept(150, seed=7, shift=0.0))},
        )
        assert answer.status_code == 200
        client.app.state.prediction_logger.flush()  # type: ignore[attr-defined]
    assert lws.loop.tick() == []  # the same distribution: no pass
    with TestClient(create_app(lws)) as client:
        answer = client.post(
            "/v1/deployments/loans/predict",
            json={"rows": rows_of(concept(400, seed=8, shift=3.0))},
        )
        assert answer.status_code == 200
    moved = lws.loop.tick()
    assert [(r.trigger, r.state) for r in moved] == [("drift", "canary")]
    assert "x1" in moved[0].reason
    assert "x3" in moved[0].reason


# -- guardrails -----------------------------------------------------------------------------


def test_a_canary_that_fails_its_requests_is_rolled_back(lws: Workspace) -> None:
    lws.loop.set_policy(
        "loans",
        {
            **POLICY,
            "recipe": "test-new-feature",
            "canary": {"percent": 50, "requests": 500, "guardrails": {"max_error_rate": 0.05}},
        },
    )
    lws.registry.delete_policy("loans")  # no gates: the point here is the canary
    run = lws.loop.trigger("loans")
    assert run.state == "canary", run.outcome
    rows = rows_of(concept(60, seed=9))
    with TestClient(create_app(lws)) as client:
        codes = [
            client.post(
                "/v1/deployments/loans/predict", json={"rows": [row], "key": str(i)}
            ).status_code
            for i, row in enumerate(rows)
        ]
    assert 200 in codes
    assert any(code >= 400 for code in codes)
    moved = lws.loop.tick()
    assert [r.state for r in moved] == ["rolled_back"]
    assert "error rate" in moved[0].outcome
    assert lws.registry.get_model("loans").aliases["champion"] == 1
    assert _spec(lws) == [("main", "loans@champion")]
    assert lws.deployments.get("loans").strategy == "single"


def test_a_pass_whose_controller_died_while_training_ends_failed(lws: Workspace) -> None:
    lws.loop.set_policy("loans", {**POLICY, "max_training": "2h"})
    t = tables.loop_runs
    started = from_ms(1_790_000_000_000)
    with lws.db.write() as conn:  # what a controller killed mid-training leaves behind
        conn.execute(
            t.insert().values(
                id="0" * 32,
                model_name="loans",
                state="training",
                trigger="schedule",
                reason="a pass from before the crash",
                started_at=1_790_000_000_000,
                updated_at=1_790_000_000_000,
                detail={},
            )
        )
    assert lws.loop.tick(now=started + timedelta(hours=1)) == []  # maybe still training
    with pytest.raises(InvalidInput, match="is running"):
        lws.loop.trigger("loans")
    (ended,) = lws.loop.tick(now=started + timedelta(hours=3))
    assert (ended.id, ended.state) == ("0" * 32, "failed")
    assert "the controller stopped while training" in ended.outcome
    assert lws.loop.trigger("loans").state == "canary"  # the next pass can start


def test_the_database_holds_one_active_pass_per_model(lws: Workspace) -> None:
    # what two controllers claiming at the same moment would write: the second insert fails
    t = tables.loop_runs
    row = {
        "model_name": "loans",
        "state": "training",
        "trigger": "manual",
        "reason": "race",
        "started_at": 1,
        "updated_at": 1,
        "detail": {},
    }
    with lws.db.write() as conn:
        conn.execute(t.insert().values(id="a" * 32, **row))
    with pytest.raises(sa.exc.IntegrityError), lws.db.write() as conn:
        conn.execute(t.insert().values(id="b" * 32, **row))
    # ended passes do not count
    with lws.db.write() as conn:
        conn.execute(t.update().where(t.c.id == "a" * 32).values(state="failed"))
        conn.execute(t.insert().values(id="b" * 32, **row))
        conn.execute(t.insert().values(id="c" * 32, **{**row, "model_name": "other"}))


# -- found in review: every way a pass could be stranded or misread ----------------------------


@pytest.mark.parametrize("how", ["disable", "delete"])
def test_a_canary_whose_policy_is_disabled_or_deleted_is_rolled_back(
    lws: Workspace, how: str
) -> None:
    lws.loop.set_policy("loans", POLICY)
    run = lws.loop.trigger("loans")
    assert run.state == "canary"
    if how == "disable":
        lws.loop.enable("loans", False)
    else:
        lws.loop.delete_policy("loans")
    (moved,) = lws.loop.tick()
    assert (moved.id, moved.state) == (run.id, "rolled_back")
    assert f"the loop policy of loans was {how}d" in moved.outcome
    assert _spec(lws) == [("main", "loans@champion")]
    assert lws.deployments.get("loans").strategy == "single"


@recipe("test-ended-elsewhere")
def ended_elsewhere(ctx: RecipeContext) -> Any:
    """Trains, but meanwhile another controller took the pass for dead and ended it."""
    t = tables.loop_runs
    with ctx.ws.db.write() as conn:
        conn.execute(t.update().where(t.c.state == "training").values(state="failed", ended_at=1))
    return dummy(ctx)


def test_a_pass_ended_elsewhere_while_training_stays_ended(lws: Workspace) -> None:
    lws.loop.set_policy("loans", {**POLICY, "recipe": "test-ended-elsewhere"})
    run = lws.loop.trigger("loans")
    assert run.state == "failed"  # not gating, not canary
    assert _spec(lws) == [("main", "loans@champion")]
    assert lws.registry.get_model("loans").aliases["champion"] == 1


@recipe("test-interrupted")
def interrupted(ctx: RecipeContext) -> int:
    raise KeyboardInterrupt


def test_ctrl_c_while_training_ends_the_pass_and_stops(lws: Workspace) -> None:
    lws.loop.set_policy("loans", {**POLICY, "recipe": "test-interrupted"})
    with pytest.raises(KeyboardInterrupt):
        lws.loop.trigger("loans")
    (run,) = lws.loop.runs("loans")
    assert (run.state, run.outcome) == ("failed", "interrupted while training")
    lws.loop.set_policy("loans", {**POLICY, "recipe": "test-broken"})
    assert lws.loop.trigger("loans").state == "failed"  # the next pass is not blocked


def test_a_canary_beside_a_variant_named_challenger_reads_its_own_traffic(
    lws: Workspace,
) -> None:
    lws.deployments.update(
        "loans", {"variants": [{"name": "challenger", "model": "loans@champion"}]}
    )
    lws.loop.set_policy("loans", {**POLICY, "canary": {"percent": 10, "requests": 1000}})
    run = lws.loop.trigger("loans")
    assert (run.detail["stable_variant"], run.detail["canary_variant"]) == (
        "challenger",
        "challenger-2",
    )
    rows = rows_of(concept(40, seed=12))
    with TestClient(create_app(lws)) as client:
        served = [
            client.post(
                "/v1/deployments/loans/predict", json={"rows": [row], "key": str(i)}
            ).json()["variant"]
            for i, row in enumerate(rows)
        ]
    (moved,) = lws.loop.tick()
    assert moved.state == "canary"  # 1,000 requests to go
    progress = moved.detail["progress"]
    assert progress["challenger"]["requests"] == served.count("challenger-2")
    assert progress["stable"]["requests"] == served.count("challenger")
    assert served.count("challenger-2") < served.count("challenger")


def test_promotion_ends_the_pass_even_when_the_deployment_is_gone(lws: Workspace) -> None:
    lws.loop.set_policy("loans", {**POLICY, "canary": {"percent": 50, "requests": 3}})
    run = lws.loop.trigger("loans")
    rows = rows_of(concept(30, seed=13))
    with TestClient(create_app(lws)) as client:
        for i, row in enumerate(rows):
            client.post("/v1/deployments/loans/predict", json={"rows": [row], "key": str(i)})
    lws.deployments.delete("loans")
    (moved,) = lws.loop.tick()
    assert (moved.id, moved.state) == (run.id, "promoted")
    assert "restoring the deployment failed" in moved.outcome
    assert lws.registry.get_model("loans").aliases["champion"] == 2


@recipe("test-retrain")
def plain_retrain(ctx: RecipeContext) -> Any:
    return dummy(ctx) if ctx.params.get("dummy") else new_feature(ctx)


def test_a_broken_trigger_does_not_hold_the_others_back(lws: Workspace) -> None:
    lws.alerts.add(
        {"name": "gone", "model": "loans@champion", "series": "volume", "op": ">", "threshold": 1}
    )
    lws.loop.set_policy(
        "loans",
        {
            **POLICY,
            "deployment": None,
            "triggers": [
                {"type": "alert", "rule": "gone"},
                {"type": "schedule", "cron": "*/5 * * * *"},
            ],
        },
    )
    lws.alerts.delete("gone")  # the alert trigger now fails every round
    t = tables.loop_policies
    with lws.db.read() as conn:
        start = from_ms(conn.execute(sa.select(t.c.updated_at)).scalar_one())
    due = croniter("*/5 * * * *", start).get_next(datetime)
    moved = lws.loop.tick(now=due)
    assert [(r.trigger, r.state) for r in moved] == [("schedule", "promoted")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"canary": {"percent": 10, "requests": None, "duration": "48h"}},
            "must be shorter than its max_duration",
        ),
        (
            {"canary": {"percent": 10, "guardrails": {"metric": "auc"}}},
            "the guardrail's metric 'auc' is not a live metric",
        ),
        (
            {"triggers": [{"type": "decay", "metric": "auc"}]},
            "the decay trigger's metric 'auc' is not a live metric",
        ),
        ({"cooldown": "99999999999d"}, "cooldown must be a positive duration"),
    ],
)
def test_policies_that_could_never_work_are_refused(
    lws: Workspace, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        lws.loop.set_policy("loans", {**POLICY, **change})


def test_status_survives_a_model_deleted_under_its_policy(lws: Workspace) -> None:
    lws.datasets.ingest(concept(300, seed=14), name="other")
    lws.training.train("other", "label", model=LOGREG, register="other", plots=False)
    lws.loop.set_policy("other", {**POLICY, "deployment": None})
    lws.loop.set_policy("loans", POLICY)
    lws.registry.delete_model("other")
    status = {s.model: s for s in lws.loop.status()}
    assert status["other"].champion is None
    assert status["loans"].champion == 1
