"""The model registry: registered models, immutable numbered versions, and movable aliases.

A version is a manifest of files in the artifact store. mloop's trainer makes sklearn packages
(``register`` a run's model); a client such as MLflow's registers any set of files it logged
(``create_version`` from a run's artifacts or a logged model), recorded with flavor "mlflow"
unless the files are an mloop package. Models and versions carry tags and descriptions;
``search_models`` and ``search_versions`` take MLflow's registry filters.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms, to_ms
from mloop.core.errors import AlreadyExists, Conflict, IntegrityError, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.data import check_name
from mloop.models import (
    EXPORT_FILE,
    FLAVOR_SKLEARN,
    META_FILE,
    MLMODEL_FILE,
    ONNX_FILE,
    LoadedModel,
    ModelMeta,
    OnnxPredictor,
    Signature,
    load_package,
)
from mloop.registry.promotion import (
    DEFAULT_LATENCY_ROWS,
    AliasChange,
    PromotionPolicy,
    StoredEvaluation,
    alias_changes,
    alias_stack,
    check_policy,
    find_evaluation,
    record_alias_change,
    save_evaluation,
)
from mloop.security import AuditLog, local_actor
from mloop.storage import ArtifactStore, Database, LineageStore, safe_name, tables
from mloop.tracking import Page, TrackingService, check_key, validate_tags

DEFAULT_ALIAS = "champion"
_AUDIT_ACTION = {"set": "model.alias.set", "promote": "model.promote", "rollback": "model.rollback"}
ALIAS_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$")
MODEL_CACHE_SIZE = 8
FLAVOR_MLFLOW = "mlflow"  # files logged by an MLflow client: loadable with mlflow, not served
MAX_DESCRIPTION = 65_536
DEFAULT_MAX_RESULTS = 100
MAX_RESULTS = 10_000


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
    signature: Signature | None  # None: not an mloop package (an MLflow-logged model, say)
    info: dict[str, Any]
    description: str | None
    created_at: datetime
    created_by: str | None
    aliases: list[str]
    source: str | None = None  # where the files came from: runs:/RUN/PATH, models:/ID, ...
    logged_model_id: str | None = None
    tags: dict[str, str] = {}

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def require_signature(self) -> Signature:
        """The signature, or InvalidInput for a version that has none (an MLflow model)."""
        if self.signature is None:
            raise InvalidInput(
                f"{self.ref} is a {self.flavor!r} model without an mloop signature: "
                "only models trained by mloop can be served and monitored by it"
            )
        return self.signature


class RegisteredModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    latest_version: int | None
    aliases: dict[str, int]
    tags: dict[str, str] = {}


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
        self._cache: OrderedDict[str, LoadedModel | OnnxPredictor] = OrderedDict()
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
        return self._insert_version(
            name,
            run_id=run_id,
            flavor=meta.flavor,
            signature=meta.signature.model_dump(mode="json"),
            info=meta.info,
            manifest_digest=manifest_digest,
            description=description,
            source=f"runs:/{run_id}/{safe_name(artifact_path)}",
        )

    def create_version(
        self,
        name: str,
        files: Mapping[str, str],
        *,
        source: str | None = None,
        run_id: str | None = None,
        logged_model_id: str | None = None,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """A new version of the registered model ``name`` (which must exist) made of ``files``
        (name → digest, already in the artifact store), as an MLflow client registers one.

        Files that form an mloop package (``mloop-model.json``) keep its flavor and signature;
        any other set of files is recorded with flavor "mlflow" and no signature."""
        check_name(name, "model")
        if not files:
            raise InvalidInput(f"there are no files to register as a version of {name!r}")
        manifest = {safe_name(path): digest for path, digest in files.items()}
        missing = [p for p, d in manifest.items() if not self._artifacts.exists(d)]
        if missing:
            raise InvalidInput(f"file {missing[0]!r} of the new version is not in the store")
        tags_ = {k: str(v) for k, v in (tags or {}).items()}
        validate_tags(tags_)
        _check_description(description)
        if run_id is not None:
            self._tracking.get_run(run_id)  # NotFound if there is no such run
        info: dict[str, Any]
        if META_FILE in manifest:
            meta = ModelMeta.model_validate_json(self._artifacts.get_bytes(manifest[META_FILE]))
            flavor, signature, info = meta.flavor, meta.signature.model_dump(mode="json"), meta.info
        else:
            flavor, signature, info = FLAVOR_MLFLOW, {}, self._mlmodel_info(manifest)
        manifest_digest = self._artifacts.put_bytes(
            json.dumps({"files": dict(sorted(manifest.items()))}, sort_keys=True).encode()
        )
        return self._insert_version(
            name,
            run_id=run_id,
            flavor=flavor,
            signature=signature,
            info=info,
            manifest_digest=manifest_digest,
            description=description,
            source=source,
            logged_model_id=logged_model_id,
            tags=tags_,
            create_model=False,
        )

    def _mlmodel_info(self, manifest: Mapping[str, str]) -> dict[str, Any]:
        """What an MLflow model's ``MLmodel`` says of itself: its flavors."""
        if MLMODEL_FILE not in manifest:
            return {}
        import yaml

        try:
            description = yaml.safe_load(self._artifacts.get_bytes(manifest[MLMODEL_FILE]))
            flavors = sorted((description or {}).get("flavors") or {})
        except (yaml.YAMLError, AttributeError, TypeError):
            return {}
        return {"mlflow_flavors": [str(f) for f in flavors]}

    def _insert_version(
        self,
        name: str,
        *,
        run_id: str | None,
        flavor: str,
        signature: dict[str, Any],
        info: dict[str, Any],
        manifest_digest: str,
        description: str | None,
        source: str | None = None,
        logged_model_id: str | None = None,
        tags: dict[str, str] | None = None,
        create_model: bool = True,
    ) -> ModelVersion:
        m, v = tables.registered_models, tables.model_versions
        for _attempt in range(5):
            try:
                with self._db.write() as conn:
                    model_id = conn.execute(sa.select(m.c.id).where(m.c.name == name)).scalar()
                    now = now_ms()
                    if model_id is None:
                        if not create_model:
                            raise NotFound(f"model {name!r} is not registered")
                        model_id = new_id()
                        conn.execute(
                            m.insert().values(
                                id=model_id,
                                name=name,
                                description=None,
                                created_at=now,
                                updated_at=now,
                                tags={},
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
                            flavor=flavor,
                            manifest_digest=manifest_digest,
                            signature=signature,
                            info=info,
                            description=description,
                            created_at=now,
                            created_by=local_actor(),
                            source=source,
                            logged_model_id=logged_model_id,
                            tags=tags or {},
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
                        {"run_id": run_id, "source": source},
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
                        record_alias_change(
                            conn, model_id, DEFAULT_ALIAS, 1, None, "set", "first version"
                        )
                return self.get_version(name, number)
            except DBIntegrityError:
                continue
        raise Conflict(f"could not register a version of {name!r}: too many concurrent writers")

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str | None = None,
        action: str = "set",
        detail: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (creating or moving it), in one transaction, recorded
        in the alias history (``action``: set, promote or rollback) and the audit log."""
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
                        _AUDIT_ACTION[action],
                        "model",
                        name,
                        {
                            "alias": alias,
                            "version": version,
                            "previous": previous,
                            "reason": reason,
                            **(detail or {}),
                        },
                    )
                    record_alias_change(
                        conn, model_id, alias, version, previous, action, reason, detail
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
            record_alias_change(conn, model_id, alias, None, None, "delete", None)

    # -- promotion: policies, alias history, rollback, stored evaluations -------------------

    def set_policy(
        self,
        name: str,
        *,
        gates: Sequence[str],
        dataset: str,
        alias: str = DEFAULT_ALIAS,
        sensitive: Sequence[str] = (),
        slices: Sequence[str] = (),
        latency_rows: int = DEFAULT_LATENCY_ROWS,
        reason: str | None = None,
    ) -> PromotionPolicy:
        """Set model ``name``'s promotion policy: ``gates`` (expressions over evaluation
        results, e.g. ``"roc_auc >= champion.roc_auc - 0.005"``) that a version must pass on
        ``dataset`` to take ``alias``. Replaces the previous policy (kept in the audit log)."""
        check_alias(alias)
        policy = check_policy(
            name,
            gates=gates,
            dataset=dataset,
            alias=alias,
            sensitive=sensitive,
            slices=slices,
            latency_rows=latency_rows,
        )
        p = tables.promotion_policies
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            values = {"spec": policy.spec(), "updated_at": now_ms(), "updated_by": local_actor()}
            if conn.execute(sa.select(p.c.model_id).where(p.c.model_id == model_id)).first():
                conn.execute(p.update().where(p.c.model_id == model_id).values(**values))
            else:
                conn.execute(p.insert().values(model_id=model_id, **values))
            self._audit.record(
                conn, "model.policy.set", "model", name, {**policy.spec(), "reason": reason}
            )
        found = self.get_policy(name)
        assert found is not None
        return found

    def get_policy(self, name: str) -> PromotionPolicy | None:
        """Model ``name``'s promotion policy, or None when it has none."""
        p = tables.promotion_policies
        with self._db.read() as conn:
            model_id = self._model_id(conn, name)
            row = conn.execute(sa.select(p).where(p.c.model_id == model_id)).mappings().first()
        if row is None:
            return None
        return PromotionPolicy(
            model=name,
            **row["spec"],
            updated_at=from_ms(row["updated_at"]),
            updated_by=row["updated_by"],
        )

    def delete_policy(self, name: str, *, reason: str | None = None) -> None:
        p = tables.promotion_policies
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            if not conn.execute(p.delete().where(p.c.model_id == model_id)).rowcount:
                raise NotFound(f"model {name!r} has no promotion policy")
            self._audit.record(conn, "model.policy.delete", "model", name, {"reason": reason})

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        """Every move of the model's aliases (or of one), oldest first."""
        with self._db.read() as conn:
            return alias_changes(conn, self._model_id(conn, name), name, alias)

    def rollback(
        self, name: str, alias: str = DEFAULT_ALIAS, *, reason: str | None = None
    ) -> ModelVersion:
        """Point ``alias`` back at the version it held before its last move (a promotion, a
        set, or an earlier rollback's target: rolling back twice goes back twice)."""
        check_alias(alias)
        stack = alias_stack(self.alias_history(name, alias))
        current = self.get_model(name).aliases.get(alias)
        if current is None:
            raise InvalidInput(f"model {name!r} has no alias {alias!r} to roll back")
        if len(stack) < 2 or stack[-1] != current:
            raise InvalidInput(
                f"{name}@{alias} has no earlier version to roll back to (it holds version "
                f"{current} and no move before it is recorded)"
            )
        target = stack[-2]
        return self.set_alias(
            name,
            alias,
            target,
            reason=reason,
            action="rollback",
            detail={"rolled_back": current},
        )

    def attach(self, version: ModelVersion, key: str, data: bytes) -> str:
        """Keep a document about ``version`` (its card, its explanations): the bytes in the
        artifact store, their digest in the version's tag ``mloop.<key>``. The version's own
        files never change; a new document for the same key replaces the tag."""
        digest = self._artifacts.put_bytes(data)
        self.set_version_tag(version.name, version.version, f"mloop.{key}", digest)
        return digest

    def attachment(self, version: ModelVersion, key: str) -> bytes | None:
        """The document ``attach`` kept under ``key``, or None."""
        digest = self.get_version(version.name, version.version).tags.get(f"mloop.{key}")
        return self._artifacts.get_bytes(digest) if digest else None

    def record_refusal(
        self,
        name: str,
        version: int,
        alias: str,
        reason: str | None,
        detail: dict[str, Any],
    ) -> None:
        """Keep a refused promotion in the audit trail, with the gates that failed."""
        with self._db.write() as conn:
            self._audit.record(
                conn,
                "model.promote.refused",
                "model",
                name,
                {"alias": alias, "version": version, "reason": reason, **detail},
            )

    def find_evaluation(
        self, version: ModelVersion, dataset_version_id: str, spec_hash: str
    ) -> StoredEvaluation | None:
        with self._db.read() as conn:
            return find_evaluation(conn, version.id, dataset_version_id, spec_hash)

    def save_evaluation(
        self,
        version: ModelVersion,
        dataset_version_id: str,
        spec_hash: str,
        spec: dict[str, Any],
        metrics: dict[str, float],
        details: dict[str, Any],
    ) -> StoredEvaluation:
        """Keep a version's results on a dataset version (with lineage from that version)."""
        with self._db.write() as conn:
            stored = save_evaluation(
                conn, version.id, dataset_version_id, spec_hash, spec, metrics, details
            )
            self._lineage.add(
                conn,
                ("dataset_version", dataset_version_id),
                ("model_version", version.id),
                "evaluated",
            )
            self._audit.record(
                conn,
                "model.version.evaluate",
                "model_version",
                version.ref,
                {"dataset_version_id": dataset_version_id, "evaluation": stored.id},
            )
        return stored

    # -- models and versions as MLflow manages them ------------------------------------

    def create_model(
        self,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> RegisteredModel:
        """An empty registered model (its versions come later)."""
        check_name(name, "model")
        _check_description(description)
        tags_ = {k: str(v) for k, v in (tags or {}).items()}
        validate_tags(tags_)
        m = tables.registered_models
        try:
            with self._db.write() as conn:
                if conn.execute(sa.select(m.c.id).where(m.c.name == name)).first() is not None:
                    raise AlreadyExists(f"model {name!r} is already registered")
                now = now_ms()
                conn.execute(
                    m.insert().values(
                        id=new_id(),
                        name=name,
                        description=description,
                        created_at=now,
                        updated_at=now,
                        tags=tags_,
                    )
                )
                self._audit.record(conn, "model.create", "model", name)
        except DBIntegrityError as exc:
            raise AlreadyExists(f"model {name!r} is already registered") from exc
        return self.get_model(name)

    def update_model(self, name: str, *, description: str | None) -> RegisteredModel:
        _check_description(description)
        m = tables.registered_models
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            conn.execute(
                m.update()
                .where(m.c.id == model_id)
                .values(description=description, updated_at=now_ms())
            )
            self._audit.record(conn, "model.update", "model", name)
        return self.get_model(name)

    def rename_model(self, name: str, new_name: str) -> RegisteredModel:
        """Rename a model; its versions and aliases follow (logged predictions keep the name
        they were made under)."""
        check_name(new_name, "model")
        m = tables.registered_models
        try:
            with self._db.write() as conn:
                model_id = self._model_id(conn, name)
                taken = conn.execute(sa.select(m.c.id).where(m.c.name == new_name)).first()
                if taken is not None:
                    raise AlreadyExists(f"model {new_name!r} is already registered")
                conn.execute(
                    m.update().where(m.c.id == model_id).values(name=new_name, updated_at=now_ms())
                )
                self._audit.record(
                    conn, "model.rename", "model", new_name, {"from": name, "to": new_name}
                )
        except DBIntegrityError as exc:
            raise AlreadyExists(f"model {new_name!r} is already registered") from exc
        return self.get_model(new_name)

    def delete_model(self, name: str) -> None:
        """Remove a model with its versions and aliases (their files stay in the store, and
        the lineage and audit records stay)."""
        m, v, a = tables.registered_models, tables.model_versions, tables.model_aliases
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            conn.execute(a.delete().where(a.c.model_id == model_id))
            for t in (tables.promotion_policies, tables.model_alias_history):
                conn.execute(t.delete().where(t.c.model_id == model_id))
            e = tables.model_evaluations
            ids = sa.select(v.c.id).where(v.c.model_id == model_id)
            conn.execute(e.delete().where(e.c.model_version_id.in_(ids)))
            count = conn.execute(v.delete().where(v.c.model_id == model_id)).rowcount
            conn.execute(m.delete().where(m.c.id == model_id))
            self._audit.record(conn, "model.delete", "model", name, {"versions": count})

    def update_version(self, name: str, version: int, *, description: str | None) -> ModelVersion:
        _check_description(description)
        v = tables.model_versions
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            row = self._version_row(conn, model_id, name, version)
            conn.execute(v.update().where(v.c.id == row["id"]).values(description=description))
            self._audit.record(conn, "model.version.update", "model_version", f"{name}@{version}")
        return self.get_version(name, version)

    def delete_version(self, name: str, version: int) -> None:
        """Remove one version and the aliases that point at it. Its number is not handed out
        again while a later version exists (numbers count up from the latest)."""
        v, a = tables.model_versions, tables.model_aliases
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            row = self._version_row(conn, model_id, name, version)
            held = self._aliases(conn, model_id)
            for alias in sorted(k for k, n in held.items() if n == version):
                record_alias_change(
                    conn, model_id, alias, None, version, "delete", f"version {version} deleted"
                )
            conn.execute(a.delete().where(a.c.model_id == model_id, a.c.version == version))
            e = tables.model_evaluations
            conn.execute(e.delete().where(e.c.model_version_id == row["id"]))
            conn.execute(v.delete().where(v.c.id == row["id"]))
            conn.execute(
                tables.registered_models.update()
                .where(tables.registered_models.c.id == model_id)
                .values(updated_at=now_ms())
            )
            self._audit.record(conn, "model.version.delete", "model_version", f"{name}@{version}")

    def set_model_tag(self, name: str, key: str, value: Any) -> None:
        self._edit_model_tags(name, key, str(value))

    def delete_model_tag(self, name: str, key: str) -> None:
        self._edit_model_tags(name, key, None)

    def _edit_model_tags(self, name: str, key: str, value: str | None) -> None:
        m = tables.registered_models
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            current = conn.execute(
                sa.select(m.c.tags).where(m.c.id == model_id).with_for_update()
            ).scalar()
            tags = _edited(dict(current or {}), key, value, f"model {name!r}")
            conn.execute(m.update().where(m.c.id == model_id).values(tags=tags))

    def set_version_tag(self, name: str, version: int, key: str, value: Any) -> None:
        self._edit_version_tags(name, version, key, str(value))

    def delete_version_tag(self, name: str, version: int, key: str) -> None:
        self._edit_version_tags(name, version, key, None)

    def _edit_version_tags(self, name: str, version: int, key: str, value: str | None) -> None:
        v = tables.model_versions
        with self._db.write() as conn:
            model_id = self._model_id(conn, name)
            row_id = self._version_row(conn, model_id, name, version)["id"]
            current = conn.execute(
                sa.select(v.c.tags).where(v.c.id == row_id).with_for_update()
            ).scalar()
            tags = _edited(dict(current or {}), key, value, f"model version {name}@{version}")
            conn.execute(v.update().where(v.c.id == row_id).values(tags=tags))

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
            signature=Signature.model_validate(row["signature"]) if row["signature"] else None,
            info=row["info"],
            description=row["description"],
            created_at=from_ms(row["created_at"]),
            created_by=row["created_by"],
            aliases=sorted(a for a, n in aliases.items() if n == row["version"]),
            source=row["source"],
            logged_model_id=row["logged_model_id"],
            tags=dict(row["tags"] or {}),
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
        with self._db.read() as conn:
            return self._registered_model(conn, self._model_id(conn, name))

    def _registered_model(self, conn: Connection, model_id: str) -> RegisteredModel:
        m, v = tables.registered_models, tables.model_versions
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
            tags=dict(row["tags"] or {}),
        )

    def list_models(self) -> list[RegisteredModel]:
        m = tables.registered_models
        with self._db.read() as conn:
            ids = conn.execute(sa.select(m.c.id).order_by(m.c.name)).scalars().all()
            return [self._registered_model(conn, i) for i in ids]

    def search_models(
        self,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[RegisteredModel]:
        """Models matching MLflow's registry filter (``name`` and ``tags.KEY`` with =, !=,
        LIKE, ILIKE, joined by AND), ordered by ``name``, ``creation_timestamp`` or
        ``last_updated_timestamp`` (name ascending by default)."""
        predicates = _parse_registry_filter(filter_string, _MODEL_FIELDS, "registered model")
        order = _parse_registry_order(order_by, _MODEL_ORDER, "registered model")
        limit, offset = _check_page(max_results, page_token)
        found = [m for m in self.list_models() if all(p(_model_fields(m)) for p in predicates)]
        for field, ascending in reversed(order or [("name", True)]):
            found.sort(key=_by(_model_fields, field), reverse=not ascending)
        return _page(found, limit, offset)

    def search_versions(
        self,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[ModelVersion]:
        """Versions matching MLflow's registry filter (``name``, ``run_id``, ``source_path``,
        ``version_number``, ``tags.KEY``; ``run_id IN (...)``), joined by AND; by name, then
        newest version first, unless ordered otherwise."""
        predicates = _parse_registry_filter(filter_string, _VERSION_FIELDS, "model version")
        order = _parse_registry_order(order_by, _VERSION_ORDER, "model version")
        limit, offset = _check_page(max_results, page_token)
        m, v = tables.registered_models, tables.model_versions
        with self._db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(v, m.c.name.label("model_name")).join(m, m.c.id == v.c.model_id)
                )
                .mappings()
                .all()
            )
            aliases: dict[str, dict[str, int]] = {}
            for model_id, alias, number in conn.execute(
                sa.select(
                    tables.model_aliases.c.model_id,
                    tables.model_aliases.c.alias,
                    tables.model_aliases.c.version,
                )
            ):
                aliases.setdefault(model_id, {})[alias] = number
        versions = [
            self._to_version(r, r["model_name"], aliases.get(r["model_id"], {})) for r in rows
        ]
        found = [x for x in versions if all(p(_version_fields(x)) for p in predicates)]
        for field, ascending in reversed(order or [("name", True), ("version_number", False)]):
            found.sort(key=_by(_version_fields, field), reverse=not ascending)
        return _page(found, limit, offset)

    def files(self, version: ModelVersion) -> dict[str, str]:
        """The version's files: name → digest in the artifact store."""
        try:
            files = json.loads(self._artifacts.get_bytes(version.manifest_digest))["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"model manifest {version.manifest_digest} is unreadable: {exc}"
            ) from exc
        return {str(k): str(d) for k, d in files.items()}

    def export(self, ref: str | ModelVersion, destination: str | Path) -> Path:
        """Write the version's files to the new folder ``destination``, with
        ``mloop-export.json`` (the version, its signature, metrics and lineage, and each
        file's sha256): a self-contained model that ``mloop.models.load_folder`` (or MLflow's
        ``mlflow.pyfunc.load_model``, for an sklearn package) loads without the workspace.
        The folder appears whole or not at all; an existing non-empty folder is refused."""
        version = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        target = Path(destination).resolve()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise InvalidInput(f"{target} exists and is not an empty folder")
        files = self.files(version)
        staging = Path(tempfile.mkdtemp(prefix=".mloop-export-", dir=target.parent))
        try:
            for name, digest in files.items():
                (staging / safe_name(name)).parent.mkdir(parents=True, exist_ok=True)
                (staging / safe_name(name)).write_bytes(self._artifacts.get_bytes(digest))
            described = {
                "model": version.name,
                "version": version.version,
                "ref": version.ref,
                "flavor": version.flavor,
                "run_id": version.run_id,
                "created_at": version.created_at.isoformat(),
                "aliases": version.aliases,
                "signature": version.signature.model_dump(mode="json")
                if version.signature
                else None,
                "info": version.info,
                "files": files,
            }
            (staging / EXPORT_FILE).write_text(json.dumps(described, indent=2, default=str))
            if target.exists():
                target.rmdir()
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    # -- loading -----------------------------------------------------------------------

    def load(self, ref: str | ModelVersion) -> LoadedModel:
        """The model behind ``ref``, ready to predict; loaded once and cached by content."""
        version = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        if version.flavor != FLAVOR_SKLEARN:
            raise InvalidInput(
                f"{version.ref} has flavor {version.flavor!r}: mloop serves the sklearn "
                "packages it trains; load this one with mlflow.pyfunc.load_model"
            )
        key = version.manifest_digest
        cached = self._cached(key)
        if cached is not None:
            assert isinstance(cached, LoadedModel)
            return cached
        model = load_package(self._artifacts, key)
        self._keep(key, model)
        return model

    def load_onnx(self, ref: str | ModelVersion) -> OnnxPredictor | None:
        """The version's ONNX export in ONNX Runtime (one intra-op thread), or None when it
        has none, when its export disagreed with the native model at training time
        (``onnx_ok`` is 0), or when ONNX Runtime is not installed (``mloop[onnx]``)."""
        version = ref if isinstance(ref, ModelVersion) else self.resolve(ref)
        if version.signature is None or version.info.get("metrics", {}).get("onnx_ok") != 1.0:
            return None
        digest = self.files(version).get(ONNX_FILE)
        if digest is None:
            return None
        try:
            import onnxruntime  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            return None
        key = f"onnx:{digest}"
        cached = self._cached(key)
        if cached is not None:
            assert isinstance(cached, OnnxPredictor)
            return cached
        predictor = OnnxPredictor(self._artifacts.get_bytes(digest), version.signature)
        self._keep(key, predictor)
        return predictor

    def _cached(self, key: str) -> LoadedModel | OnnxPredictor | None:
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
            return cached

    def _keep(self, key: str, model: LoadedModel | OnnxPredictor) -> None:
        with self._cache_lock:
            self._cache[key] = model
            while len(self._cache) > MODEL_CACHE_SIZE:
                self._cache.popitem(last=False)


# -- helpers -----------------------------------------------------------------------------------


def _check_description(description: str | None) -> None:
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        raise InvalidInput(f"a description is text of at most {MAX_DESCRIPTION} characters")


def _edited(tags: dict[str, str], key: str, value: str | None, owner: str) -> dict[str, str]:
    """``tags`` with ``key`` set to ``value`` (or removed when None)."""
    check_key(key, "tag")
    if value is None:
        if key not in tags:
            raise NotFound(f"{owner} has no tag {key!r}")
        del tags[key]
    else:
        validate_tags({key: value})
        tags[key] = value
    return tags


def _check_page(max_results: int | None, page_token: str | None) -> tuple[int, int]:
    limit = DEFAULT_MAX_RESULTS if max_results is None else max_results
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_RESULTS:
        raise InvalidInput(f"max_results must be 1-{MAX_RESULTS}, not {max_results!r}")
    offset = 0
    if page_token:
        try:
            offset = json.loads(base64.urlsafe_b64decode(page_token.encode()))["offset"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"invalid page token {page_token!r}") from exc
        if not isinstance(offset, int) or offset < 0:
            raise InvalidInput(f"invalid page token {page_token!r}")
    return limit, offset


def _page(items: list[Any], limit: int, offset: int) -> Page[Any]:
    token = None
    if len(items) > offset + limit:
        token = base64.urlsafe_b64encode(json.dumps({"offset": offset + limit}).encode()).decode()
    return Page[Any](items=items[offset : offset + limit], next_page_token=token)


def _ms(moment: datetime) -> int:
    return to_ms(moment)


def _by(fields: Callable[[Any], dict[str, Any]], field: str) -> Callable[[Any], Any]:
    """A sort key: one field of a model or version."""
    return lambda item: fields(item)[field]


def _model_fields(model: RegisteredModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "creation_timestamp": _ms(model.created_at),
        "last_updated_timestamp": _ms(model.updated_at),
        "tags": model.tags,
    }


def _version_fields(version: ModelVersion) -> dict[str, Any]:
    return {
        "name": version.name,
        "version_number": version.version,
        "run_id": version.run_id or "",
        "source_path": version.source or "",
        "creation_timestamp": _ms(version.created_at),
        "last_updated_timestamp": _ms(version.created_at),
        "tags": version.tags,
    }


_MODEL_FIELDS = {"name": "string"}
_VERSION_FIELDS = {
    "name": "string",
    "run_id": "string",
    "source_path": "string",
    "version_number": "number",
}
_MODEL_ORDER = {"name", "creation_timestamp", "last_updated_timestamp"}
_VERSION_ORDER = {"name", "version_number", "creation_timestamp", "last_updated_timestamp"}
_ORDER_ALIASES = {"timestamp": "creation_timestamp", "version": "version_number"}

_CLAUSE = re.compile(
    r"""\s*(?P<field>tags?\.(?:`[^`]+`|"[^"]+"|[\w.\-/: ]+?)|[A-Za-z_.]+)
        \s*(?P<op>!=|<>|>=|<=|=|<|>|\bNOT\s+IN\b|\bIN\b|\bI?LIKE\b)
        \s*(?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*"|[-+]?\d+|\((?:[^()'"]|'(?:[^']|'')*')*\))
        \s*(?P<joint>\bAND\b|$)""",
    re.IGNORECASE | re.VERBOSE,
)
_STRING = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


def _unquote(text: str) -> str:
    return text[1:-1].replace(text[0] * 2, text[0])


def _parse_registry_filter(
    text: str | None, fields: dict[str, str], what: str
) -> list[Callable[[dict[str, Any]], bool]]:
    """MLflow's registry filter: ``name LIKE 'fraud%' AND tags.team = 'risk'``."""
    if text is None or not text.strip():
        return []
    predicates: list[Callable[[dict[str, Any]], bool]] = []
    pos = 0
    while pos < len(text):
        match = _CLAUSE.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidInput(
                f"invalid {what} filter {text!r} at position {pos}: use FIELD OP VALUE clauses "
                f"joined by AND, FIELD one of {', '.join(sorted(fields))} or tags.KEY"
            )
        field, op = match["field"], " ".join(match["op"].upper().split())
        op = "!=" if op == "<>" else op
        raw = match["value"]
        if field.lower().startswith(("tags.", "tag.")):
            key = field.split(".", 1)[1].strip()
            if key[:1] in '`"' and key[-1:] == key[:1]:
                key = key[1:-1]
            kind = "tag"
        else:
            key = field.removeprefix("attributes.").removeprefix("attribute.")
            if key not in fields:
                raise InvalidInput(
                    f"invalid {what} filter {text!r}: unknown field {field!r} "
                    f"(use {', '.join(sorted(fields))} or tags.KEY)"
                )
            kind = fields[key]
        predicates.append(_registry_predicate(kind, key, op, raw, text, what))
        pos = match.end()
        if not match["joint"]:
            break
    if pos < len(text.rstrip()):
        raise InvalidInput(f"invalid {what} filter {text!r} at position {pos}")
    return predicates


def _registry_predicate(
    kind: str, key: str, op: str, raw: str, text: str, what: str
) -> Callable[[dict[str, Any]], bool]:
    bad = InvalidInput(f"invalid {what} filter {text!r}: {key} does not take {op} {raw}")
    if op in ("IN", "NOT IN"):
        if kind != "string" or not raw.startswith("("):
            raise bad
        values = {_unquote(v) for v in _STRING.findall(raw)}
        return lambda f: (f[key] in values) == (op == "IN")
    if raw.startswith("("):
        raise bad
    if kind == "number":
        if raw[0] in "'\"" or op in ("LIKE", "ILIKE"):
            raise bad
        number = int(raw)
        return lambda f: _compare(f[key], op, number)
    if raw[0] not in "'\"" or op not in ("=", "!=", "LIKE", "ILIKE"):
        raise bad
    value = _unquote(raw)
    if kind == "tag":  # as in MLflow, a missing tag is != any value (prompts are excluded so)
        if op == "!=":
            return lambda f: f["tags"].get(key) != value
        return lambda f: key in f["tags"] and _compare(f["tags"][key], op, value)
    return lambda f: _compare(f[key], op, value)


def _compare(actual: Any, op: str, value: Any) -> bool:
    if op in ("LIKE", "ILIKE"):
        pattern = "".join(
            ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(value)
        )
        flags = re.IGNORECASE | re.DOTALL if op == "ILIKE" else re.DOTALL
        return re.fullmatch(pattern, str(actual), flags) is not None
    result: bool = {
        "=": lambda: actual == value,
        "!=": lambda: actual != value,
        "<": lambda: actual < value,
        "<=": lambda: actual <= value,
        ">": lambda: actual > value,
        ">=": lambda: actual >= value,
    }[op]()
    return result


def _parse_registry_order(
    items: list[str] | None, allowed: set[str], what: str
) -> list[tuple[str, bool]]:
    order: list[tuple[str, bool]] = []
    for item in items or []:
        parts = item.split()
        field = _ORDER_ALIASES.get(parts[0], parts[0]) if parts else ""
        direction = parts[1].upper() if len(parts) == 2 else "ASC"
        if field not in allowed or len(parts) > 2 or direction not in ("ASC", "DESC"):
            raise InvalidInput(
                f"invalid {what} order_by {item!r}: one of {', '.join(sorted(allowed))}, "
                "then ASC or DESC"
            )
        order.append((field, direction == "ASC"))
    return order
