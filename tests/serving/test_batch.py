"""Batch inference: a deployment's model over a dataset version, written as a new version with
lineage — the model's own predictions, in the input's order, whatever ran the chunks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mloop.core.errors import InvalidInput, NotFound, SchemaMismatch
from mloop.demo.data import transactions
from mloop.models import frame_from_table
from mloop.serving.batch import BatchPredictionService
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"
ROWS = 300


def service(ws: Workspace) -> BatchPredictionService:
    found = getattr(ws, "batch", None)
    if isinstance(found, BatchPredictionService):
        return found
    return BatchPredictionService(
        ws.db, ws.datasets, ws.deployments, ws.registry, ws.artifacts, ws.audit, ws.lineage
    )


def setup(ws: Workspace, *, onnx: bool = False) -> Workspace:
    """fraud@1 (champion) trained on ``tx``; ``new`` (unlabelled rows to score); deployment
    ``d`` serving fraud@1 natively."""
    ws.datasets.ingest(transactions(400, seed=21), name="tx")
    ws.training.train(
        "tx",
        "is_fraud",
        model=LOGREG,
        exclude=["transaction_id"],
        register="fraud",
        onnx=onnx,
        plots=False,
    )
    ws.datasets.ingest(transactions(ROWS, seed=5, labelled=False), name="new")
    ws.deployments.create(
        "d", {"variants": [{"name": "primary", "model": "fraud@1", "runtime": "native"}]}
    )
    return ws


@pytest.fixture
def fraud(sqlite_ws: Workspace) -> Workspace:
    return setup(sqlite_ws)


def own_predictions(ws: Workspace, ref: str, *, onnx: bool = False) -> tuple[list[Any], Any]:
    """What the model itself predicts on every row of ``new``."""
    model: Any = ws.registry.load_onnx(ref) if onnx else ws.registry.load(ref)
    frame = frame_from_table(ws.datasets.load("new"), model.signature)
    return model.predict_frame(frame)  # type: ignore[no-any-return]


def assert_same(ws: Workspace, output: Any, ref: str, *, onnx: bool = False) -> None:
    labels, probabilities = own_predictions(ws, ref, onnx=onnx)
    table = ws.datasets.load(output)
    assert table.column("prediction").to_pylist() == labels
    for klass in ("0", "1"):
        got = table.column(f"proba_{klass}").to_pylist()
        assert got == pytest.approx([p[klass] for p in probabilities], abs=1e-12)


def test_native_predictions_are_the_models_own(ws: Workspace) -> None:
    setup(ws)
    seen: list[tuple[int, int]] = []
    result = service(ws).predict("d", "new", "scored", progress=lambda d, t: seen.append((d, t)))
    assert (result.model, result.runtime, result.rows, result.variant) == (
        "fraud@1",
        "native",
        ROWS,
        "primary",
    )
    assert result.output.ref == "scored@1"
    assert result.output.kind == "prediction"
    assert result.output.row_count == ROWS
    table = ws.datasets.load("scored")
    # by default the input's columns the model does not take: here the id
    assert table.column_names == ["transaction_id", "prediction", "proba_0", "proba_1"]
    ids = ws.datasets.load("new", columns=["transaction_id"]).column(0).to_pylist()
    assert table.column("transaction_id").to_pylist() == ids
    assert_same(ws, "scored", "fraud@1")
    assert seen[0] == (0, ROWS)
    assert seen[-1] == (ROWS, ROWS)

    # lineage from the input version and the model version; the metadata names them
    version = ws.registry.resolve("fraud@1")
    edges = {
        (e.src.type, e.src.id, e.relation)
        for e in ws.lineage.upstream("dataset_version", result.output.id, depth=1)
    }
    assert ("dataset_version", ws.datasets.get("new").id, "predicted") in edges
    assert ("model_version", version.id, "predicted") in edges
    described = json.loads(table.schema.metadata[b"mloop.batch"])
    assert described["model_ref"] == "fraud@1"
    assert described["model_version_id"] == version.id
    assert (described["deployment"], described["input"]) == ("d", "new@1")


def test_the_onnx_export_runs_when_the_variant_allows(sqlite_ws: Workspace) -> None:
    ws = setup(sqlite_ws, onnx=True)
    assert ws.registry.load_onnx("fraud@1") is not None
    ws.deployments.create("auto", {"variants": [{"name": "primary", "model": "fraud@1"}]})
    result = service(ws).predict("auto", "new", "scored", chunk_rows=64)
    assert result.runtime == "onnx"
    assert result.chunks == 5
    assert_same(ws, "scored", "fraud@1", onnx=True)
    # the deployment "d" asks for the native model
    assert service(ws).predict("d", "new", "native").runtime == "native"
    assert_same(ws, "native", "fraud@1")


def test_rows_keep_their_order_across_chunks_and_worker_processes(fraud: Workspace) -> None:
    batch = service(fraud)
    here = batch.predict("d", "new", "scored", chunk_rows=37, keep="all")
    assert (here.backend, here.chunks) == ("process", 9)
    seen: list[int] = []
    there = batch.predict(
        "d",
        "new",
        "scored",
        workers=2,
        chunk_rows=37,
        keep="all",
        progress=lambda d, t: seen.append(d),
    )
    assert (there.backend, there.workers, there.chunks) == ("local", 2, 9)
    # the same content: the same version, nothing written
    assert there.unchanged
    assert there.output.id == here.output.id
    assert len(fraud.datasets.versions("scored")) == 1
    assert seen == sorted(seen)
    assert seen[-1] == ROWS
    table = fraud.datasets.load("scored")
    assert table.select(fraud.datasets.load("new").column_names) == fraud.datasets.load("new")
    assert_same(fraud, "scored", "fraud@1")


def test_a_rerun_is_a_no_op(fraud: Workspace) -> None:
    batch = service(fraud)
    first = batch.predict("d", "new", "scored")
    again = batch.predict("d", "new", "scored")
    assert not first.unchanged
    assert again.unchanged
    assert again.output.id == first.output.id
    assert [v.version for v in fraud.datasets.versions("scored")] == [1]


def test_keep_chooses_the_input_columns(fraud: Workspace) -> None:
    batch = service(fraud)
    batch.predict("d", "new", "all", keep="all")
    assert fraud.datasets.load("all").column_names == [
        *fraud.datasets.load("new").column_names,
        "prediction",
        "proba_0",
        "proba_1",
    ]
    batch.predict("d", "new", "some", keep=["amount", "transaction_id"])
    assert fraud.datasets.load("some").column_names[:2] == ["amount", "transaction_id"]
    batch.predict("d", "new", "bare", keep=[])
    assert fraud.datasets.load("bare").column_names == ["prediction", "proba_0", "proba_1"]
    with pytest.raises(InvalidInput, match="no column 'nope' to keep"):
        batch.predict("d", "new", "x", keep=["nope"])


def test_a_regressor_predicts_values(fraud: Workspace) -> None:
    fraud.training.train(
        "tx",
        "amount",
        model="sklearn.linear_model.Ridge",
        exclude=["transaction_id", "is_fraud"],
        register="amount",
        plots=False,
    )
    fraud.deployments.create("amt", {"variants": [{"name": "primary", "model": "amount@1"}]})
    service(fraud).predict("amt", "new", "amounts", keep=[], chunk_rows=100)
    table = fraud.datasets.load("amounts")
    assert table.column_names == ["prediction"]
    values, _ = own_predictions(fraud, "amount@1")
    assert table.column("prediction").to_pylist() == pytest.approx(values, rel=1e-12)


def test_the_model_is_resolved_once(fraud: Workspace) -> None:
    """An alias moving while a job runs does not mix versions: the whole job uses the version
    the reference named at its start."""
    fraud.training.train(
        "tx",
        "is_fraud",
        model=LOGREG,
        params={"C": 0.001},
        exclude=["transaction_id"],
        register="fraud",
        plots=False,
    )
    fraud.registry.set_alias("fraud", "champion", 1)
    fraud.deployments.create(
        "champ",
        {"variants": [{"name": "primary", "model": "fraud@champion", "runtime": "native"}]},
    )
    batch = service(fraud)

    def move(done: int, total: int) -> None:
        if 0 < done < total:
            fraud.registry.set_alias("fraud", "champion", 2)

    result = batch.predict("champ", "new", "scored", chunk_rows=40, progress=move)
    assert fraud.registry.resolve("fraud@champion").version == 2  # it moved mid-job
    assert result.model == "fraud@1"
    assert_same(fraud, "scored", "fraud@1")
    assert batch.predict("champ", "new", "later").model == "fraud@2"
    assert_same(fraud, "later", "fraud@2")


def test_a_variant_is_chosen_by_name(fraud: Workspace) -> None:
    fraud.training.train(
        "tx", "is_fraud", model=LOGREG, exclude=["transaction_id"], register="fraud", plots=False
    )
    fraud.deployments.create(
        "canary",
        {
            "strategy": "canary",
            "variants": [
                {"name": "stable", "model": "fraud@1"},
                {"name": "next", "model": "fraud@2", "weight": 10},
            ],
        },
    )
    batch = service(fraud)
    assert batch.predict("canary", "new", "a").model == "fraud@1"  # the first served variant
    assert batch.predict("canary", "new", "b", variant="next").model == "fraud@2"
    with pytest.raises(NotFound, match="no variant 'third'; its variants: stable, next"):
        batch.predict("canary", "new", "c", variant="third")


def test_bad_input_is_refused_and_writes_nothing(fraud: Workspace) -> None:
    import polars as pl

    batch = service(fraud)
    rows = transactions(50, seed=9, labelled=False)
    fraud.datasets.ingest(rows.drop("amount"), name="no_amount")
    fraud.datasets.ingest(rows.with_columns(pl.col("amount").cast(pl.String)), name="text_amount")
    fraud.datasets.ingest(rows.with_columns(pl.lit(1).alias("prediction")), name="clash")
    before = {d.name for d in fraud.datasets.list()}
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (NotFound, "no deployment named 'nope'", {"deployment": "nope"}),
        (NotFound, "dataset 'missing' does not exist", {"input": "missing"}),
        (NotFound, "has no version 9", {"input": "new@9"}),
        (SchemaMismatch, "no_amount@1 has no column 'amount'", {"input": "no_amount"}),
        (SchemaMismatch, "column 'amount' of text_amount@1 is string", {"input": "text_amount"}),
        (InvalidInput, "column 'prediction'", {"input": "clash"}),
        (InvalidInput, "another dataset than the input", {"output": "new"}),
        (InvalidInput, "output dataset", {"output": "bad name!"}),
        (InvalidInput, "workers", {"workers": 0}),
        (InvalidInput, "workers", {"workers": "2"}),
        (InvalidInput, "chunk_rows", {"chunk_rows": 0}),
    ]
    for error, message, change in cases:
        args: dict[str, Any] = {"deployment": "d", "input": "new", "output": "out", **change}
        with pytest.raises(error, match=message):
            batch.predict(args.pop("deployment"), args.pop("input"), args.pop("output"), **args)
    assert {d.name for d in fraud.datasets.list()} == before


def test_onnx_asked_for_without_an_export_is_refused(fraud: Workspace) -> None:
    fraud.deployments.create(
        "onnx", {"variants": [{"name": "primary", "model": "fraud@1", "runtime": "onnx"}]}
    )
    with pytest.raises(InvalidInput, match="no verified ONNX export"):
        service(fraud).predict("onnx", "new", "out")
    assert fraud.datasets.versions("new")  # and nothing else
    assert "out" not in {d.name for d in fraud.datasets.list()}


@pytest.mark.slow
def test_ray_tasks_predict_the_chunks(fraud: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'mloop[ray]')")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = service(fraud).predict("d", "new", "scored", chunk_rows=70, ray_address="auto")
    finally:
        ray.shutdown()
    assert (result.backend, result.chunks) == ("ray", 5)
    assert_same(fraud, "scored", "fraud@1")
    ids = fraud.datasets.load("new", columns=["transaction_id"]).column(0)
    assert fraud.datasets.load("scored").column("transaction_id") == ids
