"""The feature store's service: apply definitions, list them, build point-in-time training sets,
materialize views into the online store and read them back, one code path for every consumer.

A training set joins each entity row to the latest value of each feature at or before the row's
timestamp and no older than the view's TTL (of equal times, the last row written), over the view's
source dataset version (the latest when the training set is built): a binary search over keys and
time packed into one int64 when the keys are integers, Polars' ``join_asof`` by key otherwise.
Every entity row is kept, in the caller's order; a row with no value in the window gets nulls.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.core.lazy import lazy_module
from mloop.data import (
    DatasetService,
    DatasetVersion,
    check_name,
    schema_of,
    to_arrow,
)
from mloop.features.compute import (
    conform,
    empty_frame,
    needed_columns,
    polars_type,
    run_transform,
)
from mloop.features.definitions import (
    Entity,
    Feature,
    FeatureView,
    OnDemandFeatureView,
    spec_hash,
)
from mloop.features.online import Codec, OnlineStore, key_text, layout_id, now_us
from mloop.security import AuditLog, local_actor
from mloop.storage import Database, LineageStore, tables

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow as pa
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")

Definition = Entity | FeatureView | OnDemandFeatureView
INT64 = (-(2**63), 2**63 - 1)
KIND_LABEL = {"entity": "entity", "view": "feature view", "ondemand": "on-demand feature view"}

ROW = "__mloop_row"
TS = "__mloop_ts"


@dataclass(frozen=True)
class TrainingSet:
    """A point-in-time training set: the dataset version it was written as, and its rows."""

    version: DatasetVersion | None  # None: not registered (register=False)
    table: pa.Table
    features: list[str]
    sources: list[DatasetVersion]

    def to_polars(self) -> pl.DataFrame:
        frame = pl.from_arrow(self.table)
        assert isinstance(frame, pl.DataFrame)
        return frame


class Materialization(BaseModel):
    """One materialization of a feature view into the online store."""

    model_config = ConfigDict(frozen=True)

    id: str
    view: str
    view_version: int
    store: str
    mode: str  # range | incremental | stream
    start: datetime | None
    end: datetime | None
    source_version: str | None
    rows_read: int
    entities_written: int
    max_event_time: datetime | None
    status: str  # running | succeeded | failed
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class OnlineResult:
    """Online feature values: ``rows`` (each entity row's join keys and the features asked
    for, in the caller's order) and ``statuses`` (per row, per feature: ``present``,
    ``missing`` — never materialized for that key — or ``expired``: older than the view's TTL,
    so its value is null)."""

    __slots__ = ("_status", "_view_features", "features", "rows")

    def __init__(
        self,
        rows: builtins.list[dict[str, Any]],
        features: builtins.list[str],
        status: builtins.list[builtins.list[str]],
        view_features: builtins.list[builtins.list[str]],
    ) -> None:
        self.rows = rows
        self.features = features
        self._status = status
        self._view_features = view_features

    @property
    def statuses(self) -> builtins.list[dict[str, str]]:
        out = []
        for row_status in self._status:
            entry: dict[str, str] = {}
            for state, names in zip(row_status, self._view_features, strict=True):
                for name in names:
                    entry[name] = state
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, builtins.list[Any]]:
        """Columns: each key and feature name to its values, row by row (Feast's shape)."""
        names = list(self.rows[0]) if self.rows else []
        return {n: [row.get(n) for row in self.rows] for n in names}

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"OnlineResult({len(self.rows)} rows, features={self.features})"


@dataclass(frozen=True)
class SkewReport:
    """Online values against the offline point-in-time join for the same keys and time."""

    checked: int
    at: datetime
    mismatches: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "at": self.at.isoformat(),
            "mismatches": len(self.mismatches),
            "ok": self.ok,
            "examples": self.mismatches[:20],
        }


@dataclass
class _ViewPlan:
    view: FeatureView
    layout: str
    keys: builtins.list[str]
    store_key: str  # "integer" or "text"
    codec: Codec
    picks: builtins.list[tuple[int, str]]  # (feature index in the record, output name)
    inputs: builtins.list[tuple[int, str]]  # (feature index, input slot of on-demand views)
    ttl_us: int | None


@dataclass
class _DemandPlan:
    view: OnDemandFeatureView
    names: builtins.list[str]  # features asked for
    inputs: builtins.list[tuple[str, str]]  # (source feature, input slot)
    sources: builtins.list[int] = field(default_factory=builtins.list)  # view plans it reads


@dataclass
class _Plan:
    features: builtins.list[str]
    views: builtins.list[_ViewPlan]
    demands: builtins.list[_DemandPlan]
    keys: dict[str, str]  # every join key and its type
    request: dict[str, str]  # request fields and their types
    view_features: builtins.list[builtins.list[str]]  # shown features of each visible part
    visible: builtins.list[int]  # parts (views, then on-demand views) with shown features
    expires: float


def parse_view_ref(ref: str) -> tuple[str, int | None]:
    name, at, version = ref.strip().partition("@")
    check_name(name, "feature view")
    if not at or version == "latest":
        return name, None
    digits = version[1:] if version[:1] == "v" else version
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise InvalidInput(f"feature view reference {ref!r}: use NAME or NAME@N")
    return name, int(digits)


def _compatible(declared: str, actual: str) -> bool:
    return declared == actual or (declared == "float" and actual == "integer")


class FeatureService:
    """Entities and feature views (versioned definitions) and point-in-time training sets."""

    def __init__(
        self,
        db: Database,
        datasets: DatasetService,
        audit: AuditLog,
        lineage: LineageStore,
        online_store: Callable[[], OnlineStore],
        *,
        streams: Any = None,
        cache_seconds: float = 1.0,
    ) -> None:
        self._streams = streams
        self._db = db
        self._datasets = datasets
        self._audit = audit
        self._lineage = lineage
        self._open_store = online_store
        self._store: OnlineStore | None = None
        self._cache_seconds = cache_seconds
        self._plans: dict[tuple[str, ...], _Plan] = {}
        self._lock = threading.Lock()

    @property
    def online_store(self) -> OnlineStore:
        """The online store (opened on first use)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._open_store()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- definitions ---------------------------------------------------------------------

    def apply(
        self,
        definitions: Iterable[Definition] | Definition,
        *,
        force: bool = False,
    ) -> list[Definition]:
        """Check and store entities, feature views and on-demand views; each comes back with
        its version.

        Everything is checked before anything is stored: a view's source must exist and hold
        (or its transform produce) its join keys, timestamp column and features with compatible
        types; an on-demand view's transform is run once on typed nulls. An incompatible change
        to a stored definition (a feature's type changed, a feature removed, a join key changed)
        is refused unless ``force=True``."""
        if isinstance(definitions, Entity | FeatureView | OnDemandFeatureView):
            definitions = [definitions]
        items = list(definitions)
        entities = [d for d in items if isinstance(d, Entity)]
        views = [d for d in items if isinstance(d, FeatureView)]
        demands = [d for d in items if isinstance(d, OnDemandFeatureView)]
        others = [d for d in items if not isinstance(d, Entity | FeatureView | OnDemandFeatureView)]
        if others:
            raise InvalidInput(
                "apply takes Entity, FeatureView and OnDemandFeatureView objects, not "
                f"{type(others[0]).__name__}"
            )
        groups: list[tuple[str, list[Definition]]] = [
            ("entity", [*entities]),
            ("feature view", [*views, *demands]),
        ]
        for kind, group in groups:
            names = [d.name for d in group]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise InvalidInput(f"{kind} {twice[0]!r} is defined twice")
        known: dict[str, Entity] = {}
        for entity in entities:
            check_name(entity.name, "entity")
            entity.check()
            self._check_change("entity", entity.name, entity.spec(), force)
            known[entity.name] = entity
        resolved_views = []
        for view in views:
            resolved = self._resolve_view(view, known)
            self._check_change("view", resolved.name, resolved.spec(), force)
            resolved_views.append(resolved)
        known_views = {v.name: v for v in resolved_views}
        resolved_demands = []
        for demand in demands:
            if self._exists("view", demand.name) or demand.name in known_views:
                raise InvalidInput(f"{demand.name!r} is a feature view already: pick another name")
            resolved_demand = self._resolve_ondemand(demand, known_views)
            self._check_change("ondemand", demand.name, resolved_demand.spec(), force)
            resolved_demands.append(resolved_demand)
        for view in resolved_views:
            if self._exists("ondemand", view.name):
                raise InvalidInput(f"{view.name!r} is an on-demand view already: pick another name")
        stored: list[Definition] = []
        for entity in entities:
            version, created = self._save("entity", entity.name, entity.spec())
            stored.append(entity.model_copy(update={"version": version, "created_at": created}))
        for view in resolved_views:
            version, created = self._save("view", view.name, view.spec())
            stored.append(view.model_copy(update={"version": version, "created_at": created}))
        for demand in resolved_demands:
            version, created = self._save("ondemand", demand.name, demand.spec())
            stored.append(demand.model_copy(update={"version": version, "created_at": created}))
        with self._lock:
            self._plans.clear()
        return stored

    def _exists(self, kind: str, name: str) -> bool:
        with self._db.read() as conn:
            return self._latest_row(conn, kind, name) is not None

    def _entity_for(self, name: str, known: dict[str, Entity]) -> Entity:
        if name in known:
            return known[name]
        try:
            return self.get_entity(name)
        except NotFound:
            raise InvalidInput(
                f"entity {name!r} is not defined: apply it with the view or before it"
            ) from None

    def _resolve_view(self, view: FeatureView, known: dict[str, Entity]) -> FeatureView:
        check_name(view.name, "feature view")
        label = f"feature view {view.name!r}"
        if not view.entities:
            raise InvalidInput(f"{label} needs at least one entity")
        if not view.features:
            raise InvalidInput(f"{label} needs at least one feature")
        try:
            source = self._datasets.get(view.source)
        except NotFound:
            raise InvalidInput(f"{label}: source dataset {view.source!r} does not exist") from None
        columns = {c.name: c.type for c in source.schema_.columns}
        where = f"source dataset {source.ref}"
        if view.transform is not None:
            # what the transform makes of the source's latest rows is what the view reads
            sample = self._source_frame(view, source, sample=True)
            columns = {c.name: c.type for c in schema_of(sample.to_arrow()).columns}
            where = f"the transform's output over {source.ref}"
        if view.stream is not None:
            from mloop.data import parse_stream_uri

            parse_stream_uri(view.stream)
        keys: dict[str, str] = {}
        for entity_name in view.entities:
            for key, kind in self._entity_for(entity_name, known).join_keys.items():
                keys[key] = kind
        missing = [k for k in keys if k not in columns]
        if missing:
            raise InvalidInput(f"{label}: {where} has no join key column {missing[0]!r}")
        for key, kind in keys.items():
            if columns[key] != kind:
                raise InvalidInput(
                    f"{label}: join key {key!r} is {kind} but {where} has it as {columns[key]}"
                )
        ts = view.timestamp_column
        if ts not in columns:
            raise InvalidInput(f"{label}: {where} has no timestamp column {ts!r}")
        if columns[ts] not in ("datetime", "date"):
            raise InvalidInput(
                f"{label}: timestamp column {ts!r} of {where} is {columns[ts]}, not a datetime"
            )
        names = view.feature_names
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidInput(f"{label} names feature {twice[0]!r} twice")
        features = []
        for feature in view.features:
            if feature.name not in columns:
                raise InvalidInput(f"{label}: {where} has no feature column {feature.name!r}")
            if feature.name in keys or feature.name == ts:
                raise InvalidInput(
                    f"{label}: {feature.name!r} is a join key or the timestamp, not a feature"
                )
            actual = columns[feature.name]
            if feature.dtype is not None and not _compatible(feature.dtype, actual):
                raise InvalidInput(
                    f"{label}: feature {feature.name!r} is declared {feature.dtype} but {where} "
                    f"has it as {actual}"
                )
            features.append(Feature(name=feature.name, dtype=feature.dtype or actual))
        return view.model_copy(update={"features": features})

    def _latest_row(self, conn: Any, kind: str, name: str) -> Any:
        t = tables.feature_definitions
        return (
            conn.execute(
                sa.select(t)
                .where(t.c.kind == kind, t.c.name == name)
                .order_by(t.c.version.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )

    def _check_change(self, kind: str, name: str, spec: dict[str, Any], force: bool) -> None:
        with self._db.read() as conn:
            row = self._latest_row(conn, kind, name)
        if row is None or force:
            return
        old = row["spec"]
        reasons = []
        if kind == "entity":
            if old["join_keys"] != spec["join_keys"]:
                reasons.append(f"join keys change from {old['join_keys']} to {spec['join_keys']}")
        else:
            new_types = {f["name"]: f["dtype"] for f in spec["features"]}
            removed = [f["name"] for f in old["features"] if f["name"] not in new_types]
            users = self._models_using(name, removed) if removed and kind == "view" else {}
            if removed and kind == "view":
                for demand in self.list_ondemand():
                    for source_ref, feature in self._demand_sources(demand):
                        if source_ref.partition("@")[0] == name and feature in removed:
                            users.setdefault(feature, []).append(f"on-demand view {demand.ref}")
            for f in old["features"]:
                if f["name"] not in new_types:
                    if users.get(f["name"]):
                        reasons.append(
                            f"feature {f['name']!r} is removed but "
                            f"{', '.join(users[f['name']][:3])} uses it"
                        )
                elif new_types[f["name"]] != f["dtype"]:
                    reasons.append(
                        f"feature {f['name']!r} changes type from {f['dtype']} to "
                        f"{new_types[f['name']]}"
                    )
            if old.get("entities") != spec.get("entities"):
                reasons.append(f"entities change from {old['entities']} to {spec['entities']}")
        if reasons:
            what = KIND_LABEL[kind]
            raise Conflict(
                f"{what} {name!r}: incompatible change to version {row['version']}: "
                + "; ".join(reasons)
                + " (apply with force=True / --force to make it anyway)"
            )

    def _models_using(self, view: str, features: Sequence[str]) -> dict[str, builtins.list[str]]:
        """Registered model versions whose feature references name ``view:feature``."""
        v, m = tables.model_versions, tables.registered_models
        wanted = {f"{view}:{f}": f for f in features}
        users: dict[str, builtins.list[str]] = {}
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(m.c.name, v.c.version, v.c.info).join(m, m.c.id == v.c.model_id)
            )
            for model, number, info in rows:
                store = (info or {}).get("feature_store") or {}
                for ref in store.get("features", []):
                    base = (
                        ref.partition("@")[0] + ":" + ref.partition(":")[2] if "@" in ref else ref
                    )
                    if base in wanted:
                        users.setdefault(wanted[base], []).append(
                            f"registered model {model}@{number}"
                        )
        return users

    def _save(self, kind: str, name: str, spec: dict[str, Any]) -> tuple[int, Any]:
        t = tables.feature_definitions
        digest = spec_hash(kind, spec)
        for _attempt in range(8):
            try:
                with self._db.write() as conn:
                    latest = self._latest_row(conn, kind, name)
                    # the same definition as the latest is that version; re-applying an older
                    # one makes it the latest again, as a new version
                    if latest is not None and latest["spec_hash"] == digest:
                        return latest["version"], from_ms(latest["created_at"])
                    version = (latest["version"] if latest is not None else 0) + 1
                    created = now_ms()
                    conn.execute(
                        t.insert().values(
                            id=new_id(),
                            kind=kind,
                            name=name,
                            version=version,
                            spec=spec,
                            spec_hash=digest,
                            created_at=created,
                            created_by=local_actor(),
                        )
                    )
                    self._audit.record(
                        conn, f"features.apply_{kind}", f"feature_{kind}", f"{name}@{version}", {}
                    )
                    return version, from_ms(created)
            except DBIntegrityError:
                continue
        raise Conflict(f"could not apply {kind} {name!r}: too many concurrent writers")

    # -- reading definitions -------------------------------------------------------------

    def _get_row(self, kind: str, ref: str) -> Any:
        what = KIND_LABEL[kind]
        name, version = parse_view_ref(ref)
        t = tables.feature_definitions
        with self._db.read() as conn:
            if version is None:
                row = self._latest_row(conn, kind, name)
            else:
                row = (
                    conn.execute(
                        sa.select(t).where(
                            t.c.kind == kind, t.c.name == name, t.c.version == version
                        )
                    )
                    .mappings()
                    .first()
                )
        if row is None:
            if version is None:
                raise NotFound(f"{what} {name!r} does not exist")
            raise NotFound(f"{what} {name!r} has no version {version}")
        return row

    def get_view(self, ref: str) -> FeatureView:
        """``NAME`` (its latest version) or ``NAME@N``."""
        row = self._get_row("view", ref)
        return FeatureView(
            **row["spec"], version=row["version"], created_at=from_ms(row["created_at"])
        )

    def get_ondemand(self, ref: str) -> OnDemandFeatureView:
        """An on-demand view: ``NAME`` (its latest version) or ``NAME@N``."""
        row = self._get_row("ondemand", ref)
        return OnDemandFeatureView(
            **row["spec"], version=row["version"], created_at=from_ms(row["created_at"])
        )

    def get_entity(self, ref: str) -> Entity:
        row = self._get_row("entity", ref)
        return Entity(**row["spec"], version=row["version"], created_at=from_ms(row["created_at"]))

    def _latest_all(self, kind: str) -> builtins.list[Any]:
        t = tables.feature_definitions
        newest = (
            sa.select(t.c.name, sa.func.max(t.c.version).label("version"))
            .where(t.c.kind == kind)
            .group_by(t.c.name)
            .subquery()
        )
        query = (
            sa.select(t)
            .join(newest, sa.and_(t.c.name == newest.c.name, t.c.version == newest.c.version))
            .where(t.c.kind == kind)
            .order_by(t.c.name)
        )
        with self._db.read() as conn:
            return builtins.list(conn.execute(query).mappings().all())

    def list_views(self) -> builtins.list[FeatureView]:
        """The latest version of every feature view, by name."""
        return [
            FeatureView(**r["spec"], version=r["version"], created_at=from_ms(r["created_at"]))
            for r in self._latest_all("view")
        ]

    def list_ondemand(self) -> builtins.list[OnDemandFeatureView]:
        """The latest version of every on-demand view, by name."""
        return [
            OnDemandFeatureView(
                **r["spec"], version=r["version"], created_at=from_ms(r["created_at"])
            )
            for r in self._latest_all("ondemand")
        ]

    def list_entities(self) -> builtins.list[Entity]:
        return [
            Entity(**r["spec"], version=r["version"], created_at=from_ms(r["created_at"]))
            for r in self._latest_all("entity")
        ]

    def _resolve_ondemand(
        self, demand: OnDemandFeatureView, known_views: dict[str, FeatureView]
    ) -> OnDemandFeatureView:
        check_name(demand.name, "on-demand feature view")
        label = f"on-demand feature view {demand.name!r}"
        if not demand.features:
            raise InvalidInput(f"{label} needs at least one feature")
        if not demand.sources and not demand.request:
            raise InvalidInput(f"{label} needs request fields or source features (or both)")
        inputs: dict[str, str] = {}
        for name, kind in demand.request.items():
            if kind not in ("integer", "float", "boolean", "string", "datetime", "date"):
                raise InvalidInput(f"{label}: request field {name!r} has type {kind!r}")
            inputs[name] = kind
        for ref in demand.sources:
            view_ref, colon, feature = ref.partition(":")
            if not colon:
                raise InvalidInput(f"{label}: source {ref!r} is not 'view:feature'")
            # a view applied in the same call is known by name (its version is not set yet)
            view = known_views.get(view_ref.partition("@")[0])
            if view is None:
                try:
                    view = self.get_view(view_ref)
                except NotFound:
                    raise InvalidInput(
                        f"{label}: source {ref!r} names feature view {view_ref!r}, which does "
                        "not exist"
                    ) from None
            found = {f.name: f.dtype for f in view.features}
            if feature not in found:
                raise InvalidInput(f"{label}: feature view {view_ref!r} has no feature {feature!r}")
            if feature in inputs:
                raise InvalidInput(f"{label}: input {feature!r} is named twice")
            inputs[feature] = str(found[feature])
        try:
            out = run_transform(demand.transform, empty_frame(inputs), f"the transform of {label}")
        except InvalidInput as exc:
            raise InvalidInput(f"{exc.message} (tried on one row of nulls)") from exc
        types = {c.name: c.type for c in schema_of(out.to_arrow()).columns}
        features = []
        for made in demand.features:
            if made.name not in types:
                raise InvalidInput(f"{label}: its transform makes no column {made.name!r}")
            actual = types[made.name]
            if actual == "other" and made.dtype is None:
                actual = "float"  # a column of nulls: the declared type decides
            features.append(Feature(name=made.name, dtype=made.dtype or actual))
        return demand.model_copy(update={"features": features})

    def _source_frame(
        self,
        view: FeatureView,
        source: DatasetVersion,
        *,
        wanted: Sequence[str] | None = None,
        segments: Sequence[int] | None = None,
        sample: bool = False,
    ) -> pl.DataFrame:
        """The view's rows from ``source`` (only ``segments`` if given), through its transform:
        every column the transform makes (or, without one, the ``wanted`` columns)."""
        label = f"the transform of feature view {view.name!r}"
        columns = needed_columns(view.transform, wanted) if wanted is not None else None
        if columns is not None:
            have = set(source.schema_.names)
            lacking = [c for c in columns if c not in have]
            if lacking:
                raise InvalidInput(
                    f"feature view {view.ref!r}: its source {source.ref} has no column "
                    f"{lacking[0]!r} any more; apply the view again or write the column back"
                )
        if sample:
            last = source.segment_numbers()[-1:] if source.segments else None
            table = self._datasets.load(source, columns=columns, segments=last).slice(0, 1000)
        else:
            table = self._datasets.load(source, columns=columns, segments=segments)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        if view.transform is not None:
            frame = run_transform(view.transform, frame, label)
        return frame

    def _view_rows(
        self,
        view: FeatureView,
        source: DatasetVersion,
        keys: dict[str, str],
        names: Sequence[str],
        *,
        segments: Sequence[int] | None = None,
    ) -> pl.DataFrame:
        """Join keys (typed as the entity says), the event time as ``TS`` (naive UTC µs) and
        the features ``names`` (typed as the view says), rows without a key or time dropped."""
        frame = self._source_frame(
            view, source, wanted=[*keys, view.timestamp_column, *names], segments=segments
        )
        types = {f.name: str(f.dtype) for f in view.features}
        label = f"feature view {view.ref!r}"
        if view.timestamp_column not in frame.columns:
            raise InvalidInput(f"{label}: no timestamp column {view.timestamp_column!r}")
        typed = conform(frame, {**keys, **{n: types[n] for n in names}}, f"the rows of {label}")
        return typed.with_columns(
            frame.get_column(view.timestamp_column).cast(pl.Datetime("us")).alias(TS)
        ).drop_nulls([TS, *keys])

    # -- offline: point-in-time training sets ---------------------------------------------

    def _parse_refs(
        self, features: Sequence[str]
    ) -> tuple[
        dict[str, builtins.list[str]], dict[str, FeatureView], dict[str, OnDemandFeatureView]
    ]:
        if isinstance(features, str):
            features = [features]
        if not features:
            raise InvalidInput("give at least one feature as 'view:feature'")
        wanted: dict[str, builtins.list[str]] = {}
        for ref in features:
            if not isinstance(ref, str):
                raise InvalidInput(f"feature reference {ref!r}: use 'view:feature'")
            view_ref, colon, feature = ref.partition(":")
            if not colon or not view_ref.strip() or not feature.strip():
                raise InvalidInput(f"feature reference {ref!r}: use 'view:feature'")
            names = wanted.setdefault(view_ref.strip(), [])
            if feature.strip() in names:
                raise InvalidInput(f"feature {ref!r} is asked for twice")
            names.append(feature.strip())
        views: dict[str, FeatureView] = {}
        demands: dict[str, OnDemandFeatureView] = {}
        for view_ref, names in wanted.items():
            found: FeatureView | OnDemandFeatureView
            try:
                found = self.get_view(view_ref)
                views[view_ref] = found
            except NotFound:
                try:
                    found = self.get_ondemand(view_ref)
                    demands[view_ref] = found
                except NotFound:
                    raise InvalidInput(
                        f"unknown feature view {view_ref!r}: apply it first "
                        "(mloop features list shows what exists)"
                    ) from None
            unknown = [n for n in names if n not in found.feature_names]
            if unknown:
                raise InvalidInput(
                    f"feature view {found.ref!r} has no feature {unknown[0]!r} "
                    f"(it has {', '.join(found.feature_names)})"
                )
        return wanted, views, demands

    def _keys_of(self, view: FeatureView) -> dict[str, str]:
        keys: dict[str, str] = {}
        for entity_name in view.entities:
            keys.update(self.get_entity(entity_name).join_keys)
        return keys

    def training_set(
        self,
        entity_df: Any = None,
        features: Sequence[str] = (),
        *,
        timestamp_column: str = "event_timestamp",
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        name: str | None = None,
        register: bool = True,
    ) -> TrainingSet:
        """For each row of ``entity_df`` (join keys and ``timestamp_column``), the latest value
        of each ``"view:feature"`` at or before the row's time and within the view's TTL; rows
        with no such value get nulls. Rows stay in the caller's order. On-demand features
        (``"ondemand_view:feature"``) are computed over the joined rows, their request fields
        read from the entity frame.

        Without an entity frame, ``start`` and ``end`` ask for every source row of the views
        (which must share their join keys) with its event time in that range, each joined to
        every view as of its own time.

        The result is written as a version of dataset ``name`` (default ``training_set``) with
        lineage to the view definitions and their source versions (``register=False``: not
        written), and returned with it."""
        if isinstance(features, str):
            features = [features]
        out_name = check_name(name or "training_set")
        wanted, views, demands = self._parse_refs(features)
        # on-demand views read features of other views: those are joined too, under internal
        # names (a feature asked for, or a column of the frame, may have the same name)
        inputs: dict[str, builtins.list[tuple[str, str]]] = {}  # view ref -> (feature, column)
        request: dict[str, str] = {}
        for demand in demands.values():
            request.update(demand.request)
            for view_ref, feature in self._demand_sources(demand):
                if view_ref not in views:
                    views[view_ref] = self.get_view(view_ref)
                self._check_source(demand, views[view_ref], feature)
                pair = (feature, _input_column(view_ref, feature))
                if pair not in inputs.setdefault(view_ref, []):
                    inputs[view_ref].append(pair)
        keys_of = {ref: self._keys_of(view) for ref, view in views.items()}
        if entity_df is None:
            entity_df = self._range_entities(views, keys_of, start, end, timestamp_column)
        elif start is not None or end is not None:
            raise InvalidInput("give an entity frame or a time range (start, end), not both")
        table = to_arrow(entity_df)
        columns = {c.name: c.type for c in schema_of(table).columns}
        if timestamp_column not in columns:
            raise InvalidInput(f"the entity frame has no timestamp column {timestamp_column!r}")
        if columns[timestamp_column] not in ("datetime", "date"):
            raise InvalidInput(
                f"the entity frame's timestamp column {timestamp_column!r} is "
                f"{columns[timestamp_column]}, not a datetime"
            )
        if ROW in columns:
            raise InvalidInput(f"the entity frame has a reserved column {ROW!r}")
        for field_name, kind in request.items():
            if field_name not in columns:
                raise InvalidInput(
                    f"the entity frame has no request field {field_name!r} (needed by an "
                    "on-demand feature)"
                )
            if columns[field_name] != kind and not (
                kind == "float" and columns[field_name] == "integer"
            ):
                raise InvalidInput(
                    f"the entity frame's request field {field_name!r} is {columns[field_name]}, "
                    f"not {kind}"
                )
        for view_ref, view in views.items():
            for key, kind in keys_of[view_ref].items():
                if key not in columns:
                    raise InvalidInput(
                        f"the entity frame has no join key {key!r} (needed by feature view "
                        f"{view.name!r})"
                    )
                if columns[key] != kind:
                    raise InvalidInput(
                        f"the entity frame's join key {key!r} is {columns[key]}, "
                        f"but the entity declares it {kind}"
                    )
        # output columns: the feature names; a clash with the frame or another view is refused
        out_columns = set(columns)
        picked: builtins.list[str] = []
        for view_ref, names in wanted.items():
            found = views.get(view_ref) or demands[view_ref]
            for n in names:
                if n in out_columns:
                    raise InvalidInput(
                        f"feature {n!r} of view {found.name!r} clashes with a column of the same "
                        "name (in the entity frame or another view)"
                    )
                out_columns.add(n)
                picked.append(n)
        selected: builtins.list[tuple[FeatureView, builtins.list[tuple[str, str]]]] = []
        for view_ref, view in views.items():
            pairs = [(n, n) for n in wanted.get(view_ref, [])] + inputs.get(view_ref, [])
            selected.append((view, pairs))
        sources = [self._datasets.get(view.source) for view, _ in selected]
        joined = self._join(table, timestamp_column, selected, sources, keys_of)
        # the views' rows are gone: hand their memory back (Arrow's pool keeps freed pages)
        pa.default_memory_pool().release_unused()
        if demands:
            frame = pl.from_arrow(joined)
            assert isinstance(frame, pl.DataFrame)
            made_columns = []
            for view_ref, demand in demands.items():
                reads: dict[str, pl.Expr] = {name: pl.col(name) for name in demand.request}
                for source_ref, feature in self._demand_sources(demand):
                    reads[feature] = pl.col(_input_column(source_ref, feature))
                made = self._run_ondemand(
                    demand, frame.select([c.alias(n) for n, c in reads.items()])
                )
                made_columns += [made.get_column(n) for n in wanted[view_ref]]
            joined = frame.with_columns(made_columns).to_arrow()
        result = joined.select([*table.column_names, *picked])
        version = None
        if register:
            version = self._datasets.write_version(
                out_name,
                result,
                kind="training_set",
                parents=sources,
                relation="features",
            )
            self._record_training_set(
                version,
                features=list(features),
                views=[*views.values()],
                demands=[*demands.values()],
                keys=list(dict.fromkeys(k for ks in keys_of.values() for k in ks)),
                timestamp_column=timestamp_column,
                request=request,
            )
        return TrainingSet(version=version, table=result, features=list(features), sources=sources)

    @staticmethod
    def _demand_sources(demand: OnDemandFeatureView) -> builtins.list[tuple[str, str]]:
        """An on-demand view's sources as (view reference, feature)."""
        return [
            (ref.partition(":")[0].strip(), ref.partition(":")[2].strip()) for ref in demand.sources
        ]

    @staticmethod
    def _check_source(demand: OnDemandFeatureView, view: FeatureView, feature: str) -> None:
        if feature not in view.feature_names:
            raise InvalidInput(
                f"on-demand feature view {demand.ref!r} reads {view.name}:{feature}, which "
                f"{view.ref} no longer has: apply the on-demand view again, or the feature back"
            )

    def _run_ondemand(self, demand: OnDemandFeatureView, frame: pl.DataFrame) -> pl.DataFrame:
        """``demand``'s transform over ``frame`` (its request fields, cast to their declared
        types, and its source features by name): the same code offline and online."""
        label = f"the transform of on-demand feature view {demand.name!r}"
        inputs = [
            pl.col(n).cast(polars_type(kind)) if polars_type(kind) is not None else pl.col(n)
            for n, kind in demand.request.items()
        ]
        inputs += [pl.col(feature) for _, feature in self._demand_sources(demand)]
        out = run_transform(demand.transform, frame.select(inputs), label)
        if out.height != frame.height:
            raise InvalidInput(f"{label} returned {out.height} rows for {frame.height}")
        return conform(out, {f.name: str(f.dtype) for f in demand.features}, label)

    def _range_entities(
        self,
        views: dict[str, FeatureView],
        keys_of: dict[str, dict[str, str]],
        start: datetime | str | None,
        end: datetime | str | None,
        timestamp_column: str,
    ) -> pa.Table:
        """The entity rows of a time-range retrieval: every (keys, time) of the views' sources
        in [start, end]."""
        if start is None or end is None:
            raise InvalidInput("give an entity frame, or both start and end of a time range")
        low, high = _instant(start, "start"), _instant(end, "end")
        if low > high:
            raise InvalidInput(f"start {low} is after end {high}")
        key_sets = {tuple(sorted(k.items())) for k in keys_of.values()}
        if len(key_sets) != 1:
            raise InvalidInput(
                "a time-range retrieval needs views with the same join keys; give an entity "
                "frame to join views of different entities"
            )
        keys = next(iter(keys_of.values()))
        frames = []
        for view in views.values():
            rows = self._view_rows(view, self._datasets.get(view.source), keys, [])
            frames.append(
                rows.filter(pl.col(TS).is_between(_naive_dt(low), _naive_dt(high))).select(
                    *keys, pl.col(TS).alias(timestamp_column)
                )
            )
        return (
            pl.concat(frames).unique(maintain_order=True).sort([timestamp_column, *keys]).to_arrow()
        )

    def _record_training_set(
        self,
        version: DatasetVersion,
        *,
        features: builtins.list[str],
        views: builtins.list[FeatureView],
        demands: builtins.list[OnDemandFeatureView],
        keys: builtins.list[str],
        timestamp_column: str,
        request: dict[str, str],
    ) -> None:
        """What the training set was made from, and lineage edges from the definitions."""
        spec = {
            "features": features,
            "views": [v.ref for v in views],
            "ondemand": [d.ref for d in demands],
            "keys": keys,
            "timestamp_column": timestamp_column,
            "request": request,
        }
        t, d = tables.training_sets, tables.feature_definitions
        with self._db.write() as conn:
            if conn.execute(sa.select(t.c.version_id).where(t.c.version_id == version.id)).first():
                conn.execute(t.update().where(t.c.version_id == version.id).values(spec=spec))
            else:
                conn.execute(
                    t.insert().values(version_id=version.id, spec=spec, created_at=now_ms())
                )
            for kind, defs in (("view", views), ("ondemand", demands)):
                for definition in defs:
                    def_id = conn.execute(
                        sa.select(d.c.id).where(
                            d.c.kind == kind,
                            d.c.name == definition.name,
                            d.c.version == definition.version,
                        )
                    ).scalar()
                    if def_id is not None:
                        self._lineage.add(
                            conn,
                            ("feature_view", str(def_id)),
                            ("dataset_version", version.id),
                            "features",
                        )

    def training_set_spec(self, version_id: str) -> dict[str, Any] | None:
        """What a training set version was built from (features, keys, time column, request
        fields), or None for a version that is not a training set."""
        t = tables.training_sets
        with self._db.read() as conn:
            spec = conn.execute(sa.select(t.c.spec).where(t.c.version_id == version_id)).scalar()
        return dict(spec) if spec is not None else None

    def _join(
        self,
        entities: pa.Table,
        ts: str,
        selected: builtins.list[tuple[FeatureView, builtins.list[tuple[str, str]]]],
        sources: builtins.list[DatasetVersion],
        keys_of: dict[str, dict[str, str]],
    ) -> pa.Table:
        """For each view, the row of its data each entity row finds (the backward as-of match
        by the join keys, within the TTL), then the features gathered by those row numbers in
        the caller's order (an Arrow ``take``: no row is a null value). Only keys and times
        take part in the match; the feature columns are read once."""
        all_keys = {k: kind for keys in keys_of.values() for k, kind in keys.items()}
        left = pl.from_arrow(entities.select([*all_keys, ts]))
        assert isinstance(left, pl.DataFrame)
        left = left.select(*[pl.col(c) for c in all_keys], _naive(pl.col(ts)).alias(TS))
        by_time: pl.DataFrame | None = None  # the entity rows in time order, when needed
        arrays = [entities.column(c) for c in entities.column_names]
        picked: builtins.list[str] = []
        for (view, pairs), source, keys in zip(selected, sources, keys_of.values(), strict=True):
            names = list(dict.fromkeys(feature for feature, _ in pairs))
            data = self._view_rows(view, source, keys, names)
            found = _packed_asof(left, data, list(keys), view.ttl)
            if found is None:  # keys that do not pack into one integer: Polars' join_asof
                if by_time is None:
                    by_time = left.with_columns(
                        pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW)
                    ).sort(TS, nulls_last=True)
                found = _polars_asof(by_time, data, list(keys), view.ttl)
            index = pl.Series(found)
            taken = data.select(
                [pl.col(f).gather(pl.when(index >= 0).then(index)).alias(o) for f, o in pairs]
            ).to_arrow()
            arrays += [taken.column(o) for _, o in pairs]
            picked += [o for _, o in pairs]
        return pa.table(arrays, names=[*entities.column_names, *picked])

    # -- online: materialization ----------------------------------------------------------

    def _layout(self, view: FeatureView) -> tuple[str, dict[str, str], Codec]:
        keys = self._keys_of(view)
        features = [(f.name, str(f.dtype)) for f in view.features]
        codec = Codec(features)
        return layout_id(view.name, list(keys.items()), features), keys, codec

    @staticmethod
    def _store_key(keys: dict[str, str]) -> str:
        return "integer" if len(keys) == 1 and next(iter(keys.values())) == "integer" else "text"

    def _last_run(self, view: str, layout: str, store: str, *, complete: bool = False) -> Any:
        """The latest successful materialization; ``complete``: the latest that covered
        everything up to its end (an incremental or stream run, or a range run from the
        beginning), which an incremental run continues from. A backfill of a window is not
        one: rows outside its window would be taken as done."""
        m = tables.feature_materializations
        query = sa.select(m).where(
            m.c.view == view, m.c.layout == layout, m.c.store == store, m.c.status == "succeeded"
        )
        if complete:
            query = query.where(sa.or_(m.c.mode != "range", m.c.start_ts.is_(None)))
        with self._db.read() as conn:
            return (
                conn.execute(query.order_by(m.c.started_at.desc(), m.c.id.desc()).limit(1))
                .mappings()
                .first()
            )

    def materialize(
        self,
        views: Sequence[str] | str | None = None,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        incremental: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> builtins.list[Materialization]:
        """Write each view's latest value per entity with an event time in [start, end]
        (default: from the beginning to now) into the online store.

        ``incremental=True``: only what came since the view's last materialization — rows in
        source segments added since then (late rows included) and rows with an event time
        after its end. A record is never replaced by an older one; a failed materialization
        writes nothing (one transaction) and is recorded with its error. ``progress`` is called
        as ``(view, rows done, rows in all)``."""
        if isinstance(views, str):
            views = [views]
        chosen = [self.get_view(v) for v in views] if views else self.list_views()
        if not chosen:
            raise InvalidInput("there is no feature view to materialize: apply one first")
        if incremental and start is not None:
            raise InvalidInput("an incremental materialization starts where the last ended")
        high = _instant(end, "end") if end is not None else datetime.now(UTC)
        low = _instant(start, "start") if start is not None else None
        if low is not None and low > high:
            raise InvalidInput(f"start {low} is after end {high}")
        return [
            self._materialize_view(
                view, low, high, "incremental" if incremental else "range", progress
            )
            for view in chosen
        ]

    def _materialize_view(
        self,
        view: FeatureView,
        low: datetime | None,
        high: datetime,
        mode: str,
        progress: Callable[[str, int, int], None] | None,
    ) -> Materialization:
        store = self.online_store
        layout, keys, codec = self._layout(view)
        source = self._datasets.get(view.source)
        run_id = new_id()
        m = tables.feature_materializations
        started = now_ms()
        segments: builtins.list[int] | None = None
        old_segments: builtins.list[int] | None = None
        if mode == "incremental":
            last = self._last_run(view.name, layout, store.display, complete=True)
            if last is not None:
                low = from_ms(last["end_ts"]) if last["end_ts"] is not None else None
                if view.transform is None or view.transform.row_wise:
                    done = self._segments_of(last["source_version_id"])
                    current = source.segment_numbers() or [1]
                    segments = [n for n in current if n not in done]
                    old_segments = [n for n in current if n in done]
        with self._db.write() as conn:
            conn.execute(
                m.insert().values(
                    id=run_id,
                    view=view.name,
                    view_version=view.version or 0,
                    layout=layout,
                    store=store.display,
                    mode=mode,
                    start_ts=_to_ms(low),
                    end_ts=_to_ms(high),
                    source_version_id=source.id,
                    rows_read=0,
                    entities_written=0,
                    status="running",
                    started_at=started,
                    created_by=local_actor(),
                )
            )
        rows_read = written = 0
        max_event: int | None = None
        try:
            names = view.feature_names
            upper = pl.lit(_naive_dt(high))
            if segments is not None and old_segments is not None:
                new_rows = self._view_rows(view, source, keys, names, segments=segments)
                late_window = pl.col(TS) <= upper
                old_rows = self._view_rows(view, source, keys, names, segments=old_segments)
                if low is not None:
                    old_rows = old_rows.filter(pl.col(TS) > pl.lit(_naive_dt(low)))
                frame = pl.concat([new_rows.filter(late_window), old_rows.filter(late_window)])
                rows_read = new_rows.height + old_rows.height
            else:
                frame = self._view_rows(view, source, keys, names)
                rows_read = frame.height
                window = pl.col(TS) <= upper
                if low is not None:
                    window = window & (
                        pl.col(TS) > pl.lit(_naive_dt(low))
                        if mode == "incremental"
                        else pl.col(TS) >= pl.lit(_naive_dt(low))
                    )
                frame = frame.filter(window)
            # stable sort: of rows with equal times, the last wins (as in a training set)
            latest = frame.sort(TS, maintain_order=True).unique(subset=list(keys), keep="last")
            total = latest.height
            if progress is not None:
                progress(view.name, 0, total)
            if total:
                ts_us = latest.get_column(TS).dt.epoch("us").to_numpy()
                max_event = int(ts_us.max()) // 1000
                records = codec.pack_frame(ts_us, latest)
                if len(keys) == 1:
                    key_values = latest.get_column(next(iter(keys))).to_list()
                else:
                    key_values = [key_text(row) for row in latest.select(list(keys)).iter_rows()]
                written = store.write(
                    layout, self._store_key(keys), key_values, ts_us.tolist(), records
                )
            if progress is not None:
                progress(view.name, total, total)
        except BaseException as exc:
            message = (
                exc.message if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
            )
            with self._db.write() as conn:
                conn.execute(
                    m.update()
                    .where(m.c.id == run_id)
                    .values(
                        status="failed",
                        error=message[:4000],
                        rows_read=rows_read,
                        finished_at=now_ms(),
                    )
                )
            raise
        with self._db.write() as conn:
            conn.execute(
                m.update()
                .where(m.c.id == run_id)
                .values(
                    status="succeeded",
                    rows_read=rows_read,
                    entities_written=written,
                    max_event_ts=max_event,
                    finished_at=now_ms(),
                )
            )
            self._audit.record(
                conn,
                "features.materialize",
                "feature_view",
                view.ref,
                {"mode": mode, "store": store.display, "entities": written},
            )
        with self._lock:
            self._plans.clear()
        return self.materialization(run_id)

    def _segments_of(self, version_id: str | None) -> set[int]:
        if version_id is None:
            return set()
        try:
            version = self._datasets.get_by_id(version_id)
        except NotFound:
            return set()
        return set(version.segment_numbers() or [1])

    def materialization(self, run_id: str) -> Materialization:
        m = tables.feature_materializations
        with self._db.read() as conn:
            row = conn.execute(sa.select(m).where(m.c.id == run_id)).mappings().first()
        if row is None:
            raise NotFound(f"materialization {run_id!r} does not exist")
        return _materialization(row)

    def materializations(
        self, view: str | None = None, *, limit: int = 50
    ) -> builtins.list[Materialization]:
        """The latest materializations (of one view, or of all), newest first."""
        m = tables.feature_materializations
        query = sa.select(m).order_by(m.c.started_at.desc(), m.c.id.desc()).limit(limit)
        if view is not None:
            query = query.where(m.c.view == parse_view_ref(view)[0])
        with self._db.read() as conn:
            return [_materialization(r) for r in conn.execute(query).mappings()]

    def materialize_stream(
        self,
        view: str,
        *,
        on_batch: Callable[[Any, Materialization], None] | None = None,
        **options: Any,
    ) -> Any:
        """Continuously from the view's stream: each micro-batch is ingested into the view's
        source dataset (exactly once, as the data layer does) and then materialized
        incrementally, so the online store follows the stream. Options are the stream
        consumer's (``max_events``, ``idle_exit``, ``batch_size``, ...); returns its stats."""
        the_view = self.get_view(view)
        if the_view.stream is None:
            raise InvalidInput(
                f"feature view {the_view.ref!r} has no stream: give stream=URI in its definition"
            )
        if self._streams is None:
            raise InvalidInput("this feature store has no stream service")
        streams = self._streams

        def after_batch(stats: Any) -> None:
            run = self._materialize_view(the_view, None, datetime.now(UTC), "incremental", None)
            if on_batch is not None:
                on_batch(stats, run)

        return streams.consume(the_view.source, the_view.stream, on_batch=after_batch, **options)

    # -- online: reads -------------------------------------------------------------------

    def _plan(self, features: tuple[str, ...]) -> _Plan:
        now = time.monotonic()
        plan = self._plans.get(features)
        if plan is not None and plan.expires > now:
            return plan
        wanted, views, demands = self._parse_refs(features)
        request: dict[str, str] = {}
        inputs: dict[str, builtins.list[str]] = {}  # view ref -> source features to fetch
        for demand in demands.values():
            request.update(demand.request)
            for source_ref, feature in self._demand_sources(demand):
                if source_ref not in views:
                    views[source_ref] = self.get_view(source_ref)
                self._check_source(demand, views[source_ref], feature)
                if feature not in inputs.setdefault(source_ref, []):
                    inputs[source_ref].append(feature)
        store = self.online_store
        view_plans: builtins.list[_ViewPlan] = []
        position: dict[str, int] = {}
        all_keys: dict[str, str] = {}
        outputs: set[str] = set()
        for view_ref, view in views.items():
            layout, keys, codec = self._layout(view)
            if self._last_run(view.name, layout, store.display) is None:
                raise InvalidInput(
                    f"feature view {view.ref!r} has not been materialized into the online "
                    f"store {store.display}: run mloop features materialize {view.name}"
                )
            all_keys.update(keys)
            shown = wanted.get(view_ref, [])
            for n in shown:
                if n in outputs or n in keys:
                    raise InvalidInput(f"feature {n!r} is asked for from two views")
                outputs.add(n)
            index = {n: i for i, n in enumerate(codec.names)}
            position[view_ref] = len(view_plans)
            view_plans.append(
                _ViewPlan(
                    view=view,
                    layout=layout,
                    keys=list(keys),
                    store_key=self._store_key(keys),
                    codec=codec,
                    picks=[(index[n], n) for n in shown],
                    inputs=[
                        (index[f], _input_column(view_ref, f)) for f in inputs.get(view_ref, [])
                    ],
                    ttl_us=view.ttl * 1_000_000 if view.ttl else None,
                )
            )
        demand_plans = []
        for view_ref, demand in demands.items():
            pairs = self._demand_sources(demand)
            demand_plans.append(
                _DemandPlan(
                    view=demand,
                    names=wanted[view_ref],
                    inputs=[(f, _input_column(r, f)) for r, f in pairs],
                    sources=list(dict.fromkeys(position[r] for r, _ in pairs)),
                )
            )
        parts = [[n for _, n in p.picks] for p in view_plans]
        parts += [d.names for d in demand_plans]
        visible = [i for i, names in enumerate(parts) if names]
        plan = _Plan(
            features=list(features),
            views=view_plans,
            demands=demand_plans,
            keys=all_keys,
            request=request,
            view_features=[parts[i] for i in visible],
            visible=visible,
            expires=now + self._cache_seconds,
        )
        with self._lock:
            if len(self._plans) > 256:
                self._plans.clear()
            self._plans[features] = plan
        return plan

    def online(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        features: Sequence[str],
    ) -> OnlineResult:
        """The latest materialized values of ``features`` for each entity row (its join keys,
        plus the request fields on-demand features read). A value older than its view's TTL
        is null with status ``expired``; a key never materialized is null with ``missing``."""
        if isinstance(features, str):
            features = (features,)
        plan = self._plan(tuple(features) if not isinstance(features, tuple) else features)
        if type(entity_rows) is not list and (  # the ABC checks only for other sequences
            isinstance(entity_rows, Mapping) or not isinstance(entity_rows, Sequence)
        ):
            raise InvalidInput("entity rows are a list of objects, e.g. [{'customer_id': 1}]")
        n = len(entity_rows)
        if n == 0:
            raise InvalidInput("give at least one entity row")
        store = self.online_store
        rows: builtins.list[dict[str, Any]] = []
        for i, row in enumerate(entity_rows):
            if type(row) is not dict and not isinstance(row, Mapping):
                raise InvalidInput(f"entity row {i} is {type(row).__name__}, not an object")
            out: dict[str, Any] = {}
            for key, kind in plan.keys.items():
                value = row.get(key)
                if value is None:
                    raise InvalidInput(f"entity row {i} has no join key {key!r}")
                if not _key_ok(value, kind):
                    raise InvalidInput(
                        f"entity row {i}: join key {key!r} is {type(value).__name__} "
                        f"{value!r}, but the entity declares it {kind}"
                    )
                out[key] = value
            rows.append(out)
        status: builtins.list[builtins.list[str]] = [[] for _ in range(n)]
        # what on-demand views read, per row, by input slot (never mixed with the output)
        slots: builtins.list[dict[str, Any]] = [{} for _ in range(n)] if plan.demands else []
        now = now_us()
        for vp in plan.views:
            if len(vp.keys) == 1:
                key_name = vp.keys[0]
                keys = [r[key_name] for r in rows]
            else:
                keys = [key_text([r[k] for k in vp.keys]) for r in rows]
            records = store.read(vp.layout, vp.store_key, keys)
            unpack = vp.codec.unpack
            for j, record in enumerate(records):
                out = rows[j]
                values: Sequence[Any] | None = None
                if record is None:
                    state = "missing"
                else:
                    ts, values = unpack(record)
                    if vp.ttl_us is not None and ts < now - vp.ttl_us:
                        state, values = "expired", None
                    else:
                        state = "present"
                if values is None:
                    for _, name in vp.picks:
                        out[name] = None
                    for _, slot in vp.inputs:
                        slots[j][slot] = None
                else:
                    for index, name in vp.picks:
                        out[name] = values[index]
                    for index, slot in vp.inputs:
                        slots[j][slot] = values[index]
                status[j].append(state)
        if plan.demands:
            self._online_demands(plan, entity_rows, rows, slots, status)
            status = [[s[i] for i in plan.visible] for s in status]
        return OnlineResult(rows, plan.features, status, plan.view_features)

    def _online_demands(
        self,
        plan: _Plan,
        entity_rows: Sequence[Mapping[str, Any]],
        rows: builtins.list[dict[str, Any]],
        slots: builtins.list[dict[str, Any]],
        status: builtins.list[builtins.list[str]],
    ) -> None:
        request: dict[str, builtins.list[Any]] = {name: [] for name in plan.request}
        for i, row in enumerate(entity_rows):
            for name, kind in plan.request.items():
                if row.get(name) is None:
                    raise InvalidInput(f"entity row {i} has no request field {name!r}")
                request[name].append(_request_value(row[name], kind, i, name))
        slot_types = {slot: vp.codec.kinds[index] for vp in plan.views for index, slot in vp.inputs}
        for dp in plan.demands:
            columns = {
                name: pl.Series(name, request[name], dtype=polars_type(plan.request[name]))
                for name in dp.view.request
            }
            for feature, slot in dp.inputs:
                columns[feature] = pl.Series(
                    feature, [s[slot] for s in slots], dtype=polars_type(slot_types[slot])
                )
            made = self._run_ondemand(dp.view, pl.DataFrame(list(columns.values())))
            for name in dp.names:
                values = made.get_column(name).to_list()
                for out, value in zip(rows, values, strict=True):
                    out[name] = value
            # an on-demand feature is as present as its inputs: one missing or expired input
            # makes it so (its value is what the transform made of the null)
            for j in range(len(rows)):
                states = {status[j][i] for i in dp.sources}
                status[j].append(
                    "missing"
                    if "missing" in states
                    else "expired"
                    if "expired" in states
                    else "present"
                )

    # -- skew, status, freshness ------------------------------------------------------------

    def skew(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        features: Sequence[str],
        *,
        at: datetime | None = None,
        tolerance: float = 1e-9,
    ) -> SkewReport:
        """Online values against the offline point-in-time join for the same keys at ``at``
        (default now): every feature that differs (beyond ``tolerance`` for numbers) is a
        mismatch, with both values."""
        when = at or datetime.now(UTC)
        online = self.online(entity_rows, features)
        plan = self._plan(tuple(features))
        frame: dict[str, builtins.list[Any]] = {k: [r[k] for r in entity_rows] for k in plan.keys}
        for name in plan.request:
            frame[name] = [r.get(name) for r in entity_rows]
        frame[ROW + "_ts"] = [_naive_dt(when)] * len(entity_rows)
        entity_df = pl.DataFrame(frame)
        for key, kind in plan.keys.items():
            entity_df = entity_df.with_columns(pl.col(key).cast(polars_type(kind)))
        offline = self.training_set(
            entity_df, features, timestamp_column=ROW + "_ts", register=False
        ).to_polars()
        names = [f.partition(":")[2] for f in features]
        mismatches = []
        for i, row in enumerate(online.rows):
            for name in names:
                a, b = row.get(name), offline[name][i]
                if not _same(a, b, tolerance):
                    mismatches.append(
                        {
                            "row": i,
                            "keys": {k: row[k] for k in plan.keys},
                            "feature": name,
                            "online": a,
                            "offline": b,
                        }
                    )
        return SkewReport(checked=len(online.rows), at=when, mismatches=mismatches)

    def status(self) -> builtins.list[dict[str, Any]]:
        """Per feature view: its latest version, the last materialization (when, how many
        entities, whether it failed) and freshness — how old the newest materialized event
        is, and whether that is within the view's TTL."""
        store_display = self.online_store.display
        out = []
        now = datetime.now(UTC)
        for view in self.list_views():
            runs = [
                r for r in self.materializations(view.name, limit=20) if r.store == store_display
            ]
            last = runs[0] if runs else None
            good = next((r for r in runs if r.status == "succeeded"), None)
            newest = max(
                (r.max_event_time for r in runs if r.status == "succeeded" and r.max_event_time),
                default=None,
            )
            age = (now - newest).total_seconds() if newest is not None else None
            out.append(
                {
                    "view": view.ref,
                    "source": view.source,
                    "stream": view.stream,
                    "ttl_seconds": view.ttl,
                    "store": store_display,
                    "last_materialization": last.status if last else None,
                    "last_error": last.error if last else None,
                    "last_run_at": last.started_at.isoformat() if last else None,
                    "materialized_until": good.end.isoformat() if good and good.end else None,
                    "newest_event": newest.isoformat() if newest else None,
                    "freshness_seconds": age,
                    "fresh": (age is not None and (view.ttl is None or age <= view.ttl)),
                }
            )
        return out


def _materialization(row: Any) -> Materialization:
    return Materialization(
        id=row["id"],
        view=f"{row['view']}@{row['view_version']}",
        view_version=row["view_version"],
        store=row["store"],
        mode=row["mode"],
        start=from_ms(row["start_ts"]) if row["start_ts"] is not None else None,
        end=from_ms(row["end_ts"]) if row["end_ts"] is not None else None,
        source_version=row["source_version_id"],
        rows_read=row["rows_read"],
        entities_written=row["entities_written"],
        max_event_time=from_ms(row["max_event_ts"]) if row["max_event_ts"] is not None else None,
        status=row["status"],
        error=row["error"],
        started_at=from_ms(row["started_at"]),
        finished_at=from_ms(row["finished_at"]) if row["finished_at"] is not None else None,
    )


def _input_column(view_ref: str, feature: str) -> str:
    """Where an on-demand view's source feature travels: never a name a caller can use."""
    return f"__mloop_in_{view_ref}_{feature}"


def _key_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (
            isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]
        )
    return isinstance(value, str)


def _request_value(value: Any, kind: str, row: int, name: str) -> Any:
    """A request field's value as its declared type (a time may come as ISO text, as it does
    in JSON), or InvalidInput."""
    ok = False
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    elif kind in ("datetime", "date"):
        parse = datetime.fromisoformat if kind == "datetime" else date.fromisoformat
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = parse(value.strip())
        if kind == "date":
            ok = isinstance(value, date) and not isinstance(value, datetime)
        else:
            ok = isinstance(value, datetime)
            if ok and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
    if not ok:
        raise InvalidInput(
            f"entity row {row}: request field {name!r} is {type(value).__name__} {value!r}, "
            f"not {kind}"
        )
    return value


def _same(a: Any, b: Any, tolerance: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(b)))
    return bool(a == b)


def _instant(value: datetime | str, what: str) -> datetime:
    """A time as aware UTC: a datetime (naive is UTC) or ISO text."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(
                f"invalid {what} {value!r}: use an ISO time like 2024-01-31T12:00"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidInput(f"invalid {what} {value!r}: give a datetime or ISO text")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive_dt(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _to_ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(_instant(value, "time").timestamp() * 1000)


def _naive(column: pl.Expr) -> pl.Expr:
    """A time as naive UTC microseconds (a date is its midnight), whatever its zone or unit."""
    return column.cast(pl.Datetime("us"))


# integer types whose every value is an int64 (a UInt64 may not be)
_PACKABLE = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32")


def _packed_asof(
    left: pl.DataFrame, right: pl.DataFrame, keys: builtins.list[str], ttl: int | None
) -> np.ndarray | None:
    """For each row of ``left`` (``keys`` and ``TS``), the number of the row of ``right`` it
    finds, -1 for none: the last row with the same keys and a time at or before its own (of
    equal times, the last), no older than ``ttl`` seconds.

    The keys and the time pack into one int64 per row (mixed radix over the right side's key
    ranges and time span), so the match is one stable sort of the right side and a binary
    search per left row: about twice as fast as ``join_asof`` by key, and the left side is
    never sorted. None when a key is not an integer or the ranges do not fit in 62 bits."""
    if not keys or right.height == 0:
        return None
    for k in keys:
        if str(left.schema[k]) not in _PACKABLE or str(right.schema[k]) not in _PACKABLE:
            return None
    right_ts = right.get_column(TS).to_physical().to_numpy()
    t_low, t_high = int(right_ts.min()), int(right_ts.max())
    radix = t_high - t_low + 1
    right_keys = [right.get_column(k).cast(pl.Int64).to_numpy() for k in keys]
    lows = [int(column.min()) for column in right_keys]
    sizes = [int(column.max()) - low + 1 for column, low in zip(right_keys, lows, strict=True)]
    key_space = 1
    for size in sizes:
        key_space *= size
    if key_space * radix >= 2**62:
        return None
    # each row's keys as one number (mixed radix), then the packed value: keys, then time
    code = np.zeros(right.height, dtype=np.int64)
    left_ts = left.get_column(TS).to_physical()
    raw = left_ts.fill_null(t_low).to_numpy()  # the entity rows' times, a null as the first
    usable = left_ts.is_not_null().to_numpy() & (raw >= t_low)
    block = np.zeros(left.height, dtype=np.int64)
    step = 1
    for k, column, low, size in zip(keys, right_keys, lows, sizes, strict=True):
        code += (column - low) * step
        values = left.get_column(k).cast(pl.Int64)
        usable &= values.is_not_null().to_numpy()
        values_np = values.fill_null(low).to_numpy()
        usable &= (values_np >= low) & (values_np < low + size)
        block += np.where(usable, values_np - low, 0) * step
        step *= size
    packed = code * radix + (right_ts - t_low)
    block *= radix
    if key_space <= 2**32 and bool(np.all(right_ts[1:] >= right_ts[:-1])):
        # rows already in time order (a log usually is): a stable sort by the keys alone
        # keeps each key's rows in time order; two 16-bit radix passes (numpy's stable sort
        # of 16-bit integers is a radix sort), twice as fast as sorting the packed values
        rows = np.argsort((code & 0xFFFF).astype(np.uint16), kind="stable")
        if key_space > 2**16:
            high = (code[rows] >> 16).astype(np.uint16)
            rows = rows[np.argsort(high, kind="stable")]
        sorted_packed = packed[rows]
    else:
        ordered = (
            pl.DataFrame({"p": packed})
            .with_row_index("i")
            .sort("p", maintain_order=True)  # stable: of equal times, the last row wins
        )
        sorted_packed = ordered.get_column("p").to_numpy()
        rows = ordered.get_column("i").cast(pl.Int64).to_numpy()
    # a time after the last one finds what the last one finds: clamp it inside the span
    times = np.minimum(raw, t_high)
    wanted = block + np.where(usable, times - t_low, 0)
    # binary searches in order walk the sorted array forward: three times faster than at random
    by_value = np.argsort(wanted)
    at = np.empty_like(by_value)
    at[by_value] = np.searchsorted(sorted_packed, wanted[by_value], side="right") - 1
    safe = np.maximum(at, 0)
    hit = usable & (at >= 0) & (sorted_packed[safe] >= block)  # the same keys, not the one before
    found = np.where(hit, rows[safe], -1)
    if ttl:
        hit &= right_ts[np.maximum(found, 0)] >= raw - ttl * 1_000_000
        found = np.where(hit, found, -1)
    return found


def _polars_asof(
    by_time: pl.DataFrame, right: pl.DataFrame, keys: builtins.list[str], ttl: int | None
) -> np.ndarray:
    """What :func:`_packed_asof` finds, by Polars' ``join_asof`` (any key types):
    ``by_time`` is the left side with its row numbers (``ROW``), sorted by ``TS``."""
    seen, found = "__mloop_seen", "__mloop_found"
    data = right.select(
        *[pl.col(k).cast(by_time.schema[k]) for k in keys],
        pl.col(TS),
        pl.col(TS).alias(seen),
        pl.int_range(pl.len(), dtype=pl.Int64).alias(found),
    ).sort(TS, maintain_order=True)  # stable: of equal times, the last row wins
    joined = by_time.select(*keys, TS, ROW).join_asof(
        data, on=TS, by=keys, strategy="backward", check_sortedness=False
    )
    # a row without a time, or a value older than the TTL, is no value
    fresh = pl.col(TS).is_not_null() & pl.col(seen).is_not_null()
    if ttl:
        fresh = fresh & (pl.col(seen) >= pl.col(TS) - pl.duration(seconds=ttl))
    out = joined.select(ROW, pl.when(fresh).then(pl.col(found)).otherwise(-1).alias(found))
    return out.sort(ROW).get_column(found).to_numpy()
