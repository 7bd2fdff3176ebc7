"""Kill -9 at random moments while events flow: afterwards every event is in the dataset
exactly once.

A producer thread sends ids 0..N-1 in chunks, resending some recent ids (duplicates a producer
retry makes), spread over the whole test. Meanwhile ``mloop data stream`` runs in a child
process that is SIGKILLed at random moments — a third at a random time after it was started
(while it imports, opens the workspace, creates its consumer), the others at a random time
after it began consuming or after it wrote its first batch (while it fetches, parses, writes
segments, acknowledges) — and restarted each time. A last run drains the stream until it is
idle. Some events are bad — a value of the wrong type, text that is not JSON, no id — and
belong in the quarantine. Every id then is in exactly one of the dataset and its quarantine,
exactly once.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from pathlib import Path

from mloop.workspace import Workspace
from stream_helpers import dumps, events, spawn_stream, wait_started

SEED = int(os.environ.get("MLOOP_KILL_SEED", time.time_ns() % 2**32))
BAD_EVERY = 499  # one id in this many is a bad event, of one of three kinds


def _bad(i: int) -> bool:
    return i % BAD_EVERY == 7


def _payloads(ids: list[int]) -> list[bytes]:
    """The events of these ids; the bad ones carry their id where it can be found again."""
    out = []
    for i in ids:
        if not _bad(i):
            out += events([i])
        elif (i // BAD_EVERY) % 3 == 0:  # a string for the float column
            out.append(dumps({"id": i, "amount": "lots", "merchant": "fuel", "card_present": True}))
        elif (i // BAD_EVERY) % 3 == 1:  # not JSON
            out.append(b'{"id": %d, "amount": oops' % i)
        else:  # no id: the merchant names it
            out.append(dumps({"amount": 1.0, "merchant": f"noid-{i}", "card_present": False}))
    return out


def _quarantined_id(payload: str) -> int:
    try:
        event = json.loads(payload)
    except ValueError:
        found = re.match(r'\{"id": (\d+)', payload)
        assert found, payload
        return int(found.group(1))
    return int(event["id"]) if "id" in event else int(event["merchant"].removeprefix("noid-"))


def _produce(
    ws: Workspace,
    uri: str,
    total: int,
    chunk: int,
    pause: float,
    rng: random.Random,
    errors: list[BaseException],
) -> None:
    try:
        with ws.streams.producer(uri) as producer:
            for start in range(0, total, chunk):
                ids = list(range(start, min(start + chunk, total)))
                if start:  # a producer's retries: some good ids sent again a little later
                    again = rng.sample(range(max(0, start - 5 * chunk), start), k=chunk // 100)
                    ids += [i for i in again if not _bad(i)]
                producer.send(_payloads(ids))
                time.sleep(pause)
    except BaseException as exc:  # the test thread reports it
        errors.append(exc)


def _kill_and_restart(
    ws: Workspace,
    uri: str,
    *,
    total: int,
    kills: int,
    chunk: int,
    pause: float,
    batch_size: int,
) -> None:
    rng = random.Random(SEED)
    print(f"kill test: seed {SEED} (MLOOP_KILL_SEED), {total:,} events, {kills} kills via {uri}")
    errors: list[BaseException] = []
    producer = threading.Thread(
        target=_produce, args=(ws, uri, total, chunk, pause, random.Random(SEED + 1), errors)
    )
    producer.start()
    args = ("--batch-size", str(batch_size), "--max-wait", "0.2")
    progressed = 0
    try:
        for k in range(kills):
            before = _rows(ws)
            process = spawn_stream(ws.home, "events", uri, *args)
            try:
                moment = k % 3
                if moment == 0:
                    time.sleep(rng.uniform(0.05, 2.0))  # maybe still starting
                elif wait_started(process):
                    if moment == 2:  # once it has written a batch: mid-stream
                        deadline = time.monotonic() + 30
                        while (
                            _rows(ws) == before
                            and producer.is_alive()
                            and time.monotonic() < deadline
                        ):
                            time.sleep(0.01)
                    time.sleep(rng.uniform(0.0, 1.0))
                assert process.poll() is None, process.communicate()[1].decode()[-3000:]
                process.kill()
            finally:
                process.communicate(timeout=60)
            progressed += _rows(ws) > before
        producer.join(300)
        assert not errors, errors
        final = spawn_stream(ws.home, "events", uri, *args, "--idle-exit", "3", "--json")
        out, err = final.communicate(timeout=300)
        assert final.returncode == 0, err.decode()[-3000:]
        summary = json.loads(out)
    finally:
        producer.join(300)
    print(f"kills that interrupted progress: {progressed} of {kills}; last run: {summary}")
    got = ws.datasets.load("events").column("id").to_pylist()
    held = [
        _quarantined_id(p)
        for p in ws.datasets.load("events.quarantine").column("_mloop_payload").to_pylist()
    ]
    both = got + held
    assert len(both) == total, (
        f"{len(both) - len(set(both))} twice, {total - len(set(both))} missing"
    )
    assert sorted(both) == list(range(total))
    assert sorted(held) == [i for i in range(total) if _bad(i)]
    assert summary["quarantined"] <= len(held)


def _rows(ws: Workspace) -> int:
    try:
        return ws.datasets.get("events").row_count
    except Exception:
        return 0


def test_nats_100k_events_20_kills(nats_subject: str, sqlite_ws: Workspace) -> None:
    _kill_and_restart(
        sqlite_ws, nats_subject, total=100_000, kills=20, chunk=2000, pause=0.5, batch_size=2000
    )


def test_kafka_kills(kafka_topic: str, sqlite_ws: Workspace) -> None:
    _kill_and_restart(
        sqlite_ws, kafka_topic, total=20_000, kills=8, chunk=1000, pause=0.5, batch_size=1000
    )


def test_log_kills(sqlite_ws: Workspace, tmp_path: Path) -> None:
    _kill_and_restart(
        sqlite_ws, "log://events", total=20_000, kills=8, chunk=1000, pause=0.5, batch_size=1000
    )
