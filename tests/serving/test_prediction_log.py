"""The prediction logger: batches, flush and close, a bounded queue that counts what it drops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mloop.serving import PredictionLogger, PredictionRecord, ServingMetrics
from mloop.workspace import Workspace

Logged = Callable[[Workspace], list[dict[str, Any]]]


def _records(n: int, request_id: str = "0" * 32) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            request_id=request_id,
            row_index=i,
            model_name="fraud",
            model_version=1,
            ts_ms=1_700_000_000_000 + i,
            latency_ms=0.5,
            inputs={"amount": float(i), "city": None},
            outputs={"prediction": i % 2},
        )
        for i in range(n)
    ]


class BatchSpy(PredictionLogger):
    """A real logger that also remembers the size of each batch it wrote."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    def _write(self, batch: list[PredictionRecord]) -> None:
        self.batches.append(len(batch))
        super()._write(batch)


def test_flush_without_the_thread_writes_everything(ws: Workspace, logged: Logged) -> None:
    logger = PredictionLogger(ws.db)
    logger.log(_records(4))
    assert logger.queued == 4
    assert logged(ws) == []  # nothing is written on the caller's path
    assert logger.flush()
    assert (logger.queued, logger.written, logger.dropped) == (0, 4, 0)
    rows = logged(ws)
    assert [r["row_index"] for r in rows] == [0, 1, 2, 3]
    assert json.loads(rows[1]["inputs"]) == {"amount": 1.0, "city": None}
    assert json.loads(rows[1]["outputs"]) == {"prediction": 1}
    assert rows[1]["ts"] == 1_700_000_000_001
    assert rows[1]["latency_ms"] == 0.5


def test_records_are_written_in_batches(ws: Workspace, logged: Logged) -> None:
    logger = BatchSpy(ws.db, batch_size=3)
    logger.log(_records(7))
    assert logger.flush()
    assert logger.batches == [3, 3, 1]
    assert len(logged(ws)) == 7


def test_the_thread_writes_and_flush_waits_for_it(ws: Workspace, logged: Logged) -> None:
    logger = BatchSpy(ws.db, flush_seconds=0.05, batch_size=100)
    logger.start()
    try:
        for start in range(0, 250, 50):
            logger.log(_records(50, request_id=f"{start:032x}"))
        assert logger.flush(timeout=30)
        assert logger.written == 250
        assert len(logged(ws)) == 250
        assert all(size <= 100 for size in logger.batches)
        assert sum(logger.batches) == 250
    finally:
        logger.close()


def test_close_writes_what_is_still_queued(ws: Workspace, logged: Logged) -> None:
    # a writer that would wait a minute before its first batch: close must not lose the records
    logger = PredictionLogger(ws.db, flush_seconds=60, batch_size=10_000)
    logger.start()
    logger.log(_records(30))
    logger.close()
    assert logger.written == 30
    assert len(logged(ws)) == 30


def test_a_full_queue_drops_and_counts(ws: Workspace, logged: Logged) -> None:
    logger = PredictionLogger(ws.db, queue_size=5)
    logger.log(_records(3))
    logger.log(_records(4))  # 2 fit, 2 are dropped
    logger.log(_records(1))  # dropped
    assert (logger.queued, logger.dropped) == (5, 3)
    assert logger.flush()
    assert (logger.written, logger.dropped) == (5, 3)
    assert len(logged(ws)) == 5


def test_a_closed_logger_can_start_again(ws: Workspace, logged: Logged) -> None:
    logger = PredictionLogger(ws.db, flush_seconds=0.05)
    logger.start()
    logger.close()
    logger.start()
    try:
        logger.log(_records(3))
        assert logger.flush(timeout=30)
        assert len(logged(ws)) == 3
    finally:
        logger.close()


def test_the_metrics_show_the_logger_counters(ws: Workspace) -> None:
    logger = PredictionLogger(ws.db, queue_size=2)
    metrics = ServingMetrics(logger)
    logger.log(_records(3))
    text = metrics.render().decode()
    assert "mloop_prediction_log_queued 2.0" in text
    assert "mloop_prediction_log_dropped 1.0" in text
    assert "mloop_prediction_log_written 0.0" in text
    logger.flush()
    text = metrics.render().decode()
    assert "mloop_prediction_log_queued 0.0" in text
    assert "mloop_prediction_log_written 2.0" in text


# -- the writer process (what `mloop serve` uses) -------------------------------------------------


def test_a_writer_process_writes_and_flush_waits_for_its_commit(
    ws: Workspace, logged: Logged
) -> None:
    logger = PredictionLogger(ws.db, flush_seconds=0.05, batch_size=100, process=True)
    logger.start()
    try:
        for start in range(0, 250, 50):
            logger.log(_records(50, request_id=f"{start:032x}"))
        assert logger.flush(timeout=30)
        assert not logger.in_process  # a process of its own did the writing
        assert logger._child is not None
        assert logger._child.poll() is None
        assert (logger.written, logger.dropped) == (250, 0)
        rows = logged(ws)
        assert len(rows) == 250
        assert json.loads(rows[1]["inputs"]) == {"amount": 1.0, "city": None}
        assert json.loads(rows[1]["outputs"]) == {"prediction": 1}
    finally:
        logger.close()
    assert logger._child is None  # close stops the writer once it has written everything


def test_close_lets_the_writer_process_finish(ws: Workspace, logged: Logged) -> None:
    logger = PredictionLogger(ws.db, flush_seconds=60, batch_size=10_000, process=True)
    logger.start()
    logger.log(_records(30))
    logger.close()
    assert logger.written == 30
    assert len(logged(ws)) == 30


def test_a_dead_writer_process_loses_nothing(ws: Workspace, logged: Logged) -> None:
    logger = PredictionLogger(ws.db, process=True)
    logger.log(_records(10, request_id="a" * 32))
    assert logger.flush()
    child = logger._child
    assert child is not None
    child.kill()  # the writer dies between two batches
    child.wait()
    logger.log(_records(5, request_id="b" * 32))
    assert logger.flush()
    assert logger.in_process  # it carries on writing in-process
    assert (logger.written, logger.dropped) == (15, 0)
    assert sorted({r["request_id"][0] for r in logged(ws)}) == ["a", "b"]
    assert len(logged(ws)) == 15
    logger.close()


def test_the_writer_process_keeps_what_a_killed_server_sent(
    ws: Workspace, logged: Logged, tmp_path: Path
) -> None:
    # a server process sends a batch and is killed (SIGKILL) before it hears back: the writer
    # process still commits the batch, then exits on the closed pipe
    script = tmp_path / "server.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal
            from mloop.workspace import Workspace
            from mloop.serving import PredictionLogger, PredictionRecord
            ws = Workspace.open({str(ws.home)!r}, database_url={ws.db.url!r})
            logger = PredictionLogger(ws.db, process=True)
            logger.log([PredictionRecord("c" * 32, i, "fraud", 1, 1, 0.1, {{"x": i}}, {{}})
                        for i in range(40)])
            logger._write(logger._take(1000))  # sent, not confirmed
            print(logger._child.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    writer = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while len(logged(ws)) < 40 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(r["row_index"] for r in logged(ws)) == list(range(40))
    while time.monotonic() < deadline:  # and the writer exits
        try:
            os.kill(writer, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the writer process {writer} is still running")


def test_an_in_memory_database_keeps_the_writer_in_process(tmp_path: Path) -> None:
    from mloop.storage import Database

    db = Database("sqlite://")
    logger = PredictionLogger(db, process=True)
    assert logger.in_process
    db.close()
