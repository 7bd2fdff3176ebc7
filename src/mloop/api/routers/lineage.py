"""The lineage graph by human reference, and its OpenLineage export."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from mloop.api.deps import workspace
from mloop.lineage import DEFAULT_DEPTH, MAX_DEPTH, LineageGraph
from mloop.workspace import Workspace

router = APIRouter(prefix="/v1", tags=["lineage"])
WS = Annotated[Workspace, Depends(workspace)]
NODE = (
    "dataset:NAME@V (or NAME@V), run:RUN_ID, model:NAME@V or model:NAME@ALIAS, source:URI, "
    "transform:NAME@V"
)


@router.get("/lineage", summary="The lineage graph around a node: nodes with labels, and edges")
def graph(
    ws: WS,
    node: Annotated[str, Query(description=NODE)],
    direction: Literal["upstream", "downstream", "both"] = "both",
    depth: Annotated[int, Query(ge=0, le=MAX_DEPTH)] = DEFAULT_DEPTH,
) -> LineageGraph:
    return ws.lineage.graph(node, direction, depth)


@router.get(
    "/lineage/openlineage",
    summary="OpenLineage RunEvents: one COMPLETE event per ingest, transform run and training "
    "run (of the whole workspace, or around a node)",
)
def openlineage(
    ws: WS,
    node: Annotated[str | None, Query(description=NODE)] = None,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    return ws.lineage.openlineage(node, namespace=namespace)
