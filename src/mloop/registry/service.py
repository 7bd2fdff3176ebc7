"""The model registry: registered models, immutable numbered versions, and movable aliases."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.data import check_name
from mloop.models import META_FILE, LoadedModel, ModelMeta, Signature, load_package
from mloop.security import AuditLog, local_actor
from mloop.storage import ArtifactStore, Database, LineageStore, safe_name, tables
from mloop.tracking import TrackingService

DEFAULT_ALIAS = "champion"
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$")
MODEL_CACHE_SIZE = 8


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
        raise InvalidInput(
            f"alias {alias!r} is not allowed: start with a letter; letters, digits, '_', '-'"
        )
    if RESERVED_ALIAS.match(alias):
        raise InvalidInput(f"alias {alias!r} is reserved (it reads like a version)")
    return alias


class ModelVersion(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    version: int
    run_id: str | None
    flavor: str
    manifest_digest: str
    signature: Signature
    info: dict[str, Any]
    description: str | None
    created_at: datetime
    created_by: str | None
    aliases: list[str]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class RegisteredModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    latest_version: int | None
    aliases: dict[str, int]


def parse_model_ref(ref: str) -> tuple[str, str]:
    """``NAME`` (its champion), ``NAME@ALIAS``, ``NAME@N`` or ``NAME@latest``."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("empty model reference; use NAME, NAME@ALIAS or NAME@VERSION")
    name, sep, selector = ref.strip().partition("@")
    check_name(name, "model")
    if sep and not selector:
        raise InvalidInput(f"model reference {ref!r} has nothing after '@'")
    return name, selector or DEFAULT_ALIAS


class RegistryService:
    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        tracking: TrackingService,
        audit: AuditLog,
        lineage: LineageStore,
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._tracking = tracking
        self._audit = audit
        self._lineage = lineage
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------

    def register(
        self,
        run_id: str,
        name: str,
        *,
        artifact_path: str = "model",
        description: str | None = None,
    ) -> ModelVersion:
        """Make the model a run logged under ``artifact_path`` a new version of ``name``.

        A new model's first version becomes its champion, in the same transaction."""
        check_name(name, "model")
        run = self._tracking.get_run(run_id)
        prefix = safe_name(artifact_path) + "/"
        files = {
            a.path[len(prefix) :]: a.digest
            for a in run.artifacts
            if a.path.startswith(prefix) and a.digest is not None
        }
        if META_FILE not in files:
            raise InvalidInput(
                f"run {run_id} has no model under {artifact_path!r} "
                f"(no {artifact_path}/{META_FILE}); train with mloop train first"
            )
        meta = ModelMeta.model_validate_json(self._artifacts.get_bytes(files[META_FILE]))
        manifest_digest = self._artifacts.put_bytes(
            json.dumps({"files": dict(sorted(files.items()))}, sort_keys=True).encode()
        )
        return self._insert_version(name, run_id, meta, manifest_digest, description)

    def _insert_version(
        self,
        name: str,
        run_id: str | None,
        meta: ModelMeta,
        manifest_digest: str,
        description: str | None,
    ) -> ModelVersion:
        m, v = tables.registered_models, tables.model_versions
        for _attempt in range(5):
            try:
                with self._db.write() as conn:
                    model_id = conn.execute(sa.select(m.c.id).where(m.c.name == name)).scalar()
                    now = now_ms()
                    if model_id is None:
                        model_id = new_id()
                        conn.execute(
                            m.insert().values(
                                id=model_id,
                                name=name,
                                description=None,
                                created_at=now,
                                updated_at=now,
                            )
                        )
                        self._audit.record(conn, "model.create", "model", name)
                    latest = conn.execute(
                        sa.select(sa.func.max(v.c.version)).where(v.c.model_id == model_id)
                    ).scalar()
                    version_id = new_id()
                    number = (latest or 0) + 1
                    conn.execute(
                        v.insert().values(
                            id=version_id,
                            model_id=model_id,
                            version=number,
                            run_id=run_id,
                            flavor=meta.flavor,
                            manifest_digest=manifest_digest,
                            signature=meta.signature.model_dump(mode="json"),
                            info=meta.info,
                            description=description,
                            created_at=now,
                            created_by=local_actor(),
                        )
                    )
                    conn.execute(m.update().where(m.c.id == model_id).values(updated_at=now))
                    if run_id:
                        self._lineage.add(
                            conn, ("run", run_id), ("model_version", version_id), "registered"
                        )
                    self._audit.record(
                        conn,
                        "model.version.create",
                        "model_version",
                        f"{name}@{number}",
                        {"run_id": run_id},
                    )
                    if number == 1:  # a new model's first version is its champion
                        conn.execute(
                            tables.model_aliases.insert().values(
                                model_id=model_id, alias=DEFAULT_ALIAS, version=1, updated_at=now
                            )
                        )
                        self._audit.record(
                            conn,
                            "model.alias.set",
                            "model",
                            name,
                            {
                                "alias": DEFAULT_ALIAS,
                                "version": 1,
                                "previous": None,
                                "reason": "first version",
                            },
                        )
                return self.get_version(name, number)
            except DBIntegrityError:
                continue
        raise Conflict(f"could not register a version of {name!r}: too many concurrent writers")

    def set_alias(
        self, name: str, alias: str, version: int, *, reason: str | None = None
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (creating or moving it), in one transaction."""
        check_alias(alias)
        t = tables.model_aliases
        for _attempt in range(5):
            try:
                with self._db.write() as conn:
                    model_id = self._model_id(conn, name)
                    self._version_row(conn, model_id, name, version)
                    previous = conn.execute(
                        sa.select(t.c.version).where(t.c.model_id == model_id, t.c.alias == alias)
                    ).scalar()
                    if previous is None:
                        conn.execute(
                            t.insert().values(
                                model_id=model_id, alias=alias, version=version, updated_at=now_ms()
                            )
                        )
                    else:
                        conn.execute(
                            t.update()
                            .where(t.c.model_id == model_id, t.c.alias == alias)
                            .values(version=version, updated_at=now_ms())
                        )
                    self._audit.record(
                        conn,
                        "model.alias.set",
                        "model",
                        name,
                        {
                            "alias": alias,
                            "version": version,
                            "previous": previous,
                            "reason": reason,
                        },
                    )
                break
            except DBIntegrityError:
                continue  # a concurrent writer created the same alias first: move it instead
        else:
            raise Conflict(
                f"could not set alias {alias!r} of {name!r}: too many concurrent writers"
            )
        return self.get_version(name, version)

    def delete_alias(self, name: str, alias: str) -> None:
        check_alias(alias)
        t = tables.model_aliases
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            gone = conn.execute(
                t.delete().where(t.c.model_id == model_id, t.c.alias == alias)
            ).rowcount
            if not gone:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            self._audit.record(conn, "model.alias.delete", "model", name, {"alias": alias})

    # -- reading -----------------------------------------------------------------------

    def _model_id(self, conn: Connection, name: str) -> str:
        check_name(name, "model")
        m = tables.registered_models
        model_id = conn.execute(sa.select(m.c.id).where(m.c.name == name)).scalar()
        if model_id is None:
            raise NotFound(f"model {name!r} is not registered")
        return str(model_id)

    def _version_row(self, conn: Connection, model_id: str, name: str, version: int) -> Any:
        v = tables.model_versions
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput(f"model version must be a positive integer, not {version!r}")
        row = (
            conn.execute(sa.select(v).where(v.c.model_id == model_id, v.c.version == version))
            .mappings()
            .first()
        )
        if row is None:
            latest = conn.execute(
                sa.select(sa.func.max(v.c.version)).where(v.c.model_id == model_id)
            ).scalar()
            raise NotFound(
                f"model {name!r} has no version {version}"
                + (f" (latest is {latest})" if latest else "")
            )
        return row

    def _aliases(self, conn: Connection, model_id: str) -> dict[str, int]:
        t = tables.model_aliases
        return dict(
            conn.execute(
                sa.select(t.c.alias, t.c.version)
                .where(t.c.model_id == model_id)
                .order_by(t.c.alias)
            ).all()
        )

    def _to_version(self, row: Any, name: str, aliases: dict[str, int]) -> ModelVersion:
        return ModelVersion(
            id=row["id"],
            name=name,
            version=row["version"],
            run_id=row["run_id"],
            flavor=row["flavor"],
            manifest_digest=row["manifest_digest"],
            signature=Signature.model_validate(row["signature"]),
            info=row["info"],
            description=row["description"],
            created_at=from_ms(row["created_at"]),
            created_by=row["created_by"],
            aliases=sorted(a for a, n in aliases.items() if n == row["version"]),
        )

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._db.read() as conn:
            model_id = self._model_id(conn, name)
            row = self._version_row(conn, model_id, name, version)
            return self._to_version(row, name, self._aliases(conn, model_id))

    def get_version_by_id(self, version_id: str) -> ModelVersion:
        m, v = tables.registered_models, tables.model_versions
        with self._db.read() as conn:
            row = (
                conn.execute(
                    sa.select(v, m.c.name.label("model_name"))
                    .join(m, m.c.id == v.c.model_id)
                    .where(v.c.id == version_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"model version {version_id!r} does not exist")
            return self._to_version(row, row["model_name"], self._aliases(conn, row["model_id"]))

    def versions(self, name: str) -> list[ModelVersion]:
        v = tables.model_versions
        with self._db.read() as conn:
            model_id = self._model_id(conn, name)
            aliases = self._aliases(conn, model_id)
            rows = (
                conn.execute(sa.select(v).where(v.c.model_id == model_id).order_by(v.c.version))
                .mappings()
                .all()
            )
            return [self._to_version(r, name, aliases) for r in rows]

    def resolve(self, ref: str) -> ModelVersion:
        """``NAME`` means its champion; ``NAME@ALIAS``, ``NAME@N``, ``NAME@latest``."""
        name, selector = parse_model_ref(ref)
        v = tables.model_versions
        with self._db.read() as conn:
            model_id = self._model_id(conn, name)
            aliases = self._aliases(conn, model_id)
            if selector.isdigit():
                number = int(selector)
            elif selector == "latest":
                latest = conn.execute(
                    sa.select(sa.func.max(v.c.version)).where(v.c.model_id == model_id)
                ).scalar()
                if latest is None:
                    raise NotFound(f"model {name!r} has no versions")
                number = int(latest)
            elif selector in aliases:
                number = aliases[selector]
            else:
                hint = (
                    f"; its aliases: {', '.join(sorted(aliases))}"
                    if aliases
                    else f"; set one with: mloop models alias {name} {selector} VERSION"
                )
                raise NotFound(f"model {name!r} has no alias {selector!r}{hint}")
            row = self._version_row(conn, model_id, name, number)
            return self._to_version(row, name, aliases)

    def get_model(self, name: str) -> RegisteredModel:
        m, v = tables.registered_models, tables.model_versions
        with self._db.read() as conn:
            model_id = self._model_id(conn, name)
            row = conn.execute(sa.select(m).where(m.c.id == model_id)).mappings().one()
            latest = conn.execute(
                sa.select(sa.func.max(v.c.version)).where(v.c.model_id == model_id)
            ).scalar()
            return RegisteredModel(
                id=row["id"],
                name=row["name"],
                description=row["description"],
                created_at=from_ms(row["created_at"]),
                updated_at=from_ms(row["updated_at"]),
                latest_version=latest,
                aliases=self._aliases(conn, model_id),
            )

    def list_models(self) -> list[RegisteredModel]:
        m = tables.registered_models
        with self._db.read() as conn:
            names = conn.execute(sa.select(m.c.name).order_by(m.c.name)).scalars().all()
        return [self.get_model(n) for n in names]

    # -- loading -----------------------------------------------------------------------

    def load(self, ref: str | ModelVersion) -> LoadedModel:
        """The model behind ``ref``, ready to predict; loaded once and cached by content."""
        version = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        key = version.manifest_digest
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        model = load_package(self._artifacts, key)
        with self._cache_lock:
            self._cache[key] = model
            while len(self._cache) > MODEL_CACHE_SIZE:
                self._cache.popitem(last=False)
        return model
