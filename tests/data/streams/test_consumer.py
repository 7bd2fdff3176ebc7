"""The stream consumer on every backend (one conformance suite: the local log, NATS JetStream
and Kafka pass the same tests): exactly once across restarts, duplicates, quarantine with
reasons, schema changes, suites; and what only one backend can show."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest

from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.data import BetweenCheck, Suite
from mloop.data.streams import (
    QUARANTINE_COLUMNS,
    LocalLog,
    StreamStats,
    StreamUnavailable,
    parse_stream_uri,
)
from mloop.data.streams.base import consumer_name
from mloop.workspace import Workspace
from stream_helpers import (
    Stream,
    _nats,
    dumps,
    events,
    free_port,
    nats_consumer_info,
    spawn_stream,
    wait_started,
)


def consume(stream: Stream, dataset: str = "events", **options: Any) -> StreamStats:
    options = {"batch_size": 50, "max_wait": 0.2, **options}
    if "max_events" not in options:
        options.setdefault("idle_exit", 1.0)
    return stream.ws.streams.consume(dataset, stream.uri, **options)


def ids(ws: Workspace, dataset: str = "events") -> list[int]:
    return [int(i) for i in ws.datasets.load(dataset).column("id").to_pylist()]


def quarantine(ws: Workspace, dataset: str = "events") -> list[dict[str, Any]]:
    return ws.datasets.load(f"{dataset}.quarantine").to_pylist()


# -- the conformance suite ------------------------------------------------------------------


def test_every_event_lands_once_and_a_restart_resumes_after_the_stored_offsets(
    stream: Stream,
) -> None:
    stream.produce(events(range(300)))
    first = consume(stream, max_events=120)
    assert (first.events, first.written, first.stopped) == (120, 120, "max-events")
    assert len(ids(stream.ws)) == 120
    second = consume(stream)
    assert (second.events, second.written, second.redelivered) == (180, 180, 0)
    assert second.stopped == "idle"
    stream.produce(events(range(300, 400)))
    third = consume(stream, max_events=100)
    assert third.written == 100
    got = ids(stream.ws)
    assert sorted(got) == list(range(400))
    # the offsets stored with the last version are where the next run starts
    state = stream.ws.streams.state("events", stream.uri)
    assert state is not None
    assert state["offsets"]
    version = stream.ws.datasets.get("events")
    assert version.kind == "stream"
    assert version.source == parse_stream_uri(stream.uri).canonical
    assert version.segment_count >= 3


def test_duplicates_by_id_are_dropped_in_a_batch_across_batches_and_across_restarts(
    stream: Stream,
) -> None:
    stream.produce(events([*range(100), 5, 6, 7]))  # three resent within the first batch(es)
    stream.produce(events(range(90, 110)))  # ten more resent, ten new
    stats = consume(stream, max_events=123)
    assert (stats.events, stats.written, stats.duplicates) == (123, 110, 13)
    stream.produce(events([*range(50, 60), *range(110, 115)]))  # after a restart: the window
    again = consume(stream, max_events=15)
    assert (again.written, again.duplicates) == (5, 10)
    got = ids(stream.ws)
    assert sorted(got) == list(range(115))


def test_bad_events_are_quarantined_with_their_reason_and_counted_never_dropped(
    stream: Stream,
) -> None:
    good = events(range(20))
    bad = [
        b"this is not json",
        b'{"amount": 1.0, "merchant": "fuel", "card_present": true}',
        b'{"id": 100, "amount": "a lot", "merchant": "fuel", "card_present": true}',
        b"[1, 2, 3]",
        b'{"id": null, "amount": 1.0, "merchant": "fuel", "card_present": false}',
    ]
    stream.produce(good[:10])
    stream.produce([*bad, *good[10:]])
    stats = consume(stream, max_events=25, batch_size=100, max_wait=1.0)
    assert (stats.events, stats.written, stats.quarantined) == (25, 20, 5)
    assert stats.reasons == {"invalid_json": 2, "missing_id": 2, "schema": 1, "validation": 0}
    rows = quarantine(stream.ws)
    assert stream.ws.datasets.get("events.quarantine").schema_.names == list(QUARANTINE_COLUMNS)
    assert sorted(r["_mloop_payload"].encode() for r in rows) == sorted(bad)
    by_payload = {r["_mloop_payload"]: r for r in rows}
    assert by_payload["this is not json"]["_mloop_kind"] == "invalid_json"
    assert "'amount' is string" in by_payload[bad[2].decode()]["_mloop_reason"]
    assert all(r["_mloop_offset"] >= 0 for r in rows)
    # nothing comes twice on a restart
    again = consume(stream)
    assert (again.events, again.quarantined) == (0, 0)
    assert len(quarantine(stream.ws)) == 5
    assert sorted(ids(stream.ws)) == list(range(20))


def test_a_source_schema_change_is_quarantined_and_nothing_is_lost(stream: Stream) -> None:
    stream.produce(events(range(30)))
    consume(stream, max_events=30)
    changed = [
        *events(range(30, 40), coupon="SPRING"),  # a new field
        *[
            dumps({"id": i, "amount": str(i), "merchant": "fuel", "card_present": True})
            for i in range(40, 45)
        ],  # a retyped field
        *events(range(45, 50)),  # and back to the old shape
    ]
    stream.produce(changed)
    stats = consume(stream, max_events=20)
    assert (stats.written, stats.quarantined, stats.reasons["schema"]) == (5, 15, 15)
    rows = quarantine(stream.ws)
    assert sum("coupon" in r["_mloop_reason"] for r in rows) == 10
    assert sum("'amount' is string" in r["_mloop_reason"] for r in rows) == 5
    assert sorted(ids(stream.ws)) == [*range(30), *range(45, 50)]
    assert stream.ws.datasets.get("events").schema_.names == [
        "id",
        "amount",
        "merchant",
        "card_present",
    ]


def test_a_suite_sends_failing_rows_to_the_quarantine_with_the_check(stream: Stream) -> None:
    stream.ws.validation.save_suite(
        Suite(name="amounts", expectations=[BetweenCheck(column="amount", min=0, max=50)])
    )
    stream.produce(events(range(40)))
    stats = consume(stream, max_events=40, suite="amounts")
    amounts = {i: round((i * 7919) % 10_000 / 100, 2) for i in range(40)}
    over = sorted(i for i, a in amounts.items() if a > 50)
    assert over
    assert stats.reasons["validation"] == len(over)
    assert sorted(ids(stream.ws)) == sorted(set(range(40)) - set(over))
    rows = quarantine(stream.ws)
    assert sorted(json.loads(r["_mloop_payload"])["id"] for r in rows) == over
    assert all("amount" in r["_mloop_reason"] for r in rows)


# -- what one backend shows -------------------------------------------------------------------


@pytest.fixture
def log_stream(sqlite_ws: Workspace) -> Stream:
    return Stream("log", "log://events", sqlite_ws)


def _die_inside_the_transaction(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next batch's transaction fails after the quarantine's version is in it, when the
    dataset's offsets are saved: what a SIGKILL at that moment leaves (nothing committed)."""
    real = ws.datasets._save_state

    def die(conn: Any, version: Any, state: Any) -> None:
        if version.dataset == "events":
            raise RuntimeError("the process died here")
        real(conn, version, state)

    monkeypatch.setattr(ws.datasets, "_save_state", die)


def _not_there(ws: Workspace, name: str) -> bool:
    try:
        ws.datasets.get(name)
    except NotFound:
        return True
    return False


def test_a_crash_inside_the_batch_transaction_writes_nothing(
    log_stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quarantine, the rows and both offset states commit in one transaction: a failure
    inside it leaves neither dataset written and no offsets; the restart lands each event
    once."""
    ws = log_stream.ws
    log_stream.produce([*events(range(10)), b"bad one", b"bad two"])
    _die_inside_the_transaction(ws, monkeypatch)
    with pytest.raises(RuntimeError, match="died"):
        consume(log_stream, max_events=12, batch_size=100)
    assert _not_there(ws, "events")
    assert _not_there(ws, "events.quarantine")
    assert ws.streams.state("events", log_stream.uri) is None
    monkeypatch.undo()
    stats = consume(log_stream, max_events=12, batch_size=100)
    assert (stats.written, stats.quarantined, stats.redelivered) == (10, 2, 0)
    assert len(quarantine(ws)) == 2
    assert sorted(ids(ws)) == list(range(10))


def test_a_replayed_batch_may_reject_other_events_and_each_still_lands_once(
    log_stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What rejects an event depends on its whole batch (the first batch fixes the schema).
    A run that saw ids 0-4 (x: "a", "b", "c", 4, 5) would quarantine 3 and 4; it dies before
    committing. The restart reads 0-9 in one batch, where the numbers win: 0-2 are
    quarantined, 3-9 written. Every id is in exactly one of the two datasets, once."""
    ws = log_stream.ws
    xs: list[Any] = ["a", "b", "c", 4, 5]
    log_stream.produce([dumps({"id": i, "x": x}) for i, x in enumerate(xs)])
    _die_inside_the_transaction(ws, monkeypatch)
    with pytest.raises(RuntimeError, match="died"):
        consume(log_stream, max_events=5, batch_size=100)
    monkeypatch.undo()
    log_stream.produce([dumps({"id": i, "x": i}) for i in range(5, 10)])
    stats = consume(log_stream, max_events=10, batch_size=100)
    assert (stats.written, stats.quarantined) == (7, 3)
    held = [json.loads(r["_mloop_payload"])["id"] for r in quarantine(ws)]
    assert sorted(held) == [0, 1, 2]
    assert sorted(ids(ws)) == list(range(3, 10))


def test_one_consumer_per_dataset_and_stop_from_another_thread(log_stream: Stream) -> None:
    log_stream.produce(events(range(3)))
    written = threading.Event()
    consumer = log_stream.ws.streams.consumer(
        "events", log_stream.uri, batch_size=3, idle_exit=3600, on_batch=lambda _s: written.set()
    )
    worker = threading.Thread(target=consumer.run)
    worker.start()
    try:
        assert written.wait(30)
        with pytest.raises(Conflict, match="already streaming"):
            consume(log_stream)
    finally:
        consumer.stop()
        worker.join(30)
    assert consumer.stats.stopped == "stop"
    assert consumer.stats.written == 3


def test_the_dataset_must_hold_the_id_field(log_stream: Stream) -> None:
    log_stream.ws.datasets.ingest(pa.table({"key": [1, 2]}), name="events")
    log_stream.produce(events(range(3)))
    with pytest.raises(InvalidInput, match="--id-field"):
        consume(log_stream)
    stats = consume(log_stream, id_field="key", max_events=3)
    assert stats.quarantined == 3
    assert stats.reasons["schema"] == 3


def test_another_id_field(log_stream: Stream) -> None:
    log_stream.produce([dumps({"event_id": f"e{i % 4}", "v": i}) for i in range(6)])
    stats = consume(log_stream, id_field="event_id", max_events=6)
    assert (stats.written, stats.duplicates) == (4, 2)


def test_sigterm_writes_the_batch_in_hand_then_exits(
    nats_subject: str, sqlite_ws: Workspace
) -> None:
    """All 500 events are delivered (pending acknowledgement) to a consumer waiting for a
    batch of a million; SIGTERM writes them, acknowledges them, and exits 0."""
    sqlite_ws.streams.produce(nats_subject, events(range(500)))
    process = spawn_stream(
        sqlite_ws.home,
        "events",
        nats_subject,
        "--batch-size",
        "1000000",
        "--max-wait",
        "3600",
        "--json",
    )
    durable = consumer_name("events", sqlite_ws.streams.workspace)
    try:
        assert wait_started(process)
        deadline = time.monotonic() + 60
        while nats_consumer_info(nats_subject, durable).num_ack_pending < 500:
            assert time.monotonic() < deadline, "the events were never delivered"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    summary = json.loads(out)
    assert (summary["stopped"], summary["written"]) == ("signal", 500)
    assert sorted(ids(sqlite_ws)) == list(range(500))
    info = nats_consumer_info(nats_subject, durable)
    assert info.num_ack_pending == 0
    assert info.ack_floor.stream_seq == 500


@pytest.mark.parametrize("client", ["raw", "nats-py"])
def test_nats_holds_no_more_than_its_prefetch_whatever_is_waiting(
    nats_subject: str, sqlite_ws: Workspace, client: str
) -> None:
    from mloop.data.streams.nats import NatsSource

    sqlite_ws.streams.produce(nats_subject, events(range(3000)))
    uri = parse_stream_uri(f"{nats_subject}?client={client}")
    source = NatsSource(uri, "events", prefetch=200)
    source.open({})
    try:
        taken, seqs = 0, []
        while taken < 3000:
            batch = source.fetch(50, 5.0)
            assert len(batch) <= 50
            taken += len(batch)
            seqs += batch.offsets
            assert source._puller is not None
            assert len(source._puller.buffer) <= 200
            # delivered and not acknowledged: what was taken, and at most a prefetch more
            assert nats_consumer_info(nats_subject, source.durable).num_ack_pending <= taken + 200
        assert seqs == list(range(1, 3001))
    finally:
        source.close()


def test_kafka_offsets_are_stored_per_partition(kafka_topic: str, sqlite_ws: Workspace) -> None:
    sqlite_ws.streams.produce(kafka_topic, events(range(90)))
    stats = sqlite_ws.streams.consume("events", kafka_topic, max_events=90, batch_size=40)
    assert stats.written == 90
    state = sqlite_ws.streams.state("events", kafka_topic)
    assert state is not None
    assert state["topic"] == parse_stream_uri(kafka_topic).target
    offsets = {int(p): o for p, o in state["offsets"].items()}
    assert sum(o + 1 for o in offsets.values()) == 90  # the last offset of each partition


def test_the_cli_produces_and_streams(tmp_path: Any, sqlite_ws: Workspace) -> None:
    from helpers import run_cli

    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join([*events(range(25)), b"", b"oops"]) + b"\n")
    code, out, err = run_cli(sqlite_ws, "data", "produce", "log://clicks", str(source), "--json")
    assert code == 0, err
    assert json.loads(out) == {"source": "log://clicks", "events": 26}
    code, out, err = run_cli(
        sqlite_ws,
        "data",
        "stream",
        "clicks",
        "--source",
        "log://clicks",
        "--max-events",
        "26",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["written"], summary["quarantined"], summary["stopped"]) == (25, 1, "max-events")
    code, out, err = run_cli(
        sqlite_ws, "data", "stream", "clicks", "--source", "log://clicks", "--idle-exit", "0.3"
    )
    assert code == 0, err
    assert "events" in out
    assert "idle" in out
    code, _, err = run_cli(sqlite_ws, "data", "stream", "clicks", "--source", "ftp://x/y")
    assert code == 2
    assert "unknown stream scheme" in err
    counts = Counter(r["_mloop_kind"] for r in quarantine(sqlite_ws, "clicks"))
    assert counts == {"invalid_json": 1}


def test_rows_the_dataset_refuses_at_the_last_moment_go_to_the_quarantine(
    log_stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer changed the dataset's schema between parsing and appending: the rows
    join the batch's rejected events in the quarantine; nothing is lost."""
    from mloop.data import SchemaChanged

    ws = log_stream.ws
    log_stream.produce([*events(range(10)), b"bad one", b"bad two"])
    real = ws.datasets.append_together

    def refuse(parts: list[Any]) -> Any:
        if any(part.name == "events" for part in parts):
            raise SchemaChanged("the rows do not match dataset 'events': changed", [])
        return real(parts)

    monkeypatch.setattr(ws.datasets, "append_together", refuse)
    stats = consume(log_stream, max_events=12, batch_size=100)
    assert (stats.written, stats.quarantined, stats.reasons["schema"]) == (0, 12, 10)
    rows = quarantine(ws)
    assert len(rows) == 12
    assert sum("changed" in r["_mloop_reason"] for r in rows) == 10


def test_pii_never_reaches_the_quarantine_raw(sqlite_ws: Workspace) -> None:
    """The dataset's PII policy protects its rows and the raw events of its quarantine (also
    a quarantine of another name); reasons name fields, never values."""
    secret = "merchant-4111-1111-1111-1111"
    sqlite_ws.datasets.set_policy("events", {"merchant": "hash"})
    good = [dumps({"id": i, "amount": 1.5, "merchant": secret}) for i in range(5)]
    bad = [
        dumps({"id": 5, "amount": "1.5", "merchant": secret}),  # a string for a float
        dumps({"id": 6, "amount": 1.0, "merchant": secret, "extra": 1}),
        dumps({"amount": 1.0, "merchant": secret}),  # no id
    ]
    sqlite_ws.streams.produce("log://pii", good)
    assert sqlite_ws.streams.consume("events", "log://pii", max_events=5).written == 5
    for quarantine_name in (None, "held"):  # NAME.quarantine, then a quarantine of another name
        sqlite_ws.streams.produce("log://pii", bad)
        stats = sqlite_ws.streams.consume(
            "events", "log://pii", max_events=3, quarantine=quarantine_name
        )
        assert stats.quarantined == 3
    for dataset in ("events", "events.quarantine", "held"):
        text = str(sqlite_ws.datasets.load(dataset).to_pylist())
        assert secret not in text, dataset
    rows = sqlite_ws.datasets.load("held").to_pylist()
    assert all(r["_mloop_payload"] is None or "merchant" in r["_mloop_payload"] for r in rows)


def test_offsets_and_rows_commit_together_on_each_metadata_backend(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite and PostgreSQL: the offsets travel in the version's transaction. A failure in
    that transaction, after the version row is written, leaves neither rows nor offsets."""
    stream = Stream("log", "log://events", ws)
    stream.produce([*events(range(100)), *events(range(50, 60)), *events(range(100, 200))])
    assert consume(stream, max_events=100).written == 100
    before = ws.datasets.get("events")
    state = ws.streams.state("events", "log://events")
    _die_inside_the_transaction(ws, monkeypatch)
    with pytest.raises(RuntimeError, match="died"):
        consume(stream, max_events=110)
    monkeypatch.undo()
    assert ws.datasets.get("events").id == before.id
    assert ws.streams.state("events", "log://events") == state
    rest = consume(stream, max_events=110)
    assert (rest.written, rest.duplicates) == (100, 10)
    assert sorted(ids(ws)) == list(range(200))
    state = ws.streams.state("events", "log://events")
    assert state is not None
    last = LocalLog(ws.home / "streams" / "events.log").read(0, 1000)[1][-1]
    assert state["offsets"] == {"0": last}


# -- broker errors are one line, never a traceback ----------------------------------------------


def test_the_cli_reports_a_broker_that_is_not_there_in_one_line(
    sqlite_ws: Workspace, nats_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import run_cli
    from mloop.data.streams import kafka

    monkeypatch.setattr(kafka, "METADATA_TIMEOUT", 2.0)
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    subject = f"mloop.missing.{free_port()}"
    cases = [
        (("stream", "x", "--source", f"nats://{dead}/a", "--idle-exit", "1"), "cannot connect"),
        (("stream", "x", "--source", f"kafka://{dead}/t", "--idle-exit", "1"), "cannot reach"),
        (("produce", f"kafka://{dead}/t"), "cannot reach Kafka"),
        (
            ("stream", "x", "--source", f"nats://{nats_server}/{subject}", "--idle-exit", "1"),
            "no JetStream stream captures subject",
        ),
        (
            (
                "stream",
                "x",
                "--source",
                f"nats://{nats_server}/{subject}?stream=nope_{subject[-5:]}",
            ),
            "no JetStream stream 'nope_",
        ),
    ]
    for args, message in cases:
        code, out, err = run_cli(sqlite_ws, "data", *args)  # raises on a traceback
        assert code == 2, (args, out, err)
        assert message in err, (args, err)
        assert "Traceback" not in err


def test_a_nats_stream_deleted_and_created_again_is_refused(
    nats_subject: str, sqlite_ws: Workspace
) -> None:
    """The stored sequence is beyond the new stream's end: reading on would skip its events."""
    from nats.js.api import StreamConfig

    sqlite_ws.streams.produce(nats_subject, events(range(10)))
    assert sqlite_ws.streams.consume("events", nats_subject, max_events=10).written == 10
    subject = nats_subject.rsplit("/", 1)[1]

    async def recreate(js: Any) -> None:
        name = await js.find_stream_name_by_subject(subject)
        await js.delete_stream(name)
        await js.add_stream(StreamConfig(name=name, subjects=[subject]))

    _nats(recreate)
    sqlite_ws.streams.produce(nats_subject, events(range(10, 13)))
    with pytest.raises(StreamUnavailable, match="deleted and created again"):
        sqlite_ws.streams.consume("events", nats_subject, max_events=3)
    # more events than before do not hide it: the stream's creation time differs
    sqlite_ws.streams.produce(nats_subject, events(range(13, 30)))
    with pytest.raises(StreamUnavailable, match="deleted and created again"):
        sqlite_ws.streams.consume("events", nats_subject, max_events=3)
    assert sorted(ids(sqlite_ws)) == list(range(10))


def test_a_deleted_nats_consumer_stops_the_stream_with_the_reason(
    nats_subject: str, sqlite_ws: Workspace
) -> None:
    """409 Consumer Deleted (or 503 once it is gone) is a failure, never an idle stream."""
    from mloop.data.streams.nats import NatsSource

    sqlite_ws.streams.produce(nats_subject, events(range(10)))
    source = NatsSource(parse_stream_uri(nats_subject), "events", prefetch=100)
    source.open({})
    try:
        assert len(source.fetch(10, 5.0)) == 10

        async def delete(js: Any) -> None:
            await js.delete_consumer(source.stream, source.durable)

        _nats(delete)
        with pytest.raises(StreamUnavailable, match=r"deleted|no responder"):
            _fetch_for(source, 10.0)
    finally:
        source.close()


def _fetch_for(source: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        source.fetch(10, 0.5)


# -- credentials and where offsets are kept ----------------------------------------------------


def test_credentials_are_never_stored_and_offsets_follow_the_stream_not_the_server(
    nats_subject: str, sqlite_ws: Workspace
) -> None:
    """A password in the URI reaches the broker only: versions, lineage, audit, source states
    and summaries show it masked. Offsets are keyed by the subject, so another spelling of
    the server (localhost for 127.0.0.1) or a rotated password resumes where the last run
    stopped."""
    host, _, rest = nats_subject.removeprefix("nats://").partition(":")
    with_password = f"nats://app:s3cret@{host}:{rest}"
    sqlite_ws.streams.produce(nats_subject, events(range(30)))
    first = sqlite_ws.streams.consume("events", with_password, max_events=20, batch_size=10)
    assert first.written == 20
    assert "s3cret" not in json.dumps(first.as_dict())
    assert first.source == f"nats://app:***@{host}:{rest}"
    other = nats_subject.replace("127.0.0.1", "localhost")
    if other == nats_subject:
        other = f"nats://app:rotated@{host}:{rest}"
    second = sqlite_ws.streams.consume("events", other, max_events=10, batch_size=10)
    assert (second.events, second.written, second.redelivered) == (10, 10, 0)
    assert sorted(ids(sqlite_ws)) == list(range(30))
    sqlite_ws.close()
    for path in sqlite_ws.home.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path


def test_consumer_names_tell_datasets_and_workspaces_apart() -> None:
    names = {
        consumer_name("a.b", "ws1"),
        consumer_name("a_b", "ws1"),
        consumer_name("a.b", "ws2"),
    }
    assert len(names) == 3
    assert all(n.startswith("mloop-a_b-") for n in names)
