"""One lineage graph across the system: human references, walks, labels, OpenLineage export."""

from mloop.lineage.graph import (
    DEFAULT_DEPTH,
    MAX_DEPTH,
    Direction,
    LineageEdge,
    LineageGraph,
    LineageNode,
    LineageService,
)
from mloop.lineage.openlineage import export_events

__all__ = [
    "DEFAULT_DEPTH",
    "MAX_DEPTH",
    "Direction",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "LineageService",
    "export_events",
]
