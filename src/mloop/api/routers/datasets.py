"""Datasets, versions, suites and validation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, model_validator
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


@router.get(
    "/datasets/{name}/versions/{version}",
    summary="One version, with schema and profile (VERSION: N, latest, or an ISO time: the "
    "version that was latest then)",
)
def get_version(ws: WS, name: str, version: str) -> DatasetVersion:
    return ws.datasets.get(f"{name}@{version}")


@router.get(
    "/datasets/{name}/versions/{version}/segments",
    summary="The Parquet segments a version is made of (shared with earlier versions)",
)
def get_segments(ws: WS, name: str, version: str) -> list[dict[str, Any]]:
    return ws.datasets.segments(f"{name}@{version}")


def _ref(name: str, spec: str) -> str:
    spec = spec.strip()
    if not spec:
        raise InvalidInput("give both versions to compare: ?from=N&to=M (N, latest or a time)")
    return spec if "@" in spec else f"{name}@{spec}"


@router.get(
    "/datasets/{name}/diff",
    summary="What changed between two versions: schema, rows, shared segments, profile deltas",
)
def diff_versions(
    ws: WS,
    name: str,
    from_: Annotated[str, Query(alias="from", description="N, latest, an ISO time or NAME@V")],
    to: Annotated[str, Query(description="N, latest, an ISO time or NAME@V")] = "latest",
) -> dict[str, Any]:
    return ws.datasets.diff(_ref(name, from_), _ref(name, to))


@router.get("/datasets/{name}/sources", summary="Where each incremental source of a dataset stands")
def source_states(ws: WS, name: str) -> list[dict[str, Any]]:
    ws.datasets.policy(name)  # NotFound for a dataset that does not exist
    return ws.datasets.source_states(name)


class PolicyRequest(BaseModel):
    pii: dict[str, str]


@router.get("/datasets/{name}/policy", summary="A dataset's PII policy (never its key)")
def get_policy(ws: WS, name: str) -> dict[str, Any]:
    return ws.datasets.policy(name) or {"pii": {}}


@router.put(
    "/datasets/{name}/policy",
    summary="Declare PII columns: hash, mask or drop at every later ingestion",
)
def put_policy(ws: WS, name: str, body: PolicyRequest) -> dict[str, Any]:
    return ws.datasets.set_policy(name, body.pii)


ARROW_STREAM = "application/vnd.apache.arrow.stream"


class PayloadTooLarge(InvalidInput):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


ROWS_HINT = "(setting ingest_max_body_bytes): send fewer rows per request"


async def _read_body(request: Request, limit: int, hint: str = ROWS_HINT) -> bytes:
    """The request body, refused (413) as soon as it is known to be over ``limit`` bytes: by
    its Content-Length before reading, or while reading a body sent without one (never held
    whole beyond the limit)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"the body has {int(length):,} bytes; the limit is {limit:,} {hint}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit:,} bytes {hint}")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_rows(body: bytes, content_type: str) -> Any:
    if not body.strip():
        raise InvalidInput("the request body is empty: send rows")
    if content_type == ARROW_STREAM:
        import pyarrow as pa

        try:
            return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            raise InvalidInput(f"the body is not an Arrow IPC stream: {exc}") from None
    import json

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        if set(data) != {"rows"}:
            raise InvalidInput('send a JSON list of objects, or {"rows": [...]}')
        data = data["rows"]
    return data


@router.post(
    "/datasets/{name}/rows",
    status_code=201,
    summary="Append rows (JSON objects or an Arrow IPC stream) as a new version (the first call "
    "creates the dataset)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "array", "items": {"type": "object"}},
                            {
                                "type": "object",
                                "properties": {
                                    "rows": {"type": "array", "items": {"type": "object"}}
                                },
                                "required": ["rows"],
                            },
                        ]
                    }
                },
                ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def append_rows(ws: WS, name: str, request: Request) -> DatasetVersion:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", ARROW_STREAM):
        raise InvalidInput(
            f"content type {content_type or '(none)'!r} is not rows: send application/json "
            f"or {ARROW_STREAM}"
        )
    body = await _read_body(request, ws.settings.ingest_max_body_bytes)
    rows = await run_in_threadpool(_parse_rows, body, content_type)
    return await run_in_threadpool(ws.datasets.append_rows, name, rows)


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
    body = await _read_body(
        request,
        ws.settings.ingest_max_body_bytes,
        "(setting ingest_max_body_bytes): send a smaller file, or ingest it from a path or URL",
    )
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


YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
MAX_SUITE_BYTES = 16 * 1024 * 1024


@router.get(
    "/suites/{ref}",
    tags=["validation"],
    summary="A suite (NAME or NAME@N), as JSON or (?format=yaml) as YAML to edit",
    response_model=Suite,
    responses={200: {"content": {"application/yaml": {"schema": {"type": "string"}}}}},
)
def get_suite(
    ws: WS, ref: str, format: Annotated[Literal["json", "yaml"], Query()] = "json"
) -> Any:
    found = ws.validation.get_suite(ref)
    if format == "yaml":
        return Response(found.to_yaml(), media_type="application/yaml")
    return found


@router.put(
    "/suites/{name}",
    tags=["validation"],
    summary="Store a suite (JSON, or YAML as edited by hand) as the next version of NAME "
    "(the same content: the same version)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                **{t: {"schema": {"type": "string"}} for t in YAML_TYPES},
            },
        }
    },
)
async def put_suite(ws: WS, name: str, request: Request) -> Suite:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", *YAML_TYPES):
        raise InvalidInput(
            f"content type {content_type or '(none)'!r} is not a suite: send application/json "
            "or application/yaml"
        )
    body = await _read_body(request, MAX_SUITE_BYTES, "for a suite")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the suite is not UTF-8 text") from None
    # JSON is YAML too: one parser for both, one error style
    return await run_in_threadpool(ws.validation.apply_suite, text, name=name)


class ValidateRequest(BaseModel):
    dataset: str
    suite: str | dict[str, Any] | None = Field(
        default=None,
        description="A stored suite (NAME or NAME@N), or a suite itself as a JSON object",
    )
    suite_yaml: str | None = Field(default=None, description="A suite written as YAML")

    @model_validator(mode="after")
    def _one_suite(self) -> ValidateRequest:
        if (self.suite is None) == (self.suite_yaml is None):
            raise ValueError("give the suite once: suite (a name or an object) or suite_yaml")
        return self


def _suite_of(ws: Workspace, body: ValidateRequest) -> Suite:
    """The request's suite: stored, inline JSON, or inline YAML (never a server-side file)."""
    if body.suite_yaml is not None:
        return Suite.from_yaml(body.suite_yaml, name="inline")
    if isinstance(body.suite, dict):
        return Suite.parse({"name": "inline", **body.suite})
    assert body.suite is not None
    return ws.validation.get_suite(body.suite)


@router.post(
    "/validations",
    tags=["validation"],
    summary="Validate a version against a suite: the report as JSON, or (?format=html) as one "
    "self-contained HTML page",
    response_model=ValidationReport,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
def validate(
    ws: WS, body: ValidateRequest, format: Annotated[Literal["json", "html"], Query()] = "json"
) -> Any:
    report = ws.validation.validate(body.dataset, _suite_of(ws, body))
    if format == "html":
        from mloop.data import render_html

        return HTMLResponse(render_html(report))
    return report


@router.post(
    "/quarantines",
    tags=["validation"],
    summary="Validate, then split failing rows into NAME.quarantine and passing rows into a "
    "new version",
)
def quarantine(ws: WS, body: ValidateRequest) -> QuarantineResult:
    return ws.validation.quarantine(body.dataset, _suite_of(ws, body))


@router.get("/lineage/{node_type}/{node_id}", tags=["lineage"], summary="Lineage edges of a node")
def lineage(
    ws: WS,
    node_type: str,
    node_id: str,
    direction: Annotated[str, Query(pattern="^(upstream|downstream)$")] = "upstream",
) -> list[dict[str, Any]]:
    walk = ws.lineage.upstream if direction == "upstream" else ws.lineage.downstream
    return [edge.model_dump() for edge in walk(node_type, node_id)]
