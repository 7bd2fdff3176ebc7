"""The fluent tracking API end to end: on a local workspace and on a real ``mloop serve``, each on
SQLite and on PostgreSQL (the ``target`` fixture runs every test four times).

Experiments, runs (names, tags, nesting, resuming), params, metrics (steps, timestamps, history),
tags, artifacts, inputs, search and comparison; bad input refused with a clear error and
nothing half-written; several threads and processes logging to one run at once.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml

import mloop
from fluent.support import Target, clean_env
from mloop import fluent
from mloop.client import MloopClient
from mloop.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.tracking import LogBatch, Run

MAX_FLOAT = 1.7976931348623157e308


def stored(run_id: str) -> Run:
    """The run as the store has it, without flushing what is queued."""
    return MloopClient().get_run(run_id)


# -- experiments and runs --------------------------------------------------------------------


def test_experiments_are_chosen_by_name_or_id(target: Target) -> None:
    first = mloop.set_experiment(target.experiment)
    assert first.name == target.experiment
    assert mloop.set_experiment(target.experiment) == first  # created once
    assert mloop.set_experiment(experiment_id=first.id).id == first.id
    with pytest.raises(InvalidInput, match="not both or neither"):
        mloop.set_experiment()
    with pytest.raises(InvalidInput, match="not both or neither"):
        mloop.set_experiment(target.experiment, experiment_id=first.id)
    with pytest.raises(NotFound, match="does not exist"):
        mloop.set_experiment(experiment_id=new_id())

    other = mloop.set_experiment(f"{target.experiment}-gone")
    target.client.delete_experiment(other.id)
    with pytest.raises(Conflict, match="deleted"):
        mloop.set_experiment(other.name)
    with pytest.raises(AlreadyExists):
        target.client.create_experiment(target.experiment)

    mloop.set_experiment(experiment_id=first.id)
    with mloop.start_run() as run:
        pass
    assert mloop.get_run(run.run_id).experiment_id == first.id
    # a run can name its experiment itself
    with (
        pytest.raises(Conflict, match="deleted"),
        mloop.start_run(experiment_id=other.id) as elsewhere,
    ):
        pass  # the creation travels in a batch: the store refuses it when the run ends
    with pytest.raises(NotFound):
        stored(elsewhere.run_id)


def test_the_client_manages_experiments_by_name_or_id(target: Target) -> None:
    client = target.client
    name = f"{target.experiment}-managed"
    created = client.create_experiment(name, tags={"team": "risk"})
    assert client.resolve_experiment(name) == created
    assert client.resolve_experiment(created.id) == created
    assert client.resolve_experiment("0").name == "Default"
    renamed = client.rename_experiment(name, f"{name}-2")
    assert (renamed.id, renamed.name) == (created.id, f"{name}-2")
    with pytest.raises(NotFound):
        client.resolve_experiment(name)
    found = client.search_experiments(filter_string=f"name LIKE '{name}%'")
    assert [e.id for e in found.items] == [created.id]
    assert client.delete_experiment(f"{name}-2").lifecycle_stage == "deleted"
    assert client.search_experiments(filter_string=f"name LIKE '{name}%'").items == []
    deleted = client.search_experiments(view="deleted", filter_string=f"name LIKE '{name}%'")
    assert [e.id for e in deleted.items] == [created.id]
    assert client.restore_experiment(created.id).lifecycle_stage == "active"
    with pytest.raises(InvalidInput, match="Default"):
        client.delete_experiment("0")
    with pytest.raises(AlreadyExists):
        client.rename_experiment(created.id, target.experiment)


def test_a_run_has_a_name_tags_a_description_and_ends_finished(target: Target) -> None:
    assert mloop.active_run() is None
    with mloop.start_run(run_name="baseline", tags={"team": "risk"}, description="first") as run:
        assert mloop.active_run() is run
        info = run.info
        assert info.status == "RUNNING"
        assert info.name == "baseline"
        assert info.experiment == target.experiment
        assert info.tags == {"team": "risk", "mlflow.note.content": "first"}
        assert info.end_time is None
    assert mloop.active_run() is None
    assert mloop.last_active_run() is run
    done = mloop.get_run(run.run_id)
    assert done.status == "FINISHED"
    assert done.end_time is not None
    assert done.end_time >= done.start_time

    with mloop.start_run() as unnamed:
        pass
    assert mloop.get_run(unnamed.run_id).name == f"run-{unnamed.run_id[-8:]}"


def test_an_error_fails_the_run_and_an_interrupt_kills_it(target: Target) -> None:
    with pytest.raises(ZeroDivisionError), mloop.start_run() as failed:
        _ = 1 / 0
    with pytest.raises(KeyboardInterrupt), mloop.start_run() as killed:
        raise KeyboardInterrupt
    mloop.start_run()
    mloop.end_run("KILLED")
    ended = mloop.last_active_run()
    assert ended is not None
    assert [mloop.get_run(r.run_id).status for r in (failed, killed, ended)] == [
        "FAILED",
        "KILLED",
        "KILLED",
    ]


def test_only_one_run_is_active_unless_nested(target: Target) -> None:
    with mloop.start_run(run_name="parent") as parent:
        with pytest.raises(Conflict, match="already active"):
            mloop.start_run()
        with mloop.start_run(run_name="child", nested=True) as child:
            assert mloop.active_run() is child
            grandchild = mloop.start_run(run_name="grandchild", nested=True)
            mloop.end_run()
            assert mloop.active_run() is child
        assert mloop.active_run() is parent
        # a child still active when its parent ends ends with it
        orphan = mloop.start_run(nested=True)
    runs = {r.run_id: mloop.get_run(r.run_id) for r in (parent, child, grandchild, orphan)}
    assert runs[parent.run_id].parent_run_id is None
    assert runs[child.run_id].parent_run_id == parent.run_id
    assert runs[child.run_id].tags["mlflow.parentRunId"] == parent.run_id
    assert runs[grandchild.run_id].parent_run_id == child.run_id
    assert runs[orphan.run_id].parent_run_id == parent.run_id
    assert {r.status for r in runs.values()} == {"FINISHED"}
    assert mloop.active_run() is None

    # an explicit parent, without nesting
    with mloop.start_run(parent_run_id=parent.run_id) as adopted:
        pass
    assert mloop.get_run(adopted.run_id).parent_run_id == parent.run_id
    found = mloop.search_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent.run_id}'")
    assert {r.id for r in found} == {child.run_id, orphan.run_id, adopted.run_id}


def test_a_run_is_resumed_by_id_and_keeps_its_params(target: Target) -> None:
    with mloop.start_run(run_name="resumable") as run:
        mloop.log_param("lr", 0.1)
        mloop.log_metric("loss", 0.5, step=0)
    assert mloop.get_run(run.run_id).status == "FINISHED"

    with mloop.start_run(run_id=run.run_id, tags={"resumed": "yes"}) as again:
        assert again.run_id == run.run_id
        assert again.name == "resumable"
        info = again.info
        assert info.status == "RUNNING"
        assert info.end_time is None
        assert info.params == {"lr": "0.1"}
        mloop.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(Conflict, match="params cannot change"):
            mloop.log_param("lr", 0.2)  # refused at once, from what the store had
        mloop.log_metric("loss", 0.25, step=1)
    final = mloop.get_run(run.run_id)
    assert final.status == "FINISHED"
    assert final.params == {"lr": "0.1"}
    assert final.tags["resumed"] == "yes"
    assert [p.value for p in target.client.metric_history(run.run_id, "loss")] == [0.5, 0.25]

    with pytest.raises(NotFound):
        mloop.start_run(run_id=new_id())
    with pytest.raises(InvalidInput, match="not a run id"):
        mloop.start_run(run_id="nope")
    other = mloop.set_experiment(f"{target.experiment}-other")
    with pytest.raises(InvalidInput, match="belongs to experiment"):
        mloop.start_run(run_id=run.run_id, experiment_id=other.id)
    target.client.delete_run(run.run_id)
    with pytest.raises(Conflict, match="restore it"):
        mloop.start_run(run_id=run.run_id)
    assert mloop.active_run() is None


def test_bad_run_arguments_are_refused_before_anything_is_queued(target: Target) -> None:
    with pytest.raises(InvalidInput, match="run name"):
        mloop.start_run(run_name="x" * 256)
    with pytest.raises(InvalidInput, match="tag key"):
        mloop.start_run(tags={"bad key!": 1})
    assert mloop.active_run() is None
    with pytest.raises(InvalidInput, match="no active run"):
        mloop.log_metric("loss", 1.0)
    mloop.end_run()  # no active run: nothing to do
    run = mloop.start_run()
    with pytest.raises(InvalidInput, match="FINISHED, FAILED or KILLED"):
        mloop.end_run("RUNNING")
    assert mloop.active_run() is run
    mloop.end_run()

    # a parent that does not exist: the creation is refused when the batch reaches the store
    mloop.start_run(parent_run_id=new_id())
    orphan = mloop.active_run()
    assert orphan is not None
    with pytest.raises(NotFound, match="parent run"):
        mloop.end_run()
    with pytest.raises(NotFound):
        mloop.get_run(orphan.run_id)


# -- params, metrics, tags -------------------------------------------------------------------


def test_params_metrics_and_tags_are_stored(target: Target) -> None:
    with mloop.start_run() as run:
        assert mloop.log_param("C", 0.1) == 0.1
        mloop.log_params({"penalty": "l2", "layers": [64, 32]})
        for step in range(5):
            mloop.log_metric(
                "loss", 1.0 / (step + 1), step=step, timestamp=1_700_000_000_000 + step
            )
        mloop.log_metrics({"auc": 0.9, "f1": 0.8}, step=3)
        mloop.log_metric("no_step", 7)
        mloop.set_tag("stage", "dev")
        mloop.set_tags({"stage": "prod", "owner": "ann"})  # a tag can change
    got = mloop.get_run(run.run_id)
    assert got.params == {"C": "0.1", "penalty": "l2", "layers": "[64, 32]"}
    assert got.metrics == {"auc": 0.9, "f1": 0.8, "loss": 0.2, "no_step": 7.0}
    assert got.tags == {"stage": "prod", "owner": "ann"}

    history = target.client.metric_history(run.run_id, "loss")
    assert [(p.step, p.value) for p in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert [int(p.timestamp.timestamp() * 1000) for p in history] == [
        1_700_000_000_000 + s for s in range(5)
    ]
    assert [p.step for p in target.client.metric_history(run.run_id, "no_step")] == [0]
    assert [p.step for p in target.client.metric_history(run.run_id, "auc")] == [3]
    assert target.client.metric_history(run.run_id, "never") == []
    with pytest.raises(NotFound):
        target.client.metric_history(new_id(), "loss")


def test_the_latest_metric_is_the_highest_step_whatever_the_order(target: Target) -> None:
    with mloop.start_run() as run:
        for step in (3, 1, 7, 2):
            mloop.log_metric("m", float(step * 10), step=step)
        mloop.log_metric("same", 1.0, step=0, timestamp=5)
        mloop.log_metric("same", 1.0, step=0, timestamp=5)  # the same point twice: stored once
    assert mloop.get_run(run.run_id).metrics["m"] == 70.0
    assert len(target.client.metric_history(run.run_id, "same")) == 1


def test_nan_and_infinities_are_stored_as_mlflow_stores_them(target: Target) -> None:
    with mloop.start_run() as run:
        mloop.log_metric("nan", math.nan)
        mloop.log_metrics({"pinf": math.inf, "ninf": -math.inf, "big": MAX_FLOAT})
        mloop.log_metric("nan_string", "NaN")  # type: ignore[arg-type]  # MLflow's JSON spelling
    metrics = mloop.get_run(run.run_id).metrics
    assert math.isnan(metrics["nan"])
    assert math.isnan(metrics["nan_string"])
    assert metrics["pinf"] == MAX_FLOAT
    assert metrics["ninf"] == -MAX_FLOAT
    assert metrics["big"] == MAX_FLOAT
    (point,) = target.client.metric_history(run.run_id, "nan")
    assert math.isnan(point.value)
    # NaN never matches a comparison, and sorts above every number (as in MLflow)
    assert mloop.search_runs(filter_string="metrics.nan > 0") == []
    assert [r.id for r in mloop.search_runs(filter_string="metrics.pinf > 1e300")] == [run.run_id]


def test_numpy_numbers_are_metric_values_and_steps(target: Target) -> None:
    with mloop.start_run() as run:
        mloop.log_metric("f32", np.float32(0.5), step=np.int64(3))
        mloop.log_metrics({"i64": np.int64(7), "f16": np.float16(0.25)}, step=np.int32(1))
        with pytest.raises(InvalidInput, match="is not a number"):
            mloop.log_metric("flag", np.bool_(True))
        with pytest.raises(InvalidInput, match="step must be an integer"):
            mloop.log_metric("m", 1.0, step=np.float64(2.0))
    got = mloop.get_run(run.run_id)
    assert got.metrics == {"f16": 0.25, "f32": 0.5, "i64": 7.0}
    assert [p.step for p in target.client.metric_history(run.run_id, "f32")] == [3]


def test_bad_values_are_refused_at_once_and_nothing_of_the_call_is_kept(target: Target) -> None:
    with mloop.start_run() as run:
        with pytest.raises(InvalidInput, match="is not a number"):
            mloop.log_metric("m", "abc")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="is not a number"):
            mloop.log_metric("m", None)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="is not a number"):
            mloop.log_metric("m", True)
        with pytest.raises(InvalidInput, match="step must be an integer"):
            mloop.log_metric("m", 1.0, step=1.5)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="step must be an integer"):
            mloop.log_metrics({"m": 1.0}, step="2")  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="metric key"):
            mloop.log_metric("bad key!", 1.0)
        with pytest.raises(InvalidInput, match="metric key"):
            mloop.log_metric("../escape", 1.0)
        with pytest.raises(InvalidInput, match="metric key"):
            mloop.log_metric("k" * 251, 1.0)
        with pytest.raises(InvalidInput, match="is not a number"):
            mloop.log_metrics({"good": 1.0, "bad": "x"})
        with pytest.raises(InvalidInput, match="6001 characters; the limit is 6000"):
            mloop.log_params({"ok": 1, "big": "x" * 6001})
        mloop.log_param("at_limit", "y" * 6000)
        with pytest.raises(InvalidInput, match="limit is 8000"):
            mloop.set_tags({"fine": "1", "huge": "z" * 8001})
        with pytest.raises(InvalidInput, match="param key"):
            mloop.log_param("", 1)
        with pytest.raises(InvalidInput, match="tag key"):
            mloop.set_tag("a/../b", 1)
    got = mloop.get_run(run.run_id)
    assert got.metrics == {}
    assert got.params == {"at_limit": "y" * 6000}
    assert got.tags == {}


def test_a_param_cannot_change_within_a_process(target: Target) -> None:
    with mloop.start_run() as run:
        mloop.log_param("p", 1)
        mloop.log_param("p", "1")  # the same value (params are strings)
        with pytest.raises(Conflict, match=r"param 'p' .* is already '1'"):
            mloop.log_param("p", 2)
        with pytest.raises(Conflict):
            mloop.log_params({"q": 1, "p": 3})  # nothing of the call is kept
        mloop.log_param("q", 5)  # q was not kept above: it can take a value now
    assert mloop.get_run(run.run_id).params == {"p": "1", "q": "5"}


def test_a_param_changed_by_another_client_conflicts_at_end_run(target: Target) -> None:
    other = MloopClient(target.uri)
    try:
        run = mloop.start_run()
        mloop.log_metric("before", 1.0)
        mloop.flush()  # the run exists on the store
        other.store.apply([LogBatch(run_id=run.run_id, params={"p": "theirs"})])
        mloop.log_metric("m", 1.0)
        mloop.log_param("p", "mine")  # this process does not know: queued
        mloop.set_tag("t", "v")
        mloop.log_metric("m", 2.0, step=1)
        with pytest.raises(Conflict, match="params cannot change"):
            mloop.end_run()
    finally:
        other.close()
    got = mloop.get_run(run.run_id)
    assert got.status == "FINISHED"  # the run still ended
    assert got.params == {"p": "theirs"}
    # one refused param costs nothing else that was queued with it
    assert got.metrics == {"before": 1.0, "m": 2.0}
    assert got.tags == {"t": "v"}


def test_an_error_in_the_body_is_not_masked_by_what_logging_met(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    def train(other: MloopClient) -> None:
        with mloop.start_run() as run:
            mloop.flush()
            other.store.apply([LogBatch(run_id=run.run_id, params={"p": "theirs"})])
            mloop.log_param("p", "mine")
            _ = 1 / 0  # the training failed: that is what the user must see

    with MloopClient(target.uri) as other, pytest.raises(ZeroDivisionError):
        train(other)
    run = mloop.last_active_run()
    assert run is not None
    assert "params cannot change" in caplog.text  # the conflict is reported beside it
    assert mloop.get_run(run.run_id).status == "FAILED"


def test_a_finished_run_refuses_logging_until_resumed(target: Target) -> None:
    run = mloop.start_run()
    mloop.log_metric("m", 1.0, step=0)
    mloop.flush()
    target.client.set_terminated(run.run_id)  # ended elsewhere while this process logs
    mloop.log_metric("m", 2.0, step=1)
    mloop.log_param("late", 1)
    with pytest.raises(Conflict, match="resume it first"):
        mloop.flush()
    mloop.end_run()
    got = mloop.get_run(run.run_id)
    assert (got.status, got.params, got.metrics) == ("FINISHED", {}, {"m": 1.0})
    with pytest.raises(InvalidInput, match="no active run"):
        mloop.log_metric("m", 3.0)

    with mloop.start_run(run_id=run.run_id):
        mloop.log_metric("m", 3.0, step=2)
    assert mloop.get_run(run.run_id).metrics == {"m": 3.0}


def test_a_deleted_run_refuses_logging_until_restored(target: Target) -> None:
    run = mloop.start_run()
    mloop.flush()
    assert target.client.delete_run(run.run_id).lifecycle_stage == "deleted"
    mloop.log_metric("m", 1.0)
    with pytest.raises(Conflict, match="deleted"):
        mloop.flush()
    with pytest.raises(Conflict, match="deleted"):
        mloop.end_run()  # ending it is a change too
    assert mloop.active_run() is None
    got = mloop.get_run(run.run_id)
    assert (got.status, got.metrics) == ("RUNNING", {})
    assert mloop.search_runs() == []  # hidden from the active view

    assert target.client.restore_run(run.run_id).lifecycle_stage == "active"
    with mloop.start_run(run_id=run.run_id):
        mloop.log_metric("m", 2.0)
    assert mloop.get_run(run.run_id).metrics == {"m": 2.0}
    assert [r.id for r in mloop.search_runs()] == [run.run_id]


def test_unknown_runs_and_experiments_are_not_found(target: Target) -> None:
    client = target.client
    with pytest.raises(NotFound, match="does not exist"):
        client.get_run(new_id())
    with pytest.raises(InvalidInput, match="not a run id"):
        client.get_run("nope")
    with pytest.raises(NotFound):
        client.get_experiment(new_id())
    with pytest.raises(NotFound):
        client.get_experiment_by_name("no such experiment")
    with pytest.raises(NotFound):
        client.delete_run(new_id())
    with pytest.raises(NotFound):
        client.compare_runs([new_id()])
    with pytest.raises(NotFound):
        mloop.search_runs(["no such experiment"])
    with pytest.raises(NotFound):
        client.list_artifacts(new_id())
    with pytest.raises(NotFound):
        client.store.apply([LogBatch(run_id=new_id(), params={"a": "1"})])


def test_a_run_id_with_a_slash_is_invalid_input(target: Target) -> None:
    with pytest.raises(InvalidInput, match="not a run id"):
        target.client.get_run("../etc")


# -- artifacts -------------------------------------------------------------------------------


def test_files_and_folders_are_logged_with_their_structure(target: Target, tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("accuracy 0.9")
    folder = tmp_path / "plots"
    (folder / "roc").mkdir(parents=True)
    (folder / "roc" / "curve.csv").write_text("fpr,tpr\n0,0\n1,1\n")
    (folder / "summary.md").write_text("# ok")
    with mloop.start_run() as run:
        mloop.log_artifact(report)
        mloop.log_artifact(report, "docs/")
        mloop.log_artifacts(folder, "plots")
        mloop.log_artifacts(folder)
        with pytest.raises(NotFound, match="does not exist"):
            mloop.log_artifact(tmp_path / "missing.txt")
        with pytest.raises(NotFound, match="does not exist"):
            mloop.log_artifacts(tmp_path / "missing")
    client = target.client
    paths = sorted(a.path for a in mloop.get_run(run.run_id).artifacts)
    assert paths == [
        "docs/report.txt",
        "plots/roc/curve.csv",
        "plots/summary.md",
        "report.txt",
        "roc/curve.csv",
        "summary.md",
    ]
    top = client.list_artifacts(run.run_id)
    assert [(a.path, a.is_dir) for a in top] == [
        ("docs", True),
        ("plots", True),
        ("report.txt", False),
        ("roc", True),
        ("summary.md", False),
    ]
    assert [a.path for a in client.list_artifacts(run.run_id, "plots")] == [
        "plots/roc",
        "plots/summary.md",
    ]
    assert client.store.read_artifact(run.run_id, "plots/roc/curve.csv") == (b"fpr,tpr\n0,0\n1,1\n")
    saved = client.download_artifact(run.run_id, "docs/report.txt", tmp_path / "down")
    assert saved.read_text() == "accuracy 0.9"
    with pytest.raises(NotFound):
        client.store.read_artifact(run.run_id, "nothing.txt")


@pytest.mark.parametrize("path", ["../outside.txt", "a/../b.txt", "/etc/passwd"])
def test_an_artifact_path_that_climbs_out_is_refused(target: Target, path: str) -> None:
    with mloop.start_run() as run, pytest.raises(InvalidInput, match="artifact name"):
        mloop.log_text("x", path)
    assert mloop.get_run(run.run_id).artifacts == []


def test_dicts_text_and_tables_are_logged_as_files(target: Target) -> None:
    config = {"model": "xgb", "depth": 3, "features": ["a", "b"]}
    with mloop.start_run() as run:
        mloop.log_dict(config, "config.json")
        mloop.log_dict(config, "config.yaml")
        mloop.log_dict(config, "nested/config.yml")
        mloop.log_text("hello\nworld", "notes/readme.txt")
        mloop.log_table({"x": [1, 2], "y": ["a", None], "z": [math.nan, 1.5]}, "dict.json")
        mloop.log_table(pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}), "pandas.json")
        mloop.log_table(pl.DataFrame({"x": [1, 2], "y": [0.5, None]}), "polars.json")
        with pytest.raises(InvalidInput, match="same length"):
            mloop.log_table({"x": [1, 2], "y": [1]}, "bad.json")
        with pytest.raises(InvalidInput, match=r"\*\.json"):
            mloop.log_table({"x": [1]}, "table.csv")
        with pytest.raises(InvalidInput, match="as a table"):
            mloop.log_table([1, 2, 3], "list.json")
    read = target.client.store.read_artifact
    assert json.loads(read(run.run_id, "config.json")) == config
    assert yaml.safe_load(read(run.run_id, "config.yaml")) == config
    assert yaml.safe_load(read(run.run_id, "nested/config.yml")) == config
    assert read(run.run_id, "notes/readme.txt") == b"hello\nworld"
    assert json.loads(read(run.run_id, "dict.json")) == {
        "columns": ["x", "y", "z"],
        "data": [[1, "a", None], [2, None, 1.5]],
    }
    assert json.loads(read(run.run_id, "pandas.json")) == {
        "columns": ["x", "y"],
        "data": [[1, "a"], [2, "b"]],
    }
    assert json.loads(read(run.run_id, "polars.json")) == {
        "columns": ["x", "y"],
        "data": [[1, 0.5], [2, None]],
    }
    assert {a.path for a in mloop.get_run(run.run_id).artifacts} == {
        "config.json",
        "config.yaml",
        "nested/config.yml",
        "notes/readme.txt",
        "dict.json",
        "pandas.json",
        "polars.json",
    }


def test_figures_are_logged_by_their_suffix(target: Target) -> None:
    with mloop.start_run() as run:
        with pytest.raises(InvalidInput, match="matplotlib or plotly"):
            mloop.log_figure(object(), "figure.png")
        try:
            import matplotlib
        except ImportError:
            pytest.skip("matplotlib is not installed: only the refusal was checked")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots()
        axes.plot([0, 1], [1, 0])
        mloop.log_figure(figure, "plots/line.png")
        mloop.log_figure(figure, "plots/line.svg")
        plt.close(figure)
    read = target.client.store.read_artifact
    assert read(run.run_id, "plots/line.png").startswith(b"\x89PNG")
    assert b"<svg" in read(run.run_id, "plots/line.svg")


def test_artifacts_of_a_finished_run_are_refused(target: Target) -> None:
    run = mloop.start_run()
    mloop.flush()
    target.client.set_terminated(run.run_id)
    with pytest.raises(Conflict, match="FINISHED"):
        mloop.log_text("late", "late.txt")
    mloop.end_run()
    assert mloop.get_run(run.run_id).artifacts == []


# -- inputs ----------------------------------------------------------------------------------


def test_a_frame_is_logged_as_an_input_by_its_content(target: Target) -> None:
    frame = pl.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    with mloop.start_run() as run:
        mloop.log_input(frame, name="train")
        mloop.log_input(frame, name="train")  # the same input again: recorded once
        mloop.log_input(frame.head(2), name="eval", context="evaluation")
    inputs = mloop.get_run(run.run_id).inputs
    assert [(i.name, i.context, i.source_type) for i in inputs] == [
        ("train", "training", "frame"),
        ("eval", "evaluation", "frame"),
    ]
    assert inputs[0].digest != inputs[1].digest
    assert json.loads(inputs[0].schema_ or "") == {"x": "int64", "y": "large_string"}
    assert json.loads(inputs[0].profile or "") == {"rows": 3}
    found = mloop.search_runs(filter_string="datasets.name = 'eval'")
    assert [r.id for r in found] == [run.run_id]
    found = mloop.search_runs(filter_string=f"datasets.digest = '{inputs[0].digest}'")
    assert [r.id for r in found] == [run.run_id]


def test_a_dataset_version_is_logged_as_an_input_with_lineage(target: Target) -> None:
    if target.remote:
        with mloop.start_run(), pytest.raises(InvalidInput, match="local workspace"):
            mloop.log_input("train@1")
        return
    assert fluent._ctx is not None
    ws = fluent._ctx.owner
    assert ws is not None
    version = ws.datasets.ingest(pl.DataFrame({"x": [1, 2], "y": [3, 4]}), name="train")
    with mloop.start_run() as run:
        mloop.log_input(version)
        mloop.log_input("train@1", context="validation")
        with pytest.raises(NotFound):
            mloop.log_input("missing@1")
    inputs = mloop.get_run(run.run_id).inputs
    assert [(i.name, i.context, i.source_type, i.source) for i in inputs] == [
        ("train@1", "training", "mloop", version.id),
        ("train@1", "validation", "mloop", version.id),
    ]
    assert inputs[0].digest == version.content_hash[:64]
    edges = ws.lineage.upstream("run", run.run_id)
    assert {(e.src.type, e.src.id) for e in edges} == {("dataset_version", version.id)}


# -- search and comparison -------------------------------------------------------------------


def _five_runs() -> list[str]:
    ids = []
    for i in range(5):
        with mloop.start_run(run_name=f"r{i}", tags={"team": "risk" if i % 2 else "ops"}) as run:
            mloop.log_params({"model": "xgb" if i < 3 else "lr", "i": i})
            mloop.log_metric("score", i / 10)
        ids.append(run.run_id)
    return ids


def test_search_filters_orders_and_pages(target: Target) -> None:
    ids = _five_runs()
    by_score = mloop.search_runs(order_by=["metrics.score DESC"])
    assert [r.id for r in by_score] == ids[::-1]
    assert by_score.next_page_token is None
    assert [r.id for r in mloop.search_runs()] == ids[::-1]  # newest first by default

    found = mloop.search_runs(
        [target.experiment],
        "metrics.score >= 0.1 and params.model = 'xgb' and tags.team LIKE 'r%'",
    )
    assert [r.id for r in found] == [ids[1]]
    found = mloop.search_runs(filter_string=f"run_id IN ('{ids[0]}', '{ids[4]}')")
    assert {r.id for r in found} == {ids[0], ids[4]}
    found = mloop.search_runs(filter_string="params.model != 'xgb'", order_by=["params.i ASC"])
    assert [r.id for r in found] == ids[3:]
    found = mloop.search_runs(filter_string="tags.team = 'ops'", order_by=["run_name"])
    assert [r.name for r in found] == ["r0", "r2", "r4"]
    assert mloop.search_runs(filter_string="attributes.status = 'RUNNING'") == []

    pages, token = [], None
    while True:
        page = mloop.search_runs(order_by=["metrics.score ASC"], max_results=2, page_token=token)
        pages.append([r.id for r in page])
        token = page.next_page_token
        if token is None:
            break
    assert pages == [ids[0:2], ids[2:4], ids[4:]]

    frame = mloop.search_runs(order_by=["metrics.score"]).to_pandas()
    assert list(frame["run_id"]) == ids
    assert list(frame["metrics.score"]) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert list(frame["params.model"]) == ["xgb", "xgb", "xgb", "lr", "lr"]
    assert {"run_name", "status", "start_time", "tags.team"} <= set(frame.columns)
    assert mloop.search_runs(filter_string="metrics.score > 5").to_pandas().empty

    client = target.client
    assert len(client.search_runs([target.experiment], max_results=3)) == 3
    assert {r.id for r in client.search_runs([mloop.set_experiment(target.experiment).id])} == set(
        ids
    )


@pytest.mark.parametrize(
    ("filter_string", "problem"),
    [
        ("metrics.score >", "it ends too early"),
        ("metrics.score > high", "compares with a number, found 'high'"),
        ("params.model = 3", "compares with a quoted string"),
        ("metrics.a > 1 or metrics.b > 1", "OR is not supported"),
        ("metrics.a > 1 metrics.b > 1", "expected AND"),
        ("features.x = 1", "unknown entity 'features'"),
        ("colour = 'red'", "unknown attribute 'colour'"),
        ("metrics.a ~ 1", "unexpected '~' at position 10"),
        ("params.p = 'unterminated", 'unexpected "\'"'),
        ("metrics.a LIKE 'x%'", "is a number"),
        ("params.p IN ('a')", "IN works on run_id and datasets"),
        ("metrics.a IS NULL", "IS NULL works on params and tags"),
        ("datasets.size = 'x'", "unknown dataset field"),
    ],
)
def test_a_malformed_filter_names_its_problem(
    target: Target, filter_string: str, problem: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        mloop.search_runs(filter_string=filter_string)
    assert problem in caught.value.message
    assert repr(filter_string) in caught.value.message


def test_bad_order_and_paging_are_refused(target: Target) -> None:
    with pytest.raises(InvalidInput, match="expected ASC or DESC"):
        mloop.search_runs(order_by=["metrics.a SIDEWAYS"])
    with pytest.raises(InvalidInput, match="dataset"):
        mloop.search_runs(order_by=["datasets.name"])
    with pytest.raises(InvalidInput, match="invalid page token"):
        mloop.search_runs(page_token="not-a-token")
    with pytest.raises(InvalidInput, match="max_results"):
        mloop.search_runs(max_results=0)
    with pytest.raises(InvalidInput, match="max_results is at most"):
        mloop.search_runs(max_results=50_001)
    with pytest.raises(InvalidInput, match="list of names or ids"):
        mloop.search_runs(target.experiment)  # type: ignore[arg-type]


def test_runs_are_compared_side_by_side(target: Target) -> None:
    ids = _five_runs()
    comparison = target.client.compare_runs([ids[0], ids[3]])
    assert comparison.runs == [ids[0], ids[3]]
    assert comparison.names == ["r0", "r3"]
    assert comparison.params == {"i": ["0", "3"], "model": ["xgb", "lr"]}
    assert comparison.metrics == {"score": [0.0, 0.3]}
    assert comparison.differing_params == ["i", "model"]
    with pytest.raises(InvalidInput, match="at least one run"):
        target.client.compare_runs([])


# -- concurrent writers ----------------------------------------------------------------------

WRITERS = 4
VALUES = 300


def _check_concurrent_logging(target: Target, run_id: str, writers: int = WRITERS) -> None:
    client = target.client
    for w in range(writers):
        history = client.metric_history(run_id, f"w{w}")
        assert [p.step for p in history] == list(range(VALUES))  # each value exactly once
        assert [p.value for p in history] == [float(w * 1000 + s) for s in range(VALUES)]
    shared = client.metric_history(run_id, "shared")
    assert sorted(p.step for p in shared) == list(range(writers * VALUES))
    run = client.get_run(run_id)
    assert run.metrics["shared"] == float(writers * VALUES - 1)  # the latest step's value
    assert {run.metrics[f"w{w}"] for w in range(writers)} == {
        float(w * 1000 + VALUES - 1) for w in range(writers)
    }
    assert {k: v for k, v in run.tags.items() if k.startswith("writer")} == {
        f"writer{w}": str(w) for w in range(writers)
    }
    assert run.tags["last"] in {str(w) for w in range(writers)}
    assert run.params == {f"p{w}": str(w) for w in range(writers)} | {"common": "same"}


def test_threads_logging_to_one_run_lose_and_repeat_nothing(target: Target) -> None:
    run = mloop.start_run()
    mloop.flush()
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            mloop.start_run(run_id=run.run_id)  # the active run is per thread, as in MLflow
            start.wait()
            mloop.log_params({f"p{w}": w, "common": "same"})
            for s in range(VALUES):
                mloop.log_metric(f"w{w}", float(w * 1000 + s), step=s)
                mloop.log_metric("shared", float(s * WRITERS + w), step=s * WRITERS + w)
                if s % 50 == 0:
                    mloop.set_tags({f"writer{w}": w, "last": w})
            mloop.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    mloop.end_run()
    _check_concurrent_logging(target, run.run_id)
    assert mloop.get_run(run.run_id).status == "FINISHED"


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    import mloop

    uri, run_id, w, values, writers = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
    mloop.init(uri)
    mloop.start_run(run_id=run_id)
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    mloop.log_params({f"p{w}": w, "common": "same"})
    for s in range(values):
        mloop.log_metric(f"w{w}", float(w * 1000 + s), step=s)
        mloop.log_metric("shared", float(s * writers + w), step=s * writers + w)
        if s % 50 == 0:
            mloop.set_tags({f"writer{w}": w, "last": w})
    mloop.flush()
    print("flushed", flush=True)
    sys.stdin.read()  # wait until every writer has flushed: exiting ends the run
    """
)


PROCESSES = 3


@pytest.mark.parametrize(
    "target",
    ["local-sqlite", pytest.param("remote-postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_processes_logging_to_one_run_lose_and_repeat_nothing(
    target: Target, tmp_path: Path
) -> None:
    run = mloop.start_run()
    mloop.flush()
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    env = clean_env(**target.env, MLOOP_TRACKING_FLUSH_SECONDS="0.05")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                target.uri,
                run.run_id,
                str(w),
                str(VALUES),
                str(PROCESSES),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for w in range(PROCESSES)
    ]
    try:
        for expected, answer in ((b"ready\n", b"go\n"), (b"flushed\n", None)):
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline()
                assert line == expected, (p.stderr.read() if p.stderr else b"").decode()
            for p in procs:
                if answer is not None:
                    assert p.stdin is not None
                    p.stdin.write(answer)
                    p.stdin.flush()
        _check_concurrent_logging(target, run.run_id, PROCESSES)
    finally:
        for p in procs:
            p.communicate(b"", timeout=60)
    assert [p.returncode for p in procs] == [0] * PROCESSES
    # a normal exit ends the runs a process has active: the writers' exits ended this one
    assert target.client.get_run(run.run_id).status == "FINISHED"
    mloop.end_run()


def test_without_an_experiment_runs_go_to_default_or_mloop_experiment_name(
    local: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    mloop.init(local.uri)  # a fresh start: no experiment chosen
    with mloop.start_run() as run:
        pass
    got = mloop.get_run(run.run_id)
    assert (got.experiment_id, got.experiment) == ("0", "Default")
    assert [r.id for r in mloop.search_runs()] == [run.run_id]

    monkeypatch.setenv("MLOOP_EXPERIMENT_NAME", "from-env")
    mloop.init(local.uri)
    with mloop.start_run() as named:
        pass
    assert mloop.get_run(named.run_id).experiment == "from-env"
    assert mloop.get_tracking_uri() == local.uri
