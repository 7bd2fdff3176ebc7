"""The registry on both metadata backends: versions, aliases, references, audit, lineage."""

from __future__ import annotations

import pytest

from mloop import InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.demo.data import transactions
from mloop.models import LoadedModel
from mloop.registry import check_alias, parse_model_ref
from mloop.tracking import Run
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


@pytest.fixture(scope="module")
def package() -> dict[str, bytes]:
    """The files of a small fitted fraud model, made once."""
    from sklearn.linear_model import LogisticRegression

    from mloop.core.schema import Column
    from mloop.models import (
        FLAVOR_SKLEARN,
        ModelMeta,
        Signature,
        captured_dependencies,
        frame_from_table,
        write_sklearn_package,
    )
    from mloop.training import build_pipeline

    frame = transactions(300, seed=11).drop("transaction_id")
    table = frame.to_arrow()
    from mloop.data import schema_of

    columns = [c for c in schema_of(table).columns if c.name != "is_fraud"]
    signature = Signature(
        inputs=[Column(name=c.name, type=c.type) for c in columns],
        target="is_fraud",
        target_type="integer",
        task="classification",
        classes=[0, 1],
    )
    pipeline = build_pipeline(LogisticRegression(), signature.inputs)
    pipeline.fit(frame_from_table(table, signature), frame["is_fraud"].to_numpy())
    meta = ModelMeta(
        flavor=FLAVOR_SKLEARN,
        signature=signature,
        estimator=LOGREG,
        dependencies=captured_dependencies(),
        info={"dataset": "tx@1"},
    )
    return write_sklearn_package(pipeline, meta)


@pytest.fixture
def runs(ws: Workspace, package: dict[str, bytes]) -> list[Run]:
    """Two finished runs that logged a model each (not registered)."""
    made = []
    for _ in range(2):
        run = ws.tracking.start_run()
        for name, data in package.items():
            ws.tracking.log_artifact_bytes(run.id, f"model/{name}", data)
        made.append(ws.tracking.end_run(run.id))
    return made


def test_versions_count_up_and_the_first_is_champion(ws: Workspace, runs: list[Run]) -> None:
    v1 = ws.registry.register(runs[0].id, "fraud", description="first try")
    v2 = ws.registry.register(runs[1].id, "fraud")
    v3 = ws.registry.register(runs[0].id, "fraud")  # the same run again: a new version
    assert [v.version for v in (v1, v2, v3)] == [1, 2, 3]
    assert (v1.aliases, v2.aliases, v3.aliases) == (["champion"], [], [])
    assert (v1.run_id, v2.run_id) == (runs[0].id, runs[1].id)
    assert v1.ref == "fraud@1"
    assert v1.description == "first try"
    assert v1.flavor == "sklearn"
    assert v1.manifest_digest == v3.manifest_digest  # same files, same package
    assert v1.signature.target == "is_fraud"
    assert "transaction_id" not in v1.signature.input_names
    assert v1.info == {"dataset": "tx@1"}

    model = ws.registry.get_model("fraud")
    assert (model.latest_version, model.aliases) == (3, {"champion": 1})
    assert [v.version for v in ws.registry.versions("fraud")] == [1, 2, 3]
    assert [m.name for m in ws.registry.list_models()] == ["fraud"]
    assert ws.registry.get_version_by_id(v2.id) == v2
    assert ws.registry.get_version("fraud", 2) == v2


def test_models_are_independent(ws: Workspace, runs: list[Run]) -> None:
    ws.registry.register(runs[0].id, "a")
    b1 = ws.registry.register(runs[1].id, "b")
    assert (b1.version, b1.aliases) == (1, ["champion"])
    assert [m.name for m in ws.registry.list_models()] == ["a", "b"]


def test_registration_is_audited_and_linked(ws: Workspace) -> None:
    dataset = ws.datasets.ingest(transactions(300, seed=11), name="tx")
    run = ws.training.train("tx", "is_fraud", model=LOGREG, exclude=["transaction_id"]).run
    v1 = ws.registry.register(run.id, "fraud")
    assert v1.info["run_id"] == run.id
    assert v1.info["dataset_version_id"] == dataset.id
    edges = ws.lineage.upstream("model_version", v1.id)
    found = {(e.src.type, e.src.id, e.dst.type, e.relation) for e in edges}
    assert ("run", run.id, "model_version", "registered") in found
    assert ("dataset_version", dataset.id, "run", "trained_on") in found

    actions = [r.action for r in ws.audit.list(object_id="fraud@1")]
    assert actions == ["model.version.create"]
    created = ws.audit.list(object_type="model", object_id="fraud")
    assert {r.action for r in created} == {"model.create", "model.alias.set"}


def test_resolve_every_kind_of_reference(ws: Workspace, runs: list[Run]) -> None:
    ws.registry.register(runs[0].id, "fraud")
    ws.registry.register(runs[1].id, "fraud")
    ws.registry.set_alias("fraud", "challenger", 2)
    assert ws.registry.resolve("fraud").version == 1
    assert ws.registry.resolve("fraud@champion").version == 1
    assert ws.registry.resolve("fraud@challenger").version == 2
    assert ws.registry.resolve("fraud@2").version == 2
    assert ws.registry.resolve("fraud@1").aliases == ["champion"]
    assert ws.registry.resolve("fraud@latest").version == 2
    assert ws.registry.resolve(" fraud@latest ").version == 2


def test_unknown_references_are_not_found_with_clear_messages(
    ws: Workspace, runs: list[Run]
) -> None:
    ws.registry.register(runs[0].id, "fraud")
    ws.registry.register(runs[1].id, "fraud")
    cases = {
        "nope": "model 'nope' is not registered",
        "nope@1": "model 'nope' is not registered",
        "fraud@9": "model 'fraud' has no version 9 (latest is 2)",
        "fraud@staging": "model 'fraud' has no alias 'staging'; its aliases: champion",
    }
    for ref, message in cases.items():
        with pytest.raises(NotFound) as caught:
            ws.registry.resolve(ref)
        assert caught.value.message == message
    with pytest.raises(NotFound, match="has no version 3"):
        ws.registry.get_version("fraud", 3)
    with pytest.raises(NotFound, match="is not registered"):
        ws.registry.get_model("nope")
    with pytest.raises(NotFound, match="is not registered"):
        ws.registry.versions("nope")
    with pytest.raises(NotFound, match="does not exist"):
        ws.registry.get_version_by_id(new_id())


def test_without_aliases_the_hint_says_how_to_set_one(ws: Workspace, runs: list[Run]) -> None:
    ws.registry.register(runs[0].id, "fraud")
    ws.registry.delete_alias("fraud", "champion")
    with pytest.raises(NotFound, match="set one with: mloop models alias fraud champion VERSION"):
        ws.registry.resolve("fraud")


def test_malformed_references_are_invalid(ws: Workspace, runs: list[Run]) -> None:
    ws.registry.register(runs[0].id, "fraud")
    cases = {
        "": "empty model reference",
        "fraud@": "nothing after '@'",
        "bad name@1": "model name",
        "@1": "model name",
        "fraud@0": "positive integer",
    }
    for ref, message in cases.items():
        with pytest.raises(InvalidInput) as caught:
            ws.registry.resolve(ref)
        assert message in caught.value.message, ref


def test_moving_an_alias_is_audited_with_the_previous_version(
    ws: Workspace, runs: list[Run]
) -> None:
    ws.registry.register(runs[0].id, "fraud")
    ws.registry.register(runs[1].id, "fraud")
    moved = ws.registry.set_alias("fraud", "champion", 2, reason="better AUC")
    assert moved.version == 2
    assert moved.aliases == ["champion"]
    assert ws.registry.get_version("fraud", 1).aliases == []
    ws.registry.set_alias("fraud", "champion", 1, reason="roll back")
    ws.registry.set_alias("fraud", "shadow", 2)

    records = [
        r.detail
        for r in ws.audit.list(object_type="model", object_id="fraud")
        if r.action == "model.alias.set"
    ]
    # newest first
    assert [(d["alias"], d["version"], d["previous"], d["reason"]) for d in records] == [
        ("shadow", 2, None, None),
        ("champion", 1, 2, "roll back"),
        ("champion", 2, 1, "better AUC"),
        ("champion", 1, None, "first version"),
    ]
    assert ws.registry.get_model("fraud").aliases == {"champion": 1, "shadow": 2}


def test_delete_alias(ws: Workspace, runs: list[Run]) -> None:
    ws.registry.register(runs[0].id, "fraud")
    ws.registry.delete_alias("fraud", "champion")
    assert ws.registry.get_model("fraud").aliases == {}
    assert ws.registry.get_version("fraud", 1).aliases == []
    with pytest.raises(NotFound, match="has no alias 'champion'"):
        ws.registry.delete_alias("fraud", "champion")
    with pytest.raises(NotFound, match="is not registered"):
        ws.registry.delete_alias("nope", "champion")
    deleted = [
        r.detail
        for r in ws.audit.list(object_type="model", object_id="fraud")
        if r.action == "model.alias.delete"
    ]
    assert deleted == [{"alias": "champion"}]


def test_reserved_and_bad_aliases_are_refused(ws: Workspace, runs: list[Run]) -> None:
    ws.registry.register(runs[0].id, "fraud")
    for alias in ("latest", "v1", "V12"):
        with pytest.raises(InvalidInput, match=f"alias '{alias}' is reserved"):
            ws.registry.set_alias("fraud", alias, 1)
    for alias in ("1st", "has space", "", "a" * 64, "-x", "é"):
        with pytest.raises(InvalidInput, match="start with a letter"):
            ws.registry.set_alias("fraud", alias, 1)
    assert ws.registry.get_model("fraud").aliases == {"champion": 1}


def test_an_alias_must_point_at_an_existing_version(ws: Workspace, runs: list[Run]) -> None:
    ws.registry.register(runs[0].id, "fraud")
    with pytest.raises(NotFound, match="has no version 5 \\(latest is 1\\)"):
        ws.registry.set_alias("fraud", "champion", 5)
    with pytest.raises(InvalidInput, match="positive integer"):
        ws.registry.set_alias("fraud", "champion", 0)
    with pytest.raises(NotFound, match="is not registered"):
        ws.registry.set_alias("nope", "champion", 1)
    assert ws.registry.get_model("fraud").aliases == {"champion": 1}


def test_bad_model_names_are_refused(ws: Workspace, runs: list[Run]) -> None:
    for name in ("bad name", "-lead", "a/b", "", "x" * 129):
        with pytest.raises(InvalidInput, match="model name"):
            ws.registry.register(runs[0].id, name)
    assert ws.registry.list_models() == []


def test_registering_a_run_without_a_model_is_invalid(ws: Workspace) -> None:
    run = ws.tracking.start_run()
    ws.tracking.log_artifact_bytes(run.id, "notes.txt", b"no model here")
    with pytest.raises(InvalidInput, match="has no model under 'model'"):
        ws.registry.register(run.id, "fraud")
    assert ws.registry.list_models() == []


def test_registering_an_unknown_or_malformed_run(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        ws.registry.register(new_id(), "fraud")
    with pytest.raises(InvalidInput, match="not a run id"):
        ws.registry.register("123", "fraud")
    assert ws.registry.list_models() == []


def test_a_model_logged_under_another_path(ws: Workspace, runs: list[Run]) -> None:
    with pytest.raises(InvalidInput, match="no model under 'elsewhere'"):
        ws.registry.register(runs[0].id, "fraud", artifact_path="elsewhere")
    # copy the run's model files under another path of a new run, then register from there
    other = ws.tracking.start_run()
    for path in [a.path for a in runs[0].artifacts if a.path.startswith("model/")]:
        data = ws.tracking.read_artifact(runs[0].id, path)
        ws.tracking.log_artifact_bytes(other.id, "elsewhere/" + path.removeprefix("model/"), data)
    version = ws.registry.register(other.id, "fraud", artifact_path="elsewhere")
    assert version.run_id == other.id
    assert ws.registry.load(version).signature.target == "is_fraud"
    assert version.manifest_digest == ws.registry.register(runs[0].id, "fraud").manifest_digest


def test_load_predicts_and_is_cached_by_content(ws: Workspace, runs: list[Run]) -> None:
    v1 = ws.registry.register(runs[0].id, "fraud")
    v3 = ws.registry.register(runs[0].id, "other")  # same package under another name
    model = ws.registry.load("fraud")
    assert isinstance(model, LoadedModel)
    assert ws.registry.load("fraud@1") is model
    assert ws.registry.load(v3) is model
    assert model.signature == v1.signature
    row = transactions(1, seed=4).drop("transaction_id", "is_fraud").to_dicts()
    labels, probabilities = model.predict_rows(row)
    assert labels[0] in (0, 1)
    assert probabilities is not None


def test_check_alias_and_parse_model_ref() -> None:
    assert check_alias("champion") == "champion"
    assert check_alias("Canary-2_b") == "Canary-2_b"
    assert parse_model_ref("fraud") == ("fraud", "champion")
    assert parse_model_ref("fraud@3") == ("fraud", "3")
    assert parse_model_ref("fraud@latest") == ("fraud", "latest")
