"""Datasets, versions, suites and validation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from mloop.api.deps import workspace
from mloop.core.errors import InvalidInput
from mloop.data import Dataset, DatasetVersion, QuarantineResult, Suite, ValidationReport
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["datasets"])
WS = Annotated[Workspace, Depends(workspace)]

CONTENT_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
}


@router.get("/datasets", summary="List datasets")
def list_datasets(ws: WS) -> list[Dataset]:
    return ws.datasets.list()


@router.get("/datasets/{name}/versions", summary="List a dataset's versions")
def list_versions(ws: WS, name: str) -> list[DatasetVersion]:
    return ws.datasets.versions(name)


@router.get("/datasets/{name}/versions/{version}", summary="One version, with schema and profile")
def get_version(ws: WS, name: str, version: str) -> DatasetVersion:
    return ws.datasets.get(f"{name}@{version}")


@router.post(
    "/datasets/{name}/versions",
    status_code=201,
    summary="Ingest a file sent as the body (text/csv, application/vnd.apache.parquet, "
    "application/x-ndjson)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}} for t in CONTENT_TYPES
            },
        }
    },
)
async def ingest(ws: WS, name: str, request: Request) -> DatasetVersion:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = CONTENT_TYPES.get(content_type)
    if fmt is None:
        raise InvalidInput(
            f"content type {content_type or '(none)'!r} is not a data format; send one of: "
            + ", ".join(sorted(CONTENT_TYPES))
        )
    body = await request.body()
    # parsing, profiling and writing are CPU and disk work: keep them off the event loop
    return await run_in_threadpool(ws.datasets.ingest_bytes, body, name=name, format=fmt)


class InferSuiteRequest(BaseModel):
    dataset: str
    name: str | None = None


@router.post(
    "/suites", status_code=201, tags=["validation"], summary="Infer a suite from a version"
)
def infer_suite(ws: WS, body: InferSuiteRequest) -> Suite:
    return ws.validation.infer_suite(body.dataset, name=body.name)


@router.get("/suites", tags=["validation"], summary="List suites")
def list_suites(ws: WS) -> list[dict[str, Any]]:
    return ws.validation.list_suites()


@router.get("/suites/{ref}", tags=["validation"], summary="A suite (NAME or NAME@N)")
def get_suite(ws: WS, ref: str) -> Suite:
    return ws.validation.get_suite(ref)


class ValidateRequest(BaseModel):
    dataset: str
    suite: str


@router.post("/validations", tags=["validation"], summary="Validate a version against a suite")
def validate(ws: WS, body: ValidateRequest) -> ValidationReport:
    return ws.validation.validate(body.dataset, body.suite)


@router.post(
    "/quarantines",
    tags=["validation"],
    summary="Validate, then split failing rows into NAME.quarantine and passing rows into a "
    "new version",
)
def quarantine(ws: WS, body: ValidateRequest) -> QuarantineResult:
    return ws.validation.quarantine(body.dataset, body.suite)


@router.get("/lineage/{node_type}/{node_id}", tags=["lineage"], summary="Lineage edges of a node")
def lineage(
    ws: WS,
    node_type: str,
    node_id: str,
    direction: Annotated[str, Query(pattern="^(upstream|downstream)$")] = "upstream",
) -> list[dict[str, Any]]:
    walk = ws.lineage.upstream if direction == "upstream" else ws.lineage.downstream
    return [edge.model_dump() for edge in walk(node_type, node_id)]
