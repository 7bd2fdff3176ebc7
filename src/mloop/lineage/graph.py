"""One lineage graph across the system, addressed by human references.

Nodes are what the services record edges between — sources, dataset versions, transforms, runs,
model versions, suites — and a reference names one the way a person would: ``dataset:tx@3`` (or
just ``tx@3``), ``run:RUN_ID``, ``model:fraud@champion``, ``source:file:///data/tx.csv``,
``transform:clean@2``. A walk reads the edges one hop at a time (one query per node type per
hop), then labels every node it reached with one query per node type.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, overload

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from mloop.core.clock import from_ms
from mloop.core.errors import InvalidInput, NotFound
from mloop.data import DatasetService, TransformService
from mloop.registry import RegistryService
from mloop.storage import Database, Edge, LineageStore, tables

Direction = Literal["upstream", "downstream", "both"]
DEFAULT_DEPTH = 20
MAX_DEPTH = 100
CHUNK = 500  # ids per IN (...) list

# internal node type → the word a reference starts with
REF_PREFIX = {
    "source": "source",
    "dataset_version": "dataset",
    "transform": "transform",
    "run": "run",
    "model_version": "model",
    "suite": "suite",
    "feature_view": "feature_view",
    "loop_run": "loop_run",
}
PREFIXES = (*REF_PREFIX.values(), "dataset_version", "model_version")


class LineageNode(BaseModel):
    """A node of the graph: its internal identity (``type``, ``id``, ``key``), a reference a
    person can type back (``ref``), a short ``label`` and a few details."""

    model_config = ConfigDict(frozen=True)

    key: str
    type: str
    id: str
    ref: str
    label: str
    details: dict[str, Any] = Field(default_factory=dict)
    missing: bool = False  # the edge outlived the thing (a deleted model version, say)


class LineageEdge(BaseModel):
    """``src --relation--> dst``: dst was made from src (keys of :class:`LineageNode`)."""

    model_config = ConfigDict(frozen=True)

    src: str
    dst: str
    relation: str


class LineageGraph(BaseModel):
    """What a walk from ``root`` reached: nodes (root first, nearest hops first) and edges."""

    model_config = ConfigDict(frozen=True)

    root: str
    direction: Direction
    depth: int
    nodes: list[LineageNode]
    edges: list[LineageEdge]

    def node(self, ref_or_key: str) -> LineageNode:
        for node in self.nodes:
            if ref_or_key in (node.key, node.ref):
                return node
        raise KeyError(ref_or_key)

    @property
    def refs(self) -> list[str]:
        return [node.ref for node in self.nodes]

    def parents(self, ref_or_key: str) -> list[tuple[str, LineageNode]]:
        """(relation, node) for each edge into a node."""
        key = self.node(ref_or_key).key
        return [(e.relation, self.node(e.src)) for e in self.edges if e.dst == key]

    def children(self, ref_or_key: str) -> list[tuple[str, LineageNode]]:
        """(relation, node) for each edge out of a node."""
        key = self.node(ref_or_key).key
        return [(e.relation, self.node(e.dst)) for e in self.edges if e.src == key]


def node_key(node_type: str, node_id: str) -> str:
    return f"{node_type}:{node_id}"


def check_depth(depth: int) -> int:
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be a whole number from 0 to {MAX_DEPTH}, not {depth!r}")
    return depth


class Services(Protocol):
    """What the lineage service resolves references with (the workspace has them all)."""

    @property
    def home(self) -> Path: ...
    @property
    def datasets(self) -> DatasetService: ...
    @property
    def registry(self) -> RegistryService: ...
    @property
    def transforms(self) -> TransformService: ...


class LineageService(LineageStore):
    """The lineage graph as the SDK, CLI and API see it: ``upstream``, ``downstream`` and
    ``graph`` of a human reference, and the OpenLineage export.

    It is also the :class:`LineageStore` the services record edges with; the store's raw forms
    ``upstream(TYPE, ID)`` and ``downstream(TYPE, ID)`` (lists of edges) still answer."""

    def __init__(self, db: Database, services: Services) -> None:
        super().__init__(db)
        self._services = services

    @property
    def namespace(self) -> str:
        """This workspace's OpenLineage namespace: ``mloop://`` and its folder."""
        return f"mloop://{self._services.home.as_posix()}"

    # -- references ----------------------------------------------------------------------

    def resolve(self, ref: str) -> LineageNode:
        """The node a reference names, or NotFound."""
        node_type, node_id = self._resolve(ref)
        with self._db.read() as conn:
            return self._describe(conn, [(node_type, node_id)])[0]

    def _resolve(self, ref: str) -> tuple[str, str]:
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput(
                "empty node reference; use dataset:NAME@V, run:ID, model:NAME@V, "
                "source:URI, transform:NAME@V or loop_run:ID"
            )
        text = ref.strip()
        prefix, colon, rest = text.partition(":")
        if not colon or prefix not in PREFIXES:
            prefix, rest = "dataset", text  # NAME@V
        rest = rest.strip()
        if not rest:
            raise InvalidInput(f"node reference {ref!r} names nothing after {prefix!r}")
        if prefix == "dataset":
            return "dataset_version", self._services.datasets.get(rest).id
        if prefix == "dataset_version":
            return "dataset_version", self._services.datasets.get_by_id(rest).id
        if prefix == "model":
            return "model_version", self._services.registry.resolve(rest).id
        if prefix == "model_version":
            return "model_version", self._services.registry.get_version_by_id(rest).id
        if prefix == "transform":
            return "transform", self._services.transforms.get(rest).id
        if prefix == "run":
            return "run", self._run_id(rest)
        if prefix == "suite":
            return "suite", self._suite_id(rest)
        if prefix == "feature_view":
            return "feature_view", self._feature_view_id(rest)
        if prefix == "loop_run":
            return "loop_run", self._loop_run_id(rest)
        return "source", self._source(rest)

    def _loop_run_id(self, text: str) -> str:
        t = tables.loop_runs
        with self._db.read() as conn:
            found = conn.execute(sa.select(t.c.id).where(t.c.id == text)).scalar()
        if found is None:
            raise NotFound(f"no loop pass {text!r}")
        return str(found)

    def _run_id(self, text: str) -> str:
        candidates = {text, text.replace("-", "").lower()}  # an OpenLineage runId is a UUID
        r = tables.runs
        with self._db.read() as conn:
            found = conn.execute(sa.select(r.c.id).where(r.c.id.in_(candidates))).scalar()
        if found is None:
            raise NotFound(f"run {text!r} does not exist")
        return str(found)

    def _suite_id(self, text: str) -> str:
        name, _, version = text.partition("@")
        s = tables.expectation_suites
        query = sa.select(s.c.id, s.c.version).where(s.c.name == name)
        if version and version != "latest":
            if not version.isdigit():
                raise NotFound(f"suite {name!r} has no version {version!r}")
            query = query.where(s.c.version == int(version))
        with self._db.read() as conn:
            found = conn.execute(query.order_by(s.c.version.desc()).limit(1)).first()
        if found is None:
            raise NotFound(f"suite {text!r} does not exist")
        return str(found.id)

    def _feature_view_id(self, text: str) -> str:
        """``NAME`` (its latest version) or ``NAME@V`` of a feature view or on-demand view."""
        name, _, version = text.partition("@")
        d = tables.feature_definitions
        query = sa.select(d.c.id).where(d.c.name == name, d.c.kind.in_(["view", "ondemand"]))
        if version and version != "latest":
            if not (version.isascii() and version.isdigit()):
                raise NotFound(f"feature view {name!r} has no version {version!r}")
            query = query.where(d.c.version == int(version))
        with self._db.read() as conn:
            found = conn.execute(query.order_by(d.c.version.desc()).limit(1)).scalar()
        if found is None:
            raise NotFound(f"feature view {text!r} does not exist")
        return str(found)

    def _source(self, text: str) -> str:
        """A source as recorded (a URI), or a local path given as it was ingested."""
        t = tables.lineage_edges
        candidates = [text]
        if "://" not in text and not text.startswith("upload:"):
            candidates.append(Path(text).expanduser().resolve().as_uri())
        with self._db.read() as conn:
            for candidate in candidates:
                hit = conn.execute(
                    sa.select(t.c.id)
                    .where(t.c.src_type == "source", t.c.src_id == candidate)
                    .limit(1)
                ).first()
                if hit is not None:
                    return candidate
        raise NotFound(f"source {text!r} is not in the lineage graph: nothing was ingested from it")

    # -- walks ---------------------------------------------------------------------------

    def graph(
        self, ref: str, direction: Direction = "both", depth: int = DEFAULT_DEPTH
    ) -> LineageGraph:
        """Everything reachable from ``ref`` within ``depth`` hops: ``upstream`` (what it was
        made from), ``downstream`` (what was made from it) or ``both``."""
        if direction not in ("upstream", "downstream", "both"):
            raise InvalidInput(f"direction must be upstream, downstream or both, not {direction!r}")
        check_depth(depth)
        start = self._resolve(ref)
        edges: list[Edge] = []
        if direction in ("upstream", "both"):
            edges += self.walk([start], True, depth)
        if direction in ("downstream", "both"):
            edges += self.walk([start], False, depth)
        order: dict[tuple[str, str], None] = {start: None}
        unique: dict[tuple[str, str, str, str, str], Edge] = {}
        for edge in edges:
            unique.setdefault(
                (edge.src.type, edge.src.id, edge.dst.type, edge.dst.id, edge.relation), edge
            )
            for end in (edge.src, edge.dst):
                order.setdefault((end.type, end.id), None)
        with self._db.read() as conn:
            nodes = self._describe(conn, list(order))
        return LineageGraph(
            root=node_key(*start),
            direction=direction,
            depth=depth,
            nodes=nodes,
            edges=[
                LineageEdge(
                    src=node_key(e.src.type, e.src.id),
                    dst=node_key(e.dst.type, e.dst.id),
                    relation=e.relation,
                )
                for e in unique.values()
            ],
        )

    @overload
    def upstream(self, node: str, node_id: None = None, depth: int = ...) -> LineageGraph: ...

    @overload
    def upstream(self, node: str, node_id: str, depth: int = ...) -> builtins.list[Edge]: ...

    def upstream(
        self, node: str, node_id: str | None = None, depth: int = DEFAULT_DEPTH
    ) -> LineageGraph | builtins.list[Edge]:
        """What ``node`` (a reference) was made from, as a graph. The store's raw form
        ``upstream(TYPE, ID)`` returns the list of edges."""
        if node_id is not None:
            return super().upstream(node, node_id, depth)
        return self.graph(node, "upstream", depth)

    @overload
    def downstream(self, node: str, node_id: None = None, depth: int = ...) -> LineageGraph: ...

    @overload
    def downstream(self, node: str, node_id: str, depth: int = ...) -> builtins.list[Edge]: ...

    def downstream(
        self, node: str, node_id: str | None = None, depth: int = DEFAULT_DEPTH
    ) -> LineageGraph | builtins.list[Edge]:
        """What was made from ``node`` (a reference), as a graph. The store's raw form
        ``downstream(TYPE, ID)`` returns the list of edges."""
        if node_id is not None:
            return super().downstream(node, node_id, depth)
        return self.graph(node, "downstream", depth)

    # -- OpenLineage ---------------------------------------------------------------------

    def openlineage(
        self, ref: str | None = None, *, namespace: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """OpenLineage RunEvents (COMPLETE), one per step that made something: each ingest or
        other write of a dataset version, each transform run, each training run — of the whole
        workspace, or of the graph around ``ref`` (both directions)."""
        from mloop.lineage.openlineage import export_events

        scope: builtins.list[tuple[str, str]] | None = None
        if ref is not None:
            graph = self.graph(ref, "both", MAX_DEPTH)
            scope = [(n.type, n.id) for n in graph.nodes]
        with self._db.read() as conn:
            return export_events(conn, scope, namespace or self.namespace)

    # -- labels --------------------------------------------------------------------------

    def _describe(
        self, conn: Connection, nodes: Sequence[tuple[str, str]]
    ) -> builtins.list[LineageNode]:
        """Label every node: one query per node type (in chunks), whatever their number."""
        by_type: dict[str, builtins.list[str]] = {}
        for node_type, node_id in nodes:
            by_type.setdefault(node_type, []).append(node_id)
        known: dict[tuple[str, str], LineageNode] = {}
        for node_type, ids in by_type.items():
            describe = _DESCRIBERS.get(node_type)
            if describe is None:
                continue
            for i in range(0, len(ids), CHUNK):
                for node in describe(conn, ids[i : i + CHUNK]):
                    known[(node.type, node.id)] = node
        return [known.get(node) or _unknown(*node) for node in nodes]


def _unknown(node_type: str, node_id: str) -> LineageNode:
    """A node no table describes: a source (its id is its URI), a type recorded by a newer
    part of mloop, or a thing deleted since its edges were written."""
    prefix = REF_PREFIX.get(node_type, node_type)
    if node_type == "source" or node_type not in _DESCRIBERS:
        return LineageNode(
            key=node_key(node_type, node_id),
            type=node_type,
            id=node_id,
            ref=f"{prefix}:{node_id}",
            label=node_id,
        )
    internal = node_type if node_type in ("dataset_version", "model_version") else prefix
    return LineageNode(
        key=node_key(node_type, node_id),
        type=node_type,
        id=node_id,
        ref=f"{internal}:{node_id}",
        label=f"{node_id} (no longer exists)",
        missing=True,
    )


def _dataset_versions(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    d, dv = tables.datasets, tables.dataset_versions
    rows = conn.execute(
        sa.select(dv.c.id, dv.c.version, dv.c.kind, dv.c.row_count, dv.c.created_at, d.c.name)
        .join(d, d.c.id == dv.c.dataset_id)
        .where(dv.c.id.in_(ids))
    )
    for row in rows:
        label = f"{row.name}@{row.version}"
        yield LineageNode(
            key=node_key("dataset_version", row.id),
            type="dataset_version",
            id=row.id,
            ref=f"dataset:{label}",
            label=label,
            details={
                "kind": row.kind,
                "rows": row.row_count,
                "created_at": from_ms(row.created_at).isoformat(),
            },
        )


def _runs(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    r, e = tables.runs, tables.experiments
    rows = conn.execute(
        sa.select(r.c.id, r.c.name, r.c.status, r.c.start_time, e.c.name.label("experiment"))
        .join(e, e.c.id == r.c.experiment_id)
        .where(r.c.id.in_(ids))
    )
    for row in rows:
        yield LineageNode(
            key=node_key("run", row.id),
            type="run",
            id=row.id,
            ref=f"run:{row.id}",
            label=row.name,
            details={
                "experiment": row.experiment,
                "status": row.status,
                "started_at": from_ms(row.start_time).isoformat(),
            },
        )


def _model_versions(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    m, v, a = tables.registered_models, tables.model_versions, tables.model_aliases
    rows = conn.execute(
        sa.select(v.c.id, v.c.version, v.c.model_id, v.c.flavor, m.c.name)
        .join(m, m.c.id == v.c.model_id)
        .where(v.c.id.in_(ids))
    ).all()
    aliases: dict[tuple[str, int], builtins.list[str]] = {}
    model_ids = sorted({row.model_id for row in rows})
    if model_ids:
        for model_id, alias, number in conn.execute(
            sa.select(a.c.model_id, a.c.alias, a.c.version)
            .where(a.c.model_id.in_(model_ids))
            .order_by(a.c.alias)
        ):
            aliases.setdefault((model_id, number), []).append(alias)
    for row in rows:
        label = f"{row.name}@{row.version}"
        yield LineageNode(
            key=node_key("model_version", row.id),
            type="model_version",
            id=row.id,
            ref=f"model:{label}",
            label=label,
            details={
                "flavor": row.flavor,
                "aliases": aliases.get((row.model_id, row.version), []),
            },
        )


def _transforms(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    t = tables.transforms
    rows = conn.execute(
        sa.select(t.c.id, t.c.name, t.c.version, t.c.kind, t.c.output).where(t.c.id.in_(ids))
    )
    for row in rows:
        label = f"{row.name}@{row.version}"
        yield LineageNode(
            key=node_key("transform", row.id),
            type="transform",
            id=row.id,
            ref=f"transform:{label}",
            label=label,
            details={"kind": row.kind, "output": row.output},
        )


def _suites(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    s = tables.expectation_suites
    rows = conn.execute(sa.select(s.c.id, s.c.name, s.c.version).where(s.c.id.in_(ids)))
    for row in rows:
        label = f"{row.name}@{row.version}"
        yield LineageNode(
            key=node_key("suite", row.id),
            type="suite",
            id=row.id,
            ref=f"suite:{label}",
            label=label,
        )


def _feature_views(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    d = tables.feature_definitions
    rows = conn.execute(
        sa.select(d.c.id, d.c.name, d.c.version, d.c.kind, d.c.spec).where(d.c.id.in_(ids))
    )
    for row in rows:
        label = f"{row.name}@{row.version}"
        spec = row.spec or {}
        yield LineageNode(
            key=node_key("feature_view", row.id),
            type="feature_view",
            id=row.id,
            ref=f"feature_view:{label}",
            label=label,
            details={
                "kind": "on-demand" if row.kind == "ondemand" else "view",
                "source": spec.get("source"),
                "features": [f.get("name") for f in spec.get("features", [])],
            },
        )


def _loop_runs(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    t = tables.loop_runs
    rows = conn.execute(
        sa.select(t.c.id, t.c.model_name, t.c.state, t.c.trigger, t.c.reason, t.c.started_at).where(
            t.c.id.in_(ids)
        )
    )
    for row in rows:
        yield LineageNode(
            key=node_key("loop_run", row.id),
            type="loop_run",
            id=row.id,
            ref=f"loop_run:{row.id}",
            label=f"loop pass of {row.model_name} ({row.trigger}, {row.state})",
            details={
                "model": row.model_name,
                "state": row.state,
                "trigger": row.trigger,
                "reason": row.reason,
                "started_at": from_ms(row.started_at).isoformat(),
            },
        )


def _sources(conn: Connection, ids: Sequence[str]) -> Iterable[LineageNode]:
    for source in ids:
        yield _unknown("source", source)


_DESCRIBERS = {
    "dataset_version": _dataset_versions,
    "run": _runs,
    "model_version": _model_versions,
    "transform": _transforms,
    "suite": _suites,
    "feature_view": _feature_views,
    "source": _sources,
    "loop_run": _loop_runs,
}
