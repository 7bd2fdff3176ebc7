"""Streaming inference: a stream in, one result per event out, keyed by the event id."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from data.streams.conftest import kafka_server, kafka_topic, nats_server, nats_subject
from mloop.core.errors import InvalidInput
from mloop.data import LocalLog
from mloop.demo.data import transactions
from mloop.serving import StreamPredictor, predict_stream, stream_predictor
from mloop.workspace import Workspace
from stream_helpers import _nats

__all__ = ["kafka_server", "kafka_topic", "nats_server", "nats_subject"]  # fixtures in use

LOGREG = "sklearn.linear_model.LogisticRegression"


@pytest.fixture
def model_ws(sqlite_ws: Workspace) -> Workspace:
    """A workspace with model fraud@1 behind deployment ``d``."""
    ws = sqlite_ws
    ws.datasets.ingest(transactions(300, seed=21), name="tx")
    ws.training.train("tx", "is_fraud", model=LOGREG, exclude=["transaction_id"], register="fraud")
    ws.deployments.create("d", {"variants": [{"name": "primary", "model": "fraud@1"}]})
    return ws


def _rows(n: int, seed: int = 22) -> list[dict[str, Any]]:
    return transactions(n, seed=seed).drop("transaction_id", "is_fraud").to_dicts()


def _events(rows: list[dict[str, Any]], prefix: str = "e") -> list[bytes]:
    return [json.dumps({"event_id": f"{prefix}{i}", **r}).encode() for i, r in enumerate(rows)]


def _log(ws: Workspace, name: str) -> list[dict[str, Any]]:
    path = ws.home / "streams" / f"{name}.log"
    if not path.exists():
        return []
    log = LocalLog(path)
    try:
        payloads, _, _ = log.read(0, 1_000_000)
    finally:
        log.close()
    return [json.loads(p) for p in payloads]


def _names() -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"in-{suffix}", f"out-{suffix}", f"dead-{suffix}"


# -- the local log, end to end ---------------------------------------------------------------


def test_log_source_to_log_sink_predicts_every_event_once(model_ws: Workspace) -> None:
    ws = model_ws
    source, sink, dead = _names()
    rows = _rows(30)
    good = _events(rows)
    bad = [
        b"{not json",
        json.dumps({"event_id": "bad-type", **rows[0], "amount": "lots"}).encode(),
        json.dumps({"event_id": "bad-extra", **rows[1], "colour": "red"}).encode(),
        json.dumps({"event_id": "bad-empty"}).encode(),
    ]
    # the bad events sit among the good ones: none of them holds the stream up
    ws.streams.produce(f"log://{source}", good[:10] + bad[:2] + good[10:20] + bad[2:] + good[20:])
    stats = predict_stream(
        ws,
        "d",
        f"log://{source}",
        f"log://{sink}",
        dead_letter=f"log://{dead}",
        max_batch=8,
        idle_exit=0.3,
    )
    assert stats.stopped == "idle"
    assert (stats.events, stats.predicted, stats.errors) == (34, 30, 4)
    assert (stats.model, stats.version, stats.variant) == ("fraud", 1, "primary")

    outputs = _log(ws, sink)
    ids = [o["event_id"] for o in outputs]
    assert sorted(ids) == sorted(f"e{i}" for i in range(30))  # one result per event id
    expected = ws.predict("fraud@1", rows)
    by_id = {o["event_id"]: o for o in outputs}
    for i in range(30):
        out = by_id[f"e{i}"]
        assert out["prediction"] == expected.predictions[i]
        assert expected.probabilities is not None
        assert out["probabilities"] == pytest.approx(expected.probabilities[i], abs=1e-4)
        assert (out["deployment"], out["model"], out["version"]) == ("d", "fraud", 1)
        assert out["ts"].endswith("Z")

    letters = {d["event_id"]: d for d in _log(ws, dead)}
    assert len(letters) == 4
    assert letters["bad-type"]["status"] == 422
    assert "amount" in letters["bad-type"]["message"]
    assert "colour" in letters["bad-extra"]["message"]
    assert "missing column" in letters["bad-empty"]["message"]
    not_json = [d for k, d in letters.items() if k not in ("bad-type", "bad-extra", "bad-empty")]
    assert len(not_json) == 1  # keyed by its offset in the log: it has no id of its own
    assert not_json[0]["error"] == "INVALID_JSON"
    assert not_json[0]["event_id"] == str(not_json[0]["offset"])
    assert not_json[0]["payload"] == "{not json"


def test_without_a_dead_letter_errors_go_to_the_sink(model_ws: Workspace) -> None:
    ws = model_ws
    source, sink, _ = _names()
    rows = _rows(3)
    events = [json.dumps(r).encode() for r in rows]  # no event_id: the offset keys them
    events.append(json.dumps({"event_id": 7, **rows[0], "amount": True}).encode())
    ws.streams.produce(f"log://{source}", events)
    stats = predict_stream(ws, "d", f"log://{source}", f"log://{sink}", idle_exit=0.3)
    assert (stats.predicted, stats.errors) == (3, 1)
    outputs = _log(ws, sink)
    assert len(outputs) == 4
    errors = [o for o in outputs if "error" in o]
    assert len(errors) == 1
    assert errors[0]["event_id"] == 7
    assert errors[0]["error"] == "SCHEMA_MISMATCH"
    assert "prediction" not in errors[0]
    assert len({o["event_id"] for o in outputs}) == 4


def test_a_restart_resumes_after_the_last_acknowledged_batch(model_ws: Workspace) -> None:
    ws = model_ws
    source, sink, _ = _names()
    ws.streams.produce(f"log://{source}", _events(_rows(10)))
    first = predict_stream(ws, "d", f"log://{source}", f"log://{sink}", idle_exit=0.3)
    assert first.predicted == 10
    ws.streams.produce(f"log://{source}", _events(_rows(5, seed=23), prefix="f"))
    second = predict_stream(ws, "d", f"log://{source}", f"log://{sink}", idle_exit=0.3)
    assert (second.events, second.predicted, second.already_published) == (5, 5, 0)
    assert len(_log(ws, sink)) == 15


def test_a_crash_before_the_ack_redelivers_without_duplicate_outputs(
    model_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = model_ws
    source, sink, _ = _names()
    ws.streams.produce(f"log://{source}", _events(_rows(20)))

    class Crash(Exception):
        pass

    def crash(self: StreamPredictor, source: Any) -> None:
        raise Crash("killed after publishing, before the checkpoint and the ack")

    with monkeypatch.context() as patch:
        patch.setattr(StreamPredictor, "_write_checkpoint", crash)
        with pytest.raises(Crash):
            predict_stream(ws, "d", f"log://{source}", f"log://{sink}", max_batch=8, idle_exit=5)
    assert len(_log(ws, sink)) == 8  # the first batch was published, never acknowledged

    stats = predict_stream(ws, "d", f"log://{source}", f"log://{sink}", max_batch=8, idle_exit=0.3)
    assert stats.events == 20  # the whole stream again: nothing had been acknowledged
    assert stats.already_published == 8  # the log sink recognised the first batch's keys
    ids = [o["event_id"] for o in _log(ws, sink)]
    assert sorted(ids) == sorted(f"e{i}" for i in range(20))  # no duplicate id


def test_the_predictor_refuses_what_cannot_work(model_ws: Workspace) -> None:
    ws = model_ws
    with pytest.raises(InvalidInput, match="must differ"):
        stream_predictor(ws, "d", "log://same", "log://same")
    with pytest.raises(InvalidInput, match="no variant"):
        stream_predictor(ws, "d", "log://a", "log://b", variant="nope", idle_exit=0.1).run()
    with pytest.raises(InvalidInput, match="max-batch"):
        stream_predictor(ws, "d", "log://a", "log://b", max_batch=0)


def test_the_command_line(model_ws: Workspace) -> None:
    from typer.testing import CliRunner

    from mloop.cli import app

    ws = model_ws
    source, sink, dead = _names()
    ws.streams.produce(f"log://{source}", [*_events(_rows(4)), b"[1, 2]"])
    result = CliRunner().invoke(
        app,
        [
            "--workspace",
            str(ws.home),
            "predict",
            "stream",
            "d",
            "--source",
            f"log://{source}",
            "--sink",
            f"log://{sink}",
            "--dead-letter",
            f"log://{dead}",
            "--idle-exit",
            "0.3",
            "--quiet",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["predicted"], summary["errors"], summary["stopped"]) == (4, 1, "idle")
    assert len(_log(ws, sink)) == 4
    assert _log(ws, dead)[0]["error"] == "INVALID_JSON"


# -- NATS JetStream (the real server) --------------------------------------------------------


@pytest.fixture
def nats_sink(nats_server: str) -> Iterator[str]:
    """A subject with no stream yet: the sink creates one (deleted afterwards)."""
    subject = f"mloop.test.out.{uuid.uuid4().hex[:10]}"
    yield f"nats://{nats_server}/{subject}"

    async def delete(js: Any) -> None:
        await js.delete_stream(await js.find_stream_name_by_subject(subject))

    with contextlib.suppress(Exception):  # nothing was created
        _nats(delete)


def _nats_messages(uri: str) -> list[tuple[str, dict[str, Any]]]:
    subject = uri.rsplit("/", 1)[1]

    async def read(js: Any) -> list[tuple[str, dict[str, Any]]]:
        stream = await js.find_stream_name_by_subject(subject)
        info = await js.stream_info(stream)
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            found.append((msg.headers["Nats-Msg-Id"], json.loads(msg.data)))
        return found

    return list(_nats(read))


def test_nats_end_to_end_and_redelivery_is_deduplicated(
    model_ws: Workspace, nats_subject: str, nats_sink: str
) -> None:
    ws = model_ws
    rows = _rows(12)
    ws.streams.produce(nats_subject, [*_events(rows), b'{"event_id": "x", "amount": []}'])
    stats = predict_stream(ws, "d", nats_subject, nats_sink, max_batch=5, idle_exit=1.0)
    assert (stats.events, stats.predicted, stats.errors) == (13, 12, 1)
    messages = _nats_messages(nats_sink)
    assert len(messages) == 13
    assert all(key == str(body["event_id"]) for key, body in messages)  # Nats-Msg-Id = id
    expected = ws.predict("fraud@1", rows).predictions
    by_id = {body["event_id"]: body for _, body in messages}
    assert [by_id[f"e{i}"]["prediction"] for i in range(12)] == expected
    assert by_id["x"]["error"] == "SCHEMA_MISMATCH"

    # a crash before the checkpoint: the whole stream comes again, JetStream drops the repeats
    predictor = stream_predictor(ws, "d", nats_subject, nats_sink, idle_exit=1.0)
    predictor.checkpoint_path.unlink()
    again = predictor.run()
    assert again.events == 13
    assert again.already_published == 13
    assert len(_nats_messages(nats_sink)) == 13


# -- Kafka (a Tansu broker started for the session) ------------------------------------------


def test_kafka_end_to_end_keys_results_by_event_id(
    model_ws: Workspace, kafka_topic: str, kafka_server: str
) -> None:
    ws = model_ws
    rows = _rows(9)
    ws.streams.produce(kafka_topic, _events(rows))
    out = f"kafka://{kafka_server}/mloop-test-out-{uuid.uuid4().hex[:8]}"
    stats = predict_stream(ws, "d", kafka_topic, out, idle_exit=2.0)
    assert stats.predicted == 9

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": kafka_server, "group.id": "t", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(out.rsplit("/", 1)[1], 0, 0)])
        got: list[Any] = []
        for _ in range(20):
            got += [m for m in consumer.consume(20, timeout=0.5) if m.error() is None]
            if len(got) >= 9:
                break
    finally:
        consumer.close()
    results = {m.key().decode(): json.loads(m.value()) for m in got}
    assert len(got) == 9
    expected = ws.predict("fraud@1", rows).predictions
    assert [results[f"e{i}"]["prediction"] for i in range(9)] == expected
