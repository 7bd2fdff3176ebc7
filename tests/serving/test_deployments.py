"""The deployment service: CRUD with revisions and audit records, every spec rule, the CLI's
option shapes, and the routing hash."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mloop import AlreadyExists, InvalidInput, NotFound
from mloop.demo.data import transactions
from mloop.serving import DeploymentSpec, check_spec, spec_from_options
from mloop.serving.deployments import MAX_VARIANTS
from mloop.serving.runtime import route_point
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"
MLMODEL = b"flavors:\n  python_function: {loader_module: mlflow.sklearn}\n"


def _train(ws: Workspace) -> None:
    ws.datasets.ingest(transactions(300, seed=21), name="tx")
    for c in (1.0, 0.01):
        ws.training.train(
            "tx",
            "is_fraud",
            model=LOGREG,
            params={"C": c},
            exclude=["transaction_id"],
            register="fraud",
            plots=False,
        )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fraud@1 (champion) and fraud@2, trained once for the module."""
    home = tmp_path_factory.mktemp("deployments") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("MLOOP_") and key != "MLOOP_TEST_PG_URL":
                mp.delenv(key)
        ws = Workspace.open(home)
        try:
            _train(ws)
        finally:
            ws.close()
    return home


@pytest.fixture
def fws(template: Path, tmp_path: Path) -> Iterator[Workspace]:
    home = tmp_path / "copy"
    shutil.copytree(template, home)
    ws = Workspace.open(home)
    try:
        yield ws
    finally:
        ws.close()


def _one(model: str = "fraud@champion", **extra: Any) -> dict[str, Any]:
    return {"variants": [{"name": "primary", "model": model}], **extra}


# -- CRUD, revisions, audit ---------------------------------------------------------------------


def test_create_get_list_update_delete_with_revisions_and_audit(ws: Workspace) -> None:
    _train(ws)
    created = ws.deployments.create("fraud", _one(description="the fraud model"))
    assert (created.name, created.revision, created.strategy) == ("fraud", 1, "single")
    assert created.description == "the fraud model"
    assert created.created_by
    assert created.updated_by
    assert created.created_at == created.updated_at
    assert [(v.name, v.model, v.weight, v.shadow) for v in created.variants] == [
        ("primary", "fraud@champion", 100.0, False)
    ]
    assert ws.deployments.get("fraud") == created
    assert created.spec() == check_spec(_one(description="the fraud model"))

    ws.deployments.create("alpha", _one("fraud@2"))
    assert [d.name for d in ws.deployments.list()] == ["alpha", "fraud"]
    assert ws.deployments.revisions() == {"alpha": 1, "fraud": 1}

    with pytest.raises(AlreadyExists, match="deployments update"):
        ws.deployments.create("fraud", _one("fraud@2"))
    assert ws.deployments.get("fraud").revision == 1  # unchanged by the refusal

    replaced = ws.deployments.create("fraud", _one("fraud@2"), replace=True)
    assert (replaced.revision, replaced.variants[0].model) == (2, "fraud@2")
    assert replaced.created_at == created.created_at
    canary = {
        "strategy": "canary",
        "variants": [
            {"name": "stable", "model": "fraud@1"},
            {"name": "canary", "model": "fraud@2", "weight": 5},
        ],
    }
    updated = ws.deployments.update("fraud", canary)
    assert (updated.revision, updated.strategy) == (3, "canary")
    assert updated.updated_at >= replaced.updated_at
    assert [(v.name, s) for v, s in updated.shares()] == [("stable", 0.95), ("canary", 0.05)]
    assert ws.deployments.revisions() == {"alpha": 1, "fraud": 3}
    resolved = ws.deployments.resolve(updated)
    assert [(v.name, mv.version) for v, mv in resolved] == [("stable", 1), ("canary", 2)]

    with pytest.raises(InvalidInput):  # an invalid update changes nothing
        ws.deployments.update("fraud", {"strategy": "ab", "variants": canary["variants"][:1]})
    assert ws.deployments.get("fraud").revision == 3

    ws.deployments.delete("fraud")
    with pytest.raises(NotFound, match="no deployment named 'fraud'"):
        ws.deployments.get("fraud")
    assert ws.deployments.find("fraud") is None
    with pytest.raises(NotFound):
        ws.deployments.delete("fraud")
    with pytest.raises(NotFound):
        ws.deployments.update("fraud", _one())
    assert [d.name for d in ws.deployments.list()] == ["alpha"]

    records = ws.audit.list(object_type="deployment", object_id="fraud")
    assert [r.action for r in records] == [
        "deployment.delete",
        "deployment.update",
        "deployment.update",
        "deployment.create",
    ]
    assert records[1].detail["revision"] == 3
    assert records[1].detail["strategy"] == "canary"
    assert records[2].detail["revision"] == 2
    assert records[3].detail["variants"][0]["model"] == "fraud@champion"
    assert all(r.actor for r in records)


def test_a_refused_create_writes_nothing(fws: Workspace) -> None:
    with pytest.raises(NotFound):
        fws.deployments.create("fraud", _one("nosuch@1"))
    with pytest.raises(InvalidInput):
        fws.deployments.create("bad name!", _one())
    assert fws.deployments.list() == []
    assert fws.audit.list(object_type="deployment") == []


# -- spec rules ---------------------------------------------------------------------------------


def _v(name: str, model: str = "fraud@1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "model": model, **extra}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"strategy": "single", "variants": [_v("a"), _v("b")]},
            "strategy 'single' serves exactly one variant .* not 2",
        ),
        ({"strategy": "ab", "variants": [_v("a")]}, "strategy 'ab' needs two or more"),
        (
            {"strategy": "ab", "variants": [_v("a"), _v("b", shadow=True)]},
            "strategy 'ab' needs two or more",
        ),
        (
            {"strategy": "ab", "variants": [_v("a", weight=0), _v("b", weight=0)]},
            "positive weight",
        ),
        (
            {"strategy": "canary", "variants": [_v("a"), _v("b", weight=0)]},
            r"between 0 and 100 \(exclusive\), not 0",
        ),
        (
            {"strategy": "canary", "variants": [_v("a"), _v("b", weight=100)]},
            r"between 0 and 100 \(exclusive\), not 100",
        ),
        ({"strategy": "canary", "variants": [_v("a")]}, "strategy 'canary' serves two"),
        (
            {"strategy": "canary", "variants": [_v("a"), _v("b", weight=5), _v("c", weight=5)]},
            "strategy 'canary' serves two",
        ),
        ({"variants": [_v("a"), _v("a", shadow=True)]}, "two variants are named 'a'"),
        ({"variants": []}, "at least one variant"),
        (
            {"variants": [_v("a")] + [_v(f"s{i}", shadow=True) for i in range(MAX_VARIANTS)]},
            f"at most {MAX_VARIANTS} variants",
        ),
        ({"variants": [_v("a")], "sticky_key": "no spaces"}, "sticky key column name"),
        ({"variants": [_v("a")], "sticky_key": "-dash"}, "sticky key column name"),
        ({"variants": [_v("1st")]}, "variants.0.name: .*start with a letter"),
        ({"variants": [_v("a", "fraud@")]}, "variants.0.model: .*nothing after '@'"),
        ({"variants": [_v("a", weight=150)]}, "variants.0.weight"),
        ({"variants": [_v("a", runtime="gpu")]}, "variants.0.runtime"),
        ({"strategy": "blue-green", "variants": [_v("a")]}, "strategy"),
        ({"variants": [_v("a")], "replicas": 3}, "replicas"),
        ({"variants": [_v("a")], "batching": {"max_batch_size": 0}}, "batching.max_batch_size"),
        ({"variants": [_v("a")], "timeout_ms": 0}, "timeout_ms"),
        ({"model": "fraud@1"}, "variants"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_every_spec_rule_is_refused_with_a_clear_message(
    fws: Workspace, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_spec(spec)
    with pytest.raises(InvalidInput, match=message):  # the service checks before writing
        fws.deployments.create("d", spec)
    assert fws.deployments.list() == []


@pytest.mark.parametrize("body", ["fraud@1", ["fraud@1"], None, 3])
def test_a_spec_that_is_not_an_object_is_refused(body: Any) -> None:
    with pytest.raises(InvalidInput, match="a deployment spec is an object"):
        check_spec(body)


def test_a_valid_spec_with_shadows_and_all_options(fws: Workspace) -> None:
    spec = check_spec(
        {
            "strategy": "ab",
            "sticky_key": "customer_id",
            "batching": {"max_batch_size": 8, "max_wait_ms": 2},
            "timeout_ms": 500,
            "variants": [
                _v("a", weight=3),
                _v("b", "fraud@2", weight=1),
                _v("mirror", "fraud@champion", shadow=True),
            ],
        }
    )
    assert [v.name for v in spec.served()] == ["a", "b"]
    assert [v.name for v in spec.shadows()] == ["mirror"]
    assert [(v.name, s) for v, s in spec.shares()] == [("a", 0.75), ("b", 0.25)]
    created = fws.deployments.create("d", spec)
    assert (created.sticky_key, created.batching.max_batch_size, created.timeout_ms) == (
        "customer_id",
        8,
        500,
    )
    assert created.batching.max_wait_ms == 2


@pytest.mark.parametrize(
    ("model", "error", "message"),
    [
        ("nosuch@1", NotFound, "nosuch"),
        ("fraud@9", NotFound, "9"),
        ("fraud@staging", NotFound, "no alias 'staging'"),
        ("nosuch", NotFound, "nosuch"),
    ],
)
def test_a_reference_that_does_not_resolve_is_not_found(
    fws: Workspace, model: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        fws.deployments.create("d", _one(model))
    shadowed = {"variants": [_v("a"), _v("s", model, shadow=True)]}
    with pytest.raises(error, match=message):  # a shadow must resolve too
        fws.deployments.create("d", shadowed)
    fws.deployments.create("d", _one())
    with pytest.raises(error, match=message):
        fws.deployments.update("d", _one(model))
    assert fws.deployments.get("d").revision == 1


def test_a_model_without_a_signature_cannot_be_deployed(fws: Workspace) -> None:
    fws.registry.create_model("imported")
    files = {
        "MLmodel": fws.artifacts.put_bytes(MLMODEL),
        "model.pkl": fws.artifacts.put_bytes(b"weights"),
    }
    fws.registry.create_version("imported", files)
    with pytest.raises(InvalidInput, match="without an mloop signature"):
        fws.deployments.create("d", _one("imported@1"))
    assert fws.deployments.find("d") is None


def test_deployment_names_are_checked(fws: Workspace) -> None:
    for name in ("", "has space", "a/b", "x" * 200):
        with pytest.raises(InvalidInput, match="deployment name"):
            fws.deployments.create(name, _one())
        with pytest.raises(InvalidInput, match="deployment name"):
            fws.deployments.get(name)
    assert fws.deployments.find("has space") is None


# -- spec_from_options: the CLI's shapes --------------------------------------------------------


def test_options_for_one_model() -> None:
    spec = spec_from_options("fraud@champion")
    assert spec.strategy == "single"
    assert [(v.name, v.model, v.shadow) for v in spec.variants] == [
        ("primary", "fraud@champion", False)
    ]
    tuned = spec_from_options(
        "fraud@1",
        sticky_key="customer_id",
        max_batch_size=16,
        max_wait_ms=3.0,
        timeout_ms=250,
        runtime="native",
    )
    assert tuned.sticky_key == "customer_id"
    assert (tuned.batching.max_batch_size, tuned.batching.max_wait_ms) == (16, 3.0)
    assert tuned.timeout_ms == 250
    assert tuned.variants[0].runtime == "native"
    assert spec_from_options("fraud@1", max_wait_ms=1.0).batching.max_batch_size == 64


def test_options_for_an_ab_split() -> None:
    spec = spec_from_options(None, variants=["a=m@1:70", "b=m@2:30"])
    assert spec.strategy == "ab"
    assert [(v.name, v.model, v.weight) for v in spec.variants] == [
        ("a", "m@1", 70.0),
        ("b", "m@2", 30.0),
    ]
    assert [s for _, s in spec.shares()] == pytest.approx([0.7, 0.3])
    equal = spec_from_options(None, variants=["a=m@champion", "b=m@challenger", "c=m@3"])
    assert [v.weight for v in equal.variants] == [50.0, 50.0, 50.0]
    assert [s for _, s in equal.shares()] == pytest.approx([1 / 3] * 3)
    decimal = spec_from_options(None, variants=["a=m@1:2.5", "b=m@2:7.5"])
    assert [s for _, s in decimal.shares()] == pytest.approx([0.25, 0.75])


def test_options_for_a_canary_and_shadows() -> None:
    spec = spec_from_options("m@champion", canary="m@challenger", canary_percent=20)
    assert spec.strategy == "canary"
    assert [(v.name, v.model, v.weight) for v in spec.served()] == [
        ("primary", "m@champion", 100.0),
        ("canary", "m@challenger", 20.0),
    ]
    assert [s for _, s in spec.shares()] == pytest.approx([0.8, 0.2])
    assert spec_from_options("m@1", canary="m@2").variants[1].weight == 10.0  # the default

    one = spec_from_options("m@1", shadows=["m@2"])
    assert (one.strategy, [(v.name, v.model, v.shadow) for v in one.shadows()]) == (
        "single",
        [("shadow", "m@2", True)],
    )
    two = spec_from_options("m@1", canary="m@2", shadows=["m@3", "named=m@4"])
    assert [(v.name, v.model) for v in two.shadows()] == [("shadow1", "m@3"), ("named", "m@4")]
    ab = spec_from_options(None, variants=["a=m@1", "b=m@2"], shadows=["m@3"])
    assert [v.name for v in ab.served()] == ["a", "b"]
    assert [v.name for v in ab.shadows()] == ["shadow"]


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (None, {"variants": ["a=m@1:lots", "b=m@2"]}, "the weight 'lots' is not a number"),
        (None, {"variants": ["a=m@1:", "b=m@2"]}, "the weight '' is not a number"),
        (None, {"variants": ["just-a-ref", "b=m@2"]}, "write NAME=MODEL_REF"),
        (None, {"variants": ["a=", "b=m@2"]}, "write NAME=MODEL_REF"),
        (None, {"variants": ["a=m@1"]}, "strategy 'ab' needs two or more"),
        (None, {"variants": ["a=m@1:-5", "b=m@2"]}, "weight"),
        ("m@1", {"variants": ["a=m@1", "b=m@2"]}, "not both"),
        (None, {"canary": "m@2"}, "give the model to deploy"),
        (None, {}, "give the model to deploy"),
        ("m@1", {"canary": "m@2", "canary_percent": 0}, "not 0"),
        ("m@1", {"canary": "m@2", "canary_percent": 100}, "not 100"),
        ("m@1", {"shadows": ["primary=m@2"]}, "two variants are named 'primary'"),
        ("m@1", {"sticky_key": "bad key"}, "sticky key column"),
        ("m@1", {"max_batch_size": 0}, "max_batch_size"),
        ("m@1", {"runtime": "gpu"}, "runtime"),
        ("m@", {}, "nothing after '@'"),
    ],
)
def test_bad_options_are_refused(model: str | None, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        spec_from_options(model, **options)


def test_options_give_a_spec_the_service_accepts(fws: Workspace) -> None:
    spec = spec_from_options(None, variants=["a=fraud@1:70", "b=fraud@2:30"], shadows=["fraud"])
    assert isinstance(spec, DeploymentSpec)
    created = fws.deployments.create("ab", spec)
    assert [(v.name, mv.version) for v, mv in fws.deployments.resolve(created)] == [
        ("a", 1),
        ("b", 2),
        ("shadow", 1),
    ]


# -- route_point --------------------------------------------------------------------------------


def test_route_point_is_deterministic_per_key_and_salted_by_deployment() -> None:
    points = [route_point("fraud", f"user-{i}") for i in range(200)]
    assert points == [route_point("fraud", f"user-{i}") for i in range(200)]
    assert all(0 <= p < 1 for p in points)
    assert len(set(points)) == 200
    other = [route_point("churn", f"user-{i}") for i in range(200)]
    assert sum(a != b for a, b in zip(points, other, strict=True)) == 200


def test_route_point_is_uniform_ish() -> None:
    n, bins = 20_000, 10
    counts = [0] * bins
    for i in range(n):
        counts[int(route_point("fraud", str(i)) * bins)] += 1
    expected = n / bins  # 2000 each; a standard deviation of 42
    assert all(abs(c - expected) < 0.1 * expected for c in counts), counts
    below = sum(route_point("fraud", f"k{i}") < 0.1 for i in range(n))
    assert 0.09 * n < below < 0.11 * n


def test_route_point_without_a_key_is_random() -> None:
    points = {route_point("fraud", None) for _ in range(100)}
    assert len(points) > 95
    assert all(0 <= p < 1 for p in points)
