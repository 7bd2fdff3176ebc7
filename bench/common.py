"""What every benchmark shares: peers' environments, servers started and stopped by PID,
memory readings, timing, and the results table."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / "peers" / "venvs"
RESULTS = BENCH / "results"


def peer_python(peer: str) -> Path:
    python = VENVS / peer / "bin" / "python"
    if not python.exists():
        sys.exit(f"peer {peer!r} is not installed: run bench/peers/setup.sh {peer}")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_peer(peer: str, code: str, env: dict[str, str] | None = None, timeout: float = 3600) -> Any:
    """Run ``code`` in the peer's venv; it prints one JSON document last; return it."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{VENVS / peer / 'bin'}:{full_env.get('PATH', '')}"
    full_env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [str(peer_python(peer)), "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{peer} script failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ours(code: str, env: dict[str, str] | None = None, timeout: float = 3600) -> Any:
    """Run ``code`` with mloop's interpreter in a fresh process; it prints JSON last."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"mloop script failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def rss_mib(self) -> float:
        """Resident memory of the server and all its children (workers), in MiB."""
        return tree_rss_mib(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_server(
    name: str,
    argv: Sequence[str],
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    ready_path: str = "/health",
    timeout: float = 120,
) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "wb")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(
        list(argv),
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own process group: stopped with all its workers
    )
    handle.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + ready_path, timeout=1).status_code < 500:
                return Server(name, process, url, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} was not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def tree_rss_mib(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def median_ms(fn: Callable[[], Any], repeat: int = 7, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000


@dataclass
class Row:
    what: str
    ours: float
    peer: float | None
    unit: str = "s"
    target: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.peer is None or self.ours <= 0:
            return None
        return self.peer / self.ours


@dataclass
class Report:
    title: str
    peer: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = f"{row.ratio:8.1f}x" if row.ratio else "        "
        peer = f"{row.peer:10.3f}" if row.peer is not None else "         -"
        print(
            f"  {row.what:<62} mloop {row.ours:10.3f}{row.unit:<4} {self.peer} {peer}  {ratio}"
            f"  {row.target}",
            flush=True,
        )

    def machine(self) -> str:
        import psutil

        cpu = platform.processor() or platform.machine()
        return (
            f"{os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
        )

    def markdown(self) -> str:
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        lines = [
            f"### {self.title} — {when}",
            "",
            f"Machine: {self.machine()}. Peer: {self.peer}.",
            "",
            f"| measurement | mloop | {self.peer} | ratio | target |",
            "|---|---:|---:|---:|---|",
        ]
        for row in self.rows:
            peer = f"{row.peer:.3f} {row.unit}" if row.peer is not None else "—"
            ratio = f"**{row.ratio:.1f}×**" if row.ratio else "—"
            target = row.target + (f" ({row.note})" if row.note else "")
            lines.append(
                f"| {row.what} | {row.ours:.3f} {row.unit} | {peer} | {ratio} | {target} |"
            )
        lines += ["", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(lines)

    def save(self, name: str) -> Path:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"{name}-{stamp}.md"
        path.write_text(self.markdown())
        (RESULTS / f"{name}-{stamp}.json").write_text(
            json.dumps(
                {
                    "title": self.title,
                    "machine": self.machine(),
                    "rows": [r.__dict__ | {"ratio": r.ratio} for r in self.rows],
                    "notes": self.notes,
                },
                indent=2,
            )
        )
        return path


def clean(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
