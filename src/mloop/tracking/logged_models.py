"""Logged models: a model's files and metadata, logged from a run before (or without) being
registered — MLflow 3's ``LoggedModel``.

A logged model belongs to an experiment, optionally to the run that produced it, and holds
params, tags and a set of files stored in the content-addressed artifact store. It is created
PENDING, its files are uploaded, and it is finalized READY (or FAILED). Registering one makes a
model version whose manifest lists the same blobs, so the version never changes when the logged
model does. A run records the models it produced as its outputs (``run_outputs``).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection

from mloop.core.clock import from_ms, now_ms, to_ms
from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.security import AuditLog
from mloop.storage import ArtifactStore, Database, safe_name, tables
from mloop.tracking import search
from mloop.tracking.records import TERMINAL, ArtifactInfo, Page
from mloop.tracking.runs import (
    MAX_ARTIFACT_PATH,
    MAX_NAME,
    check_key,
    check_run_id,
    validate_params,
    validate_tags,
)

LoggedModelStatus = Literal["PENDING", "READY", "FAILED"]
STATUSES: tuple[str, ...] = ("PENDING", "READY", "FAILED")
MODEL_ID_PREFIX = "m-"
MAX_SCANNED = 50_000  # logged models a search reads from one set of experiments

_ATTRIBUTES = {
    "name": "name",
    "model_id": "id",
    "model_type": "model_type",
    "status": "status",
    "source_run_id": "source_run_id",
    "creation_timestamp": "created_at",
    "creation_time": "created_at",
    "last_updated_timestamp": "updated_at",
    "last_updated_time": "updated_at",
}
_NUMERIC = {"created_at", "updated_at"}


def logged_model_artifact_uri(experiment_id: str, model_id: str) -> str:
    """Where a logged model's files live, in the form MLflow clients resolve through the
    server's artifact proxy (``…/mlflow-artifacts/artifacts/<exp>/models/<id>/artifacts``)."""
    return f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts"


def check_model_id(model_id: str) -> str:
    if (
        not isinstance(model_id, str)
        or not model_id.startswith(MODEL_ID_PREFIX)
        or len(model_id) > 64
        or not model_id[len(MODEL_ID_PREFIX) :].isalnum()
    ):
        raise InvalidInput(f"{model_id!r} is not a logged model id (m- and 32 hex digits)")
    return model_id


class LoggedModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    experiment_id: str
    name: str
    source_run_id: str | None
    status: str
    status_message: str | None
    model_type: str | None
    params: dict[str, str]
    tags: dict[str, str]
    lifecycle_stage: str
    created_at: datetime
    updated_at: datetime

    @property
    def artifact_uri(self) -> str:
        return logged_model_artifact_uri(self.experiment_id, self.id)


class RunOutput(BaseModel):
    """A model a run produced, at a step."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    step: int = 0


def _to_model(row: Any) -> LoggedModel:
    return LoggedModel(
        id=row["id"],
        experiment_id=row["experiment_id"],
        name=row["name"],
        source_run_id=row["source_run_id"],
        status=row["status"],
        status_message=row["status_message"],
        model_type=row["model_type"],
        params=dict(row["params"] or {}),
        tags=dict(row["tags"] or {}),
        lifecycle_stage=row["lifecycle_stage"],
        created_at=from_ms(row["created_at"]),
        updated_at=from_ms(row["updated_at"]),
    )


class LoggedModelService:
    """Logged models in the metadata database; their files in the artifact store."""

    def __init__(self, db: Database, artifacts: ArtifactStore, audit: AuditLog) -> None:
        self._db = db
        self._artifacts = artifacts
        self._audit = audit

    # -- writing -----------------------------------------------------------------------------

    def create(
        self,
        experiment_id: str,
        *,
        name: str | None = None,
        source_run_id: str | None = None,
        model_type: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> LoggedModel:
        """A new PENDING logged model in an active experiment."""
        if name is not None and not 0 < len(name) <= MAX_NAME:
            raise InvalidInput(f"model name must be 1-{MAX_NAME} characters")
        if model_type is not None and len(model_type) > MAX_NAME:
            raise InvalidInput(f"model type must be at most {MAX_NAME} characters")
        params_ = {k: str(v) for k, v in (params or {}).items()}
        tags_ = {k: str(v) for k, v in (tags or {}).items()}
        validate_params(params_)
        validate_tags(tags_)
        if source_run_id is not None:
            check_run_id(source_run_id)
        model_id = MODEL_ID_PREFIX + new_id()
        e, r = tables.experiments, tables.runs
        with self._db.write() as conn:
            stage = conn.execute(
                sa.select(e.c.lifecycle_stage).where(e.c.id == experiment_id)
            ).scalar()
            if stage is None:
                raise NotFound(f"experiment {experiment_id!r} does not exist")
            if stage != "active":
                raise Conflict(f"experiment {experiment_id!r} is deleted; restore it first")
            if source_run_id is not None:
                found = conn.execute(sa.select(r.c.id).where(r.c.id == source_run_id)).first()
                if found is None:
                    raise NotFound(f"run {source_run_id} does not exist")
            now = now_ms()
            conn.execute(
                tables.logged_models.insert().values(
                    id=model_id,
                    experiment_id=experiment_id,
                    name=name or f"model-{model_id[-8:]}",
                    source_run_id=source_run_id,
                    status="PENDING",
                    status_message=None,
                    model_type=model_type,
                    params=params_,
                    tags=tags_,
                    lifecycle_stage="active",
                    created_at=now,
                    updated_at=now,
                )
            )
            self._audit.record(
                conn, "logged_model.create", "logged_model", model_id, {"run_id": source_run_id}
            )
        return self.get(model_id)

    def _row(self, conn: Connection, model_id: str, *, lock: bool = False) -> Any:
        check_model_id(model_id)
        t = tables.logged_models
        query = sa.select(t).where(t.c.id == model_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"logged model {model_id!r} does not exist")
        return row

    def _active_row(self, conn: Connection, model_id: str) -> Any:
        row = self._row(conn, model_id, lock=True)
        if row["lifecycle_stage"] != "active":
            raise Conflict(f"logged model {model_id!r} is deleted")
        return row

    def finalize(
        self, model_id: str, status: LoggedModelStatus, *, message: str | None = None
    ) -> LoggedModel:
        """Mark the model READY (its files are all uploaded) or FAILED."""
        if status not in ("READY", "FAILED"):
            raise InvalidInput(f"a logged model is finalized READY or FAILED, not {status!r}")
        t = tables.logged_models
        with self._db.write() as conn:
            self._active_row(conn, model_id)
            conn.execute(
                t.update()
                .where(t.c.id == model_id)
                .values(status=status, status_message=message, updated_at=now_ms())
            )
            self._audit.record(
                conn, "logged_model.finalize", "logged_model", model_id, {"status": status}
            )
        return self.get(model_id)

    def set_tags(self, model_id: str, tags: Mapping[str, Any]) -> LoggedModel:
        values = {k: str(v) for k, v in tags.items()}
        validate_tags(values)
        t = tables.logged_models
        with self._db.write() as conn:
            row = self._active_row(conn, model_id)
            merged = {**(row["tags"] or {}), **values}
            conn.execute(
                t.update().where(t.c.id == model_id).values(tags=merged, updated_at=now_ms())
            )
        return self.get(model_id)

    def delete_tag(self, model_id: str, key: str) -> LoggedModel:
        t = tables.logged_models
        with self._db.write() as conn:
            row = self._active_row(conn, model_id)
            current = dict(row["tags"] or {})
            if key not in current:
                raise NotFound(f"logged model {model_id!r} has no tag {key!r}")
            del current[key]
            conn.execute(
                t.update().where(t.c.id == model_id).values(tags=current, updated_at=now_ms())
            )
        return self.get(model_id)

    def log_params(self, model_id: str, params: Mapping[str, Any]) -> LoggedModel:
        """Params are write-once, as a run's are: the same value again is fine."""
        values = {k: str(v) for k, v in params.items()}
        validate_params(values)
        t = tables.logged_models
        with self._db.write() as conn:
            row = self._active_row(conn, model_id)
            current = dict(row["params"] or {})
            for key, value in values.items():
                if key in current and current[key] != value:
                    raise Conflict(
                        f"param {key!r} of logged model {model_id} is already {current[key]!r}; "
                        f"params cannot change (got {value!r})"
                    )
            current.update(values)
            conn.execute(
                t.update().where(t.c.id == model_id).values(params=current, updated_at=now_ms())
            )
        return self.get(model_id)

    def delete(self, model_id: str) -> None:
        """Mark the model deleted (its files stay; registered versions keep working)."""
        t = tables.logged_models
        with self._db.write() as conn:
            self._row(conn, model_id)
            conn.execute(
                t.update()
                .where(t.c.id == model_id)
                .values(lifecycle_stage="deleted", updated_at=now_ms())
            )
            self._audit.record(conn, "logged_model.delete", "logged_model", model_id)

    # -- files -------------------------------------------------------------------------------

    def log_artifact_bytes(self, model_id: str, path: str, data: bytes) -> ArtifactInfo:
        """Store ``data`` as the model's file ``path`` (replacing a file of that name)."""
        name = safe_name(path)
        if len(name) > MAX_ARTIFACT_PATH:
            raise InvalidInput(
                f"artifact path is {len(name)} characters; the limit is {MAX_ARTIFACT_PATH}"
            )
        with self._db.read() as conn:  # refuse before the bytes are stored
            if self._row(conn, model_id)["lifecycle_stage"] != "active":
                raise Conflict(f"logged model {model_id!r} is deleted")
        digest = self._artifacts.put_bytes(data)
        t = tables.logged_model_artifacts
        with self._db.write() as conn:
            self._active_row(conn, model_id)
            conn.execute(t.delete().where(t.c.model_id == model_id, t.c.path == name))
            conn.execute(
                t.insert().values(model_id=model_id, path=name, digest=digest, size_bytes=len(data))
            )
            conn.execute(
                tables.logged_models.update()
                .where(tables.logged_models.c.id == model_id)
                .values(updated_at=now_ms())
            )
        return ArtifactInfo(path=name, digest=digest, size_bytes=len(data))

    def files(self, model_id: str, path: str | None = None) -> dict[str, str]:
        """Every file of the model (under ``path``, relative to it): name → digest."""
        prefix = "" if not path or path in ("/", ".") else safe_name(path) + "/"
        t = tables.logged_model_artifacts
        with self._db.read() as conn:
            self._row(conn, model_id)
            rows = conn.execute(
                sa.select(t.c.path, t.c.digest)
                .where(t.c.model_id == model_id, t.c.path.startswith(prefix, autoescape=True))
                .order_by(t.c.path)
            ).all()
        return {p[len(prefix) :]: d for p, d in rows}

    def list_artifacts(self, model_id: str, path: str | None = None) -> builtins.list[ArtifactInfo]:
        """The files and folders directly under ``path`` (the model's root by default)."""
        prefix = "" if not path or path in ("/", ".") else safe_name(path) + "/"
        t = tables.logged_model_artifacts
        with self._db.read() as conn:
            self._row(conn, model_id)
            rows = conn.execute(
                sa.select(t.c.path, t.c.digest, t.c.size_bytes)
                .where(t.c.model_id == model_id, t.c.path.startswith(prefix, autoescape=True))
                .order_by(t.c.path)
            ).all()
        entries: dict[str, ArtifactInfo] = {}
        for full, digest, size in rows:
            head, sep, _tail = full[len(prefix) :].partition("/")
            if sep:
                entries.setdefault(head, ArtifactInfo(path=prefix + head, is_dir=True))
            else:
                entries[head] = ArtifactInfo(path=full, digest=digest, size_bytes=size)
        return list(entries.values())

    def read_artifact(self, model_id: str, path: str) -> bytes:
        name = safe_name(path)
        t = tables.logged_model_artifacts
        with self._db.read() as conn:
            self._row(conn, model_id)
            digest = conn.execute(
                sa.select(t.c.digest).where(t.c.model_id == model_id, t.c.path == name)
            ).scalar()
        if digest is None:
            raise NotFound(f"logged model {model_id} has no file {name!r}")
        return self._artifacts.get_bytes(str(digest))

    # -- runs' outputs -----------------------------------------------------------------------

    def log_outputs(self, run_id: str, outputs: Sequence[RunOutput]) -> None:
        """Record that the run produced these models (idempotent; a new step replaces)."""
        check_run_id(run_id)
        r, o, t = tables.runs, tables.run_outputs, tables.logged_models
        with self._db.write() as conn:
            run = conn.execute(
                sa.select(r.c.status, r.c.lifecycle_stage).where(r.c.id == run_id)
            ).first()
            if run is None:
                raise NotFound(f"run {run_id} does not exist")
            if run.lifecycle_stage != "active":
                raise Conflict(f"run {run_id} is deleted; restore it before logging to it")
            if run.status in TERMINAL:
                raise Conflict(
                    f"run {run_id} is {run.status}; a finished run cannot be changed "
                    "(resume it first: start_run(run_id=...))"
                )
            for output in outputs:
                check_model_id(output.model_id)
                if conn.execute(sa.select(t.c.id).where(t.c.id == output.model_id)).first() is None:
                    raise NotFound(f"logged model {output.model_id!r} does not exist")
                conn.execute(
                    o.delete().where(o.c.run_id == run_id, o.c.model_id == output.model_id)
                )
                conn.execute(
                    o.insert().values(run_id=run_id, model_id=output.model_id, step=output.step)
                )

    def outputs(self, run_ids: Sequence[str]) -> dict[str, builtins.list[RunOutput]]:
        """The models each run produced, oldest step first."""
        found: dict[str, builtins.list[RunOutput]] = {i: [] for i in run_ids}
        if not run_ids:
            return found
        o = tables.run_outputs
        with self._db.read() as conn:
            for start in range(0, len(run_ids), 900):
                chunk = list(run_ids[start : start + 900])
                for run_id, model_id, step in conn.execute(
                    sa.select(o.c.run_id, o.c.model_id, o.c.step)
                    .where(o.c.run_id.in_(chunk))
                    .order_by(o.c.step, o.c.model_id)
                ):
                    found[run_id].append(RunOutput(model_id=model_id, step=step))
        return found

    # -- reading -----------------------------------------------------------------------------

    def get(self, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
        with self._db.read() as conn:
            row = self._row(conn, model_id)
        if row["lifecycle_stage"] != "active" and not allow_deleted:
            raise NotFound(f"logged model {model_id!r} is deleted")
        return _to_model(row)

    def search(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        order_by: Sequence[tuple[str, bool]] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[LoggedModel]:
        """Active logged models of the experiments, filtered with MLflow's grammar
        (``name``, ``model_id``, ``model_type``, ``status``, ``source_run_id``,
        ``creation_timestamp``, ``last_updated_timestamp``, ``params.K``, ``tags.K``, joined by
        AND); ordered by ``(field, ascending)`` pairs, newest first by default."""
        if not experiment_ids:
            raise InvalidInput("give at least one experiment id")
        predicates = _parse_filter(filter_string)
        keys = [(_order_key(field), ascending) for field, ascending in order_by or []]
        limit = search.check_max_results(max_results)
        offset = search.decode_page_token(page_token)
        t = tables.logged_models
        with self._db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(t)
                    .where(
                        t.c.experiment_id.in_([str(x) for x in experiment_ids]),
                        t.c.lifecycle_stage == "active",
                    )
                    .order_by(t.c.created_at.desc(), t.c.id.desc())
                    .limit(MAX_SCANNED)
                )
                .mappings()
                .all()
            )
        models = [m for m in map(_to_model, rows) if all(p(m) for p in predicates)]
        for field, ascending in reversed(keys):  # stable sorts, last key first
            present = [m for m in models if _field(m, field) is not None]
            missing = [m for m in models if _field(m, field) is None]
            present.sort(key=_sort_key(field), reverse=not ascending)
            models = present + missing
        page = models[offset : offset + limit]
        token = search.encode_page_token(offset + limit) if len(models) > offset + limit else None
        return Page[LoggedModel](items=page, next_page_token=token)


# -- search ------------------------------------------------------------------------------------


def _order_key(field: str) -> str:
    entity, dot, _key = field.partition(".")
    if dot and entity in ("params", "tags"):
        return field
    name = _ATTRIBUTES.get(field.removeprefix("attributes."))
    if name is None:
        raise InvalidInput(
            f"cannot order logged models by {field!r}: use name, creation_timestamp, "
            "last_updated_timestamp, model_type, status, params.KEY or tags.KEY"
        )
    return name


def _sort_key(field: str) -> Any:
    return lambda model: _field(model, field)


def _field(model: LoggedModel, field: str) -> Any:
    entity, dot, key = field.partition(".")
    if dot and entity == "params":
        return model.params.get(key)
    if dot and entity == "tags":
        return model.tags.get(key)
    value = getattr(model, field)
    if field in _NUMERIC:
        return to_ms(value)
    if field == "status":
        return f"LOGGED_MODEL_{value}"
    return value


def _parse_filter(text: str | None) -> list[Any]:
    """``name = 'x' AND params.alpha = '0.5' AND creation_timestamp > 0`` → predicates."""
    if text is None or not text.strip():
        return []
    tokens = search.tokenize(text)
    predicates: list[Any] = []
    i = 0

    def error(message: str) -> InvalidInput:
        return InvalidInput(f"invalid logged model filter {text!r}: {message}")

    def take() -> search.Token:
        nonlocal i
        if i >= len(tokens):
            raise error("it ends too early")
        i += 1
        return tokens[i - 1]

    while True:
        first = take()
        if first.kind not in ("word", "backtick", "keyword"):
            raise error(f"expected a field at position {first.pos}")
        name = first.text.strip("`")
        field: str
        if i < len(tokens) and tokens[i].text == "." and name in ("params", "tags", "attributes"):
            take()
            key_token = take()
            key = (
                key_token.text[1:-1] if key_token.kind in ("string", "backtick") else key_token.text
            )
            if name == "attributes":
                attr = _ATTRIBUTES.get(key)
                if attr is None:
                    raise error(f"unknown attribute {key!r}")
                field = attr
            else:
                check_key(key, name[:-1])
                field = f"{name}.{key}"
        elif name in ("metrics", "metric"):
            raise error("logged models cannot be filtered by metrics on this server")
        else:
            attr = _ATTRIBUTES.get(name)
            if attr is None:
                raise error(
                    f"unknown field {name!r}: use name, model_id, model_type, status, "
                    "source_run_id, creation_timestamp, last_updated_timestamp, params.KEY "
                    "or tags.KEY"
                )
            field = attr
        op_token = take()
        op = "!=" if op_token.text == "<>" else op_token.text
        value_token = take()
        numeric = field in _NUMERIC
        if op in ("IN", "NOT"):
            raise error("IN is not supported in logged model filters")
        if numeric:
            if value_token.kind != "number" or op not in search.NUMERIC_OPS:
                raise error(f"{name} compares with a number using =, !=, <, <=, > or >=")
            value: Any = float(value_token.text)
        else:
            if value_token.kind != "string" or op not in search.STRING_OPS:
                raise error(f"{name} compares with a quoted string using =, !=, LIKE or ILIKE")
            value = value_token.text[1:-1].replace(value_token.text[0] * 2, value_token.text[0])
            if field == "status" and not value.startswith("LOGGED_MODEL_"):
                value = f"LOGGED_MODEL_{value}"
        predicates.append(_predicate(field, op, value))
        if i >= len(tokens):
            return predicates
        joint = take()
        if joint.text != "AND":
            raise error(f"expected AND at position {joint.pos}, found {joint.text!r}")


def _predicate(field: str, op: str, value: Any) -> Any:
    def check(model: LoggedModel) -> bool:
        actual = _field(model, field)
        if actual is None:
            return False
        return _compare(actual, op, value)

    return check


def _compare(actual: Any, op: str, value: Any) -> bool:
    if op in ("LIKE", "ILIKE"):
        import re

        pattern = ""
        escaped = False
        for char in value:
            if escaped:
                pattern += re.escape(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "%":
                pattern += ".*"
            elif char == "_":
                pattern += "."
            else:
                pattern += re.escape(char)
        flags = re.IGNORECASE if op == "ILIKE" else 0
        return re.fullmatch(pattern, str(actual), flags | re.DOTALL) is not None
    if isinstance(value, float) and (isinstance(actual, str) or math.isnan(value)):
        return False
    comparisons = {
        "=": actual == value,
        "!=": actual != value,
        "<": actual < value,
        "<=": actual <= value,
        ">": actual > value,
        ">=": actual >= value,
    }
    return bool(comparisons[op])
