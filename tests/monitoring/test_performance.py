"""Live performance: labels joined to the prediction log (all or nothing, re-sent labels
replace), metrics per window and version equal to scikit-learn's on the same rows, decay
against the training run's hold-out metrics, labels from a file and from a stream."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from sklearn import metrics as skm

from helpers import drift_frame
from mloop.core.clock import from_ms
from mloop.core.errors import InvalidInput, NotFound, SchemaMismatch
from mloop.core.ids import new_id
from mloop.monitoring import FeedbackStream
from mloop.serving import PredictionLogger, PredictionRecord
from mloop.storage import tables
from mloop.workspace import Workspace

CLF = "scorer"
REG = "pricer"
LOGREG = "sklearn.linear_model.LogisticRegression"
HOUR = 3_600_000
T0 = 1_700_000_000_000 // HOUR * HOUR  # the start of an hour window (and of a 1 s one)


@dataclass
class Logged:
    request_id: str
    frame: pl.DataFrame  # the rows sent, with their true label
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None


def log_predictions(
    ws: Workspace,
    model: str,
    frame: pl.DataFrame,
    ts_ms: int,
    *,
    target: str = "label",
    shadow: bool | None = None,
) -> Logged:
    """Predict in-process with the registered model and write the rows to the prediction log
    at ``ts_ms`` through the real logger (the way the server logs, at a chosen time)."""
    rows = frame.drop(target).to_dicts()
    result = ws.predict(model, rows)
    logger = PredictionLogger(ws.db)
    request_id = new_id()
    records = []
    for i, (row, prediction) in enumerate(zip(rows, result.predictions, strict=True)):
        outputs: dict[str, Any] = {"prediction": prediction}
        if result.probabilities is not None:
            outputs["probabilities"] = result.probabilities[i]
        records.append(
            PredictionRecord(
                request_id=request_id,
                row_index=i,
                model_name=result.model,
                model_version=result.version,
                ts_ms=ts_ms,
                latency_ms=1.0,
                inputs=row,
                outputs=outputs,
                shadow=shadow,
            )
        )
    logger.log(records)
    logger.close()
    return Logged(request_id, frame, result.predictions, result.probabilities)


def labels_of(logged: Logged, values: list[Any] | None = None, target: str = "label") -> list:
    values = logged.frame[target].to_list() if values is None else values
    return [
        {"request_id": logged.request_id, "row_index": i, "label": v} for i, v in enumerate(values)
    ]


def feedback_rows(ws: Workspace) -> list[dict[str, Any]]:
    f = tables.feedback
    with ws.db.read() as conn:
        found = conn.execute(sa.select(f).order_by(f.c.request_id, f.c.row_index)).mappings()
        return [dict(r) for r in found]


@pytest.fixture
def clf(ws: Workspace) -> Workspace:
    ws.datasets.ingest(drift_frame(2000, 1), name="ref")
    ws.training.train("ref", "label", model=LOGREG, register=CLF)
    return ws


@pytest.fixture
def reg(sqlite_ws: Workspace) -> Workspace:
    sqlite_ws.datasets.ingest(drift_frame(1000, 2).drop("label"), name="prices")
    sqlite_ws.training.train(
        "prices", "y", model="sklearn.linear_model.LinearRegression", register=REG
    )
    return sqlite_ws


# -- recording ---------------------------------------------------------------------------


def test_unknown_request_ids_refuse_the_whole_batch(clf: Workspace) -> None:
    logged = log_predictions(clf, CLF, drift_frame(5, 3), T0)
    good = labels_of(logged)
    unknown = [{"request_id": f"nope{i}", "label": 1} for i in range(7)]
    with pytest.raises(NotFound, match=r"unknown request id\(s\) nope0, nope1.*and 2 more"):
        clf.performance.record([*good, *unknown])
    past_end = [{"request_id": logged.request_id, "row_index": 5, "label": 0}]
    with pytest.raises(NotFound, match=rf"{logged.request_id} row 5"):
        clf.performance.record([*good, *past_end])
    assert feedback_rows(clf) == []
    assert clf.performance.record(good).accepted == 5


def test_shadow_rows_take_no_labels(clf: Workspace) -> None:
    shadow = log_predictions(clf, CLF, drift_frame(3, 4), T0, shadow=True)
    with pytest.raises(NotFound, match="match no served prediction"):
        clf.performance.record(labels_of(shadow))
    assert feedback_rows(clf) == []


def test_labels_of_the_wrong_type_are_refused(clf: Workspace) -> None:
    logged = log_predictions(clf, CLF, drift_frame(4, 5), T0)
    bad = labels_of(logged, [1, 0, 7, "cat"])
    with pytest.raises(SchemaMismatch, match=r"2 label\(s\).*7 \(int\) is not a class"):
        clf.performance.record(bad)
    assert feedback_rows(clf) == []
    # a class compares by value, the way the prediction is logged: 1.0 and "1" are class 1
    with pytest.raises(SchemaMismatch, match=r"true \(bool\) is not a class"):
        clf.performance.record(labels_of(logged, [1, 0, True, 1]))
    assert clf.performance.record(labels_of(logged, [1.0, "0", 0, 1])).accepted == 4
    assert [json.loads(r["label"]) for r in feedback_rows(clf)] == [1, 0, 0, 1]


def test_regression_labels_must_be_numbers(reg: Workspace) -> None:
    priced = log_predictions(reg, REG, drift_frame(3, 6).drop("label"), T0, target="y")
    with pytest.raises(SchemaMismatch, match="a regression label must be a number"):
        reg.performance.record(labels_of(priced, [1.5, "abc", 2.0], target="y"))
    with pytest.raises(SchemaMismatch, match="must be a number"):
        reg.performance.record(labels_of(priced, [1.5, None, True], target="y"))
    assert feedback_rows(reg) == []


def test_malformed_items_are_refused(clf: Workspace) -> None:
    logged = log_predictions(clf, CLF, drift_frame(2, 7), T0)
    rid = logged.request_id
    for labels, message in [
        ([], "no labels"),
        ("1", "must be a list"),
        ([{"label": 1}], "no request_id"),
        ([{"request_id": rid}], "has no label"),
        ([{"request_id": rid, "label": 1, "row_index": -1}], "row_index"),
        ([{"request_id": rid, "label": 1, "rowindex": 1}], "unknown field"),
        ([{"request_id": rid, "labels": [1], "label": 1}], "not both"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            clf.performance.record(labels)
    assert feedback_rows(clf) == []


def test_a_label_sent_again_replaces_the_earlier_one(clf: Workspace) -> None:
    logged = log_predictions(clf, CLF, drift_frame(3, 8), T0)
    first = clf.performance.record(labels_of(logged, [0, 0, 0]))
    assert (first.accepted, first.replaced) == (3, 0)
    again = clf.performance.record(
        [{"request_id": logged.request_id, "row_index": 1, "label": 1}], source="sdk"
    )
    assert (again.accepted, again.replaced) == (1, 1)
    # the whole request at once; in one batch the last label of a row wins
    whole = clf.performance.record(
        [
            {"request_id": logged.request_id, "labels": [1, 1, 0]},
            {"request_id": logged.request_id, "row_index": 2, "label": 1},
        ]
    )
    assert (whole.accepted, whole.replaced) == (3, 3)
    rows = feedback_rows(clf)
    assert [json.loads(r["label"]) for r in rows] == [1, 1, 1]
    assert {(r["model_name"], r["model_version"], r["prediction_ts"]) for r in rows} == {
        (CLF, 1, T0)
    }


# -- metrics -----------------------------------------------------------------------------


def test_window_metrics_equal_scikit_learns_on_the_same_rows(clf: Workspace) -> None:
    a = log_predictions(clf, CLF, drift_frame(300, 10), T0 + 5)
    b = log_predictions(clf, CLF, drift_frame(200, 11), T0 + HOUR + 5)
    unlabeled = log_predictions(clf, CLF, drift_frame(50, 12), T0 + HOUR + 9)
    flipped = [1 - v for v in b.frame["label"].to_list()[:80]] + b.frame["label"].to_list()[80:]
    clf.performance.record(labels_of(a))
    clf.performance.record(labels_of(b, flipped)[:150])  # 50 rows not labeled yet
    windows = clf.performance.windows(CLF, width=timedelta(hours=1))
    assert [(w.start, w.version, w.predictions, w.labeled) for w in windows] == [
        (from_ms(T0), 1, 300, 300),
        (from_ms(T0 + HOUR), 1, 250, 150),
    ]
    assert all(w.end - w.start == timedelta(hours=1) for w in windows)
    for window, logged, truth in (
        (windows[0], a, a.frame["label"].to_list()),
        (windows[1], b, flipped[:150]),
    ):
        n = len(truth)
        y_pred = logged.predictions[:n]
        assert logged.probabilities is not None
        score = [p["1"] for p in logged.probabilities[:n]]
        expected = {
            "accuracy": skm.accuracy_score(truth, y_pred),
            "f1": skm.f1_score(truth, y_pred),
            "precision": skm.precision_score(truth, y_pred, zero_division=0),
            "recall": skm.recall_score(truth, y_pred),
            "f1_macro": skm.f1_score(truth, y_pred, average="macro"),
            "precision_macro": skm.precision_score(truth, y_pred, average="macro"),
            "recall_macro": skm.recall_score(truth, y_pred, average="macro"),
            "roc_auc": skm.roc_auc_score(truth, score),
        }
        for name, value in expected.items():
            assert window.metrics[name] == pytest.approx(value, rel=1e-12), name
    assert windows[1].metrics["accuracy"] < windows[0].metrics["accuracy"]
    assert unlabeled.request_id  # counted in predictions, not in labeled
    newest = clf.performance.windows(CLF, width=timedelta(hours=1), last=1)
    assert [w.start for w in newest] == [from_ms(T0 + HOUR)]
    with pytest.raises(InvalidInput, match="at least 1 second"):
        clf.performance.windows(CLF, width=timedelta(milliseconds=5))
    with pytest.raises(NotFound):
        clf.performance.windows("no-such-model")


def test_regression_metrics(reg: Workspace) -> None:
    logged = log_predictions(reg, REG, drift_frame(120, 13).drop("label"), T0, target="y")
    truth = logged.frame["y"].to_list()
    reg.performance.record(labels_of(logged, target="y"))
    (window,) = reg.performance.windows(REG)
    assert window.metrics["rmse"] == pytest.approx(
        math.sqrt(skm.mean_squared_error(truth, logged.predictions)), rel=1e-12
    )
    assert window.metrics["mae"] == pytest.approx(
        skm.mean_absolute_error(truth, logged.predictions), rel=1e-12
    )
    assert window.metrics["r2"] == pytest.approx(skm.r2_score(truth, logged.predictions), rel=1e-12)


def test_by_version_and_labeled_count(clf: Workspace) -> None:
    clf.training.train("ref", "label", model="sklearn.tree.DecisionTreeClassifier", register=CLF)
    one = log_predictions(clf, f"{CLF}@1", drift_frame(100, 14), T0)
    two = log_predictions(clf, f"{CLF}@2", drift_frame(60, 15), T0 + 10)
    assert clf.performance.labeled_count(CLF) == 0
    clf.performance.record(labels_of(one))
    clf.performance.record(labels_of(two)[:40])
    found = clf.performance.by_version(CLF)
    assert sorted(found) == [1, 2]
    assert (found[1].predictions, found[1].labeled) == (100, 100)
    assert (found[2].predictions, found[2].labeled) == (60, 40)
    truth = two.frame["label"].to_list()[:40]
    assert found[2].metrics["accuracy"] == pytest.approx(
        skm.accuracy_score(truth, two.predictions[:40])
    )
    assert sorted(clf.performance.by_version(CLF, since=from_ms(T0 + 5))) == [2]
    assert clf.performance.labeled_count(CLF) == 140
    assert clf.performance.labeled_count(CLF, version=2) == 40
    future = int(1e15)
    assert clf.performance.labeled_count(CLF, future) == 0
    per_version = clf.performance.windows(f"{CLF}@2")
    assert [(w.version, w.labeled) for w in per_version] == [(2, 40)]


# -- decay -------------------------------------------------------------------------------


def test_decay_is_detected_where_labels_flipped_and_not_elsewhere(clf: Workspace) -> None:
    calm = log_predictions(clf, CLF, drift_frame(400, 20), T0)
    clf.performance.record(labels_of(calm))
    report = clf.performance.decay(CLF, tolerance=0.15)
    assert report.verdict, report.reason
    assert not report.decayed, report.reason
    assert report.metric == "accuracy"
    assert report.higher_is_better
    run = clf.tracking.get_run(clf.registry.resolve(CLF).run_id or "")
    assert report.baseline == run.metrics["accuracy"]
    assert report.labeled == 400
    assert report.start == from_ms(T0)

    later = log_predictions(clf, CLF, drift_frame(400, 21), T0 + HOUR)
    truth = later.frame["label"].to_list()
    rng = np.random.default_rng(0)
    flip = rng.random(len(truth)) < 0.5
    clf.performance.record(
        labels_of(later, [1 - v if f else v for v, f in zip(truth, flip, strict=True)])
    )
    decayed = clf.performance.decay(CLF, tolerance=0.15)
    assert decayed.verdict, decayed.reason
    assert decayed.decayed, decayed.reason
    assert decayed.start == from_ms(T0 + HOUR)
    assert decayed.current is not None
    assert report.current is not None
    assert decayed.current < report.current
    assert decayed.drop is not None
    assert decayed.drop > 0.15
    assert "worse" in decayed.reason
    # an explicit metric; lower-is-better metrics; an unknown one
    assert clf.performance.decay(CLF, metric="roc_auc", tolerance=0.15).decayed
    assert clf.performance.decay(CLF, metric="log_loss", tolerance=0.15).decayed
    assert not clf.performance.decay(CLF, metric="log_loss", tolerance=10).decayed
    with pytest.raises(InvalidInput, match="relative drop"):
        clf.performance.decay(CLF, tolerance=-0.1)
    with pytest.raises(InvalidInput, match="unknown metric"):
        clf.performance.decay(CLF, metric="vibes")
    with pytest.raises(NotFound, match="logged no 'f1_macro'"):
        clf.performance.decay(CLF, metric="f1_macro")


def test_too_few_labels_give_no_verdict(clf: Workspace) -> None:
    assert not clf.performance.decay(CLF).verdict  # nothing labeled at all
    logged = log_predictions(clf, CLF, drift_frame(30, 22), T0)
    clf.performance.record(labels_of(logged, [1 - v for v in logged.frame["label"].to_list()]))
    report = clf.performance.decay(CLF)
    assert (report.verdict, report.decayed, report.labeled) == (False, False, 30)
    assert "fewer than 50" in report.reason
    assert clf.performance.decay(CLF, min_labels=10).decayed


# -- files and streams -------------------------------------------------------------------


def test_labels_from_files(clf: Workspace, tmp_path: Path) -> None:
    logged = log_predictions(clf, CLF, drift_frame(30, 30), T0)
    frame = pl.DataFrame(
        {
            "request_id": [logged.request_id] * 30,
            "row_index": list(range(30)),
            "label": logged.frame["label"].to_list(),
        }
    )
    frame.write_csv(tmp_path / "labels.csv")
    result = clf.performance.record_file(tmp_path / "labels.csv", chunk_rows=7)
    assert (result.accepted, result.replaced, result.source) == (30, 0, "file")
    frame.write_parquet(tmp_path / "labels.parquet")
    assert clf.performance.record_file(tmp_path / "labels.parquet").replaced == 30
    frame.head(3).drop("row_index").write_ndjson(tmp_path / "first.jsonl")  # row_index 0
    assert clf.performance.record_file(tmp_path / "first.jsonl").accepted == 1

    # a bad row in the last chunk writes nothing of the file
    before = feedback_rows(clf)
    bad = pl.concat([frame, frame.head(1).with_columns(request_id=pl.lit("ghost"))])
    bad.write_csv(tmp_path / "bad.csv")
    with pytest.raises(NotFound, match="ghost"):
        clf.performance.record_file(tmp_path / "bad.csv", chunk_rows=10)
    frame.with_columns(label=pl.lit(5)).write_csv(tmp_path / "classes.csv")
    with pytest.raises(SchemaMismatch, match="not a class"):
        clf.performance.record_file(tmp_path / "classes.csv")
    assert [r["received_at"] for r in feedback_rows(clf)] == [r["received_at"] for r in before]
    frame.rename({"label": "truth"}).write_csv(tmp_path / "cols.csv")
    with pytest.raises(InvalidInput, match="missing: label; unexpected: truth"):
        clf.performance.record_file(tmp_path / "cols.csv")
    (tmp_path / "labels.xlsx").write_text("x")
    with pytest.raises(InvalidInput, match=r"\.csv, \.parquet or \.jsonl"):
        clf.performance.record_file(tmp_path / "labels.xlsx")
    with pytest.raises(NotFound, match="no labels file"):
        clf.performance.record_file(tmp_path / "missing.csv")


def _events(logged: Logged, values: list[Any]) -> list[bytes]:
    return [json.dumps(item).encode() for item in labels_of(logged, values)]


def consume_and_check(ws: Workspace, uri: str) -> None:
    logged = log_predictions(ws, CLF, drift_frame(20, 40), T0)
    truth = logged.frame["label"].to_list()
    events = _events(logged, truth)
    events[3] = b'{"request_id": "ghost", "label": 1}'
    events[7] = b"not json"
    events[9] = json.dumps({"request_id": logged.request_id, "row_index": 9, "label": 9}).encode()
    ws.streams.produce(uri, events)
    first = FeedbackStream(ws.performance, uri, ws.home, batch_size=8, max_events=20).run()
    assert (first.events, first.accepted, first.rejected, first.stopped) == (
        20,
        17,
        3,
        "max_events",
    )
    rejects = [json.loads(line) for line in Path(first.rejects).read_text().splitlines()]
    assert len({r["offset"] for r in rejects}) == 3
    reasons = " | ".join(r["reason"] for r in rejects)
    for reason in ("unknown request id(s) ghost", "not valid JSON", "9 (int) is not a class"):
        assert reason in reasons
    assert len(feedback_rows(ws)) == 17
    # resumes after what it recorded: only the new events, and a re-sent label replaces
    ws.streams.produce(uri, _events(logged, [1 - truth[0]])[:1])
    again = FeedbackStream(ws.performance, uri, ws.home, idle_timeout=0.5).run()
    assert (again.events, again.accepted, again.replaced, again.stopped) == (1, 1, 1, "idle")
    assert json.loads(feedback_rows(ws)[0]["label"]) == 1 - truth[0]


def test_labels_from_a_local_log(clf: Workspace) -> None:
    consume_and_check(clf, "log://labels")


@pytest.fixture
def nats_uri() -> Any:
    import contextlib
    import uuid

    from conftest import service_unavailable
    from stream_helpers import NATS_ADDRESS, _nats

    try:
        from nats.js.api import StreamConfig
    except ImportError:
        service_unavailable("nats-py is not installed (pip install 'mloop[streams]')")
    suffix = uuid.uuid4().hex[:10]
    stream, subject = f"mloop_fb_{suffix}", f"mloop.feedback.{suffix}"

    async def create(js: Any) -> None:
        await js.add_stream(StreamConfig(name=stream, subjects=[subject]))

    async def delete(js: Any) -> None:
        await js.delete_stream(stream)

    try:
        _nats(create)
    except Exception as exc:
        service_unavailable(f"NATS JetStream is not reachable at {NATS_ADDRESS}: {exc!r}")
    try:
        yield f"nats://{NATS_ADDRESS}/{subject}"
    finally:
        with contextlib.suppress(Exception):
            _nats(delete)


def test_labels_from_nats(sqlite_ws: Workspace, nats_uri: str) -> None:
    sqlite_ws.datasets.ingest(drift_frame(2000, 1), name="ref")
    sqlite_ws.training.train("ref", "label", model=LOGREG, register=CLF)
    consume_and_check(sqlite_ws, nats_uri)
