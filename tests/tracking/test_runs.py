"""The tracking store on both metadata backends: runs, params, metrics, tags, artifacts."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mloop import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.workspace import Workspace


def test_start_and_end_a_run(ws: Workspace) -> None:
    run = ws.tracking.start_run("exp-a", name="first", tags={"team": "fraud"})
    assert run.status == "RUNNING"
    assert run.experiment == "exp-a"
    assert run.name == "first"
    assert run.tags == {"team": "fraud"}
    assert run.end_time is None
    assert run.duration_seconds is None
    assert run.start_time.tzinfo is not None

    ended = ws.tracking.end_run(run.id, "FAILED")
    assert ended.status == "FAILED"
    assert ended.end_time is not None
    assert ended.end_time >= ended.start_time
    assert ws.tracking.get_run(run.id).status == "FAILED"


def test_a_run_gets_a_default_name_and_experiment(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    assert run.experiment == "Default"
    assert run.name == f"run-{run.id[-8:]}"
    assert [e.name for e in ws.tracking.list_experiments()] == ["Default"]


def test_names_longer_than_the_columns_are_refused_on_every_backend(ws: Workspace) -> None:
    with pytest.raises(InvalidInput, match="run name must be 1-255 characters"):
        ws.tracking.start_run(name="x" * 256)
    with pytest.raises(InvalidInput, match="experiment name"):
        ws.tracking.start_run("e" * 256)
    run = ws.tracking.start_run(name="x" * 255)
    with pytest.raises(InvalidInput, match="the limit is 1024"):
        ws.tracking.log_artifact_bytes(run.id, "a/" * 600, b"x")
    ws.tracking.log_artifact_bytes(run.id, "a" * 1024, b"x")
    assert [r.id for r in ws.tracking.list_runs()] == [run.id]


def test_end_run_refuses_a_non_terminal_status(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    with pytest.raises(InvalidInput, match="FINISHED, FAILED or KILLED"):
        ws.tracking.end_run(run.id, "RUNNING")  # type: ignore[arg-type]
    assert ws.tracking.get_run(run.id).status == "RUNNING"


def test_params_are_write_once(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    ws.tracking.log_params(run.id, {"lr": 0.1, "depth": 3})
    ws.tracking.log_param(run.id, "lr", 0.1)  # the same value again is fine
    with pytest.raises(Conflict, match=r"'lr'.*already '0\.1'"):
        ws.tracking.log_param(run.id, "lr", 0.2)
    # a batch with one changed value writes nothing, not even its new keys
    with pytest.raises(Conflict):
        ws.tracking.log_params(run.id, {"new_key": "x", "depth": 4})
    assert ws.tracking.get_run(run.id).params == {"lr": "0.1", "depth": "3"}


def test_bad_keys_are_refused(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    for key in ("", "a/../b", "semi;colon", "x" * 251):
        with pytest.raises(InvalidInput, match="key"):
            ws.tracking.log_param(run.id, key, 1)
        with pytest.raises(InvalidInput, match="key"):
            ws.tracking.log_metric(run.id, key, 1.0)
        with pytest.raises(InvalidInput, match="key"):
            ws.tracking.set_tag(run.id, key, "v")
    run = ws.tracking.get_run(run.id)
    assert (run.params, run.metrics, run.tags) == ({}, {}, {})


def test_a_param_value_over_the_limit_is_refused(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    with pytest.raises(InvalidInput, match="6001 characters"):
        ws.tracking.log_param(run.id, "long", "x" * 6001)


def test_metrics_keep_their_history_with_step_and_timestamp(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for step, value in enumerate([0.5, 0.4, 0.3]):
        ws.tracking.log_metrics(
            run.id, {"loss": value}, step=step, timestamp=t0 + timedelta(seconds=step)
        )
    ws.tracking.log_metric(run.id, "auc", 0.9)

    history = ws.tracking.metric_history(run.id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 0.5), (1, 0.4), (2, 0.3)]
    assert [p.timestamp for p in history] == [t0 + timedelta(seconds=s) for s in range(3)]
    # the run shows each metric's value at its latest step
    assert ws.tracking.get_run(run.id).metrics == {"auc": 0.9, "loss": 0.3}
    assert ws.tracking.metric_history(run.id, "never-logged") == []


def test_the_latest_step_wins_whatever_order_it_was_logged_in(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    ws.tracking.log_metric(run.id, "loss", 0.2, step=5)
    ws.tracking.log_metric(run.id, "loss", 0.9, step=1)
    assert ws.tracking.get_run(run.id).metrics["loss"] == 0.2


def test_a_metric_must_be_a_number(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    for value in ("abc", None, [1.0]):
        with pytest.raises(InvalidInput, match="'m'"):
            ws.tracking.log_metrics(run.id, {"ok": 1.0, "m": value})  # type: ignore[dict-item]
    assert ws.tracking.get_run(run.id).metrics == {}  # nothing of any batch was written


def test_nan_and_infinities_are_stored_as_mlflow_stores_them(ws: Workspace) -> None:
    """NaN stays NaN; ±inf become the largest finite doubles (SQL has no infinity)."""
    run = ws.tracking.start_run()
    ws.tracking.log_metrics(run.id, {"n": float("nan"), "p": float("inf"), "m": float("-inf")})
    metrics = ws.tracking.get_run(run.id).metrics
    assert math.isnan(metrics["n"])
    assert (metrics["p"], metrics["m"]) == (1.7976931348623157e308, -1.7976931348623157e308)
    [point] = ws.tracking.metric_history(run.id, "n")
    assert math.isnan(point.value)


def test_a_metric_timestamp_without_timezone_is_refused(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    with pytest.raises(InvalidInput, match="no timezone"):
        ws.tracking.log_metrics(run.id, {"m": 1.0}, timestamp=datetime(2026, 1, 1))
    assert ws.tracking.metric_history(run.id, "m") == []


def test_tags_are_set_and_overwritten(ws: Workspace) -> None:
    run = ws.tracking.start_run(tags={"a": "1"})
    ws.tracking.set_tags(run.id, {"a": "2", "b": 3})
    ws.tracking.set_tag(run.id, "c", "x")
    assert ws.tracking.get_run(run.id).tags == {"a": "2", "b": "3", "c": "x"}


def test_artifacts_are_content_addressed_and_read_back(ws: Workspace, tmp_path: Path) -> None:
    run = ws.tracking.start_run()
    data = b"weights \x00\x01\x02" * 100
    info = ws.tracking.log_artifact_bytes(run.id, "model/weights.bin", data)
    assert info.digest == hashlib.sha256(data).hexdigest()
    assert info.size_bytes == len(data)
    assert ws.tracking.read_artifact(run.id, "model/weights.bin") == data
    assert ws.artifacts.get_bytes(info.digest) == data

    local = tmp_path / "notes.txt"
    local.write_text("hello")
    from_file = ws.tracking.log_artifact(run.id, local)
    assert from_file.path == "notes.txt"
    # the same bytes under another name, in another run: one blob, two names
    other = ws.tracking.start_run()
    copy = ws.tracking.log_artifact_bytes(other.id, "copy.bin", data)
    assert copy.digest == info.digest
    assert ws.tracking.read_artifact(other.id, "copy.bin") == data

    shown = ws.tracking.get_run(run.id).artifacts
    assert [(a.path, a.digest) for a in shown] == [
        ("model/weights.bin", info.digest),
        ("notes.txt", hashlib.sha256(b"hello").hexdigest()),
    ]


def test_artifact_names_cannot_escape_and_missing_ones_are_not_found(
    ws: Workspace, tmp_path: Path
) -> None:
    run = ws.tracking.start_run()
    for bad in ("../x", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(InvalidInput):
            ws.tracking.log_artifact_bytes(run.id, bad, b"x")
    with pytest.raises(NotFound, match=r"no artifact 'nope\.bin'"):
        ws.tracking.read_artifact(run.id, "nope.bin")
    with pytest.raises(NotFound, match="does not exist"):
        ws.tracking.log_artifact(run.id, tmp_path / "missing.txt")
    assert ws.tracking.get_run(run.id).artifacts == []


def test_a_finished_run_refuses_every_change(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    ws.tracking.log_param(run.id, "p", 1)
    ws.tracking.end_run(run.id)
    attempts = [
        lambda: ws.tracking.log_param(run.id, "q", 2),
        lambda: ws.tracking.log_metric(run.id, "m", 1.0),
        lambda: ws.tracking.set_tag(run.id, "t", "v"),
        lambda: ws.tracking.log_artifact_bytes(run.id, "a.txt", b"a"),
        lambda: ws.tracking.add_input(run.id, ("dataset_version", new_id())),
        lambda: ws.tracking.end_run(run.id, "FAILED"),
    ]
    for attempt in attempts:
        with pytest.raises(Conflict, match="FINISHED"):
            attempt()
    after = ws.tracking.get_run(run.id)
    assert after.status == "FINISHED"
    assert (after.params, after.metrics, after.tags, after.artifacts) == ({"p": "1"}, {}, {}, [])


def test_unknown_run_is_not_found_and_a_malformed_id_is_invalid(ws: Workspace) -> None:
    unknown = new_id()
    for call in (
        lambda r: ws.tracking.get_run(r),
        lambda r: ws.tracking.log_param(r, "p", 1),
        lambda r: ws.tracking.log_metric(r, "m", 1.0),
        lambda r: ws.tracking.set_tag(r, "t", "v"),
        lambda r: ws.tracking.end_run(r),
        lambda r: ws.tracking.metric_history(r, "m"),
        lambda r: ws.tracking.read_artifact(r, "a.txt"),
    ):
        with pytest.raises(NotFound, match=unknown):
            call(unknown)
        with pytest.raises(InvalidInput, match="not a run id"):
            call("not-a-run-id")


def test_list_runs_newest_first_with_filters(ws: Workspace) -> None:
    a = ws.tracking.start_run("exp-a")
    b = ws.tracking.start_run("exp-b")
    c = ws.tracking.start_run("exp-a")
    ws.tracking.end_run(a.id)
    ws.tracking.end_run(b.id, "KILLED")

    assert [r.id for r in ws.tracking.list_runs()] == [c.id, b.id, a.id]
    assert [r.id for r in ws.tracking.list_runs("exp-a")] == [c.id, a.id]
    assert [r.id for r in ws.tracking.list_runs(status="FINISHED")] == [a.id]
    assert [r.id for r in ws.tracking.list_runs(status="running")] == [c.id]
    assert [r.id for r in ws.tracking.list_runs("exp-a", status="KILLED")] == []
    assert [r.id for r in ws.tracking.list_runs(limit=2)] == [c.id, b.id]
    with pytest.raises(NotFound, match="experiment 'nope'"):
        ws.tracking.list_runs("nope")
    with pytest.raises(InvalidInput, match="unknown run status 'DONE'"):
        ws.tracking.list_runs(status="DONE")


def test_list_runs_carries_params_metrics_and_tags(ws: Workspace) -> None:
    run = ws.tracking.start_run(tags={"t": "1"})
    ws.tracking.log_param(run.id, "p", "x")
    ws.tracking.log_metric(run.id, "m", 2.5)
    (listed,) = ws.tracking.list_runs()
    assert listed == ws.tracking.get_run(run.id)
    assert (listed.params, listed.metrics, listed.tags) == ({"p": "x"}, {"m": 2.5}, {"t": "1"})


def test_experiments_are_created_once(ws: Workspace) -> None:
    first = ws.tracking.get_or_create_experiment("exp")
    again = ws.tracking.get_or_create_experiment("exp")
    assert first == again
    with pytest.raises(InvalidInput, match="experiment name"):
        ws.tracking.get_or_create_experiment("  ")


def test_a_run_input_is_recorded_as_lineage(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    version_id = new_id()
    ws.tracking.add_input(run.id, ("dataset_version", version_id))
    ws.tracking.add_input(run.id, ("dataset_version", version_id))  # idempotent
    edges = ws.lineage.upstream("run", run.id)
    assert [(e.src.type, e.src.id, e.relation) for e in edges] == [
        ("dataset_version", version_id, "trained_on")
    ]


def test_tracking_changes_are_audited(ws: Workspace) -> None:
    ws.tracking.start_run("audited")
    records = ws.audit.list(object_type="experiment", object_id="audited")
    assert [r.action for r in records] == ["experiment.create"]


def test_deleting_an_experiment_deletes_its_runs_and_restoring_brings_them_back(
    ws: Workspace,
) -> None:
    """As in MLflow: the runs of a deleted experiment leave the active view with it."""
    exp = ws.tracking.create_experiment("to-delete")
    kept = ws.tracking.create_run(exp.id, name="kept")
    earlier = ws.tracking.create_run(exp.id, name="deleted-before")
    ws.tracking.delete_run(earlier.id)
    other = ws.tracking.start_run("other")
    ws.tracking.delete_experiment(exp.id)
    assert [r.id for r in ws.tracking.search_runs(None).items] == [other.id]
    assert ws.tracking.get_run(kept.id).lifecycle_stage == "deleted"
    ws.tracking.restore_experiment(exp.id)
    active = {r.id for r in ws.tracking.search_runs(None).items}
    assert active == {other.id, kept.id, earlier.id}  # MLflow restores every run of it
