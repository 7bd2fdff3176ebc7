"""The remote tracking store against a real ``mloop serve``: errors come back as the same
``MloopError`` classes, the URI comes from ``MLOOP_TRACKING_URI``, and a server that is away
costs nothing: batches wait and are sent when it is back."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import mloop
from fluent.support import Server, reset_fluent, start_server, stop_server
from mloop import fluent
from mloop.client import MloopClient
from mloop.core.errors import (
    AlreadyExists,
    Conflict,
    InvalidInput,
    MloopError,
    NotFound,
    StorageError,
)
from mloop.core.ids import new_id
from mloop.demo.runner import free_port
from mloop.tracking import (
    BatchLogger,
    CreateRun,
    LogBatch,
    MetricValue,
    RemoteTrackingStore,
    TrackingStore,
    UpdateRun,
    remote,
)
from mloop.workspace import Workspace

GUARD = 60.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(f"server_{request.param}")  # type: ignore[no-any-return]


@pytest.fixture
def store(server: Server) -> Iterator[RemoteTrackingStore]:
    remote_store = RemoteTrackingStore(server.url)
    yield remote_store
    remote_store.close()


def test_the_remote_store_is_a_tracking_store(store: RemoteTrackingStore) -> None:
    assert isinstance(store, TrackingStore)


def _failures(store: TrackingStore, experiment: str) -> dict[str, MloopError]:
    """The same mistakes, made against ``store``: the error each one raises."""
    exp = store.create_experiment(experiment)
    run_id = new_id()
    store.apply(
        [
            CreateRun(run_id=run_id, experiment_id=exp.id),
            LogBatch(run_id=run_id, params={"p": "1"}),
        ]
    )
    attempts = {
        "unknown run": lambda: store.get_run(new_id()),
        "malformed run id": lambda: store.get_run("nope"),
        "unknown experiment": lambda: store.get_experiment(new_id()),
        "experiment name taken": lambda: store.create_experiment(experiment),
        "bad filter": lambda: store.search_runs([exp.id], "metrics.m > high"),
        "bad order": lambda: store.search_runs([exp.id], None, ["metrics.m UP"]),
        "bad page token": lambda: store.search_runs([exp.id], page_token="zzz"),
        "param changed": lambda: store.apply([LogBatch(run_id=run_id, params={"p": "2"})]),
        "param too long": lambda: store.apply([LogBatch(run_id=run_id, params={"q": "x" * 6001})]),
        "bad metric key": lambda: store.apply(
            [LogBatch(run_id=run_id, metrics=[MetricValue(key="a b!", value=1.0)])]
        ),
        "unknown parent": lambda: store.apply(
            [CreateRun(run_id=new_id(), experiment_id=exp.id, parent_run_id=new_id())]
        ),
        "missing artifact": lambda: store.read_artifact(run_id, "none.txt"),
        "delete Default": lambda: store.delete_experiment("0"),
    }
    caught: dict[str, MloopError] = {}
    for name, attempt in attempts.items():
        try:
            attempt()
        except MloopError as exc:
            caught[name] = exc
    store.update_run(run_id, status="FINISHED")
    try:
        store.apply([LogBatch(run_id=run_id, metrics=[MetricValue(key="m", value=1.0)])])
    except MloopError as exc:
        caught["finished run"] = exc
    store.delete_run(run_id)
    try:
        store.log_artifact_bytes(run_id, "late.txt", b"x")
    except MloopError as exc:
        caught["deleted run"] = exc
    return caught


def test_errors_come_back_as_the_classes_the_server_raised(
    store: RemoteTrackingStore, sqlite_ws: Workspace
) -> None:
    name = f"errors-{new_id()[-8:]}"
    here = _failures(sqlite_ws.tracking, name)
    there = _failures(store, name)
    assert set(there) == set(here)
    assert len(here) == 15
    for what, local_error in here.items():
        assert type(there[what]) is type(local_error), what
    assert isinstance(there["unknown run"], NotFound)
    assert isinstance(there["malformed run id"], InvalidInput)
    assert isinstance(there["experiment name taken"], AlreadyExists)
    assert isinstance(there["param changed"], Conflict)
    assert isinstance(there["finished run"], Conflict)
    assert isinstance(there["deleted run"], Conflict)
    # the server's sentence, not an HTTP status line
    assert "params cannot change" in there["param changed"].message
    assert "compares with a number, found 'high'" in there["bad filter"].message
    assert "resume it first" in there["finished run"].message


def test_a_batch_is_all_or_nothing_over_http(store: RemoteTrackingStore) -> None:
    exp = store.create_experiment(f"batch-{new_id()[-8:]}")
    run_id = new_id()
    with pytest.raises(InvalidInput, match="metric key"):
        store.apply(
            [
                CreateRun(run_id=run_id, experiment_id=exp.id),
                LogBatch(run_id=run_id, params={"a": "1"}),
                LogBatch(run_id=run_id, metrics=[MetricValue(key="bad key!", value=1.0)]),
            ]
        )
    with pytest.raises(NotFound):
        store.get_run(run_id)  # not even the run was created
    store.apply(_fixed_batch(exp.id, run_id))
    run = store.get_run(run_id)
    assert (run.status, run.params) == ("FINISHED", {"a": "1"})
    assert run.metrics == {"ok": -1.7976931348623157e308}
    history = store.metric_history(run_id, "ok")
    assert len(history) == 2
    assert math.isnan(history[0].value)


def _fixed_batch(experiment_id: str, run_id: str) -> list[CreateRun | LogBatch | UpdateRun]:
    return [
        CreateRun(run_id=run_id, experiment_id=experiment_id),
        LogBatch(run_id=run_id, params={"a": "1"}),
        LogBatch(
            run_id=run_id,
            metrics=[
                MetricValue(key="ok", value=math.nan, step=0, timestamp=1),
                MetricValue(key="ok", value=-math.inf, step=1, timestamp=1),
            ],
        ),
        UpdateRun(run_id=run_id, status="FINISHED", end_time=5),
    ]


def test_a_batch_that_ended_its_run_can_be_sent_again(store: RemoteTrackingStore) -> None:
    """A resend carries the first send's batch id (as the store's own retries do): it is
    acknowledged, not applied twice. A different batch logging to the ended run is refused."""
    exp = store.create_experiment(f"again-{new_id()[-8:]}")
    run_id = new_id()
    store.apply(_fixed_batch(exp.id, run_id), batch_id="batch-1")
    store.apply(_fixed_batch(exp.id, run_id), batch_id="batch-1")  # the first answer was lost
    assert len(store.metric_history(run_id, "ok")) == 2
    assert store.get_run(run_id).status == "FINISHED"
    with pytest.raises(Conflict, match="is FINISHED"):
        store.apply(_fixed_batch(exp.id, run_id)[1:], batch_id="batch-2")


def test_an_unreachable_server_is_a_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "RETRIES", 0)  # refused connections are retried; not here
    nowhere = RemoteTrackingStore(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(StorageError, match="cannot reach the mloop server"):
            nowhere.get_run(new_id())
    finally:
        nowhere.close()


def test_batches_wait_while_the_server_is_away_and_arrive_once_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The flusher keeps what the absent server could not take and sends it again; what waits
    counts toward ``max_pending``, so the logging call itself waits for the server."""
    monkeypatch.setattr(remote, "RETRIES", 0)
    port = free_port()
    away = RemoteTrackingStore(f"http://127.0.0.1:{port}")
    logger = BatchLogger(away, interval=3600, batch_size=10, max_pending=100)
    run_id = new_id()
    caplog.set_level(logging.WARNING, logger="mloop.tracking")
    logger.create_run(CreateRun(run_id=run_id))
    logger.log(run_id, params={"p": "1"}, metrics=[("m", float(i), i, 1) for i in range(9)])
    deadline = time.monotonic() + GUARD
    while "will retry" not in caplog.text:  # 10 values woke the flusher; the port is closed
        assert time.monotonic() < deadline, "the flusher never tried"
        time.sleep(0.02)

    started: list[Server] = []
    starter = threading.Thread(
        target=lambda: started.append(start_server(tmp_path / "late", port=port))
    )
    starter.start()
    try:
        # 10 held + 90 new reach max_pending: this call sends, waiting for the server to be up
        logger.log(run_id, metrics=[("m", float(i), i, 1) for i in range(9, 98)], tags={"t": "v"})
        run = away.get_run(run_id)  # already there: the call above returned once it was stored
        assert (run.params, run.tags) == ({"p": "1"}, {"t": "v"})
        assert [p.step for p in away.metric_history(run_id, "m")] == list(range(98))
        logger.close()
    finally:
        starter.join()
        away.close()
        for server in started:
            stop_server(server.process)


def test_the_tracking_uri_comes_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_fluent()
    monkeypatch.setenv("MLOOP_TRACKING_URI", server.url)
    monkeypatch.setenv("MLOOP_EXPERIMENT_NAME", f"env-{new_id()[-8:]}")
    try:
        with mloop.start_run() as run:  # no init: the first call opens the store
            mloop.log_metric("m", 1.0)
        assert mloop.get_tracking_uri() == server.url
        assert isinstance(fluent._context().store, RemoteTrackingStore)
        with MloopClient(server.url) as client:
            got = client.get_run(run.run_id)
        assert got.metrics == {"m": 1.0}
        assert got.experiment.startswith("env-")
    finally:
        reset_fluent()


def test_a_bad_setting_is_invalid_input_whatever_the_store(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    reset_fluent()
    monkeypatch.setenv("MLOOP_TRACKING_FLUSH_SECONDS", "soon")
    try:
        with pytest.raises(InvalidInput, match="MLOOP_TRACKING_FLUSH_SECONDS"):
            mloop.init(server.url)
        monkeypatch.setenv("MLOOP_TRACKING_URI", server.url)
        with pytest.raises(InvalidInput, match="MLOOP_TRACKING_FLUSH_SECONDS"):
            mloop.start_run()
    finally:
        reset_fluent()
