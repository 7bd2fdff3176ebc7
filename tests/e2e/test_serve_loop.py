"""`mloop serve` runs the loop controller beside the server: alert rules are evaluated, a
firing one starts a pass, the retrained version is promoted — and the controller ends with
the server."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loop_helpers import LOGREG, concept, rows_of
from mloop.demo.runner import free_port, start_server, stop_server, wait_ready
from mloop.workspace import Workspace


@pytest.fixture
def server_box() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def _ended(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited, waiting for its (new) parent to reap it


def test_mloop_serve_runs_the_controller_and_stops_it(
    tmp_path: Path, server_box: list[subprocess.Popen[bytes]]
) -> None:
    home = tmp_path / "ws"
    ws = Workspace.open(home)
    try:
        ws.datasets.ingest(concept(600, seed=1), name="loans")
        ws.training.train(
            "loans", "label", model=LOGREG, register="loans", alias="champion", plots=False
        )
        ws.deployments.create("loans", {"variants": [{"name": "main", "model": "loans@champion"}]})
        ws.alerts.add(
            {
                "name": "busy",
                "model": "loans@champion",
                "series": "volume",
                "op": ">",
                "threshold": 20,
                "window": "1h",
            }
        )
        ws.loop.set_policy(
            "loans",
            {"triggers": [{"type": "alert", "rule": "busy"}], "recipe": "retrain"},
        )
    finally:
        ws.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    server = start_server(home, port, log_path, "--loop-interval", "1s")
    server_box.append(server)
    wait_ready(url, server)
    answer = httpx.post(
        f"{url}/v1/deployments/loans/predict", json={"rows": rows_of(concept(30, seed=2))}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 1

    deadline = time.monotonic() + 120
    runs = []
    while time.monotonic() < deadline:
        with Workspace.open(home) as reader:
            runs = reader.loop.runs("loans")
            if runs and runs[0].state in ("promoted", "failed", "refused"):
                break
        time.sleep(0.5)
    assert [(r.trigger, r.state) for r in runs] == [("alert", "promoted")], log_path.read_text()
    with Workspace.open(home) as reader:
        # it fired on version 1's traffic (and resolved once the alias moved to version 2)
        assert "firing" in [e.kind for e in reader.alerts.history("busy")]
        assert reader.registry.get_model("loans").aliases["champion"] == 2

    found = re.search(r"loop controller running \(pid (\d+)", log_path.read_text())
    assert found is not None, log_path.read_text()
    controller = int(found.group(1))
    assert not _ended(controller)
    assert stop_server(server) == 0
    deadline = time.monotonic() + 30
    while not _ended(controller) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ended(controller)
