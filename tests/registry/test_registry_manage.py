"""What the registry does for MLflow clients, on both backends: empty models, versions made of
files, tags, descriptions, renames, deletes and MLflow's registry search."""

from __future__ import annotations

import pytest

from mloop import AlreadyExists, InvalidInput, NotFound
from mloop.workspace import Workspace

MLMODEL = b"flavors:\n  python_function: {loader_module: mlflow.sklearn}\n  sklearn: {}\n"


def _files(ws: Workspace, payload: bytes = b"weights") -> dict[str, str]:
    return {
        "MLmodel": ws.artifacts.put_bytes(MLMODEL),
        "model.pkl": ws.artifacts.put_bytes(payload),
    }


def test_an_empty_model_then_versions_made_of_files(ws: Workspace) -> None:
    model = ws.registry.create_model("fraud", description="trees", tags={"team": "risk"})
    assert (model.latest_version, model.aliases, model.tags) == (None, {}, {"team": "risk"})
    assert model.description == "trees"
    with pytest.raises(AlreadyExists):
        ws.registry.create_model("fraud")
    with pytest.raises(NotFound):
        ws.registry.create_version("unknown", _files(ws))

    run = ws.tracking.start_run()
    v1 = ws.registry.create_version(
        "fraud", _files(ws), source="models:/m-1", run_id=run.id, tags={"k": "v"}
    )
    assert (v1.version, v1.flavor, v1.signature, v1.aliases) == (1, "mlflow", None, ["champion"])
    assert (v1.source, v1.run_id, v1.tags) == ("models:/m-1", run.id, {"k": "v"})
    assert v1.info == {"mlflow_flavors": ["python_function", "sklearn"]}
    assert ws.registry.files(v1) == _files(ws)
    with pytest.raises(InvalidInput, match="flavor 'mlflow'"):
        ws.registry.load(v1)
    with pytest.raises(InvalidInput, match="without an mloop signature"):
        v1.require_signature()
    edges = ws.lineage.upstream("model_version", v1.id)
    assert ("run", run.id) in {(e.src.type, e.src.id) for e in edges}

    v2 = ws.registry.create_version("fraud", _files(ws, b"other"), description="second")
    assert (v2.version, v2.description, v2.aliases) == (2, "second", [])
    with pytest.raises(InvalidInput, match="no files"):
        ws.registry.create_version("fraud", {})
    with pytest.raises(InvalidInput, match="not in the store"):
        ws.registry.create_version("fraud", {"x": "0" * 64})


def test_tags_descriptions_rename_and_delete(ws: Workspace) -> None:
    ws.registry.create_model("a")
    ws.registry.create_version("a", _files(ws))
    ws.registry.create_version("a", _files(ws, b"2"))
    ws.registry.set_model_tag("a", "owner", "me")
    ws.registry.set_version_tag("a", 2, "checked", "yes")
    ws.registry.update_model("a", description="about a")
    ws.registry.update_version("a", 1, description="first")
    assert ws.registry.get_model("a").tags == {"owner": "me"}
    assert ws.registry.get_model("a").description == "about a"
    assert ws.registry.get_version("a", 2).tags == {"checked": "yes"}
    assert ws.registry.get_version("a", 1).description == "first"
    ws.registry.delete_model_tag("a", "owner")
    ws.registry.delete_version_tag("a", 2, "checked")
    with pytest.raises(NotFound, match="no tag"):
        ws.registry.delete_model_tag("a", "owner")
    with pytest.raises(InvalidInput):
        ws.registry.set_model_tag("a", "bad key!", "x")

    ws.registry.create_model("taken")
    with pytest.raises(AlreadyExists):
        ws.registry.rename_model("a", "taken")
    renamed = ws.registry.rename_model("a", "b")
    assert (renamed.name, renamed.latest_version, renamed.aliases) == ("b", 2, {"champion": 1})
    with pytest.raises(NotFound):
        ws.registry.get_model("a")

    ws.registry.set_alias("b", "prod", 2)
    ws.registry.delete_version("b", 2)
    assert ws.registry.get_model("b").aliases == {"champion": 1}  # its aliases went with it
    assert [v.version for v in ws.registry.versions("b")] == [1]
    ws.registry.delete_model("b")
    assert [m.name for m in ws.registry.list_models()] == ["taken"]
    actions = {r.action for r in ws.audit.list(object_type="model")}
    assert {"model.rename", "model.delete", "model.update"} <= actions


def test_search_models_and_versions(ws: Workspace) -> None:
    for name, team in [("fraud-a", "risk"), ("fraud-b", "ops"), ("churn", "risk")]:
        ws.registry.create_model(name, tags={"team": team})
        ws.registry.create_version(name, _files(ws))
    ws.registry.create_version("fraud-a", _files(ws, b"2"))

    def models(filter_string: str | None = None, **kwargs: object) -> list[str]:
        page = ws.registry.search_models(filter_string, **kwargs)  # type: ignore[arg-type]
        return [m.name for m in page.items]

    assert models() == ["churn", "fraud-a", "fraud-b"]
    assert models("name LIKE 'fraud%'") == ["fraud-a", "fraud-b"]
    assert models("name ILIKE 'FRAUD-A'") == ["fraud-a"]
    assert models("tags.team = 'risk' AND name != 'churn'") == ["fraud-a"]
    assert models("tag.`mlflow.prompt.is_prompt` != 'true'") == ["churn", "fraud-a", "fraud-b"]
    assert models(order_by=["name DESC"]) == ["fraud-b", "fraud-a", "churn"]
    page = ws.registry.search_models(max_results=2)
    assert [m.name for m in ws.registry.search_models(page_token=page.next_page_token).items] == [
        "fraud-b"
    ]

    found = ws.registry.search_versions("name = 'fraud-a'")
    assert [(v.name, v.version) for v in found.items] == [("fraud-a", 2), ("fraud-a", 1)]
    found = ws.registry.search_versions("name IN ('churn', 'fraud-b')")
    assert [v.name for v in found.items] == ["churn", "fraud-b"]
    found = ws.registry.search_versions("version_number > 1")
    assert [(v.name, v.version) for v in found.items] == [("fraud-a", 2)]
    for bad in ("name =", "nope = 'x'", "name = 'a' OR name = 'b'", "version_number = 'x'"):
        with pytest.raises(InvalidInput):
            ws.registry.search_versions(bad)
    with pytest.raises(InvalidInput):
        ws.registry.search_models(order_by=["sideways"])
    with pytest.raises(InvalidInput):
        ws.registry.search_models(page_token="%%%")
