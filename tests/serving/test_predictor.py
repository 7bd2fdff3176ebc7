"""The predictor: resolve, validate, predict, log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from mloop import InvalidInput, NotFound, SchemaMismatch
from mloop.core.ids import is_id
from mloop.models import frame_from_rows
from mloop.serving import MAX_ROWS_PER_REQUEST, PredictionLogger, Predictor
from mloop.workspace import Workspace

Logged = Callable[[Workspace], list[dict[str, Any]]]


def test_predictions_are_the_pipeline_s_own(served: Workspace, rows: list[dict[str, Any]]) -> None:
    predictor = Predictor(served.registry)
    result = predictor.predict("fraud", rows)
    model = served.registry.load("fraud@1")
    frame = frame_from_rows(rows, model.signature)
    assert result.predictions == model.estimator.predict(frame).tolist()
    proba = model.estimator.predict_proba(frame)
    assert result.probabilities is not None
    assert [p["1"] for p in result.probabilities] == pytest.approx(proba[:, 1].tolist())
    assert (result.model, result.version) == ("fraud", 1)
    assert is_id(result.request_id)
    assert result.latency_ms >= 0
    assert served.predict("fraud@1", rows).predictions == result.predictions


def test_every_row_is_logged_once_complete(
    served: Workspace, rows: list[dict[str, Any]], logged: Logged
) -> None:
    logger = PredictionLogger(served.db)
    predictor = Predictor(served.registry, logger)
    first = predictor.predict("fraud", rows[:3])
    second = predictor.predict("fraud@1", rows[3:5])
    assert logger.flush()
    records = logged(served)
    assert [(r["request_id"], r["row_index"]) for r in records] == [
        (first.request_id, 0),
        (first.request_id, 1),
        (first.request_id, 2),
        (second.request_id, 0),
        (second.request_id, 1),
    ]
    for record, row, prediction, probs in zip(
        records,
        rows[:5],
        first.predictions + second.predictions,
        (first.probabilities or []) + (second.probabilities or []),
        strict=True,
    ):
        assert (record["model_name"], record["model_version"]) == ("fraud", 1)
        assert json.loads(record["inputs"]) == row
        assert json.loads(record["outputs"]) == {"prediction": prediction, "probabilities": probs}
        assert record["latency_ms"] >= 0
        assert record["ts"] > 0
    assert logger.written == 5
    assert logger.dropped == 0


def test_rows_that_do_not_fit_are_refused_and_not_logged(
    served: Workspace, rows: list[dict[str, Any]], logged: Logged
) -> None:
    logger = PredictionLogger(served.db)
    predictor = Predictor(served.registry, logger)
    with pytest.raises(SchemaMismatch, match="column 'amount' must be a number"):
        predictor.predict("fraud", [rows[0], {**rows[1], "amount": "lots"}])
    with pytest.raises(InvalidInput, match=f"the limit is {MAX_ROWS_PER_REQUEST}"):
        predictor.predict("fraud", [rows[0]] * (MAX_ROWS_PER_REQUEST + 1))
    with pytest.raises(NotFound, match="no alias 'canary'"):
        predictor.predict("fraud@canary", rows)
    assert logger.flush()
    assert logged(served) == []


def test_the_limit_itself_is_allowed(served: Workspace, rows: list[dict[str, Any]]) -> None:
    many = (rows * (MAX_ROWS_PER_REQUEST // len(rows) + 1))[:MAX_ROWS_PER_REQUEST]
    assert len(Predictor(served.registry).predict("fraud", many).predictions) == len(many)


def test_alias_lookups_are_cached_for_the_configured_time(
    served: Workspace, rows: list[dict[str, Any]]
) -> None:
    ws = served
    run = ws.training.train(
        "tx",
        "is_fraud",
        model="sklearn.linear_model.LogisticRegression",
        params={"C": 0.01},
        exclude=["transaction_id"],
        register="fraud",
    )
    assert run.model_version is not None
    assert run.model_version.version == 2
    trusting = Predictor(ws.registry, alias_cache_seconds=3600)
    fresh = Predictor(ws.registry, alias_cache_seconds=0)
    assert trusting.predict("fraud", rows).version == 1
    assert fresh.predict("fraud", rows).version == 1

    ws.registry.set_alias("fraud", "champion", 2)
    assert fresh.predict("fraud", rows).version == 2
    assert trusting.predict("fraud", rows).version == 1  # still within its hour
    assert trusting.predict("fraud@2", rows).version == 2  # another reference, resolved anew
    v2 = ws.predict("fraud@2", rows)
    assert fresh.predict("fraud", rows).probabilities == v2.probabilities


def test_a_model_that_cannot_take_the_rows_is_a_422_not_a_crash(sqlite_ws: Workspace) -> None:
    """A hand-made package whose estimator has no imputation: null passes the signature but
    not the model. The caller learns why; nothing is logged as served."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from mloop.core.schema import Column
    from mloop.models import (
        FLAVOR_SKLEARN,
        META_FILE,
        MODEL_FILE,
        ModelMeta,
        Signature,
        write_sklearn_package,
    )

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"x": rng.normal(size=60)})
    estimator = LogisticRegression().fit(x, (x["x"] > 0).astype(int))
    signature = Signature(
        inputs=[Column(name="x", type="float")],
        target="y",
        target_type="integer",
        task="classification",
        classes=[0, 1],
    )
    meta = ModelMeta(flavor=FLAVOR_SKLEARN, signature=signature, estimator="hand", dependencies={})
    files = write_sklearn_package(estimator, meta)
    run = sqlite_ws.tracking.start_run()
    for name in (MODEL_FILE, META_FILE):
        sqlite_ws.tracking.log_artifact_bytes(run.id, f"model/{name}", files[name])
    sqlite_ws.tracking.end_run(run.id)
    sqlite_ws.registry.register(run.id, "bare")

    assert sqlite_ws.predict("bare", [{"x": 1.5}]).predictions == [1]
    with pytest.raises(SchemaMismatch, match="cannot predict on these rows"):
        sqlite_ws.predict("bare", [{"x": None}])


def test_the_reference_cache_stays_bounded(served: Workspace) -> None:
    from mloop.serving.predictor import MAX_CACHED_REFS

    predictor = Predictor(served.registry, None, alias_cache_seconds=60)
    for zeros in range(MAX_CACHED_REFS + 10):
        predictor.resolve("fraud@" + "0" * zeros + "1")  # all spell version 1
    assert len(predictor._resolved) <= MAX_CACHED_REFS
    assert predictor.model_label("fraud@champion") == "fraud"
    assert predictor.model_label("nope") == "_unknown"
