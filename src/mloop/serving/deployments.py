"""Deployments: what a server serves under a name, and how traffic splits across versions.

A deployment has one or more **variants**, each a model reference (``churn@champion``,
``churn@3``) and, unless it is a shadow, a traffic weight. The **strategy** says how the
weights are read:

- ``single``: one variant takes every request.
- ``ab``: two or more variants share requests by weight (``a: 50, b: 50``).
- ``canary``: two variants; the second takes ``weight`` percent, the first the rest.
- ``shadow`` variants (any strategy may add them) receive a copy of every request; their
  answers are logged for comparison, never returned to the client nor counted against it.

Assignment is **sticky** when a request carries a key (the body's ``key``, the
``X-Mloop-Key`` header, or the column named by ``sticky_key`` in its first row): the same key
always lands on the same variant while the weights stay the same. Without a key a request is
assigned at random.

A reference that names an alias follows the alias: moving ``churn@champion`` re-points every
deployment that serves it, and servers hot-swap the model without failing a request.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import AlreadyExists, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.data import check_name
from mloop.registry import ModelVersion, RegistryService, parse_model_ref
from mloop.security import AuditLog, local_actor
from mloop.storage import Database, tables

Strategy = Literal["single", "ab", "canary"]
Runtime = Literal["auto", "native", "onnx"]
VARIANT_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
MAX_VARIANTS = 16


class Variant(BaseModel):
    """One model version a deployment serves (or mirrors, when ``shadow``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    model: str  # NAME, NAME@ALIAS or NAME@N
    weight: float = Field(default=100.0, ge=0, le=100)  # percent of traffic; canary: the share
    shadow: bool = False
    runtime: Runtime = "auto"  # auto: ONNX Runtime when the version has a verified export

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not VARIANT_PATTERN.match(value):
            raise ValueError(
                f"variant name {value!r} is not allowed: start with a letter; letters, "
                "digits, '_', '-'"
            )
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        try:
            parse_model_ref(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc
        return value.strip()


class Batching(BaseModel):
    """Adaptive micro-batching: requests that arrive together are predicted together.

    A request waits at most ``max_wait_ms`` for others to join its batch (0: it never waits;
    requests still batch when they arrive while the model is busy); a batch holds at most
    ``max_batch_size`` rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_batch_size: int = Field(default=64, ge=1, le=10_000)
    max_wait_ms: float = Field(default=0.0, ge=0, le=1_000)


class DeploymentSpec(BaseModel):
    """What ``mloop deploy`` (or a YAML file) asks for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: Strategy = "single"
    variants: list[Variant]
    sticky_key: str | None = None  # the row column that keys sticky assignment
    batching: Batching = Batching()
    timeout_ms: int = Field(default=10_000, ge=1, le=600_000)  # queue wait before 503
    description: str | None = Field(default=None, max_length=10_000)

    def served(self) -> list[Variant]:
        return [v for v in self.variants if not v.shadow]

    def shadows(self) -> list[Variant]:
        return [v for v in self.variants if v.shadow]

    def shares(self) -> list[tuple[Variant, float]]:
        """Each served variant and its share of traffic (summing to 1)."""
        served = self.served()
        if self.strategy == "single":
            return [(served[0], 1.0)]
        if self.strategy == "canary":
            stable, canary = served
            return [(stable, 1 - canary.weight / 100), (canary, canary.weight / 100)]
        total = sum(v.weight for v in served)
        return [(v, v.weight / total) for v in served]


class Deployment(DeploymentSpec):
    name: str
    revision: int
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    updated_by: str | None

    def spec(self) -> DeploymentSpec:
        return DeploymentSpec.model_validate(
            self.model_dump(include=set(DeploymentSpec.model_fields))
        )


def check_spec(spec: DeploymentSpec | dict[str, Any]) -> DeploymentSpec:
    """``spec`` validated, every rule of the strategy checked (InvalidInput names the first
    broken one)."""
    if not isinstance(spec, DeploymentSpec):
        if not isinstance(spec, dict):
            raise InvalidInput("a deployment spec is an object with 'variants'")
        try:
            spec = DeploymentSpec.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "spec"
            raise InvalidInput(f"deployment spec: {where}: {first['msg']}") from exc
    variants = spec.variants
    if not variants:
        raise InvalidInput("a deployment needs at least one variant")
    if len(variants) > MAX_VARIANTS:
        raise InvalidInput(f"a deployment has at most {MAX_VARIANTS} variants")
    names = [v.name for v in variants]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise InvalidInput(f"two variants are named {duplicate!r}")
    served = spec.served()
    if spec.strategy == "single" and len(served) != 1:
        raise InvalidInput(
            f"strategy 'single' serves exactly one variant (besides shadows), not {len(served)}"
        )
    if spec.strategy == "ab":
        if len(served) < 2:
            raise InvalidInput("strategy 'ab' needs two or more served variants")
        if sum(v.weight for v in served) <= 0:
            raise InvalidInput("strategy 'ab' needs a positive weight on some variant")
    if spec.strategy == "canary":
        if len(served) != 2:
            raise InvalidInput(
                "strategy 'canary' serves two variants: the stable one, then the canary"
            )
        if not 0 < served[1].weight < 100:
            raise InvalidInput(
                f"the canary's weight is its percent of traffic, between 0 and 100 "
                f"(exclusive), not {served[1].weight:g}"
            )
    if spec.sticky_key is not None:
        check_name(spec.sticky_key, "sticky key column")
    return spec


def _row(row: Any) -> Deployment:
    body = dict(row.spec)
    return Deployment.model_validate(
        {
            **body,
            "name": row.name,
            "revision": row.revision,
            "created_at": from_ms(row.created_at),
            "created_by": row.created_by,
            "updated_at": from_ms(row.updated_at),
            "updated_by": row.updated_by,
        }
    )


class DeploymentService:
    """Deployments in the workspace database; every change is audited and bumps the
    revision servers watch."""

    def __init__(self, db: Database, registry: RegistryService, audit: AuditLog) -> None:
        self._db = db
        self._registry = registry
        self._audit = audit

    def _check_models(self, spec: DeploymentSpec) -> None:
        for variant in spec.variants:  # each reference resolves, and to a servable version
            version = self._registry.resolve(variant.model)
            version.require_signature()

    def create(
        self, name: str, spec: DeploymentSpec | dict[str, Any], *, replace: bool = False
    ) -> Deployment:
        """Create deployment ``name`` (AlreadyExists unless ``replace``, which updates)."""
        check_name(name, "deployment")
        spec = check_spec(spec)
        self._check_models(spec)
        t = tables.deployments
        body = spec.model_dump(mode="json")
        with self._db.write() as conn:
            found = conn.execute(sa.select(t.c.revision).where(t.c.name == name)).first()
            if found is not None and not replace:
                raise AlreadyExists(
                    f"deployment {name!r} exists; update it (mloop deployments update) "
                    "or delete it first"
                )
            now, actor = now_ms(), local_actor()
            if found is None:
                conn.execute(
                    t.insert().values(
                        id=new_id(),
                        name=name,
                        spec=body,
                        revision=1,
                        created_at=now,
                        created_by=actor,
                        updated_at=now,
                        updated_by=actor,
                    )
                )
                self._audit.record(conn, "deployment.create", "deployment", name, body)
            else:
                self._bump(conn, name, body, found.revision)
        return self.get(name)

    def _bump(self, conn: Any, name: str, body: dict[str, Any], revision: int) -> None:
        t = tables.deployments
        conn.execute(
            t.update()
            .where(t.c.name == name)
            .values(
                spec=body,
                revision=revision + 1,
                updated_at=now_ms(),
                updated_by=local_actor(),
            )
        )
        self._audit.record(
            conn, "deployment.update", "deployment", name, {**body, "revision": revision + 1}
        )

    def update(self, name: str, spec: DeploymentSpec | dict[str, Any]) -> Deployment:
        """Replace deployment ``name``'s spec; servers pick it up within a second."""
        check_name(name, "deployment")
        spec = check_spec(spec)
        self._check_models(spec)
        t = tables.deployments
        with self._db.write() as conn:
            found = conn.execute(sa.select(t.c.revision).where(t.c.name == name)).first()
            if found is None:
                raise NotFound(f"no deployment named {name!r}")
            self._bump(conn, name, spec.model_dump(mode="json"), found.revision)
        return self.get(name)

    def get(self, name: str) -> Deployment:
        check_name(name, "deployment")
        t = tables.deployments
        with self._db.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        if row is None:
            raise NotFound(f"no deployment named {name!r}")
        return _row(row)

    def find(self, name: str) -> Deployment | None:
        try:
            return self.get(name)
        except (NotFound, InvalidInput):
            return None

    def list(self) -> builtins.list[Deployment]:
        t = tables.deployments
        with self._db.read() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.name)).all()
        return [_row(r) for r in rows]

    def revisions(self) -> dict[str, int]:
        """Every deployment's name and revision: what a server polls to see changes."""
        t = tables.deployments
        with self._db.read() as conn:
            return {r.name: r.revision for r in conn.execute(sa.select(t.c.name, t.c.revision))}

    def delete(self, name: str) -> None:
        check_name(name, "deployment")
        t = tables.deployments
        with self._db.write() as conn:
            if conn.execute(t.delete().where(t.c.name == name)).rowcount == 0:
                raise NotFound(f"no deployment named {name!r}")
            self._audit.record(conn, "deployment.delete", "deployment", name, {})

    def resolve(self, deployment: Deployment) -> builtins.list[tuple[Variant, ModelVersion]]:
        """Each variant with the version its reference names now."""
        return [(v, self._registry.resolve(v.model)) for v in deployment.variants]


def spec_from_options(
    model: str | None,
    *,
    variants: Sequence[str] = (),
    canary: str | None = None,
    canary_percent: float = 10.0,
    shadows: Sequence[str] = (),
    sticky_key: str | None = None,
    max_batch_size: int | None = None,
    max_wait_ms: float | None = None,
    timeout_ms: int | None = None,
    runtime: str = "auto",
) -> DeploymentSpec:
    """The spec the CLI's options describe.

    ``model`` alone: strategy single. ``canary``: model is the stable variant, ``canary``
    takes ``canary_percent``. ``variants`` (``NAME=REF:WEIGHT``, or ``NAME=REF`` for an equal
    share): strategy ab. ``shadows``: ``REF`` or ``NAME=REF``, mirrored."""
    items: list[dict[str, Any]] = []
    strategy: str = "single"
    if variants:
        if model is not None or canary is not None:
            raise InvalidInput("give either --variant (A/B) or --model (with --canary), not both")
        strategy = "ab"
        for text in variants:
            name, sep, rest = text.partition("=")
            if not sep or not rest:
                raise InvalidInput(f"--variant {text!r}: write NAME=MODEL_REF[:WEIGHT]")
            ref, colon, weight = rest.rpartition(":") if ":" in rest else (rest, "", "")
            try:
                share = float(weight) if colon else 50.0
            except ValueError:
                raise InvalidInput(
                    f"--variant {text!r}: the weight {weight!r} is not a number"
                ) from None
            items.append({"name": name, "model": ref, "weight": share, "runtime": runtime})
    else:
        if model is None:
            raise InvalidInput("give the model to deploy: --model NAME@ALIAS (or --variant)")
        items.append({"name": "primary", "model": model, "runtime": runtime})
        if canary is not None:
            strategy = "canary"
            items.append(
                {"name": "canary", "model": canary, "weight": canary_percent, "runtime": runtime}
            )
    for i, text in enumerate(shadows):
        name, sep, ref = text.partition("=")
        if not sep:
            name, ref = (f"shadow{i + 1}" if len(shadows) > 1 else "shadow"), text
        items.append({"name": name, "model": ref, "shadow": True, "runtime": runtime})
    body: dict[str, Any] = {"strategy": strategy, "variants": items, "sticky_key": sticky_key}
    batching = {
        k: v
        for k, v in (("max_batch_size", max_batch_size), ("max_wait_ms", max_wait_ms))
        if v is not None
    }
    if batching:
        body["batching"] = batching
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    return check_spec(body)
