"""Deployments: create, list, change, delete — and the data-plane routes' OpenAPI.

The predict routes declared in ``data_plane`` are answered by the serving middleware
(``api/serving.py``) before FastAPI routes anything; the handlers here call the same
functions, so the API behaves the same when the middleware is not installed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mloop.api.auth import authenticate
from mloop.api.deps import workspace
from mloop.serving import Deployment, DeploymentSpec
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["deployments"])
WS = Annotated[Workspace, Depends(workspace)]


class CreateDeployment(DeploymentSpec):
    name: str


@router.get("/deployments", summary="Every deployment")
def list_deployments(ws: WS) -> list[Deployment]:
    return ws.deployments.list()


@router.post("/deployments", status_code=201, summary="Create a deployment")
def create_deployment(ws: WS, body: CreateDeployment) -> Deployment:
    spec = body.model_dump(exclude={"name"})
    return ws.deployments.create(body.name, spec)


@router.get("/deployments/{name}", summary="A deployment")
def get_deployment(ws: WS, name: str) -> Deployment:
    return ws.deployments.get(name)


@router.put("/deployments/{name}", summary="Change a deployment (servers hot-swap)")
def update_deployment(ws: WS, name: str, body: DeploymentSpec) -> Deployment:
    return ws.deployments.update(name, body.model_dump())


@router.delete("/deployments/{name}", status_code=204, summary="Delete a deployment")
def delete_deployment(ws: WS, name: str) -> Response:
    ws.deployments.delete(name)
    return Response(status_code=204)


# -- the data plane ---------------------------------------------------------------------------

data_plane = APIRouter(dependencies=[Depends(authenticate)])
KEY = Annotated[
    str | None,
    Header(alias="X-Mloop-Key", description="Sticky routing key (same key, same variant)"),
]


class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, Any]] | None = Field(
        default=None,
        description="One object per row mapping every input column to its value (null allowed)",
        examples=[[{"amount": 42.5, "merchant_category": "grocery"}]],
    )
    columns: dict[str, list[Any]] | None = Field(
        default=None, description="Column name → values, all of one length (instead of rows)"
    )
    key: str | int | None = Field(
        default=None, description="Sticky routing key (same key, same variant)"
    )


class PredictAnswer(BaseModel):
    deployment: str
    variant: str
    model: str
    version: int
    request_id: str
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None = None
    latency_ms: float


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed JSON or a body of the wrong shape"},
    404: {"description": "unknown deployment or version"},
    413: {"description": "body too large"},
    415: {"description": "not JSON"},
    422: {"description": "rows that do not fit the model's signature"},
    503: {"description": "at the concurrency limit, or timed out waiting (Retry-After)"},
}


def _endpoints(request: Request) -> Any:
    return request.app.state.serving


def _body(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_none=True)


@data_plane.post(
    "/v1/deployments/{name}/predict",
    tags=["serving"],
    summary="Predict with a deployment (mloop's body)",
    responses=ERRORS,
)
async def predict(request: Request, name: str, body: PredictBody, key: KEY = None) -> PredictAnswer:
    answer = await _endpoints(request).native(name, _body(body), key)
    return PredictAnswer.model_validate(answer)


class InvocationsBody(BaseModel):
    """One of MLflow's scoring shapes."""

    dataframe_split: dict[str, Any] | None = None
    dataframe_records: list[dict[str, Any]] | None = None
    instances: list[Any] | dict[str, Any] | None = None
    inputs: list[Any] | dict[str, Any] | None = None
    params: dict[str, Any] | None = None


class InvocationsAnswer(BaseModel):
    predictions: list[Any]


@data_plane.post(
    "/v1/deployments/{name}/invocations",
    tags=["serving"],
    summary="Predict with a deployment (MLflow's /invocations body shapes)",
    responses=ERRORS,
)
async def deployment_invocations(
    request: Request, name: str, body: InvocationsBody, key: KEY = None
) -> InvocationsAnswer:
    answer = await _endpoints(request).invocations(name, _body(body), key)
    return InvocationsAnswer.model_validate(answer)


@data_plane.post(
    "/invocations",
    tags=["serving"],
    summary="MLflow's scoring endpoint: the server's default deployment",
    responses=ERRORS,
)
async def invocations(request: Request, body: InvocationsBody, key: KEY = None) -> Any:
    answer = await _endpoints(request).invocations(None, _body(body), key)
    return InvocationsAnswer.model_validate(answer)


@data_plane.get("/ping", tags=["serving"], summary="MLflow's scoring-server liveness")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


@data_plane.get("/v2", tags=["open inference protocol"], summary="V2 server metadata")
async def v2_server(request: Request) -> dict[str, Any]:
    answer: dict[str, Any] = _endpoints(request).v2_server()
    return answer


@data_plane.get("/v2/health/live", tags=["open inference protocol"], summary="V2 liveness")
async def v2_live() -> dict[str, bool]:
    return {"live": True}


@data_plane.get("/v2/health/ready", tags=["open inference protocol"], summary="V2 readiness")
async def v2_ready_server(request: Request, response: Response) -> dict[str, bool]:
    ready = bool(_endpoints(request).runtime.ready)
    if not ready:
        response.status_code = 503
    return {"ready": ready}


class V2Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class V2Output(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class V2Request(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2Tensor]
    outputs: list[V2Output] | None = None


def _number(version: str | None) -> int | None:
    from mloop.core.errors import NotFound

    if version is None:
        return None
    if not version.isdigit():
        raise NotFound(f"model version {version!r} is not a number")
    return int(version)


@data_plane.get("/v2/models/{name}", tags=["open inference protocol"], summary="V2 model metadata")
async def v2_model(request: Request, name: str) -> dict[str, Any]:
    answer: dict[str, Any] = await _endpoints(request).v2_metadata(name, None)
    return answer


@data_plane.get(
    "/v2/models/{name}/versions/{version}",
    tags=["open inference protocol"],
    summary="V2 model version metadata",
)
async def v2_model_version(request: Request, name: str, version: str) -> dict[str, Any]:
    answer: dict[str, Any] = await _endpoints(request).v2_metadata(name, _number(version))
    return answer


@data_plane.get(
    "/v2/models/{name}/ready", tags=["open inference protocol"], summary="V2 model readiness"
)
async def v2_model_ready(request: Request, name: str) -> dict[str, Any]:
    answer: dict[str, Any] = await _endpoints(request).v2_ready(name, None)
    return answer


@data_plane.get(
    "/v2/models/{name}/versions/{version}/ready",
    tags=["open inference protocol"],
    summary="V2 model version readiness",
)
async def v2_version_ready(request: Request, name: str, version: str) -> dict[str, Any]:
    answer: dict[str, Any] = await _endpoints(request).v2_ready(name, _number(version))
    return answer


@data_plane.post(
    "/v2/models/{name}/infer",
    tags=["open inference protocol"],
    summary="V2 inference (named tensors)",
    responses=ERRORS,
)
async def v2_infer(request: Request, name: str, body: V2Request, key: KEY = None) -> Any:
    return await _endpoints(request).v2_infer(name, None, _body(body), key)


@data_plane.post(
    "/v2/models/{name}/versions/{version}/infer",
    tags=["open inference protocol"],
    summary="V2 inference on one model version",
    responses=ERRORS,
)
async def v2_infer_version(
    request: Request, name: str, version: str, body: V2Request, key: KEY = None
) -> Any:
    return await _endpoints(request).v2_infer(name, _number(version), _body(body), key)
