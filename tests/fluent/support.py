"""What the fluent tests share: real ``mloop serve`` processes, where a test logs, and a reset of
the fluent API's process-wide state (imported as ``fluent.support``; fixtures are in conftest)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import mloop
from mloop import fluent
from mloop.client import MloopClient
from mloop.core.errors import MloopError
from mloop.demo.runner import free_port, wait_ready


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: no MLOOP_* of the developer's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}
    return {**env, **extra}


@dataclass
class Server:
    url: str
    home: Path
    database_url: str | None
    process: subprocess.Popen[bytes]


def start_server(home: Path, database_url: str | None = None, port: int | None = None) -> Server:
    """``python -m mloop --workspace HOME serve`` in a process of its own, once it is ready."""
    port = port or free_port()
    extra = {"MLOOP_DATABASE_URL": database_url} if database_url else {}
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f"{home.name}-server.log", "ab") as log:  # the child keeps a copy
        process = subprocess.Popen(
            [sys.executable, "-m", "mloop", "--workspace", str(home), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(**extra),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
    except BaseException:
        stop_server(process)
        raise
    return Server(url, home, database_url, process)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean shutdown), SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def reset_fluent() -> None:
    """End what a test left active and forget the fluent API's process-wide state."""
    while fluent.active_run() is not None:
        with contextlib.suppress(MloopError):
            fluent.end_run()
    ctx = fluent._ctx
    if ctx is not None:
        ctx.active.clear()
        with contextlib.suppress(MloopError):
            ctx.close()
    fluent._ctx = None
    fluent._stack().clear()


@dataclass
class Target:
    """Where a test's fluent API logs: ``uri`` for ``mloop.init`` and for child processes."""

    mode: str
    uri: str
    experiment: str
    env: dict[str, str] = field(default_factory=dict)  # what a child needs to reach the store

    @property
    def remote(self) -> bool:
        return self.mode.startswith("remote")

    @property
    def client(self) -> MloopClient:
        return MloopClient()  # over the store the fluent API logs to

    def init(self) -> None:
        mloop.init(self.uri)
        mloop.set_experiment(self.experiment)
