"""When queued logging reaches the store: on a timer, when enough waits, at ``flush``/``end_run``,
and at interpreter exit — and what a SIGKILL leaves.

The fluent API queues params, tags and metric values, and a background thread sends them every
``MLOOP_TRACKING_FLUSH_SECONDS``. A normal exit sends what is queued and ends the runs still
active (FINISHED), so nothing is lost. A SIGKILL loses at most what was queued since the last
send — one flush interval of logging — and leaves a consistent store: every batch is one
transaction, sent in order, so what arrived is a whole prefix of what was logged.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mloop
from fluent.support import Target, clean_env
from mloop.client import MloopClient
from mloop.core.errors import NotFound
from mloop.core.ids import new_id
from mloop.tracking import BatchLogger, CreateRun, Run
from mloop.workspace import Workspace

GUARD = 60.0  # seconds: a hang guard, never a measurement
LOCAL_AND_REMOTE = [
    "local-sqlite",
    pytest.param("local-postgres", marks=pytest.mark.postgres),
    pytest.param("remote-postgres", marks=pytest.mark.postgres),
]
LOCAL = ["local-sqlite", pytest.param("local-postgres", marks=pytest.mark.postgres)]


def wait_for(what: str, check: object) -> None:
    """Poll ``check()`` until it is true; fail after the guard (a hang, not a slow machine)."""
    deadline = time.monotonic() + GUARD
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {GUARD:.0f}s")
        time.sleep(0.02)


def run_or_none(client: MloopClient, run_id: str) -> Run | None:
    try:
        # the store itself: MloopClient.get_run would send what the fluent API queued first
        return client.store.get_run(run_id)
    except NotFound:
        return None


# -- the timer, the batch size, flush and end_run ------------------------------------------------


def test_values_arrive_on_the_timer_without_end_run(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOOP_TRACKING_FLUSH_SECONDS", "0.05")
    target.init()  # the interval is read when the fluent API is initialised
    client = target.client
    run = mloop.start_run()
    mloop.log_param("p", 1)
    mloop.log_metric("m", 1.0)

    def arrived() -> bool:
        got = run_or_none(client, run.run_id)
        return got is not None and got.metrics == {"m": 1.0} and got.params == {"p": "1"}

    wait_for("the first batch", arrived)
    mloop.log_metric("m", 2.0, step=1)
    wait_for("the second batch", lambda: client.get_run(run.run_id).metrics == {"m": 2.0})
    assert client.get_run(run.run_id).status == "RUNNING"  # nobody ended it


def test_nothing_is_sent_before_the_timer_and_end_run_sends_everything(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOOP_TRACKING_FLUSH_SECONDS", "3600")
    target.init()
    client = target.client
    run = mloop.start_run(run_name="queued")
    mloop.log_params({"a": 1, "b": 2})
    for step in range(100):
        mloop.log_metric("m", float(step), step=step)
    mloop.set_tag("t", "v")
    assert run_or_none(client, run.run_id) is None  # even the run's creation still waits
    mloop.end_run()
    got = client.get_run(run.run_id)
    assert (got.name, got.status, got.params, got.tags) == (
        "queued",
        "FINISHED",
        {"a": "1", "b": "2"},
        {"t": "v"},
    )
    assert [p.step for p in client.metric_history(run.run_id, "m")] == list(range(100))

    mloop.start_run()
    mloop.log_metric("n", 5.0)
    mloop.flush()  # flush sends without ending
    active = mloop.active_run()
    assert active is not None
    assert client.get_run(active.run_id).metrics == {"n": 5.0}


def test_enough_waiting_values_wake_the_sender(sqlite_ws: Workspace) -> None:
    logger = BatchLogger(sqlite_ws.tracking, interval=3600, batch_size=100)
    run_id = sqlite_ws.tracking.create_run().id
    try:
        logger.log(run_id, metrics=[("m", float(i), i, 1) for i in range(99)])
        logger.log(run_id, metrics=[("m", 99.0, 99, 1)])  # the 100th value: send now
        wait_for(
            "the batch",
            lambda: len(sqlite_ws.tracking.metric_history(run_id, "m")) == 100,
        )
    finally:
        logger.close()


def test_past_max_pending_the_logging_call_itself_sends(sqlite_ws: Workspace) -> None:
    logger = BatchLogger(sqlite_ws.tracking, interval=3600, max_pending=50)
    run_id = sqlite_ws.tracking.create_run().id
    try:
        logger.log(run_id, metrics=[("m", float(i), i, 1) for i in range(49)])
        assert sqlite_ws.tracking.metric_history(run_id, "m") == []
        logger.log(run_id, params={"p": "1"})  # the 50th value: the caller waits for the store
        assert len(sqlite_ws.tracking.metric_history(run_id, "m")) == 49
        assert sqlite_ws.tracking.get_run(run_id).params == {"p": "1"}
    finally:
        logger.close()


def test_a_refused_creation_skips_what_was_queued_for_that_run(sqlite_ws: Workspace) -> None:
    errors: list[str] = []
    logger = BatchLogger(
        sqlite_ws.tracking, interval=3600, on_error=lambda exc: errors.append(exc.code)
    )
    good = sqlite_ws.tracking.create_run().id
    bad = CreateRun(run_id=new_id(), experiment_id="nope")
    logger.log(good, metrics=[("m", 1.0, 0, 1)])
    logger.create_run(bad)
    logger.log(bad.run_id or "", metrics=[("m", 1.0, 0, 1)])
    logger.log(good, metrics=[("m", 2.0, 1, 2)])
    with pytest.raises(NotFound, match="experiment 'nope'"):
        logger.flush()
    assert errors == ["NOT_FOUND"]  # one error, not one per op of the run that never was
    assert [p.value for p in sqlite_ws.tracking.metric_history(good, "m")] == [1.0, 2.0]
    logger.flush()  # the error was raised once
    logger.close()


# -- exit --------------------------------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import mloop

    mloop.init(sys.argv[1])
    mloop.set_experiment(sys.argv[2])
    run = mloop.start_run(run_name="exits")
    print(run.run_id, flush=True)
    mloop.log_params({f"p{i}": i for i in range(100)})
    for i in range(10_000):
        mloop.log_metric("m", i / 2, step=i)
    mloop.set_tag("done", "yes")
    # no end_run, no flush: the interpreter exits normally
    """
)


def run_child(script: str, target: Target, tmp_path: Path, *args: str, **env: str) -> str:
    path = tmp_path / "child.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, str(path), target.uri, *args],
        capture_output=True,
        env=clean_env(**target.env, **env),
        timeout=GUARD,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode() + done.stderr.decode()


@pytest.mark.parametrize("target", LOCAL_AND_REMOTE, indirect=True)
def test_a_normal_exit_loses_nothing(target: Target, tmp_path: Path) -> None:
    # a long interval: what the timer does not send, the exit must
    output = run_child(
        EXIT_SCRIPT, target, tmp_path, target.experiment, MLOOP_TRACKING_FLUSH_SECONDS="3600"
    )
    run_id = output.split()[0]
    assert "failed" not in output
    client = target.client
    run = client.get_run(run_id)
    assert run.status == "FINISHED"
    assert run.end_time is not None
    assert run.params == {f"p{i}": str(i) for i in range(100)}
    assert run.tags == {"done": "yes"}
    assert run.metrics == {"m": 9999 / 2}
    history = client.metric_history(run_id, "m")
    assert [p.step for p in history] == list(range(10_000))
    assert [p.value for p in history] == [i / 2 for i in range(10_000)]


REFUSED_AT_EXIT = textwrap.dedent(
    """
    import sys
    import mloop

    mloop.init(sys.argv[1])
    run = mloop.start_run()
    mloop.flush()
    mloop.MloopClient().delete_run(run.run_id)
    mloop.log_metric("m", 1.0)
    """
)


def test_what_the_store_refuses_at_exit_is_reported(local: Target, tmp_path: Path) -> None:
    output = run_child(REFUSED_AT_EXIT, local, tmp_path)
    assert "mloop: logging at exit failed" in output
    assert "is deleted" in output


KILLED_SCRIPT = textwrap.dedent(
    """
    import sys
    import mloop

    mloop.init(sys.argv[1])
    mloop.set_experiment(sys.argv[2])
    run = mloop.start_run()
    print(run.run_id, flush=True)
    i = 0
    while True:
        mloop.log_metric("m", float(i), step=i)
        if i % 100 == 0:
            mloop.log_params({f"g{i // 100}_{k}": k for k in range(20)})
        i += 1
    """
)


@pytest.mark.parametrize("target", LOCAL, indirect=True)
def test_a_sigkill_leaves_a_consistent_store_holding_whole_batches(
    target: Target, tmp_path: Path
) -> None:
    """Killed while logging as fast as it can: what arrived is a whole prefix of what was
    logged (at most the last flush interval is lost); the store opens and takes more logging."""
    path = tmp_path / "child.py"
    path.write_text(KILLED_SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(path), target.uri, target.experiment],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(**target.env, MLOOP_TRACKING_FLUSH_SECONDS="0.02"),
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().decode().strip()
        client = target.client
        wait_for(
            "a few batches",
            lambda: (
                (run := run_or_none(client, run_id)) is not None and run.metrics.get("m", 0) >= 3000
            ),
        )
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=GUARD)
    assert child.returncode == -signal.SIGKILL

    if target.mode == "local-sqlite":
        with sqlite3.connect(Path(target.uri) / "mloop.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    mloop.init(target.uri)  # a fresh store over what the killed process left
    client = MloopClient()
    run = client.get_run(run_id)
    assert run.status == "RUNNING"  # nobody ended it
    history = client.metric_history(run_id, "m")
    n = len(history)
    assert [p.step for p in history] == list(range(n))  # no gap, no repeat
    assert [p.value for p in history] == [float(i) for i in range(n)]
    assert run.metrics["m"] == float(n - 1)  # the latest value agrees with the history
    groups = {k.split("_")[0] for k in run.params}
    assert groups == {f"g{g}" for g in range(len(groups))}
    assert run.params == {f"g{g}_{k}": str(k) for g in range(len(groups)) for k in range(20)}
    # group g is logged right after metric step 100 g: a later step means the group arrived
    assert len(groups) - 1 <= (n - 1) // 100
    assert len(groups) >= (n - 2) // 100 + 1
    assert not math.isnan(run.metrics["m"])

    with mloop.start_run(run_id=run_id):  # the store takes more logging
        mloop.log_metric("m", -1.0, step=n)
    assert mloop.get_run(run_id).status == "FINISHED"
    assert len(client.metric_history(run_id, "m")) == n + 1
