"""Hot swaps: a real server under load follows an alias move and a spec change without failing a
request, loses no prediction record on SIGTERM, and serves with several worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mloop.api import create_app
from mloop.demo.data import transactions
from mloop.demo.runner import free_port, wait_ready
from mloop.storage import tables
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


@pytest.fixture
def two_versions(sqlite_ws: Workspace) -> Workspace:
    """fraud@1 (champion) and fraud@2, served by deployment "fraud" on fraud@champion."""
    ws = sqlite_ws
    ws.datasets.ingest(transactions(300, seed=21), name="tx")
    for c in (1.0, 0.01):
        ws.training.train(
            "tx",
            "is_fraud",
            model=LOGREG,
            params={"C": c},
            exclude=["transaction_id"],
            register="fraud",
            plots=False,
        )
    ws.deployments.create("fraud", {"variants": [{"name": "primary", "model": "fraud@champion"}]})
    return ws


@pytest.fixture
def one_row() -> dict[str, Any]:
    row: dict[str, Any] = transactions(1, seed=5).drop("transaction_id", "is_fraud").to_dicts()[0]
    return row


def _logged_request_ids(ws: Workspace) -> list[str]:
    t = tables.predictions
    with ws.db.read() as conn:
        return [
            r for (r,) in conn.execute(sa.select(t.c.request_id).where(t.c.shadow.is_not(True)))
        ]


class Server:
    """``mloop serve`` in a process of its own, on a free port."""

    def __init__(self, home: Path, log: Path, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mloop",
                    "--workspace",
                    str(home),
                    "serve",
                    "--port",
                    str(self.port),
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "MLOOP_HOME": str(home), **(env or {})},
            )

    def stop(self) -> int:
        """SIGTERM, and the exit code (the process is killed if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("the server ignored SIGTERM for 60 s") from None
        return self.process.returncode


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Server] = []

    def start(home: Path, *args: str, env: dict[str, str] | None = None) -> Server:
        server = Server(home, tmp_path / f"server{len(started)}.log", *args, env=env)
        started.append(server)
        wait_ready(server.url, server.process)
        return server

    yield start
    for server in started:  # a failed test still ends what it started
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


# -- in process: the refresh swaps what changed -------------------------------------------------


def test_the_runtime_swaps_on_an_alias_move_and_a_spec_change(
    two_versions: Workspace, one_row: dict[str, Any]
) -> None:
    ws = two_versions
    app = create_app(ws, log_predictions=False)
    runtime = app.state.serving.runtime
    runtime.refresh_seconds = 0  # no watcher thread: this test refreshes by hand

    def ask(client: TestClient) -> tuple[str, int]:
        body = client.post("/v1/deployments/fraud/predict", json={"rows": [one_row]}).json()
        return body["variant"], body["version"]

    with TestClient(app) as client:
        assert ask(client) == ("primary", 1)
        before = runtime.get("fraud")
        runtime.refresh()
        assert runtime.get("fraud") is before  # nothing changed, nothing reloaded
        ws.registry.set_alias("fraud", "champion", 2)
        assert ask(client) == ("primary", 1)  # not until the refresh
        runtime.refresh()
        assert ask(client) == ("primary", 2)
        ws.deployments.update("fraud", {"variants": [{"name": "main", "model": "fraud@1"}]})
        runtime.refresh()
        assert ask(client) == ("main", 1)
        ws.deployments.create("late", {"variants": [{"name": "p", "model": "fraud@2"}]})
        late = client.post("/v1/deployments/late/predict", json={"rows": [one_row]})
        assert late.json()["version"] == 2  # loaded on its first request, before any refresh
        ws.deployments.delete("fraud")
        runtime.refresh()
        gone = client.post("/v1/deployments/fraud/predict", json={"rows": [one_row]})
        assert gone.status_code == 404
        metrics = client.get("/metrics").text
    assert 'mloop_deployment_swaps_total{deployment="fraud"} 2.0' in metrics


# -- a real server ------------------------------------------------------------------------------


@pytest.mark.slow
def test_hot_swap_under_load_fails_nothing_and_loses_no_record(
    two_versions: Workspace, one_row: dict[str, Any], server_factory: Any
) -> None:
    ws = two_versions
    server = server_factory(ws.home)
    limit = 600  # requests in all: about 15 s of load at this model's speed
    results: list[list[tuple[int, str, int, str]]] = [[] for _ in range(4)]
    errors: list[str] = []
    stop = threading.Event()
    done = threading.Semaphore(0)

    def load(mine: list[tuple[int, str, int, str]]) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    answer = http.post("/v1/deployments/fraud/predict", json={"rows": [one_row]})
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                if answer.status_code != 200:
                    mine.append((answer.status_code, "", 0, answer.text))
                else:
                    body = answer.json()
                    mine.append((200, body["variant"], body["version"], body["request_id"]))
                done.release()

    def wait_for(n: int) -> None:
        for _ in range(n):
            assert done.acquire(timeout=60), "the load stalled"

    threads = [threading.Thread(target=load, args=(r,)) for r in results]
    for t in threads:
        t.start()
    try:
        wait_for(150)
        ws.registry.set_alias("fraud", "champion", 2, reason="hot swap test")
        deadline = time.monotonic() + 5
        while not any(r[-1][2] == 2 for r in results if r):  # the alias move landed
            assert time.monotonic() < deadline, "the alias move was not picked up in 5 s"
            wait_for(10)
        wait_for(50)
        ws.deployments.update(
            "fraud",
            {
                "variants": [{"name": "main", "model": "fraud@champion"}],
                "batching": {"max_batch_size": 32},
            },
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # swaps land within the refresh interval
            wait_for(20)
            latest = [r[-1] for r in results if r]
            if latest and all(r[1:3] == ("main", 2) for r in latest):
                break
        wait_for(max(0, limit - sum(map(len, results))))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    exit_code = server.stop()
    log = server.log.read_text()

    every = [r for mine in results for r in mine]
    assert not errors, errors[:5]
    failed = [r for r in every if r[0] != 200]
    assert not failed, failed[:5]
    assert len(every) >= limit
    served = {(variant, version) for _, variant, version, _ in every}
    assert served == {("primary", 1), ("primary", 2), ("main", 2)}, served
    for mine in results:  # each client saw the swaps in order, and never went back
        order = {("primary", 1): 0, ("primary", 2): 1, ("main", 2): 2}
        steps = [order[r[1], r[2]] for r in mine]
        assert steps == sorted(steps)
        assert steps[-1] == 2
    assert exit_code == 0, log

    logged = _logged_request_ids(ws)
    ids = [r[3] for r in every]
    assert len(set(ids)) == len(ids)
    assert sorted(logged) == sorted(ids)  # every answered request is in the log, once


@pytest.mark.slow
def test_two_workers_serve(
    two_versions: Workspace, one_row: dict[str, Any], server_factory: Any
) -> None:
    ws = two_versions
    server = server_factory(ws.home, "--workers", "2")
    ready = httpx.get(f"{server.url}/v2/health/ready", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    assert len(_workers(server.process.pid)) == 2

    # each worker has its own metrics: two different predict counts that add up to the
    # requests sent show that both workers answered
    sent = 0
    counts: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:

        def burst() -> None:
            for _ in range(10):
                answer = httpx.post(  # a new connection each time
                    f"{server.url}/v1/deployments/fraud/predict",
                    json={"rows": [one_row] * 20},
                    timeout=30,
                )
                assert answer.status_code == 200, answer.text

        threads = [threading.Thread(target=burst) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        sent += 80
        counts = {_served(httpx.get(f"{server.url}/metrics", timeout=10).text) for _ in range(40)}
        if len(counts) == 2 and sum(counts) == sent:
            break
    assert len(counts) == 2, (counts, sent)
    assert sum(counts) == sent
    assert server.stop() == 0, server.log.read_text()


def _served(metrics: str) -> int:
    """Predict requests one worker answered 200, by its own metrics."""
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith('mloop_deployment_requests_total{deployment="fraud"')
            and 'status="200"' in line
        )
    )


def _workers(pid: int) -> list[int]:
    """The worker processes under ``pid``: multiprocessing's spawned children (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in map(int, (task / "children").read_text().split()):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                found.append(child)
    return found
