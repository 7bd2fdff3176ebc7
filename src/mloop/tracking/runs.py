"""The tracking store: experiments and runs, their params, metrics, tags, inputs and artifacts.

Every public method is one transaction. ``apply`` is the workhorse: a batch of operations
(create a run, log params/metrics/tags, update a run) validated up front and written together,
so a client can send a thousand runs' worth of logging in one round trip.

Metric values follow MLflow: NaN is kept (stored as 0 with a NaN flag), ±infinity is stored as
the largest finite double of that sign, and the same (key, value, step, timestamp) logged twice
is stored once, which makes a retried batch harmless. The latest value of each metric is kept
in ``latest_metrics`` as it is written, so search never scans the history.
"""

from __future__ import annotations

import builtins
import functools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms, to_ms
from mloop.core.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mloop.core.ids import is_id, new_id
from mloop.security import AuditLog, local_actor
from mloop.storage import ArtifactStore, Database, LineageStore, safe_name, tables
from mloop.tracking import search
from mloop.tracking.records import (
    DEFAULT_EXPERIMENT,
    DEFAULT_EXPERIMENT_ID,
    TERMINAL,
    ArtifactInfo,
    Comparison,
    CreateRun,
    Experiment,
    LogBatch,
    MetricPoint,
    MetricValue,
    Operation,
    Page,
    Run,
    RunInput,
    RunStatus,
    UpdateRun,
    ViewType,
)

KEY_PATTERN = re.compile(r"[\w\-./ :]{1,250}")
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_NAME = 255  # run and experiment names: the width of the column on every backend
MAX_ARTIFACT_PATH = 1024
MAX_FLOAT = 1.7976931348623157e308
BATCH_MEMORY_MS = 7 * 24 * 3600 * 1000  # how long applied batch ids are remembered
STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
VIEWS = {"active": ("active",), "deleted": ("deleted",), "all": ("active", "deleted")}


def check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key) or ".." in key.split("/"):
        raise InvalidInput(
            f"{what} key {key!r} is not allowed: 1-250 letters, digits, '_', '-', '.', '/', ':' "
            "or spaces"
        )
    return key


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not is_id(run_id):
        raise InvalidInput(f"{run_id!r} is not a run id (32 hex digits)")
    return run_id


def stored_metric(value: float) -> tuple[float, bool]:
    """MLflow's storage of a metric value: (value, is_nan)."""
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (MAX_FLOAT if value > 0 else -MAX_FLOAT), False
    return value, False


def validate_tags(tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        check_key(key, "tag")
        if len(value) > MAX_TAG_VALUE:
            raise InvalidInput(
                f"tag {key!r} is {len(value)} characters; the limit is {MAX_TAG_VALUE}"
            )


def validate_params(params: Mapping[str, str]) -> None:
    for key, value in params.items():
        check_key(key, "param")
        if len(value) > MAX_PARAM_VALUE:
            raise InvalidInput(
                f"param {key!r} is {len(value)} characters; the limit is {MAX_PARAM_VALUE}"
            )


def validate_operation(op: Operation) -> None:
    """Everything that can be checked without the database: ids, keys, lengths, statuses."""
    if isinstance(op, CreateRun):
        if op.run_id is not None:
            check_run_id(op.run_id)
        if op.parent_run_id is not None:
            check_run_id(op.parent_run_id)
        if op.name is not None and not 0 < len(op.name) <= MAX_NAME:
            raise InvalidInput(f"run name must be 1-{MAX_NAME} characters")
        validate_tags(op.tags)
    elif isinstance(op, LogBatch):
        check_run_id(op.run_id)
        for metric in op.metrics:
            check_key(metric.key, "metric")
            if isinstance(metric.step, bool):
                raise InvalidInput(f"metric {metric.key!r} step must be an integer")
        validate_params(op.params)
        validate_tags(op.tags)
    else:
        check_run_id(op.run_id)
        if op.name is not None and not 0 < len(op.name) <= MAX_NAME:
            raise InvalidInput(f"run name must be 1-{MAX_NAME} characters")
        if op.status is not None and op.status not in STATUSES:
            raise InvalidInput(f"unknown run status {op.status!r}")


def _view(view: ViewType | str) -> tuple[str, ...]:
    try:
        return VIEWS[str(view).lower()]
    except KeyError:
        raise InvalidInput(f"view must be active, deleted or all, not {view!r}") from None


def _insert(conn: Connection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


@dataclass
class _Batch:
    """What one ``apply`` learned as it went, so it does not ask the database twice."""

    experiments: set[str] = field(default_factory=set)  # checked to exist and be active
    fresh: set[str] = field(default_factory=set)  # runs this batch created: nothing stored yet
    params: dict[str, dict[str, str]] = field(default_factory=dict)  # params seen, per run


# Statements built once: SQLAlchemy then reuses their compiled SQL on every call.
_EXPERIMENT_STAGE = sa.select(tables.experiments.c.lifecycle_stage).where(
    tables.experiments.c.id == sa.bindparam("id")
)
_RUN_EXPERIMENT = sa.select(tables.runs.c.experiment_id).where(
    tables.runs.c.id == sa.bindparam("id")
)
_PARAM_INSERT = tables.params.insert()
_STATEMENTS: dict[tuple[str, str], Any] = {}
_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_EXPERIMENTS_BY_IDS = sa.select(tables.experiments.c.id).where(tables.experiments.c.id.in_(_IDS))
_RUNS_BY_IDS = (
    sa.select(tables.runs, tables.experiments.c.name.label("experiment_name"))
    .join(tables.experiments, tables.experiments.c.id == tables.runs.c.experiment_id)
    .where(tables.runs.c.id.in_(_IDS))
)
# params and tags of a page of runs in one round trip
_PARAMS_AND_TAGS_BY_RUNS = sa.union_all(
    sa.select(
        tables.params.c.run_id,
        tables.params.c.key,
        tables.params.c.value,
        sa.literal(0).label("kind"),
    ).where(tables.params.c.run_id.in_(_IDS)),
    sa.select(
        tables.tags.c.run_id, tables.tags.c.key, tables.tags.c.value, sa.literal(1).label("kind")
    ).where(tables.tags.c.run_id.in_(_IDS)),
)
_METRICS_BY_RUNS = sa.select(
    tables.latest_metrics.c.run_id,
    tables.latest_metrics.c.key,
    tables.latest_metrics.c.value,
    tables.latest_metrics.c.is_nan,
).where(tables.latest_metrics.c.run_id.in_(_IDS))
_INPUTS_BY_RUNS = (
    sa.select(tables.run_inputs)
    .where(tables.run_inputs.c.run_id.in_(_IDS))
    .order_by(tables.run_inputs.c.id)
)
_ARTIFACTS_BY_RUNS = (
    sa.select(
        tables.run_artifacts.c.run_id,
        tables.run_artifacts.c.path,
        tables.run_artifacts.c.digest,
        tables.run_artifacts.c.size_bytes,
    )
    .where(tables.run_artifacts.c.run_id.in_(_IDS))
    .order_by(tables.run_artifacts.c.path)
)


@dataclass(frozen=True)
class _SearchPlan:
    """The statements of one search (filter, order, experiments, view), built once and reused:
    SQLAlchemy then finds their compiled SQL in its cache instead of building it again."""

    by_metric: bool
    plain: sa.Select[Any]  # every match, in full order
    lacks: sa.Select[Any]  # by metric: the matches without the metric, in order
    boundary: dict[bool, sa.Select[Any]]  # by metric: the key ``offset`` entries on (from start?)
    has_in: dict[tuple[bool, bool], sa.Select[Any]]  # matches in a range of the metric's index
    # PostgreSQL: the ids in a range first, then the matches among those ids (an array
    # parameter): a plan that holds whether or not the tables have statistics
    range_ids: dict[tuple[bool, bool], sa.Select[Any]]
    has_among: dict[tuple[bool, bool], sa.Select[Any]]


@functools.lru_cache(maxsize=256)
def _search_plan(
    filter_string: str, order_by: tuple[str, ...], experiment_ids: tuple[str, ...] | None, view: str
) -> _SearchPlan:
    clauses = search.parse_filter(filter_string)
    order = search.parse_order_by(list(order_by))
    r = tables.runs
    conditions: builtins.list[sa.ColumnElement[bool]] = [r.c.lifecycle_stage.in_(_view(view))]
    if experiment_ids is not None:
        conditions.append(r.c.experiment_id.in_(list(experiment_ids)))
    conditions += [search.clause_condition(c) for c in clauses]
    plain = search.order_columns(sa.select(r.c.id).select_from(r).where(*conditions), order)
    if not order or order[0].ident.kind != "metric":
        return _SearchPlan(False, plain, plain, {}, {}, {}, {})
    first = order[0]
    lm = tables.latest_metrics
    has, lacks, fm = search.by_metric_queries(conditions, order)
    key = sa.tuple_(lm.c.is_nan, lm.c.value)
    start = sa.tuple_(sa.bindparam("start_nan"), sa.bindparam("start_value"))
    end = sa.tuple_(sa.bindparam("end_nan"), sa.bindparam("end_value"))
    after_start = key > start if first.ascending else key < start
    direction = (
        (lm.c.is_nan.asc(), lm.c.value.asc())
        if first.ascending
        else (lm.c.is_nan.desc(), lm.c.value.desc())
    )
    walk = sa.select(lm.c.is_nan, lm.c.value).where(lm.c.key == first.ident.key)
    boundary = {
        False: walk.order_by(*direction).limit(1),
        True: walk.where(after_start).order_by(*direction).limit(1),
    }
    # the chunk bounds go on the joined metric itself, so the database walks its index from
    # there (an IN over the chunk's ids left PostgreSQL hashing the whole metric)
    joined = sa.tuple_(fm.c.is_nan, fm.c.value)
    has_in, range_ids, has_among = {}, {}, {}
    for from_start in (False, True):
        for to_end in (False, True):
            scope: builtins.list[sa.ColumnElement[bool]] = [lm.c.key == first.ident.key]
            on_joined: builtins.list[sa.ColumnElement[bool]] = [fm.c.run_id.is_not(None)]
            if from_start:
                scope.append(key > start if first.ascending else key < start)
                on_joined.append(joined > start if first.ascending else joined < start)
            if to_end:
                scope.append(key <= end if first.ascending else key >= end)
                on_joined.append(joined <= end if first.ascending else joined >= end)
            in_range = sa.select(lm.c.run_id).where(*scope)
            has_in[(from_start, to_end)] = has.where(r.c.id.in_(in_range), *on_joined)
            range_ids[(from_start, to_end)] = in_range
            has_among[(from_start, to_end)] = has.where(
                r.c.id == sa.any_(sa.bindparam("chunk_ids", type_=postgresql.ARRAY(sa.String))),
                *on_joined,
            )
    return _SearchPlan(True, plain, lacks, boundary, has_in, range_ids, has_among)


_UPDATES: dict[tuple[str, ...], Any] = {}


def _statement(conn: Connection, name: str) -> Any:
    key = (conn.dialect.name, name)
    found = _STATEMENTS.get(key)
    if found is None:
        # RETURNING says whether a row went in (psycopg reports no rowcount for these)
        if name == "insert_run":
            found = (
                _insert(conn, tables.runs)
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(tables.runs.c.id)
            )
        elif name == "claim_batch":
            found = (
                _insert(conn, tables.tracking_batches)
                .on_conflict_do_nothing()
                .returning(tables.tracking_batches.c.id)
            )
        elif name == "insert_metric":
            found = _insert(conn, tables.metrics).on_conflict_do_nothing()
        elif name == "upsert_latest":
            upsert = _insert(conn, tables.latest_metrics)
            lm = tables.latest_metrics
            incoming = sa.tuple_(
                upsert.excluded.step, upsert.excluded.timestamp, upsert.excluded.value
            )
            found = upsert.on_conflict_do_update(
                index_elements=["run_id", "key"],
                set_={
                    "value": upsert.excluded.value,
                    "step": upsert.excluded.step,
                    "timestamp": upsert.excluded.timestamp,
                    "is_nan": upsert.excluded.is_nan,
                },
                where=incoming > sa.tuple_(lm.c.step, lm.c.timestamp, lm.c.value),
            )
        elif name == "upsert_tag":
            upsert = _insert(conn, tables.tags)
            found = upsert.on_conflict_do_update(
                index_elements=["run_id", "key"], set_={"value": upsert.excluded.value}
            )
        else:  # pragma: no cover
            raise KeyError(name)
        _STATEMENTS[key] = found
    return found


class TrackingService:
    """The local tracking store (SQLite or PostgreSQL, through ``Database``)."""

    def __init__(
        self, db: Database, artifacts: ArtifactStore, audit: AuditLog, lineage: LineageStore
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._audit = audit
        self._lineage = lineage

    # == experiments ===========================================================================

    @staticmethod
    def _check_experiment_name(name: str) -> str:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InvalidInput(f"experiment name must be 1-{MAX_NAME} characters")
        return name

    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> Experiment:
        self._check_experiment_name(name)
        for key in tags or {}:
            check_key(key, "experiment tag")
        e = tables.experiments
        try:
            with self._db.write() as conn:
                if conn.execute(sa.select(e.c.id).where(e.c.name == name)).first() is not None:
                    raise AlreadyExists(f"experiment {name!r} already exists")
                experiment_id = DEFAULT_EXPERIMENT_ID if name == DEFAULT_EXPERIMENT else new_id()
                now = now_ms()
                conn.execute(
                    e.insert().values(
                        id=experiment_id,
                        name=name,
                        lifecycle_stage="active",
                        created_at=now,
                        updated_at=now,
                    )
                )
                if tags:
                    conn.execute(
                        tables.experiment_tags.insert(),
                        [
                            {"experiment_id": experiment_id, "key": k, "value": str(v)}
                            for k, v in tags.items()
                        ],
                    )
                self._audit.record(conn, "experiment.create", "experiment", name)
        except DBIntegrityError as exc:
            raise AlreadyExists(f"experiment {name!r} already exists") from exc
        return self.get_experiment(experiment_id)

    def get_or_create_experiment(self, name: str = DEFAULT_EXPERIMENT) -> Experiment:
        self._check_experiment_name(name)
        for _attempt in range(3):
            try:
                return self.get_experiment_by_name(name)
            except NotFound:
                pass
            try:
                return self.create_experiment(name)
            except AlreadyExists:
                continue  # created by someone else in between: read it
        raise Conflict(f"could not create experiment {name!r}")

    def _experiments(self, conn: Connection, where: sa.ColumnElement[bool]) -> list[Experiment]:
        e, t = tables.experiments, tables.experiment_tags
        rows = conn.execute(sa.select(e).where(where)).mappings().all()
        ids = [r["id"] for r in rows]
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        if ids:
            for experiment_id, key, value in conn.execute(
                sa.select(t.c.experiment_id, t.c.key, t.c.value).where(t.c.experiment_id.in_(ids))
            ):
                tags[experiment_id][key] = value
        return [
            Experiment(
                id=r["id"],
                name=r["name"],
                lifecycle_stage=r["lifecycle_stage"],
                created_at=from_ms(r["created_at"]),
                updated_at=None if r["updated_at"] is None else from_ms(r["updated_at"]),
                tags=tags[r["id"]],
            )
            for r in rows
        ]

    def get_experiment(self, experiment_id: str) -> Experiment:
        if not isinstance(experiment_id, str) or not experiment_id or len(experiment_id) > 32:
            raise InvalidInput(f"{experiment_id!r} is not an experiment id")
        with self._db.read() as conn:
            found = self._experiments(conn, tables.experiments.c.id == experiment_id)
        if not found:
            raise NotFound(f"experiment {experiment_id!r} does not exist")
        return found[0]

    def get_experiment_by_name(self, name: str) -> Experiment:
        with self._db.read() as conn:
            found = self._experiments(conn, tables.experiments.c.name == name)
        if not found:
            raise NotFound(f"experiment {name!r} does not exist")
        return found[0]

    def search_experiments(
        self,
        *,
        view: ViewType | str = "active",
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        """Experiments, filtered by ``name``, ``creation_time``, ``last_update_time`` and
        ``tags.KEY`` (MLflow's grammar), newest first unless ordered otherwise."""
        e = tables.experiments
        limit = search.check_max_results(max_results)
        offset = search.decode_page_token(page_token)
        conditions: list[sa.ColumnElement[bool]] = [e.c.lifecycle_stage.in_(_view(view))]
        for clause in _experiment_clauses(filter_string):
            conditions.append(clause)
        order_terms = _experiment_order(order_by)
        query = (
            sa.select(e.c.id)
            .where(*conditions)
            .order_by(*order_terms)
            .limit(limit + 1)
            .offset(offset)
        )
        with self._db.read() as conn:
            ids = [r[0] for r in conn.execute(query)]
            page_ids = ids[:limit]
            found = {x.id: x for x in self._experiments(conn, e.c.id.in_(page_ids))}
        items = [found[i] for i in page_ids]
        token = search.encode_page_token(offset + limit) if len(ids) > limit else None
        return Page[Experiment](items=items, next_page_token=token)

    def list_experiments(self) -> builtins.list[Experiment]:
        """Every active experiment, oldest first."""
        e = tables.experiments
        with self._db.read() as conn:
            found = self._experiments(conn, e.c.lifecycle_stage == "active")
        return sorted(found, key=lambda x: (x.created_at, x.id))

    def _experiment_row(self, conn: Connection, experiment_id: str) -> Any:
        e = tables.experiments
        row = conn.execute(sa.select(e).where(e.c.id == experiment_id)).mappings().first()
        if row is None:
            raise NotFound(f"experiment {experiment_id!r} does not exist")
        return row

    def rename_experiment(self, experiment_id: str, new_name: str) -> Experiment:
        self._check_experiment_name(new_name)
        e = tables.experiments
        try:
            with self._db.write() as conn:
                row = self._experiment_row(conn, experiment_id)
                if row["lifecycle_stage"] != "active":
                    raise Conflict(f"experiment {experiment_id!r} is deleted; restore it first")
                taken = conn.execute(
                    sa.select(e.c.id).where(e.c.name == new_name, e.c.id != experiment_id)
                ).first()
                if taken is not None:
                    raise AlreadyExists(f"experiment {new_name!r} already exists")
                conn.execute(
                    e.update()
                    .where(e.c.id == experiment_id)
                    .values(name=new_name, updated_at=now_ms())
                )
                self._audit.record(
                    conn,
                    "experiment.rename",
                    "experiment",
                    experiment_id,
                    {"from": row["name"], "to": new_name},
                )
        except DBIntegrityError as exc:
            raise AlreadyExists(f"experiment {new_name!r} already exists") from exc
        return self.get_experiment(experiment_id)

    def _set_experiment_stage(self, experiment_id: str, stage: str) -> Experiment:
        if experiment_id == DEFAULT_EXPERIMENT_ID and stage == "deleted":
            raise InvalidInput("the Default experiment (id 0) cannot be deleted")
        e, r = tables.experiments, tables.runs
        with self._db.write() as conn:
            self._experiment_row(conn, experiment_id)
            now = now_ms()
            conn.execute(
                e.update()
                .where(e.c.id == experiment_id)
                .values(lifecycle_stage=stage, updated_at=now)
            )
            # its runs go and come back with it, as in MLflow
            conn.execute(
                r.update()
                .where(
                    r.c.experiment_id == experiment_id,
                    r.c.lifecycle_stage == ("active" if stage == "deleted" else "deleted"),
                )
                .values(lifecycle_stage=stage, deleted_time=now if stage == "deleted" else None)
            )
            action = "experiment.delete" if stage == "deleted" else "experiment.restore"
            self._audit.record(conn, action, "experiment", experiment_id)
        return self.get_experiment(experiment_id)

    def delete_experiment(self, experiment_id: str) -> Experiment:
        """Mark it and its runs deleted (hidden from active views); restore brings both back."""
        return self._set_experiment_stage(experiment_id, "deleted")

    def restore_experiment(self, experiment_id: str) -> Experiment:
        return self._set_experiment_stage(experiment_id, "active")

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        check_key(key, "experiment tag")
        t = tables.experiment_tags
        with self._db.write() as conn:
            self._experiment_row(conn, experiment_id)
            conn.execute(t.delete().where(t.c.experiment_id == experiment_id, t.c.key == key))
            conn.execute(t.insert().values(experiment_id=experiment_id, key=key, value=str(value)))

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        t = tables.experiment_tags
        with self._db.write() as conn:
            self._experiment_row(conn, experiment_id)
            gone = conn.execute(
                t.delete().where(t.c.experiment_id == experiment_id, t.c.key == key)
            ).rowcount
        if not gone:
            raise NotFound(f"experiment {experiment_id!r} has no tag {key!r}")

    # == writing runs ==========================================================================

    def apply(self, operations: Sequence[Operation], *, batch_id: str | None = None) -> None:
        """Apply create/log/update operations in order, in one transaction: all or nothing.

        With a ``batch_id`` the batch is applied once: sending it again (a client that did not
        hear the answer) is acknowledged without applying it twice."""
        for op in operations:
            validate_operation(op)
        if batch_id is not None and not (0 < len(batch_id) <= 64):
            raise InvalidInput("batch_id is 1-64 characters")
        if not operations:
            return
        last: DBIntegrityError | None = None
        for _attempt in range(3):
            try:
                with self._db.write() as conn:
                    if batch_id is not None and not self._claim_batch(conn, batch_id):
                        return  # applied before: the client is retrying
                    self._apply(conn, operations)
                return
            except DBIntegrityError as exc:
                # a concurrent writer logged the same new param or created the same run: the
                # retry reads what it wrote and either agrees or says what conflicts
                last = exc
                continue
        raise Conflict(f"could not apply the batch: {last.orig if last else 'conflict'}")

    @staticmethod
    def _claim_batch(conn: Connection, batch_id: str) -> bool:
        """Record ``batch_id`` as applied (in the batch's own transaction); False if it was."""
        now = now_ms()
        claimed = (
            conn.execute(
                _statement(conn, "claim_batch"), {"id": batch_id, "applied_at": now}
            ).first()
            is not None
        )
        if claimed and int.from_bytes(os.urandom(2), "big") < 64:  # now and then, prune
            tb = tables.tracking_batches
            conn.execute(tb.delete().where(tb.c.applied_at < now - BATCH_MEMORY_MS))
        return bool(claimed)

    def _apply(self, conn: Connection, operations: Sequence[Operation]) -> None:
        batch = _Batch()
        for op in operations:
            if isinstance(op, CreateRun):
                self._create(conn, op, batch)
            elif isinstance(op, LogBatch):
                if op.run_id not in batch.fresh:
                    self._writable(conn, op.run_id)
                self._log(conn, op.run_id, op.metrics, op.params, op.tags, batch)
            else:
                self._update(conn, op, fresh=op.run_id in batch.fresh)

    def _create(self, conn: Connection, op: CreateRun, batch: _Batch) -> str:
        if op.experiment_id not in batch.experiments:
            stage = conn.execute(_EXPERIMENT_STAGE, {"id": op.experiment_id}).scalar()
            if stage is None:
                raise NotFound(f"experiment {op.experiment_id!r} does not exist")
            if stage != "active":
                raise Conflict(f"experiment {op.experiment_id!r} is deleted; restore it first")
            batch.experiments.add(op.experiment_id)
        run_id = op.run_id or new_id()
        if op.parent_run_id is not None:
            parent = conn.execute(_RUN_EXPERIMENT, {"id": op.parent_run_id}).first()
            if parent is None:
                raise NotFound(f"parent run {op.parent_run_id} does not exist")
        inserted = (
            conn.execute(
                _statement(conn, "insert_run"),
                {
                    "id": run_id,
                    "experiment_id": op.experiment_id,
                    "name": op.name or f"run-{run_id[-8:]}",
                    "status": "RUNNING",
                    "start_time": op.start_time if op.start_time is not None else now_ms(),
                    "end_time": None,
                    "user": op.user or local_actor(),
                    "lifecycle_stage": "active",
                    "parent_run_id": op.parent_run_id,
                    "deleted_time": None,
                },
            ).first()
            is not None
        )
        if not inserted:
            existing = conn.execute(_RUN_EXPERIMENT, {"id": run_id}).first()
            retried = existing is not None and existing.experiment_id == op.experiment_id
            if op.run_id is not None and retried:
                return run_id  # a client retrying its own creation: already done
            raise AlreadyExists(f"run {run_id} already exists")
        batch.fresh.add(run_id)
        if op.tags:
            self._put_tags(conn, run_id, op.tags)
        return run_id

    def _run_row(self, conn: Connection, run_id: str) -> Any:
        check_run_id(run_id)
        row = conn.execute(
            sa.select(
                tables.runs.c.status, tables.runs.c.lifecycle_stage, tables.runs.c.end_time
            ).where(tables.runs.c.id == run_id)
        ).first()
        if row is None:
            raise NotFound(f"run {run_id} does not exist")
        return row

    def _writable(self, conn: Connection, run_id: str) -> None:
        row = self._run_row(conn, run_id)
        if row.lifecycle_stage != "active":
            raise Conflict(f"run {run_id} is deleted; restore it before logging to it")
        if row.status in TERMINAL:
            raise Conflict(
                f"run {run_id} is {row.status}; a finished run cannot be changed "
                "(resume it first: start_run(run_id=...))"
            )

    def _log(
        self,
        conn: Connection,
        run_id: str,
        metrics: Sequence[MetricValue],
        params: Mapping[str, str],
        tags: Mapping[str, str],
        batch: _Batch | None = None,
    ) -> None:
        if params:
            self._put_params(conn, run_id, params, batch or _Batch())
        if tags:
            self._put_tags(conn, run_id, tags)
        if metrics:
            self._put_metrics(conn, run_id, metrics)

    def _put_params(
        self, conn: Connection, run_id: str, params: Mapping[str, str], batch: _Batch
    ) -> None:
        """Params are write-once: the same value again is fine, a different one is refused."""
        known = batch.params.setdefault(run_id, {})
        unseen = [k for k in params if k not in known]
        if unseen and run_id not in batch.fresh:
            t = tables.params
            known.update(
                conn.execute(
                    sa.select(t.c.key, t.c.value).where(t.c.run_id == run_id, t.c.key.in_(unseen))
                ).all()
            )
        new = []
        for key, value in params.items():
            if key in known:
                if known[key] != value:
                    raise Conflict(
                        f"param {key!r} of run {run_id} is already {known[key]!r}; "
                        f"params cannot change (got {value!r})"
                    )
                continue
            known[key] = value
            new.append({"run_id": run_id, "key": key, "value": value})
        if new:
            conn.execute(_PARAM_INSERT, new)

    def _put_tags(self, conn: Connection, run_id: str, tags: Mapping[str, str]) -> None:
        conn.execute(
            _statement(conn, "upsert_tag"),
            [{"run_id": run_id, "key": k, "value": str(v)} for k, v in tags.items()],
        )

    def _put_metrics(self, conn: Connection, run_id: str, metrics: Sequence[MetricValue]) -> None:
        now = now_ms()
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        latest: dict[str, dict[str, Any]] = {}
        for metric in metrics:
            value, is_nan = stored_metric(metric.value)
            ts = metric.timestamp if metric.timestamp is not None else now
            row = {
                "run_id": run_id,
                "key": metric.key,
                "value": value,
                "step": int(metric.step),
                "timestamp": int(ts),
                "is_nan": is_nan,
            }
            rows[(metric.key, row["timestamp"], row["step"], value, is_nan)] = row
            best = latest.get(metric.key)
            if best is None or (row["step"], row["timestamp"], value) > (
                best["step"],
                best["timestamp"],
                best["value"],
            ):
                latest[metric.key] = row
        conn.execute(_statement(conn, "insert_metric"), list(rows.values()))
        conn.execute(_statement(conn, "upsert_latest"), list(latest.values()))

    def _update(self, conn: Connection, op: UpdateRun, *, fresh: bool = False) -> None:
        if not fresh:  # a run created in this very batch is known to be there and active
            row = self._run_row(conn, op.run_id)
            if row.lifecycle_stage != "active":
                raise Conflict(f"run {op.run_id} is deleted; restore it before changing it")
        values: dict[str, Any] = {}
        if op.name is not None:
            values["name"] = op.name
        if op.status is not None:
            if op.status in ("RUNNING", "SCHEDULED"):
                values.update(status=op.status, end_time=None)  # resume
            else:
                values.update(
                    status=op.status,
                    end_time=op.end_time if op.end_time is not None else now_ms(),
                )
        elif op.end_time is not None:
            values["end_time"] = op.end_time
        if values:
            # one compiled statement per combination of columns, reused across calls
            columns = tuple(sorted(values))
            statement = _UPDATES.get(columns)
            if statement is None:
                statement = _UPDATES[columns] = (
                    tables.runs.update()
                    .where(tables.runs.c.id == sa.bindparam("run_id"))
                    .values({c: sa.bindparam(c) for c in columns})
                )
            conn.execute(statement, {"run_id": op.run_id, **values})

    # -- the per-call conveniences over apply ------------------------------------------------

    def create_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        *,
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
        user: str | None = None,
    ) -> Run:
        if experiment_id == DEFAULT_EXPERIMENT_ID:
            self.get_or_create_experiment(DEFAULT_EXPERIMENT)
        run_id = run_id or new_id()
        self.apply(
            [
                CreateRun(
                    run_id=run_id,
                    experiment_id=experiment_id,
                    name=name,
                    tags={k: str(v) for k, v in (tags or {}).items()},
                    parent_run_id=parent_run_id,
                    start_time=start_time,
                    user=user,
                )
            ]
        )
        return self.get_run(run_id)

    def start_run(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> Run:
        """A new RUNNING run in the experiment named ``experiment`` (created if missing)."""
        exp = self.get_or_create_experiment(experiment)
        return self.create_run(exp.id, name=name, tags=tags, parent_run_id=parent_run_id)

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[MetricValue] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self.apply(
            [
                LogBatch(
                    run_id=run_id,
                    metrics=list(metrics),
                    params={k: str(v) for k, v in (params or {}).items()},
                    tags={k: str(v) for k, v in (tags or {}).items()},
                )
            ]
        )

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(run_id, params=params)

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params={key: value})

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        *,
        step: int = 0,
        timestamp: datetime | None = None,
    ) -> None:
        ts = now_ms() if timestamp is None else to_ms(timestamp)
        values = []
        for key, value in metrics.items():
            try:
                values.append(MetricValue(key=key, value=value, step=step, timestamp=ts))
            except ValueError as exc:
                raise InvalidInput(f"metric {key!r} value {value!r} is not a number") from exc
        self.log_batch(run_id, values)

    def log_metric(self, run_id: str, key: str, value: float, *, step: int = 0) -> None:
        self.log_metrics(run_id, {key: value}, step=step)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=tags)

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags={key: value})

    def delete_tag(self, run_id: str, key: str) -> None:
        t = tables.tags
        with self._db.write() as conn:
            self._writable(conn, run_id)
            gone = conn.execute(t.delete().where(t.c.run_id == run_id, t.c.key == key)).rowcount
        if not gone:
            raise NotFound(f"run {run_id} has no tag {key!r}")

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = None,
        end_time: int | None = None,
        name: str | None = None,
    ) -> Run:
        """Rename, end, or resume a run (status RUNNING on a finished run resumes it)."""
        self.apply([UpdateRun(run_id=run_id, status=status, end_time=end_time, name=name)])
        return self.get_run(run_id)

    def end_run(self, run_id: str, status: RunStatus = "FINISHED") -> Run:
        if status not in TERMINAL:
            raise InvalidInput(f"a run ends FINISHED, FAILED or KILLED, not {status!r}")
        with self._db.write() as conn:
            self._writable(conn, run_id)
            self._update(conn, UpdateRun(run_id=run_id, status=status))
        return self.get_run(run_id)

    def _set_run_stage(self, run_id: str, stage: str) -> Run:
        with self._db.write() as conn:
            self._run_row(conn, run_id)
            conn.execute(
                tables.runs.update()
                .where(tables.runs.c.id == run_id)
                .values(
                    lifecycle_stage=stage, deleted_time=now_ms() if stage == "deleted" else None
                )
            )
            action = "run.delete" if stage == "deleted" else "run.restore"
            self._audit.record(conn, action, "run", run_id)
        return self.get_run(run_id)

    def delete_run(self, run_id: str) -> Run:
        """Mark a run deleted: hidden from searches of active runs, restorable."""
        return self._set_run_stage(run_id, "deleted")

    def restore_run(self, run_id: str) -> Run:
        return self._set_run_stage(run_id, "active")

    # -- inputs and artifacts ----------------------------------------------------------------

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        """Record datasets a run read (MLflow's log_inputs), idempotently."""
        t = tables.run_inputs
        with self._db.write() as conn:
            self._run_row(conn, run_id)
            for item in inputs:
                row = {
                    "run_id": run_id,
                    "name": item.name[:MAX_NAME],
                    "digest": item.digest[:64],
                    "context": (item.context or "training")[:64],
                    "source_type": item.source_type,
                    "source": item.source,
                    "schema": item.schema_,
                    "profile": item.profile,
                    "created_at": now_ms(),
                }
                conn.execute(_insert(conn, t).on_conflict_do_nothing(), [row])

    def add_input(self, run_id: str, node: tuple[str, str], relation: str = "trained_on") -> None:
        """Record that the run consumed ``node`` (a dataset version, say) in the lineage graph."""
        with self._db.write() as conn:
            self._writable(conn, run_id)
            self._lineage.add(conn, node, ("run", run_id), relation)

    def log_artifact_bytes(self, run_id: str, path: str, data: bytes) -> ArtifactInfo:
        name = safe_name(path)
        with self._db.read() as conn:
            self._writable(conn, run_id)  # refuse before the bytes are stored
        digest = self._artifacts.put_bytes(data)
        return self._attach(run_id, name, digest, len(data))

    def log_artifact(
        self, run_id: str, local_path: str | Path, path: str | None = None
    ) -> ArtifactInfo:
        """Store a file as the run's artifact ``path`` (default: the file's name)."""
        source = Path(local_path)
        if not source.is_file():
            raise NotFound(f"file {source} does not exist")
        name = safe_name(path or source.name)
        with self._db.read() as conn:
            self._writable(conn, run_id)
        digest = self._artifacts.put_file(source)
        return self._attach(run_id, name, digest, source.stat().st_size)

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, path: str | None = None
    ) -> builtins.list[ArtifactInfo]:
        """Store every file under ``local_dir`` below the artifact folder ``path``."""
        root = Path(local_dir)
        if not root.is_dir():
            raise NotFound(f"folder {root} does not exist")
        stored = []
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = file.relative_to(root).as_posix()
            stored.append(
                self.log_artifact(run_id, file, f"{path}/{relative}" if path else relative)
            )
        return stored

    def _attach(self, run_id: str, name: str, digest: str, size: int) -> ArtifactInfo:
        if len(name) > MAX_ARTIFACT_PATH:
            raise InvalidInput(
                f"artifact path is {len(name)} characters; the limit is {MAX_ARTIFACT_PATH}"
            )
        t = tables.run_artifacts
        with self._db.write() as conn:
            self._writable(conn, run_id)
            stmt = _insert(conn, t)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_id", "path"],
                    set_={"digest": stmt.excluded.digest, "size_bytes": stmt.excluded.size_bytes},
                ),
                [{"run_id": run_id, "path": name, "digest": digest, "size_bytes": size}],
            )
        return ArtifactInfo(path=name, digest=digest, size_bytes=size)

    def list_artifacts(self, run_id: str, path: str | None = None) -> builtins.list[ArtifactInfo]:
        """The files and folders directly under ``path`` (the run's root by default)."""
        prefix = "" if not path or path in ("/", ".") else safe_name(path) + "/"
        t = tables.run_artifacts
        with self._db.read() as conn:
            self._run_row(conn, run_id)
            rows = conn.execute(
                sa.select(t.c.path, t.c.digest, t.c.size_bytes)
                .where(t.c.run_id == run_id, t.c.path.startswith(prefix, autoescape=True))
                .order_by(t.c.path)
            ).all()
        entries: dict[str, ArtifactInfo] = {}
        for full, digest, size in rows:
            rest = full[len(prefix) :]
            head, sep, _tail = rest.partition("/")
            if sep:
                entries.setdefault(head, ArtifactInfo(path=prefix + head, is_dir=True))
            else:
                entries[head] = ArtifactInfo(path=full, digest=digest, size_bytes=size)
        return list(entries.values())

    def artifact_digest(self, run_id: str, path: str) -> str:
        name = safe_name(path)
        t = tables.run_artifacts
        with self._db.read() as conn:
            self._run_row(conn, run_id)
            digest = conn.execute(
                sa.select(t.c.digest).where(t.c.run_id == run_id, t.c.path == name)
            ).scalar()
        if digest is None:
            raise NotFound(f"run {run_id} has no artifact {name!r}")
        return str(digest)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        return self._artifacts.get_bytes(self.artifact_digest(run_id, path))

    # == reading runs ==========================================================================

    def get_run(self, run_id: str) -> Run:
        check_run_id(run_id)
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
            return self._assemble(conn, [row], artifacts=True)[0]

    def _assemble(
        self, conn: Connection, rows: Sequence[Any], *, artifacts: bool = False
    ) -> builtins.list[Run]:
        """Runs with their params, latest metrics, tags and inputs: four queries per 900 runs,
        read with the driver's own fetchall (no per-row object), records built unvalidated
        (they come from our own tables)."""
        ids = [row["id"] for row in rows]
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        files: dict[str, builtins.list[ArtifactInfo]] = {i: [] for i in ids}
        inputs: dict[str, builtins.list[RunInput]] = {i: [] for i in ids}
        for chunk in _chunks(ids, 900):
            for run_id, key, value, kind in _fetchall(
                conn, _PARAMS_AND_TAGS_BY_RUNS, {"ids": chunk}
            ):
                (tags if kind else params)[run_id][key] = value
            for run_id, key, value, is_nan in _fetchall(conn, _METRICS_BY_RUNS, {"ids": chunk}):
                metrics[run_id][key] = math.nan if is_nan else value
            for item in conn.execute(_INPUTS_BY_RUNS, {"ids": chunk}).mappings():
                inputs[item["run_id"]].append(
                    RunInput(
                        name=item["name"],
                        digest=item["digest"],
                        context=item["context"],
                        source_type=item["source_type"],
                        source=item["source"],
                        schema=item["schema"],
                        profile=item["profile"],
                    )
                )
            if artifacts:
                for run_id, path, digest, size in _fetchall(
                    conn, _ARTIFACTS_BY_RUNS, {"ids": chunk}
                ):
                    files[run_id].append(ArtifactInfo(path=path, digest=digest, size_bytes=size))
        return [
            Run.model_construct(
                id=row["id"],
                experiment_id=row["experiment_id"],
                experiment=row["experiment_name"],
                name=row["name"],
                status=row["status"],
                start_time=from_ms(row["start_time"]),
                end_time=None if row["end_time"] is None else from_ms(row["end_time"]),
                user=row["user"],
                lifecycle_stage=row["lifecycle_stage"],
                parent_run_id=row["parent_run_id"],
                params=params[row["id"]],
                metrics=dict(sorted(metrics[row["id"]].items())),
                tags=tags[row["id"]],
                artifacts=files[row["id"]],
                inputs=inputs[row["id"]],
            )
            for row in rows
        ]

    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
        *,
        view: ViewType | str = "active",
    ) -> Page[Run]:
        """Runs matching MLflow's filter grammar, ordered, one page at a time.

        ``experiment_ids`` None means every experiment. Default order: newest first."""
        limit = search.check_max_results(max_results)
        offset = search.decode_page_token(page_token)
        if experiment_ids is not None and not experiment_ids:
            return Page[Run](items=[])
        plan = _search_plan(
            filter_string or "",
            tuple(order_by or ()),
            None if experiment_ids is None else tuple(str(x) for x in experiment_ids),
            str(view).lower(),
        )
        with self._db.read() as conn:
            if experiment_ids is not None:
                ids = [str(x) for x in experiment_ids]
                known = {row[0] for row in _fetchall(conn, _EXPERIMENTS_BY_IDS, {"ids": ids})}
                missing = [x for x in ids if x not in known]
                if missing:
                    raise NotFound(f"experiment {missing[0]!r} does not exist")
            if plan.by_metric:
                found = self._ids_by_metric(conn, plan, offset, limit + 1)
            else:
                query = plan.plain.limit(limit + 1).offset(offset)
                found = [row[0] for row in conn.execute(query)]
            page = found[:limit]
            rows = conn.execute(_RUNS_BY_IDS, {"ids": page}).mappings().all() if page else []
            by_id = {row["id"]: row for row in rows}
            runs = self._assemble(conn, [by_id[i] for i in page])
        token = search.encode_page_token(offset + limit) if len(found) > limit else None
        # the runs were built from our own rows: no need to validate them a second time
        return Page[Run].model_construct(items=runs, next_page_token=token)

    @staticmethod
    def _ids_by_metric(
        conn: Connection, plan: _SearchPlan, offset: int, count: int
    ) -> builtins.list[str]:
        """Positions [offset, offset + count) of a search ordered first by a metric.

        Walks the metric's latest values in index order, a growing range at a time: a range
        runs from where the last one stopped to the value ``size`` entries further (ties at its
        end included: the next range starts strictly after it), and the runs in it that pass
        the filter come out in full order. It stops as soon as the page is full, so the cost
        follows the page, not the number of runs — on any backend, whatever its planner thinks
        of the filter. Runs without the metric come after all the others."""
        wanted = offset + count
        matched: builtins.list[str] = []
        start: tuple[Any, Any] | None = None
        size = max(4 * wanted, 2000)
        exhausted = False
        while len(matched) < wanted:
            bounds: dict[str, Any] = {}
            if start is not None:
                bounds.update(start_nan=start[0], start_value=start[1])
            # the value ``size`` entries on: one index step, no rows carried back
            boundary = plan.boundary[start is not None].offset(size - 1)
            end = conn.execute(boundary, bounds).first()
            if end is None and start is None:
                # the metric has fewer than ``size`` values in all: one sort of everything is
                # cheaper than a walk, and it places the runs that lack the metric as well
                whole = plan.plain.limit(count).offset(offset)
                return [row[0] for row in conn.execute(whole)]
            if end is None:
                exhausted = True  # fewer than ``size`` left: this range runs to the end
            else:
                bounds.update(end_nan=end[0], end_value=end[1])
            which = (start is not None, end is not None)
            if conn.dialect.name == "postgresql":
                ids = [row[0] for row in conn.execute(plan.range_ids[which], bounds)]
                passing = (
                    _fetchall(conn, plan.has_among[which], {**bounds, "chunk_ids": ids})
                    if ids
                    else []
                )
            else:
                passing = _fetchall(conn, plan.has_in[which], bounds)
            matched += [row[0] for row in passing]
            if exhausted:
                break
            start = (end[0], end[1])  # type: ignore[index]
            size = min(size * 4, 200_000)
        if len(matched) >= wanted or not exhausted:
            return matched[offset:wanted]
        page = matched[offset:]
        skip = max(0, offset - len(matched))
        lacking = plan.lacks.limit(wanted - max(offset, len(matched))).offset(skip)
        return page + [row[0] for row in conn.execute(lacking)]

    def list_runs(
        self,
        experiment: str | None = None,
        *,
        status: str | None = None,
        limit: int = 50,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
    ) -> builtins.list[Run]:
        """Runs of the experiment named ``experiment`` (all experiments if None), newest first."""
        experiment_ids = None
        if experiment is not None:
            experiment_ids = [self.get_experiment_by_name(experiment).id]
        clauses = [filter_string] if filter_string else []
        if status is not None:
            if status.upper() not in STATUSES:
                raise InvalidInput(
                    f"unknown run status {status!r}; use one of {', '.join(STATUSES)}"
                )
            clauses.append(f"attributes.status = '{status.upper()}'")
        return self.search_runs(
            experiment_ids,
            " and ".join(clauses) or None,
            order_by,
            max_results=max(1, min(limit, search.MAX_RESULTS)),
        ).items

    def metric_history(self, run_id: str, key: str) -> builtins.list[MetricPoint]:
        m = tables.metrics
        with self._db.read() as conn:
            self._run_row(conn, run_id)
            rows = conn.execute(
                sa.select(m.c.value, m.c.step, m.c.timestamp, m.c.is_nan)
                .where(m.c.run_id == run_id, m.c.key == key)
                .order_by(m.c.step, m.c.timestamp, m.c.id)
            ).all()
        return [
            MetricPoint(key=key, value=math.nan if is_nan else v, step=s, timestamp=from_ms(ts))
            for v, s, ts, is_nan in rows
        ]

    def compare_runs(self, run_ids: Sequence[str]) -> Comparison:
        """Params and metrics of ``run_ids`` side by side (params that differ listed apart)."""
        if not run_ids:
            raise InvalidInput("give at least one run to compare")
        found = [self.get_run(run_id) for run_id in run_ids]
        param_keys = sorted({k for run in found for k in run.params})
        metric_keys = sorted({k for run in found for k in run.metrics})
        params = {k: [run.params.get(k) for run in found] for k in param_keys}
        return Comparison(
            runs=[run.id for run in found],
            names=[run.name for run in found],
            params=params,
            metrics={k: [run.metrics.get(k) for run in found] for k in metric_keys},
            differing_params=[k for k, values in params.items() if len(set(values)) > 1],
        )


def _fetchall(
    conn: Connection,
    query: sa.Select[Any] | sa.CompoundSelect[Any],
    params: dict[str, Any] | None = None,
) -> Sequence[Any]:
    """All rows as the driver returns them: plain tuples, fetched in one call."""
    result = conn.execute(query, params or {})
    cursor = result.cursor
    if cursor is None:  # pragma: no cover - a SELECT always has one
        return builtins.list(result)
    rows: Sequence[Any] = cursor.fetchall()
    result.close()
    return rows


def _chunks(items: Sequence[str], size: int) -> Iterable[builtins.list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# -- experiment search -------------------------------------------------------------------------


def _experiment_clauses(filter_string: str | None) -> builtins.list[sa.ColumnElement[bool]]:
    """MLflow's experiment filter: name, creation_time, last_update_time, tags.KEY."""
    if not filter_string or not filter_string.strip():
        return []
    e, t = tables.experiments, tables.experiment_tags
    parser = search._Parser(filter_string, "experiment filter")
    conditions: builtins.list[sa.ColumnElement[bool]] = []
    while True:
        first = parser.take()
        name = first.text if first.kind in ("word", "keyword") else None
        if name is None:
            raise parser.error(f"expected a field at position {first.pos}")
        if name.lower() in ("tags", "tag"):
            if parser.take().text != ".":
                raise parser.error("expected tags.KEY")
            key_token = parser.take()
            key = (
                search._unquote(key_token)
                if key_token.kind in ("string", "backtick")
                else key_token.text
            )
            op = parser.take().text
            if op not in ("=", "!=", "LIKE", "ILIKE"):
                raise parser.error(f"tags compare with =, !=, LIKE or ILIKE, not {op!r}")
            value = parser.take()
            if value.kind != "string":
                raise parser.error("tag values are quoted strings")
            conditions.append(
                sa.exists().where(
                    t.c.experiment_id == e.c.id,
                    t.c.key == key,
                    search._compare(t.c.value, op, search._unquote(value)),
                )
            )
        else:
            field = {"attribute.name": "name", "name": "name"}.get(name.lower(), name.lower())
            if field in ("attribute", "attributes"):
                parser.take()
                field = parser.take().text
            columns = {
                "name": e.c.name,
                "creation_time": e.c.created_at,
                "last_update_time": e.c.updated_at,
            }
            if field not in columns:
                raise parser.error(
                    f"unknown field {field!r}: "
                    "use name, creation_time, last_update_time or tags.KEY"
                )
            op = parser.take().text
            value = parser.take()
            if field == "name":
                if value.kind != "string":
                    raise parser.error("name compares with a quoted string")
                conditions.append(search._compare(columns[field], op, search._unquote(value)))
            else:
                if value.kind != "number":
                    raise parser.error(f"{field} compares with a number (Unix milliseconds)")
                conditions.append(search._compare(columns[field], op, int(float(value.text))))
        nxt = parser.peek()
        if nxt is None:
            return conditions
        parser.take()
        if nxt.text != "AND":
            raise parser.error(f"expected AND at position {nxt.pos}, found {nxt.text!r}")


def _experiment_order(order_by: Sequence[str] | None) -> builtins.list[sa.ColumnElement[Any]]:
    e = tables.experiments
    columns = {
        "name": e.c.name,
        "creation_time": e.c.created_at,
        "last_update_time": e.c.updated_at,
        "experiment_id": e.c.id,
    }
    terms: builtins.list[sa.ColumnElement[Any]] = []
    for item in order_by or []:
        parts = item.strip().split()
        field = parts[0].removeprefix("attribute.").removeprefix("attributes.") if parts else ""
        if field not in columns or len(parts) > 2:
            raise InvalidInput(
                f"invalid order_by {item!r}: use name, creation_time, last_update_time"
            )
        descending = len(parts) == 2 and parts[1].upper() == "DESC"
        if len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC"):
            raise InvalidInput(f"invalid order_by {item!r}: ASC or DESC")
        terms.append(columns[field].desc() if descending else columns[field].asc())
    # newest first, then the id (time-ordered): a total order, so pages never repeat or skip
    return [*terms, e.c.created_at.desc(), e.c.id.desc()]
