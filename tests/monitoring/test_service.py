"""``ws.monitoring.drift`` over predictions logged by the real serving path, on both backends.

Traffic goes through ``mloop.api.create_app`` in a TestClient; leaving the client's context shuts
the app down, which flushes the prediction log, so what the service reads is what a server wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from mloop.api import create_app
from mloop.core.clock import now
from mloop.core.errors import InvalidInput, NotFound
from mloop.monitoring import EFFECT_SIZE
from mloop.workspace import Workspace

MODEL = "scorer"
FEATURES = ["x", "y", "cat", "flag", "k"]
SHIFTED = ["cat", "x"]  # what the shifted traffic moves; y, flag and k keep their distribution
ROWS = 1200  # per batch of traffic; with 3000 reference rows both sides are "large"


def frame(n: int, seed: int, *, shifted: bool = False, labelled: bool = True) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(1.2 if shifted else 0.0, 1.0, n)
    cat = rng.choice(
        ["a", "b", "c", "d"], n, p=[0.1, 0.2, 0.3, 0.4] if shifted else [0.4, 0.3, 0.2, 0.1]
    )
    y = rng.normal(5.0, 2.0, n)
    data = {
        "x": x,
        "y": np.where(rng.random(n) < 0.05, np.nan, y),
        "cat": cat,
        "flag": rng.random(n) < 0.3,
        "k": rng.poisson(3, n),
    }
    out = pl.DataFrame(data).with_columns(pl.col("y").fill_nan(None))
    if labelled:
        label = (x + (cat == "a") + rng.normal(0, 1, n) > 0.8).astype(np.int64)
        out = out.with_columns(label=pl.Series(label))
    return out


def send(client: TestClient, ref: str, rows: pl.DataFrame, per_request: int = 400) -> int:
    sent = 0
    for offset in range(0, rows.height, per_request):
        batch = rows.slice(offset, per_request).to_dicts()
        response = client.post(f"/v1/models/{ref}/predict", json={"rows": batch})
        assert response.status_code == 200, response.text
        sent += len(response.json()["predictions"])
    return sent


def tick() -> datetime:
    """A moment strictly between the logged timestamps (ms) before and after it."""
    time.sleep(0.01)
    moment = now()
    time.sleep(0.01)
    return moment


@dataclass
class Served:
    ws: Workspace
    t_shift: datetime  # batch A (unshifted, to the champion v1) before, batch B (shifted) after
    t_v2: datetime  # batch C (shifted) to version 2 after


@pytest.fixture
def served(ws: Workspace) -> Served:
    reference = ws.datasets.ingest(frame(3000, 1), name="ref")
    for seed in (1, 2):
        ws.training.train(
            reference.ref,
            "label",
            model="sklearn.linear_model.LogisticRegression",
            register=MODEL,
            seed=seed,
        )
    assert ws.registry.resolve(MODEL).version == 1  # the champion
    with TestClient(create_app(ws)) as client:
        assert send(client, MODEL, frame(ROWS, 10, labelled=False)) == ROWS
        t_shift = tick()
        assert send(client, MODEL, frame(ROWS, 11, shifted=True, labelled=False)) == ROWS
        t_v2 = tick()
        assert send(client, f"{MODEL}@2", frame(ROWS, 12, shifted=True, labelled=False)) == ROWS
    return Served(ws, t_shift, t_v2)


def test_exactly_the_shifted_columns_are_flagged(served: Served) -> None:
    report = served.ws.monitoring.drift(MODEL, since=served.t_shift)
    assert (report.model, report.version, report.reference) == (MODEL, 1, "ref@1")
    assert (report.reference_rows, report.current_rows) == (3000, ROWS)
    assert [f.column for f in report.features] == FEATURES  # the signature's order
    assert sorted(report.drifted_features) == SHIFTED
    for feature in report.features:
        assert feature.method == (
            "jensen_shannon" if feature.kind == "categorical" else "wasserstein_std"
        )
        assert feature.current_rows + round(feature.current_null_fraction * ROWS) == ROWS
        assert feature.drifted == (
            feature.statistic is not None and feature.statistic >= EFFECT_SIZE
        )
    assert report.share_drifted == pytest.approx(2 / 5)
    assert report.dataset_drift is False
    kinds = {f.column: f.kind for f in report.features}
    assert kinds == {
        "x": "numeric",
        "y": "numeric",
        "k": "numeric",
        "cat": "categorical",
        "flag": "categorical",
    }
    y = next(f for f in report.features if f.column == "y")  # 5% of y was sent as null
    assert 0.02 < y.current_null_fraction < 0.08
    assert 0.02 < y.reference_null_fraction < 0.08


def test_prediction_drift_is_reported(served: Served) -> None:
    calm = served.ws.monitoring.drift(MODEL, until=served.t_shift)
    moved = served.ws.monitoring.drift(MODEL, since=served.t_shift)
    for report in (calm, moved):
        assert [o.column for o in report.outputs] == ["prediction", "prediction_score"]
        assert [o.kind for o in report.outputs] == ["categorical", "numeric"]
    assert calm.drifted_outputs == []
    assert "prediction_score" in moved.drifted_outputs  # x moved, so did the probabilities
    score = next(o for o in moved.outputs if o.column == "prediction_score")
    assert score.current_summary["mean"] > score.reference_summary["mean"]


def test_window_filtering(served: Served) -> None:
    ws = served.ws
    before = ws.monitoring.drift(MODEL, until=served.t_shift)
    after = ws.monitoring.drift(MODEL, since=served.t_shift)
    between = ws.monitoring.drift(MODEL, since=served.t_shift, until=served.t_v2)
    everything = ws.monitoring.drift(MODEL)
    assert (before.current_rows, after.current_rows, everything.current_rows) == (
        ROWS,
        ROWS,
        2 * ROWS,
    )
    assert between.current_rows == ROWS
    assert before.drifted_features == []
    assert before.since is None
    assert before.until == served.t_shift
    assert between.since == served.t_shift
    assert between.until == served.t_v2
    assert everything.until >= served.t_v2


def test_only_the_resolved_versions_predictions_count(served: Served) -> None:
    ws = served.ws
    v1 = ws.monitoring.drift(f"{MODEL}@1")
    v2 = ws.monitoring.drift(f"{MODEL}@2")
    latest = ws.monitoring.drift(f"{MODEL}@latest")
    champion = ws.monitoring.drift(f"{MODEL}@champion")
    assert (v1.version, v1.current_rows) == (1, 2 * ROWS)
    assert (v2.version, v2.current_rows) == (2, ROWS)
    assert (latest.version, latest.current_rows) == (2, ROWS)
    assert champion == ws.monitoring.drift(MODEL, until=champion.until)
    assert sorted(v2.drifted_features) == SHIFTED
    # version 2's window holds only the shifted batch, even when it starts before batch A
    assert (
        ws.monitoring.drift(f"{MODEL}@2", since=served.t_shift - timedelta(hours=1)).current_rows
        == ROWS
    )


def test_an_empty_window_is_not_found(served: Served) -> None:
    later = now() + timedelta(hours=1)
    with pytest.raises(NotFound, match=rf"no predictions of {MODEL}@1 were logged") as err:
        served.ws.monitoring.drift(MODEL, since=later, until=later + timedelta(hours=1))
    assert later.isoformat(timespec="seconds") in err.value.message
    with pytest.raises(NotFound, match=rf"{MODEL}@2") as err:
        served.ws.monitoring.drift(f"{MODEL}@2", until=served.t_v2)
    assert served.t_v2.isoformat(timespec="seconds") in err.value.message


def test_a_window_that_ends_before_it_starts_is_invalid(served: Served) -> None:
    start = now()
    with pytest.raises(InvalidInput, match="the window is empty"):
        served.ws.monitoring.drift(MODEL, since=start, until=start - timedelta(minutes=1))
    with pytest.raises(InvalidInput, match="the window is empty"):
        served.ws.monitoring.drift(MODEL, since=start + timedelta(hours=1))


def test_a_model_never_served_and_unknown_refs_are_not_found(ws: Workspace) -> None:
    ws.datasets.ingest(frame(300, 1), name="ref")
    ws.training.train(
        "ref", "label", model="sklearn.linear_model.LogisticRegression", register="idle"
    )
    with pytest.raises(NotFound, match="no predictions of idle@1 were logged"):
        ws.monitoring.drift("idle")
    for ref, message in [
        ("nope", "model 'nope' is not registered"),
        ("idle@nope", "has no alias 'nope'"),
        ("idle@9", "9"),
    ]:
        with pytest.raises(NotFound, match=message):
            ws.monitoring.drift(ref)


def test_regression_outputs_drift_as_numbers(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    # 6000 rows hold out 1200 reference predictions: the effect-size regime on both sides
    data = frame(6000, 3).with_columns(target=pl.col("x") * 3 + pl.col("k"))
    ws.datasets.ingest(data.drop("label"), name="reg")
    trained = ws.training.train(
        "reg", "target", model="sklearn.linear_model.Ridge", register="reg-model"
    )
    assert trained.model_version is not None
    with TestClient(create_app(ws)) as client:
        send(client, "reg-model", frame(ROWS, 20, labelled=False))
        t_shift = tick()
        send(client, "reg-model", frame(ROWS, 21, shifted=True, labelled=False))
    calm = ws.monitoring.drift("reg-model", until=t_shift)
    moved = ws.monitoring.drift("reg-model", since=t_shift)
    assert [(o.column, o.kind, o.method) for o in moved.outputs] == [
        ("prediction", "numeric", "wasserstein_std")
    ]
    assert calm.drifted_outputs == []
    assert moved.drifted_outputs == ["prediction"]


@pytest.mark.parametrize("label_type", [pl.Float64, pl.Int64, pl.Boolean, pl.String])
def test_class_labels_of_any_type_compare_with_the_hold_out(
    sqlite_ws: Workspace, label_type: pl.DataType
) -> None:
    """Served labels are read back as the target's type: 1.0 is the class "1.0" on both sides,
    so unshifted traffic shows no prediction drift, whatever the labels' type."""
    ws = sqlite_ws
    data = frame(6000, 4).with_columns(pl.col("label").cast(pl.Boolean).cast(label_type))
    ws.datasets.ingest(data, name="labels")
    ws.training.train(
        "labels", "label", model="sklearn.linear_model.LogisticRegression", register="typed"
    )
    with TestClient(create_app(ws)) as client:
        send(client, "typed", frame(ROWS, 22, labelled=False))
    report = ws.monitoring.drift("typed")
    prediction = report.outputs[0]
    assert prediction.column == "prediction"
    assert prediction.method == "jensen_shannon"
    values = {t["value"] for t in prediction.current_summary["top"]}
    assert values == {t["value"] for t in prediction.reference_summary["top"]}
    assert len(values) == 2
    assert report.drifted_outputs == []
