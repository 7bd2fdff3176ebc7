"""The lineage graph as OpenLineage RunEvents (https://openlineage.io/spec/2-0-2/OpenLineage.json).

One COMPLETE event per step that made something:

- each dataset version not made by a transform (an ingest, an append, a validation split):
  job ``<kind>.<dataset>``, inputs its sources and parent versions, output the version;
- each transform run: job ``transform.<name>``, inputs the input versions, output the version
  it wrote, the code as a ``sql`` or ``sourceCode`` job facet;
- each training run: job ``train.<experiment>``, inputs the versions it read, outputs the model
  versions registered from it (as datasets named ``models/<name>``).

Dataset versions are datasets of namespace ``mloop://<workspace>`` named by their dataset, with
``schema`` and ``version`` facets; sources keep their own namespace (``file``, ``s3://bucket``,
...). Run ids are mloop's own ids (UUIDv7), written as UUIDs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mloop import __version__
from mloop.core.clock import from_ms
from mloop.storage import tables

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
PRODUCER = f"https://github.com/mloop/mloop/tree/v{__version__}"
_FACET_SPEC = "https://openlineage.io/spec/facets/"
FACET_SCHEMAS = {
    "schema": "1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "version": "1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "outputStatistics": (
        "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
    ),
    "jobType": "2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "sql": "1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet",
    "sourceCode": "1-0-1/SourceCodeJobFacet.json#/$defs/SourceCodeJobFacet",
    "documentation": "1-0-1/DocumentationJobFacet.json#/$defs/DocumentationJobFacet",
}
CHUNK = 500


def facet(name: str, **fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": _FACET_SPEC + FACET_SCHEMAS[name], **fields}


def run_uuid(identifier: str, namespace: str) -> str:
    """mloop ids are UUIDv7 in 32 hex digits; anything else gets a stable name-based UUID."""
    try:
        return str(uuid.UUID(hex=identifier))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{identifier}"))


def event_time(ms: int) -> str:
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def source_dataset(source: str) -> dict[str, Any]:
    """OpenLineage's naming: a local file is (``file``, path); a URL is (scheme://host, path);
    anything else (``upload:sha256:…``) is (its scheme, the rest)."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return {"namespace": "file", "name": parsed.path or source}
    if parsed.scheme and parsed.netloc:
        name = parsed.path.lstrip("/") or "/"
        if parsed.query:
            name += f"?{parsed.query}"
        return {"namespace": f"{parsed.scheme}://{parsed.netloc}", "name": name}
    scheme, colon, rest = source.partition(":")
    if colon and rest:
        return {"namespace": scheme, "name": rest}
    return {"namespace": "mloop-source", "name": source}


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    unique = sorted(set(ids))
    for i in range(0, len(unique), CHUNK):
        yield unique[i : i + CHUNK]


def _versions(conn: Connection, ids: Iterable[str] | None) -> dict[str, dict[str, Any]]:
    d, dv = tables.datasets, tables.dataset_versions
    query = sa.select(
        dv.c.id,
        dv.c.version,
        dv.c.kind,
        dv.c.schema,
        dv.c.row_count,
        dv.c.size_bytes,
        dv.c.created_at,
        d.c.name,
    ).join(d, d.c.id == dv.c.dataset_id)
    rows: list[Any] = []
    if ids is None:
        rows = list(conn.execute(query))
    else:
        for chunk in _chunks(ids):
            rows += conn.execute(query.where(dv.c.id.in_(chunk))).all()
    return {row.id: row._asdict() for row in rows}


def _edges(
    conn: Connection, near: str, near_type: str, ids: Iterable[str], far_types: Sequence[str]
) -> list[Any]:
    """Edges whose ``near`` end (``src`` or ``dst``) is one of ``ids`` of ``near_type`` and whose
    other end is of one of ``far_types``."""
    t = tables.lineage_edges
    far = "src" if near == "dst" else "dst"
    rows: list[Any] = []
    for chunk in _chunks(ids):
        rows += conn.execute(
            sa.select(t)
            .where(
                t.c[f"{near}_type"] == near_type,
                t.c[f"{near}_id"].in_(chunk),
                t.c[f"{far}_type"].in_(list(far_types)),
            )
            .order_by(t.c.id)
        ).all()
    return rows


def _dataset(namespace: str, info: dict[str, Any], output: bool) -> dict[str, Any]:
    fields = [
        {"name": column["name"], "type": column["type"]}
        for column in (info["schema"] or {}).get("columns", [])
    ]
    entry: dict[str, Any] = {
        "namespace": namespace,
        "name": info["name"],
        "facets": {
            "schema": facet("schema", fields=fields),
            "version": facet("version", datasetVersion=str(info["version"])),
        },
    }
    if output:
        entry["outputFacets"] = {
            "outputStatistics": facet(
                "outputStatistics", rowCount=info["row_count"], size=info["size_bytes"]
            )
        }
    return entry


def _event(
    namespace: str,
    run_id: str,
    job: str,
    job_type: str,
    at_ms: int,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    job_facets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    facets = {
        "jobType": facet("jobType", processingType="BATCH", integration="MLOOP", jobType=job_type)
    }
    facets.update(job_facets or {})
    return {
        "eventType": "COMPLETE",
        "eventTime": event_time(at_ms),
        "run": {"runId": run_uuid(run_id, namespace)},
        "job": {"namespace": namespace, "name": job, "facets": facets},
        "inputs": inputs,
        "outputs": outputs,
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    }


def export_events(
    conn: Connection, scope: Sequence[tuple[str, str]] | None, namespace: str
) -> list[dict[str, Any]]:
    """The events of every producing step (``scope`` None), or of the steps that made the
    dataset versions and runs in ``scope``; oldest first."""
    if scope is None:
        versions = _versions(conn, None)
        t = tables.lineage_edges
        run_ids = set(
            conn.execute(sa.select(t.c.dst_id).where(t.c.dst_type == "run")).scalars()
        ) | set(conn.execute(sa.select(t.c.src_id).where(t.c.src_type == "run")).scalars())
    else:
        versions = _versions(conn, [i for kind, i in scope if kind == "dataset_version"])
        run_ids = {i for kind, i in scope if kind == "run"}

    # transform runs that wrote these versions, and their transforms
    tr, tf = tables.transform_runs, tables.transforms
    transform_runs: list[Any] = []
    for chunk in _chunks(versions):
        transform_runs += conn.execute(
            sa.select(tr).where(tr.c.output_version_id.in_(chunk)).order_by(tr.c.id)
        ).all()
    transforms = {}
    for chunk in _chunks(row.transform_id for row in transform_runs):
        for row in conn.execute(sa.select(tf).where(tf.c.id.in_(chunk))):
            transforms[row.id] = row
    made_by_transform = {row.output_version_id for row in transform_runs}

    # what went into the other versions and into the runs, and what the runs registered
    into_versions = _edges(
        conn,
        "dst",
        "dataset_version",
        [v for v in versions if v not in made_by_transform],
        ["source", "dataset_version"],
    )
    into_runs = _edges(conn, "dst", "run", run_ids, ["dataset_version"])
    out_of_runs = _edges(conn, "src", "run", run_ids, ["model_version"])
    runs = {}
    r, e = tables.runs, tables.experiments
    for chunk in _chunks(run_ids):
        for row in conn.execute(
            sa.select(r.c.id, r.c.name, r.c.start_time, r.c.end_time, e.c.name.label("exp"))
            .join(e, e.c.id == r.c.experiment_id)
            .where(r.c.id.in_(chunk))
        ):
            runs[row.id] = row
    models = {}
    m, mv = tables.registered_models, tables.model_versions
    for chunk in _chunks(edge.dst_id for edge in out_of_runs):
        for row in conn.execute(
            sa.select(mv.c.id, mv.c.version, mv.c.created_at, m.c.name)
            .join(m, m.c.id == mv.c.model_id)
            .where(mv.c.id.in_(chunk))
        ):
            models[row.id] = row

    # versions read but not in scope (a transform's other inputs, a parent): their facets
    wanted = {i["id"] for row in transform_runs for i in row.inputs}
    wanted |= {edge.src_id for edge in into_versions if edge.src_type == "dataset_version"}
    wanted |= {edge.src_id for edge in into_runs}
    scoped = list(versions)
    versions.update(_versions(conn, wanted - set(versions)))

    events: list[dict[str, Any]] = []
    parents: dict[str, list[Any]] = {}
    for edge in into_versions:
        parents.setdefault(edge.dst_id, []).append(edge)
    for version_id in scoped:
        if version_id in made_by_transform:
            continue
        info = versions[version_id]
        inputs = []
        for edge in parents.get(version_id, []):
            if edge.src_type == "source":
                inputs.append(source_dataset(edge.src_id))
            elif edge.src_id in versions:
                inputs.append(_dataset(namespace, versions[edge.src_id], False))
        events.append(
            _event(
                namespace,
                version_id,
                f"{info['kind']}.{info['name']}",
                str(info["kind"]).upper(),
                info["created_at"],
                inputs,
                [_dataset(namespace, info, True)],
            )
        )
    for row in transform_runs:
        the_transform = transforms[row.transform_id]
        job_facets: dict[str, Any] = {}
        if the_transform.kind == "sql":
            job_facets["sql"] = facet("sql", query=the_transform.code, dialect="duckdb")
        else:
            job_facets["sourceCode"] = facet(
                "sourceCode", language="python", sourceCode=the_transform.code
            )
        if the_transform.description:
            job_facets["documentation"] = facet(
                "documentation", description=the_transform.description
            )
        events.append(
            _event(
                namespace,
                row.id,
                f"transform.{the_transform.name}",
                "TRANSFORM",
                row.created_at,
                [
                    _dataset(namespace, versions[i["id"]], False)
                    for i in row.inputs
                    if i["id"] in versions
                ],
                [_dataset(namespace, versions[row.output_version_id], True)],
                job_facets,
            )
        )
    read: dict[str, list[str]] = {}
    for edge in into_runs:
        read.setdefault(edge.dst_id, []).append(edge.src_id)
    registered: dict[str, list[str]] = {}
    for edge in out_of_runs:
        registered.setdefault(edge.src_id, []).append(edge.dst_id)
    for run_id, run in runs.items():
        outputs = [
            {
                "namespace": namespace,
                "name": f"models/{models[mid].name}",
                "facets": {"version": facet("version", datasetVersion=str(models[mid].version))},
            }
            for mid in registered.get(run_id, [])
            if mid in models
        ]
        events.append(
            _event(
                namespace,
                run_id,
                f"train.{run.exp}",
                "TRAINING",
                run.end_time or run.start_time,
                [
                    _dataset(namespace, versions[v], False)
                    for v in dict.fromkeys(read.get(run_id, []))
                    if v in versions
                ],
                outputs,
            )
        )
    events.sort(key=lambda ev: (ev["eventTime"], ev["run"]["runId"]))
    return events
