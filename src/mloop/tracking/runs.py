"""Experiments and runs: params, metrics (with history), tags and artifacts."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms, to_ms
from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.core.ids import is_id, new_id
from mloop.security import AuditLog, local_actor
from mloop.storage import ArtifactStore, Database, LineageStore, safe_name, tables

RunStatus = Literal["RUNNING", "FINISHED", "FAILED", "KILLED"]
TERMINAL: frozenset[str] = frozenset({"FINISHED", "FAILED", "KILLED"})
DEFAULT_EXPERIMENT = "Default"
KEY_PATTERN = re.compile(r"^[\w\-./ :]{1,250}$")
MAX_PARAM_VALUE = 6000
MAX_NAME = 255  # run names: the width of the column on every backend
MAX_ARTIFACT_PATH = 1024


def check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key) or ".." in key.split("/"):
        raise InvalidInput(
            f"{what} key {key!r} is not allowed: 1-250 letters, digits, '_', '-', '.', '/', ':' "
            "or spaces"
        )
    return key


class Experiment(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    lifecycle_stage: str
    created_at: datetime


class ArtifactInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    digest: str
    size_bytes: int


class Run(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    experiment_id: str
    experiment: str
    name: str
    status: str
    start_time: datetime
    end_time: datetime | None
    user: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[ArtifactInfo]

    @property
    def duration_seconds(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


class MetricPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    value: float
    step: int
    timestamp: datetime


class TrackingService:
    """The tracking store. Every method is one transaction."""

    def __init__(
        self, db: Database, artifacts: ArtifactStore, audit: AuditLog, lineage: LineageStore
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._audit = audit
        self._lineage = lineage

    # -- experiments -------------------------------------------------------------------

    def get_or_create_experiment(self, name: str = DEFAULT_EXPERIMENT) -> Experiment:
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise InvalidInput("experiment name must be 1-255 characters")
        t = tables.experiments
        for _attempt in range(3):
            with self._db.read() as conn:
                row = conn.execute(sa.select(t).where(t.c.name == name)).mappings().first()
            if row is not None:
                return self._experiment(row)
            try:
                with self._db.write() as conn:
                    values = {
                        "id": new_id(),
                        "name": name,
                        "lifecycle_stage": "active",
                        "created_at": now_ms(),
                    }
                    conn.execute(t.insert().values(**values))
                    self._audit.record(conn, "experiment.create", "experiment", name)
                return self._experiment(values)
            except DBIntegrityError:
                continue
        raise Conflict(f"could not create experiment {name!r}")

    @staticmethod
    def _experiment(row: Any) -> Experiment:
        return Experiment(
            id=row["id"],
            name=row["name"],
            lifecycle_stage=row["lifecycle_stage"],
            created_at=from_ms(row["created_at"]),
        )

    def list_experiments(self) -> list[Experiment]:
        t = tables.experiments
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.created_at)).mappings().all()
        return [self._experiment(r) for r in rows]

    # -- runs --------------------------------------------------------------------------

    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Run:
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= MAX_NAME):
            raise InvalidInput(f"run name must be 1-{MAX_NAME} characters")
        exp = self.get_or_create_experiment(experiment)
        run_id = new_id()
        with self._db.write() as conn:
            conn.execute(
                tables.runs.insert().values(
                    id=run_id,
                    experiment_id=exp.id,
                    name=name or f"run-{run_id[-8:]}",
                    status="RUNNING",
                    start_time=now_ms(),
                    end_time=None,
                    user=local_actor(),
                    lifecycle_stage="active",
                )
            )
            if tags:
                self._put_tags(conn, run_id, tags)
        return self.get_run(run_id)

    def _running(self, conn: Connection, run_id: str) -> None:
        if not isinstance(run_id, str) or not is_id(run_id):
            raise InvalidInput(f"{run_id!r} is not a run id (32 hex digits)")
        status = conn.execute(
            sa.select(tables.runs.c.status).where(tables.runs.c.id == run_id)
        ).scalar()
        if status is None:
            raise NotFound(f"run {run_id!r} does not exist")
        if status in TERMINAL:
            raise Conflict(f"run {run_id} is {status}; a finished run cannot be changed")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Params are write-once: the same value again is fine, a different one is refused."""
        values = {check_key(k, "param"): str(v) for k, v in params.items()}
        for key, value in values.items():
            if len(value) > MAX_PARAM_VALUE:
                raise InvalidInput(
                    f"param {key!r} is {len(value)} characters; the limit is {MAX_PARAM_VALUE}"
                )
        t = tables.params
        with self._db.write() as conn:
            self._running(conn, run_id)
            existing = dict(
                conn.execute(
                    sa.select(t.c.key, t.c.value).where(
                        t.c.run_id == run_id, t.c.key.in_(list(values))
                    )
                ).all()
            )
            for key, value in values.items():
                if key in existing and existing[key] != value:
                    raise Conflict(
                        f"param {key!r} of run {run_id} is already {existing[key]!r}; "
                        f"params cannot change (got {value!r})"
                    )
            new = [
                {"run_id": run_id, "key": k, "value": v}
                for k, v in values.items()
                if k not in existing
            ]
            if new:
                conn.execute(t.insert(), new)

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_params(run_id, {key: value})

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        *,
        step: int = 0,
        timestamp: datetime | None = None,
    ) -> None:
        ts = now_ms() if timestamp is None else to_ms(timestamp)
        rows = []
        for key, value in metrics.items():
            check_key(key, "metric")
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"metric {key!r} value {value!r} is not a number") from exc
            if not math.isfinite(number):
                # SQLite cannot store NaN (it becomes NULL) and JSON cannot carry NaN or ±inf
                raise InvalidInput(f"metric {key!r} value {value!r} is not a finite number")
            rows.append(
                {"run_id": run_id, "key": key, "value": number, "step": int(step), "timestamp": ts}
            )
        with self._db.write() as conn:
            self._running(conn, run_id)
            if rows:
                conn.execute(tables.metrics.insert(), rows)

    def log_metric(self, run_id: str, key: str, value: float, *, step: int = 0) -> None:
        self.log_metrics(run_id, {key: value}, step=step)

    def _put_tags(self, conn: Connection, run_id: str, tags: Mapping[str, Any]) -> None:
        t = tables.tags
        for key, value in tags.items():
            check_key(key, "tag")
            conn.execute(t.delete().where(t.c.run_id == run_id, t.c.key == key))
            conn.execute(t.insert().values(run_id=run_id, key=key, value=str(value)))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        with self._db.write() as conn:
            self._running(conn, run_id)
            self._put_tags(conn, run_id, tags)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.set_tags(run_id, {key: value})

    def log_artifact_bytes(self, run_id: str, path: str, data: bytes) -> ArtifactInfo:
        name = safe_name(path)
        digest = self._artifacts.put_bytes(data)
        return self._attach(run_id, name, digest, len(data))

    def log_artifact(
        self, run_id: str, local_path: str | Path, path: str | None = None
    ) -> ArtifactInfo:
        source = Path(local_path)
        if not source.is_file():
            raise NotFound(f"file {source} does not exist")
        name = safe_name(path or source.name)
        digest = self._artifacts.put_file(source)
        return self._attach(run_id, name, digest, source.stat().st_size)

    def _attach(self, run_id: str, name: str, digest: str, size: int) -> ArtifactInfo:
        if len(name) > MAX_ARTIFACT_PATH:
            raise InvalidInput(
                f"artifact path is {len(name)} characters; the limit is {MAX_ARTIFACT_PATH}"
            )
        t = tables.run_artifacts
        with self._db.write() as conn:
            self._running(conn, run_id)
            conn.execute(t.delete().where(t.c.run_id == run_id, t.c.path == name))
            conn.execute(
                t.insert().values(run_id=run_id, path=name, digest=digest, size_bytes=size)
            )
        return ArtifactInfo(path=name, digest=digest, size_bytes=size)

    def artifact_digest(self, run_id: str, path: str) -> str:
        name = safe_name(path)
        t = tables.run_artifacts
        with self._db.read() as conn:
            digest = conn.execute(
                sa.select(t.c.digest).where(t.c.run_id == run_id, t.c.path == name)
            ).scalar()
        if digest is None:
            self.get_run(run_id)  # NotFound for an unknown run
            raise NotFound(f"run {run_id} has no artifact {name!r}")
        return str(digest)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        return self._artifacts.get_bytes(self.artifact_digest(run_id, path))

    def add_input(self, run_id: str, node: tuple[str, str], relation: str = "trained_on") -> None:
        """Record that the run consumed ``node`` (a dataset version, say)."""
        with self._db.write() as conn:
            self._running(conn, run_id)
            self._lineage.add(conn, node, ("run", run_id), relation)

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> Run:
        if status not in TERMINAL:
            raise InvalidInput(f"a run ends FINISHED, FAILED or KILLED, not {status!r}")
        with self._db.write() as conn:
            self._running(conn, run_id)
            conn.execute(
                tables.runs.update()
                .where(tables.runs.c.id == run_id)
                .values(status=status, end_time=now_ms())
            )
        return self.get_run(run_id)

    # -- reading -----------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        if not isinstance(run_id, str) or not is_id(run_id):
            raise InvalidInput(f"{run_id!r} is not a run id (32 hex digits)")
        r, e = tables.runs, tables.experiments
        with self._db.read() as conn:
            row = (
                conn.execute(
                    sa.select(r, e.c.name.label("experiment_name"))
                    .join(e, e.c.id == r.c.experiment_id)
                    .where(r.c.id == run_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"run {run_id} does not exist")
            return self._assemble(conn, [row])[0]

    def _assemble(self, conn: Connection, rows: list[Any]) -> list[Run]:
        ids = [row["id"] for row in rows]
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, tuple[int, int, float]]] = {i: {} for i in ids}
        artifacts: dict[str, list[ArtifactInfo]] = {i: [] for i in ids}
        for run_id, key, value in conn.execute(
            sa.select(tables.params.c.run_id, tables.params.c.key, tables.params.c.value).where(
                tables.params.c.run_id.in_(ids)
            )
        ):
            params[run_id][key] = value
        for run_id, key, value in conn.execute(
            sa.select(tables.tags.c.run_id, tables.tags.c.key, tables.tags.c.value).where(
                tables.tags.c.run_id.in_(ids)
            )
        ):
            tags[run_id][key] = value
        m = tables.metrics
        for run_id, key, value, step, ts in conn.execute(
            sa.select(m.c.run_id, m.c.key, m.c.value, m.c.step, m.c.timestamp).where(
                m.c.run_id.in_(ids)
            )
        ):
            current = metrics[run_id].get(key)
            if current is None or (step, ts) >= (current[0], current[1]):
                metrics[run_id][key] = (step, ts, value)
        a = tables.run_artifacts
        for run_id, path, digest, size in conn.execute(
            sa.select(a.c.run_id, a.c.path, a.c.digest, a.c.size_bytes)
            .where(a.c.run_id.in_(ids))
            .order_by(a.c.path)
        ):
            artifacts[run_id].append(ArtifactInfo(path=path, digest=digest, size_bytes=size))
        return [
            Run(
                id=row["id"],
                experiment_id=row["experiment_id"],
                experiment=row["experiment_name"],
                name=row["name"],
                status=row["status"],
                start_time=from_ms(row["start_time"]),
                end_time=None if row["end_time"] is None else from_ms(row["end_time"]),
                user=row["user"],
                params=params[row["id"]],
                metrics={k: v[2] for k, v in sorted(metrics[row["id"]].items())},
                tags=tags[row["id"]],
                artifacts=artifacts[row["id"]],
            )
            for row in rows
        ]

    def list_runs(
        self, experiment: str | None = None, *, status: str | None = None, limit: int = 50
    ) -> list[Run]:
        """Newest first."""
        r, e = tables.runs, tables.experiments
        query = (
            sa.select(r, e.c.name.label("experiment_name"))
            .join(e, e.c.id == r.c.experiment_id)
            .order_by(r.c.start_time.desc(), r.c.id.desc())
            .limit(max(1, min(limit, 10_000)))
        )
        if experiment is not None:
            query = query.where(e.c.name == experiment)
        if status is not None:
            if status.upper() not in ("RUNNING", *sorted(TERMINAL)):
                raise InvalidInput(
                    f"unknown run status {status!r}: use RUNNING, FINISHED, FAILED or KILLED"
                )
            query = query.where(r.c.status == status.upper())
        with self._db.read() as conn:
            if experiment is not None:
                exists = conn.execute(sa.select(e.c.id).where(e.c.name == experiment)).scalar()
                if exists is None:
                    raise NotFound(f"experiment {experiment!r} does not exist")
            rows = conn.execute(query).mappings().all()
            return self._assemble(conn, list(rows))

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        self.get_run(run_id)
        m = tables.metrics
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(m.c.value, m.c.step, m.c.timestamp)
                .where(m.c.run_id == run_id, m.c.key == key)
                .order_by(m.c.step, m.c.timestamp, m.c.id)
            ).all()
        return [MetricPoint(key=key, value=v, step=s, timestamp=from_ms(ts)) for v, s, ts in rows]
