"""What lineage tests share: a whole chain on a workspace (a CSV source → raw@1 → transform →
features@1 → training run → model churn@1, an unrelated dataset beside it) and a check of
OpenLineage events against the spec's required fields."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import polars as pl

from helpers import drift_frame
from mloop.data import Transform, TransformRun
from mloop.registry import ModelVersion
from mloop.tracking import Run
from mloop.workspace import Workspace

LOGREG = "sklearn.linear_model.LogisticRegression"


def add_features(raw: pl.DataFrame) -> pl.DataFrame:
    return raw.with_columns((pl.col("x") * 2).alias("x2"))


@dataclass(frozen=True)
class Chain:
    ws: Workspace
    csv: Path
    transform: Transform
    transform_run: TransformRun
    run: Run
    model: ModelVersion


def build_chain(ws: Workspace, tmp_path: Path) -> Chain:
    csv = tmp_path / "customers.csv"
    drift_frame(300, seed=3).write_csv(csv)
    ws.datasets.ingest(csv, name="raw")
    ws.datasets.ingest(pl.DataFrame({"a": [1, 2]}), name="unrelated")
    registered = ws.transforms.register("features", add_features, inputs=["raw"], output="features")
    transform_run = ws.transforms.run("features")
    trained = ws.training.train(
        "features", "label", model=LOGREG, experiment="churn", run_name="lr", register="churn"
    )
    assert trained.model_version is not None
    return Chain(ws, csv, registered, transform_run, trained.run, trained.model_version)


# -- OpenLineage 2-0-2: what the spec requires of a RunEvent and of the facets mloop writes ---

EVENT_TYPES = {"START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"}
EVENT_KEYS = {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"}
FACET_FIELDS = {  # facet name → fields its schema requires besides _producer and _schemaURL
    "schema": set(),
    "version": {"datasetVersion"},
    "outputStatistics": {"rowCount"},
    "jobType": {"processingType", "integration"},
    "sql": {"query"},
    "sourceCode": {"language", "sourceCode"},
    "documentation": {"description"},
}


def _is_uri(text: object) -> bool:
    parsed = urlparse(str(text))
    return isinstance(text, str) and bool(parsed.scheme) and bool(parsed.netloc or parsed.path)


def _check_facets(facets: object, where: str) -> None:
    assert isinstance(facets, dict), where
    for name, body in facets.items():
        assert isinstance(body, dict), f"{where}.{name}"
        assert _is_uri(body.get("_producer")), f"{where}.{name}._producer"
        assert _is_uri(body.get("_schemaURL")), f"{where}.{name}._schemaURL"
        assert "#/$defs/" in body["_schemaURL"], f"{where}.{name}._schemaURL"
        missing = FACET_FIELDS.get(name, set()) - set(body)
        assert not missing, f"{where}.{name} lacks {missing}"
    if "schema" in facets:
        for field in facets["schema"].get("fields", []):
            assert isinstance(field.get("name"), str), f"{where}.schema.fields"


def _check_dataset(dataset: object, where: str) -> None:
    assert isinstance(dataset, dict), where
    assert isinstance(dataset.get("namespace"), str), f"{where}.namespace"
    assert dataset["namespace"], f"{where}.namespace"
    assert isinstance(dataset.get("name"), str), f"{where}.name"
    assert dataset["name"], f"{where}.name"
    for key in ("facets", "inputFacets", "outputFacets"):
        if key in dataset:
            _check_facets(dataset[key], f"{where}.{key}")


def check_run_event(event: dict[str, Any]) -> None:
    """Assert ``event`` has what OpenLineage's RunEvent schema requires (BaseEvent: eventTime,
    producer, schemaURL; RunEvent: run with a UUID runId, job with namespace and name; each
    facet: _producer and _schemaURL) and nothing the schema does not define at the top."""
    assert set(event) <= EVENT_KEYS, set(event) - EVENT_KEYS
    for key in ("eventTime", "producer", "schemaURL", "run", "job"):
        assert key in event, f"missing {key}"
    assert event["eventType"] in EVENT_TYPES
    moment = datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    assert _is_uri(event["producer"])
    assert _is_uri(event["schemaURL"])
    assert event["schemaURL"].endswith("/OpenLineage.json#/$defs/RunEvent")
    run_id = event["run"]["runId"]
    assert str(uuid.UUID(run_id)) == run_id  # canonical UUID text
    _check_facets(event["run"].get("facets", {}), "run.facets")
    job = event["job"]
    assert isinstance(job.get("namespace"), str)
    assert job["namespace"]
    assert isinstance(job.get("name"), str)
    assert job["name"]
    _check_facets(job.get("facets", {}), "job.facets")
    for side in ("inputs", "outputs"):
        assert isinstance(event.get(side, []), list)
        for i, dataset in enumerate(event.get(side, [])):
            _check_dataset(dataset, f"{side}[{i}]")
