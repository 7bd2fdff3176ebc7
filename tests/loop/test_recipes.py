"""Built-in `retrain` on a point-in-time training set rebuilt from the feature store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from mloop.features import Entity, FeatureView
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _labels(n: int, seed: int, spend: dict[int, float]) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 50, n)
    return pl.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": [
                T0 + timedelta(days=3, minutes=int(m)) for m in rng.integers(0, 600, n)
            ],
            "churned": [int(spend[int(i)] < 50) for i in ids],
        }
    )


def test_retrain_builds_a_fresh_point_in_time_training_set(ws: Workspace) -> None:
    rng = np.random.default_rng(1)
    spend = {i: float(rng.uniform(0, 100)) for i in range(50)}
    stats = pl.DataFrame(
        {
            "customer_id": list(spend),
            "ts": [T0] * 50,
            "spend": list(spend.values()),
        }
    )
    ws.datasets.ingest(stats, name="customer_stats")
    customer = Entity("customer", join_keys={"customer_id": "integer"})
    view = FeatureView(
        "stats",
        entities=[customer],
        source="customer_stats",
        timestamp_column="ts",
        features=["spend"],
        ttl="30d",
    )
    ws.features.apply([customer, view])
    ws.datasets.ingest(_labels(300, 2, spend), name="labels")
    first = ws.features.training_set(
        ws.datasets.load_polars(ws.datasets.get("labels")), ["stats:spend"], name="churn_ts"
    )
    ws.training.train(
        first.version.ref,
        "churned",
        model=LOGREG,
        register="churn",
        alias="champion",
        exclude=["customer_id", "event_timestamp"],
        plots=False,
    )
    ws.datasets.ingest(_labels(500, 3, spend), name="labels")  # newer labels
    ws.loop.set_policy(
        "churn",
        {
            "triggers": [{"type": "labels", "min_new": 1}],
            "recipe": {
                "name": "retrain",
                "params": {
                    "training_set": {
                        "entities": "labels",
                        "features": ["stats:spend"],
                        "name": "churn_ts",
                    },
                },
            },
        },
    )
    run = ws.loop.trigger("churn")
    assert run.state == "promoted", run.outcome
    version = ws.registry.get_version("churn", 2)
    built = ws.datasets.get(version.info["dataset"])
    assert built.ref == "churn_ts@2"  # a new training set, from labels@2
    assert built.row_count == 500
    assert ws.features.training_set_spec(built.id) is not None
    assert [c.name for c in version.require_signature().inputs] == ["spend"]


def _loans(ws: Workspace) -> None:
    from loop_helpers import concept

    ws.datasets.ingest(concept(400, seed=1), name="loans")
    ws.training.train("loans", "label", model=LOGREG, register="loans", plots=False)


def test_a_recipe_named_by_import_path_runs_and_tags_its_run(ws: Workspace) -> None:
    _loans(ws)
    policy = {
        "triggers": [{"type": "labels", "min_new": 1}],
        "recipe": "loop_helpers:retrain_on_loans",
    }
    ws.loop.set_policy("loans", policy)
    run = ws.loop.trigger("loans")
    assert (run.state, run.candidate_version) == ("promoted", 2)
    version = ws.registry.get_version("loans", 2)
    assert version.run_id is not None
    assert ws.tracking.get_run(version.run_id).tags["mloop.loop_run"] == run.id


def test_a_recipe_that_returns_no_version_fails_the_pass_clearly(ws: Workspace) -> None:
    _loans(ws)
    policy = {
        "triggers": [{"type": "labels", "min_new": 1}],
        "recipe": "loop_helpers:returns_nonsense",
    }
    ws.loop.set_policy("loans", policy)
    run = ws.loop.trigger("loans")
    assert run.state == "failed"
    assert "must return the version it registered" in run.outcome
    assert ws.registry.get_model("loans").aliases["champion"] == 1
