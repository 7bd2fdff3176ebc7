"""The unmodified MLflow client's tracking calls against ``mloop serve``: experiments, runs,
params, metrics (NaN and infinity as MLflow stores them), tags, artifacts, inputs and search —
and what they write is ordinary mloop data."""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from mloop.workspace import Workspace

pytest.importorskip("mlflow")
MAX_FLOAT = 1.7976931348623157e308


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_experiments(mlflow_client: Any, server_ws: Workspace) -> None:
    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    name = _name("exp")
    experiment_id = client.create_experiment(name, tags={"team": "risk"})

    by_id = client.get_experiment(experiment_id)
    by_name = client.get_experiment_by_name(name)
    assert (by_id.name, by_name.experiment_id) == (name, experiment_id)
    assert by_id.tags == {"team": "risk"}
    assert by_id.lifecycle_stage == "active"
    assert by_id.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    assert by_id.creation_time > 0
    assert client.get_experiment_by_name(_name("missing")) is None
    assert client.get_experiment("0").name == "Default"

    client.set_experiment_tag(experiment_id, "stage", "dev")
    assert client.get_experiment(experiment_id).tags == {"team": "risk", "stage": "dev"}
    found = client.search_experiments(filter_string=f"name = '{name}'")
    assert [e.experiment_id for e in found] == [experiment_id]
    found = mlflow.search_experiments(filter_string="tags.stage = 'dev'")
    assert experiment_id in [e.experiment_id for e in found]

    renamed = _name("renamed")
    client.rename_experiment(experiment_id, renamed)
    assert client.get_experiment(experiment_id).name == renamed
    assert server_ws.tracking.get_experiment(experiment_id).name == renamed  # ordinary mloop

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    active = client.search_experiments(filter_string=f"name = '{renamed}'")
    deleted = client.search_experiments(
        view_type=mlflow.entities.ViewType.DELETED_ONLY, filter_string=f"name = '{renamed}'"
    )
    assert (len(active), [e.experiment_id for e in deleted]) == (0, [experiment_id])
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"

    run = client.create_run("0", run_name="in-default")  # MLflow's Default experiment is "0"
    client.set_terminated(run.info.run_id, "KILLED")
    native = server_ws.tracking.get_run(run.info.run_id)
    assert (native.experiment, native.status) == ("Default", "KILLED")


def test_runs_params_metrics_and_tags(mlflow_client: Any, server_ws: Workspace) -> None:
    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    at = int(time.time() * 1000) - 60_000
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_params({"depth": 3, "kind": "tree"})
        mlflow.log_metric("loss", 0.9, step=0, timestamp=at)
        mlflow.log_metric("loss", 0.5, step=1, timestamp=at + 1)
        mlflow.log_metric("loss", 0.25, step=2, timestamp=at + 2)
        mlflow.log_metrics({"auc": 0.8, "f1": 0.7}, step=2)
        mlflow.log_metric("missing", float("nan"))
        mlflow.log_metric("high", float("inf"))
        mlflow.log_metric("low", float("-inf"))
        mlflow.set_tag("team", "risk")
        mlflow.set_tags({"stage": "dev", "temp": "x"})
        client.delete_tag(parent.info.run_id, "temp")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.1)

    run = client.get_run(parent.info.run_id)
    assert run.info.run_name == "parent"
    assert run.info.status == "FINISHED"
    assert run.info.end_time >= run.info.start_time > 0
    assert run.info.artifact_uri == (
        f"mlflow-artifacts:/{run.info.experiment_id}/{run.info.run_id}/artifacts"
    )
    assert run.data.params == {"alpha": "0.5", "depth": "3", "kind": "tree"}
    metrics = run.data.metrics
    assert (metrics["loss"], metrics["auc"], metrics["f1"]) == (0.25, 0.8, 0.7)
    assert math.isnan(metrics["missing"])
    assert (metrics["high"], metrics["low"]) == (MAX_FLOAT, -MAX_FLOAT)  # as MLflow stores ±inf
    assert run.data.tags["team"] == "risk"
    assert run.data.tags["stage"] == "dev"
    assert "temp" not in run.data.tags
    assert run.data.tags["mlflow.runName"] == "parent"

    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (0, 0.9, at),
        (1, 0.5, at + 1),
        (2, 0.25, at + 2),
    ]
    nan_history = client.get_metric_history(parent.info.run_id, "missing")
    assert len(nan_history) == 1
    assert math.isnan(nan_history[0].value)

    nested = client.get_run(child.info.run_id)
    assert nested.data.tags["mlflow.parentRunId"] == parent.info.run_id

    # the same runs, read through mloop
    native = server_ws.tracking.get_run(parent.info.run_id)
    assert native.name == "parent"
    assert native.params == run.data.params
    assert native.metrics["high"] == MAX_FLOAT
    assert math.isnan(native.metrics["missing"])
    assert native.tags["team"] == "risk"
    assert server_ws.tracking.get_run(child.info.run_id).parent_run_id == parent.info.run_id
    assert [p.value for p in server_ws.tracking.metric_history(parent.info.run_id, "loss")] == [
        0.9,
        0.5,
        0.25,
    ]


def test_renaming_and_resuming_a_run(mlflow_client: Any, server_ws: Workspace) -> None:
    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    with mlflow.start_run() as first:
        mlflow.log_param("p", "1")
    assert first.info.run_name  # the server names a run nobody named
    client.update_run(first.info.run_id, name="renamed")
    assert client.get_run(first.info.run_id).info.run_name == "renamed"
    assert server_ws.tracking.get_run(first.info.run_id).name == "renamed"

    with mlflow.start_run(run_id=first.info.run_id):  # a finished run resumes
        mlflow.log_metric("after", 1.0)
        mlflow.set_tag("mlflow.runName", "by-tag")  # MLflow's other way to rename
    resumed = client.get_run(first.info.run_id)
    assert (resumed.info.status, resumed.data.metrics) == ("FINISHED", {"after": 1.0})
    assert resumed.info.run_name == "by-tag"
    assert server_ws.tracking.get_run(first.info.run_id).name == "by-tag"


def test_artifacts(
    mlflow_client: Any, server_ws: Workspace, mlflow_server: Any, tmp_path: Path
) -> None:
    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    folder = tmp_path / "plots"
    (folder / "deep").mkdir(parents=True)
    (folder / "roc.txt").write_text("roc")
    (folder / "deep" / "pr.txt").write_text("pr")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(data))
        mlflow.log_artifact(str(data), artifact_path="inputs")
        mlflow.log_artifacts(str(folder), artifact_path="plots")
        mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config/params.json")
        mlflow.log_text("hello mloop", "notes.txt")
    run_id = run.info.run_id

    top = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir) for f in top] == [
        ("config", True),
        ("data.csv", False),
        ("inputs", True),
        ("notes.txt", False),
        ("plots", True),
    ]
    assert next(f for f in top if f.path == "data.csv").file_size == len("a,b\n1,2\n")
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == [
        "plots/deep",
        "plots/roc.txt",
    ]
    assert [f.path for f in client.list_artifacts(run_id, "plots/deep")] == ["plots/deep/pr.txt"]
    assert client.list_artifacts(run_id, "nothing/here") == []

    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes.txt") == "hello mloop"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {
        "lr": 0.1,
        "layers": [1, 2],
    }
    local = Path(client.download_artifacts(run_id, "plots", str(tmp_path / "down")))
    assert (local / "deep" / "pr.txt").read_text() == "pr"

    listed = httpx.get(
        f"{mlflow_server.url}/api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id, "path": "plots"},
    ).json()
    assert listed["root_uri"] == run.info.artifact_uri
    assert [(f["path"], f["is_dir"]) for f in listed["files"]] == [
        ("plots/deep", True),
        ("plots/roc.txt", False),
    ]

    # ordinary mloop run artifacts, in the content-addressed store
    native = server_ws.tracking.get_run(run_id)
    assert {a.path for a in native.artifacts} == {
        "config/params.json",
        "data.csv",
        "inputs/data.csv",
        "notes.txt",
        "plots/deep/pr.txt",
        "plots/roc.txt",
    }
    assert server_ws.tracking.read_artifact(run_id, "notes.txt") == b"hello mloop"
    assert json.loads(server_ws.tracking.read_artifact(run_id, "config/params.json"))["lr"] == 0.1


def test_search_runs_with_filters_ordering_and_pages(
    mlflow_client: Any, server_ws: Workspace
) -> None:
    mlflow = mlflow_client
    client = mlflow.MlflowClient()
    experiment_id = mlflow.get_experiment_by_name(
        mlflow.get_experiment(mlflow.tracking.fluent._get_experiment_id()).name
    ).experiment_id
    ids = {}
    for kind, score in [("a", 0.1), ("a", 0.9), ("b", 0.5), ("a", 0.4), ("b", 0.95)]:
        with mlflow.start_run(run_name=f"{kind}-{score}") as run:
            mlflow.log_param("kind", kind)
            mlflow.log_metric("score", score)
        ids[(kind, score)] = run.info.run_id

    frame = mlflow.search_runs(
        filter_string="params.kind = 'a' and metrics.score > 0.2",
        order_by=["metrics.score DESC"],
    )
    assert list(frame["run_id"]) == [ids[("a", 0.9)], ids[("a", 0.4)]]
    assert list(frame["metrics.score"]) == [0.9, 0.4]
    assert list(frame["tags.mlflow.runName"]) == ["a-0.9", "a-0.4"]

    by_name = client.search_runs(
        [experiment_id], filter_string="attributes.run_name LIKE 'b-%'", order_by=["run_name"]
    )
    assert [r.info.run_name for r in by_name] == ["b-0.5", "b-0.95"]

    first = client.search_runs([experiment_id], order_by=["metrics.score ASC"], max_results=2)
    assert [r.data.metrics["score"] for r in first] == [0.1, 0.4]
    assert first.token
    second = client.search_runs(
        [experiment_id], order_by=["metrics.score ASC"], max_results=2, page_token=first.token
    )
    assert [r.data.metrics["score"] for r in second] == [0.5, 0.9]

    client.delete_run(ids[("b", 0.95)])
    view = mlflow.entities.ViewType
    active = client.search_runs([experiment_id], run_view_type=view.ACTIVE_ONLY)
    deleted = client.search_runs([experiment_id], run_view_type=view.DELETED_ONLY)
    every = client.search_runs([experiment_id], run_view_type=view.ALL)
    assert (len(active), [r.info.run_id for r in deleted], len(every)) == (
        4,
        [ids[("b", 0.95)]],
        5,
    )
    assert client.get_run(ids[("b", 0.95)]).info.lifecycle_stage == "deleted"
    client.restore_run(ids[("b", 0.95)])
    assert len(client.search_runs([experiment_id])) == 5

    # the same search, through mloop
    native = server_ws.tracking.search_runs(
        [experiment_id], "params.kind = 'a' and metrics.score > 0.2", ["metrics.score DESC"]
    )
    assert [r.id for r in native.items] == list(frame["run_id"])


def test_log_inputs(mlflow_client: Any, server_ws: Workspace) -> None:
    mlflow = mlflow_client
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, name="train-set", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = mlflow.MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("train-set", dataset.digest)]
    assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "training")]
    native = server_ws.tracking.get_run(run.info.run_id).inputs
    assert [(i.name, i.context) for i in native] == [("train-set", "training")]


def test_the_ajax_api_prefix_answers_the_same(mlflow_client: Any, mlflow_server: Any) -> None:
    name = _name("ajax")
    created = httpx.post(
        f"{mlflow_server.url}/ajax-api/2.0/mlflow/experiments/create", json={"name": name}
    )
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    got = httpx.get(
        f"{mlflow_server.url}/api/2.0/mlflow/experiments/get",
        params={"experiment_id": experiment_id},
    )
    assert got.json()["experiment"]["name"] == name
    assert isinstance(got.json()["experiment"]["creation_time"], int)
