"""Logged models on both metadata backends: created PENDING, filled, finalized; params, tags,
files in the artifact store, search, runs' outputs, deletion."""

from __future__ import annotations

import pytest

from mloop import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.tracking import RunOutput, logged_model_artifact_uri
from mloop.workspace import Workspace


def test_a_logged_model_is_created_filled_and_finalized(ws: Workspace) -> None:
    run = ws.tracking.start_run("exp")
    model = ws.logged_models.create(
        run.experiment_id,
        name="model",
        source_run_id=run.id,
        model_type="classifier",
        params={"C": 1.0},
        tags={"mlflow.user": "ann"},
    )
    assert model.id.startswith("m-")
    assert (model.status, model.params, model.tags) == (
        "PENDING",
        {"C": "1.0"},
        {"mlflow.user": "ann"},
    )
    assert model.artifact_uri == logged_model_artifact_uri(run.experiment_id, model.id)
    assert (
        model.artifact_uri == f"mlflow-artifacts:/{run.experiment_id}/models/{model.id}/artifacts"
    )

    info = ws.logged_models.log_artifact_bytes(model.id, "MLmodel", b"flavors: {}\n")
    ws.logged_models.log_artifact_bytes(model.id, "data/model.pkl", b"weights")
    assert ws.artifacts.get_bytes(info.digest) == b"flavors: {}\n"
    assert ws.logged_models.read_artifact(model.id, "data/model.pkl") == b"weights"
    assert [(a.path, a.is_dir) for a in ws.logged_models.list_artifacts(model.id)] == [
        ("MLmodel", False),
        ("data", True),
    ]
    assert [a.path for a in ws.logged_models.list_artifacts(model.id, "data")] == ["data/model.pkl"]
    assert set(ws.logged_models.files(model.id)) == {"MLmodel", "data/model.pkl"}
    assert ws.logged_models.files(model.id, "data") == {
        "model.pkl": ws.logged_models.files(model.id)["data/model.pkl"]
    }

    ready = ws.logged_models.finalize(model.id, "READY")
    assert ready.status == "READY"
    ws.logged_models.set_tags(model.id, {"team": "risk"})
    ws.logged_models.delete_tag(model.id, "mlflow.user")
    ws.logged_models.log_params(model.id, {"C": "1.0", "max_iter": 100})
    got = ws.logged_models.get(model.id)
    assert (got.tags, got.params) == ({"team": "risk"}, {"C": "1.0", "max_iter": "100"})
    with pytest.raises(Conflict, match="params cannot change"):
        ws.logged_models.log_params(model.id, {"C": "2.0"})
    with pytest.raises(NotFound, match="no tag"):
        ws.logged_models.delete_tag(model.id, "nope")
    with pytest.raises(InvalidInput):
        ws.logged_models.finalize(model.id, "PENDING")  # type: ignore[arg-type]


def test_runs_record_the_models_they_produced(ws: Workspace) -> None:
    run = ws.tracking.start_run("exp")
    a = ws.logged_models.create(run.experiment_id, source_run_id=run.id)
    b = ws.logged_models.create(run.experiment_id, source_run_id=run.id)
    ws.logged_models.log_outputs(run.id, [RunOutput(model_id=a.id, step=1)])
    ws.logged_models.log_outputs(
        run.id, [RunOutput(model_id=a.id, step=2), RunOutput(model_id=b.id)]
    )
    found = ws.logged_models.outputs([run.id])[run.id]
    assert [(o.model_id, o.step) for o in found] == [(b.id, 0), (a.id, 2)]
    with pytest.raises(NotFound):
        ws.logged_models.log_outputs(run.id, [RunOutput(model_id="m-" + new_id())])
    ws.tracking.end_run(run.id)
    with pytest.raises(Conflict, match="FINISHED"):
        ws.logged_models.log_outputs(run.id, [RunOutput(model_id=a.id)])


def test_search_filters_and_orders(ws: Workspace) -> None:
    exp = ws.tracking.get_or_create_experiment("exp")
    other = ws.tracking.get_or_create_experiment("other")
    made = [
        ws.logged_models.create(exp.id, name=name, params={"depth": str(depth)}, tags={"k": tag})
        for name, depth, tag in [("a", 3, "x"), ("b", 5, "y"), ("c", 7, "x")]
    ]
    ws.logged_models.create(other.id, name="a")
    ws.logged_models.finalize(made[1].id, "READY")

    def names(filter_string: str | None = None, **kwargs: object) -> list[str]:
        page = ws.logged_models.search([exp.id], filter_string, **kwargs)  # type: ignore[arg-type]
        return [m.name for m in page.items]

    assert names() == ["c", "b", "a"]  # newest first
    assert names("name = 'a'") == ["a"]
    assert names("tags.k = 'x' AND params.depth != '3'") == ["c"]
    assert names("status = 'READY'") == ["b"]
    assert names("name LIKE '%'", order_by=[("params.depth", False)]) == ["c", "b", "a"]
    assert names("creation_timestamp > 0", order_by=[("name", True)]) == ["a", "b", "c"]
    first = ws.logged_models.search([exp.id], max_results=2)
    assert first.next_page_token
    rest = ws.logged_models.search([exp.id], max_results=2, page_token=first.next_page_token)
    assert [m.name for m in rest.items] == ["a"]
    for bad in ("name =", "name = 'a' OR name = 'b'", "metrics.x > 1", "nope = 'a'"):
        with pytest.raises(InvalidInput):
            names(bad)
    with pytest.raises(InvalidInput):
        names(order_by=[("sideways", True)])


def test_unknown_deleted_and_refused(ws: Workspace) -> None:
    exp = ws.tracking.get_or_create_experiment("exp")
    with pytest.raises(NotFound):
        ws.logged_models.create("f" * 32)
    with pytest.raises(NotFound):
        ws.logged_models.create(exp.id, source_run_id=new_id())
    with pytest.raises(InvalidInput):
        ws.logged_models.get("not-a-model")
    with pytest.raises(NotFound):
        ws.logged_models.get("m-" + new_id())
    with pytest.raises(InvalidInput):
        ws.logged_models.create(exp.id, tags={"bad key!": "x"})
    model = ws.logged_models.create(exp.id)
    with pytest.raises(InvalidInput):
        ws.logged_models.log_artifact_bytes(model.id, "../escape", b"x")
    ws.logged_models.delete(model.id)
    with pytest.raises(NotFound, match="deleted"):
        ws.logged_models.get(model.id)
    assert ws.logged_models.get(model.id, allow_deleted=True).lifecycle_stage == "deleted"
    with pytest.raises(Conflict, match="deleted"):
        ws.logged_models.log_artifact_bytes(model.id, "f", b"x")
    assert ws.logged_models.search([exp.id]).items == []
