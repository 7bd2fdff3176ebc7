"""Transforms: registered, versioned code that derives a dataset from other datasets.

A transform is a Python function over Polars (or Arrow) frames, or one DuckDB ``SELECT`` in which
each input dataset is a table of its name. Its code is stored and hashed after normalisation
(comments, formatting, the docstring and decorators do not count): the same code is the same
transform version, changed code a new one. Running a transform resolves its input versions
(latest unless pinned); a run whose transform version and input versions were seen before
returns the output it made then and computes nothing.
"""

from __future__ import annotations

import builtins
import hashlib
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from mloop.core.clock import from_ms, now_ms
from mloop.core.errors import Conflict, InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.core.lazy import lazy_module
from mloop.data.datasets import DatasetService, DatasetVersion, check_name, to_arrow
from mloop.data.transform_code import (
    PythonCode,
    check_sql,
    code_hash,
    first_line,
    function_source,
    normalise_sql,
)
from mloop.security import AuditLog, local_actor
from mloop.storage import Database, LineageStore, tables

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa
else:
    duckdb = lazy_module("duckdb")
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")

TransformKind = Literal["python", "sql"]
F = TypeVar("F", bound=Callable[..., Any])

SPEC_ATTRIBUTE = "__mloop_transform__"


class Transform(BaseModel):
    """One immutable version of a registered transform."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    version: int
    kind: TransformKind
    code: str
    code_hash: str
    inputs: list[str]
    output: str
    description: str | None
    created_at: datetime
    created_by: str | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class TransformRun(BaseModel):
    """One computation of a transform version over one set of input versions (or the cached
    answer to asking for it again: ``cached`` is then true and nothing was computed)."""

    model_config = ConfigDict(frozen=True)

    id: str
    transform: str
    transform_id: str
    inputs: list[str]
    input_ids: list[str]
    output: str
    output_id: str
    cached: bool
    created_at: datetime


class TransformSpec(BaseModel):
    """What ``@transform(...)`` attaches to a function, for ``ws.transforms.register(fn)``."""

    model_config = ConfigDict(frozen=True)

    name: str | None
    inputs: list[str]
    output: str
    description: str | None


def transform(
    *,
    inputs: Sequence[str],
    output: str,
    name: str | None = None,
    description: str | None = None,
) -> Callable[[F], F]:
    """Declare a function as a transform of ``inputs`` into ``output`` (register it with
    ``ws.transforms.register(fn)``). The function gets one Polars DataFrame per input, in order
    (an Arrow table where the parameter is annotated ``pa.Table``, a LazyFrame where it is
    annotated ``pl.LazyFrame``), and returns a Polars DataFrame or LazyFrame, an Arrow table or a
    pandas DataFrame."""
    if isinstance(inputs, str):
        inputs = [inputs]
    spec = TransformSpec(name=name, inputs=list(inputs), output=output, description=description)

    def decorate(fn: F) -> F:
        setattr(fn, SPEC_ATTRIBUTE, spec)
        return fn

    return decorate


def transform_spec(fn: Any) -> TransformSpec | None:
    """What ``@transform(...)`` declared on ``fn``, if it did."""
    spec = getattr(fn, SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, TransformSpec) else None


def _run_key(transform_id: str, input_ids: Sequence[str]) -> str:
    return hashlib.sha256(":".join([transform_id, *input_ids]).encode()).hexdigest()


def parse_transform_ref(ref: str) -> tuple[str, int | None]:
    """``NAME``, ``NAME@latest`` → (name, None); ``NAME@N`` or ``NAME@vN`` → (name, N)."""
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput("empty transform reference; use NAME or NAME@VERSION")
    name, at, version = ref.strip().partition("@")
    check_name(name, "transform")
    if at and not version:
        raise InvalidInput(f"transform reference {ref!r} has an empty version after '@'")
    if not version or version == "latest":
        return name, None
    digits = version[1:] if version[:1] == "v" else version
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise NotFound(f"transform {name!r} has no version {version!r}; use {name}@N")
    return name, int(digits)


def _transform_from_row(row: RowMapping) -> Transform:
    return Transform(
        id=row["id"],
        name=row["name"],
        version=row["version"],
        kind=row["kind"],
        code=row["code"],
        code_hash=row["code_hash"],
        inputs=list(row["inputs"]),
        output=row["output"],
        description=row["description"],
        created_at=from_ms(row["created_at"]),
        created_by=row["created_by"],
    )


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


class TransformService:
    """Register transforms, run them (cached by transform version and input versions), list
    them and their runs."""

    def __init__(
        self,
        db: Database,
        datasets: DatasetService,
        audit: AuditLog,
        lineage: LineageStore,
    ) -> None:
        self._db = db
        self._datasets = datasets
        self._audit = audit
        self._lineage = lineage

    # -- registering ---------------------------------------------------------------------

    def register(
        self,
        name: str | Callable[..., Any] | None = None,
        code: Callable[..., Any] | str | None = None,
        *,
        inputs: Sequence[str] | None = None,
        output: str | None = None,
        description: str | None = None,
    ) -> Transform:
        """Register ``code`` (a function, or a SQL ``SELECT`` string) as transform ``name``.

        ``register(fn)`` takes name, inputs and output from ``@transform(...)``; arguments
        given here win. The same code, inputs and output as an existing version return that
        version; anything else becomes the next version."""
        if callable(name) and code is None:
            name, code = None, name
        if code is None:
            raise InvalidInput("give the transform's code: a function or a SQL string")
        source = None if isinstance(code, str) else function_source(code)
        spec = transform_spec(code)
        if spec is not None:
            name = name or spec.name
            inputs = inputs if inputs is not None else spec.inputs
            output = output or spec.output
            description = description if description is not None else spec.description
        if name is None and callable(code):
            name = getattr(code, "__name__", None)
        if not isinstance(name, str):
            raise InvalidInput("give the transform a name")
        check_name(name, "transform")
        if isinstance(inputs, str):
            inputs = [inputs]
        input_names = [check_name(i) for i in inputs or []]
        if not input_names:
            raise InvalidInput(f"transform {name!r} needs at least one input dataset")
        repeated = sorted({i for i in input_names if input_names.count(i) > 1})
        if repeated:
            raise InvalidInput(f"transform {name!r} names input {repeated[0]!r} twice")
        if not output:
            raise InvalidInput(f"transform {name!r} needs an output dataset name")
        check_name(output)
        if output in input_names:
            raise InvalidInput(
                f"transform {name!r} cannot write to its own input {output!r}: "
                "a version is made from other versions, never from itself"
            )
        label = f"transform {name!r}"
        kind: TransformKind
        if source is None:
            assert isinstance(code, str)
            kind, stored = "sql", normalise_sql(code)
            check_sql(stored, label)
            digest = code_hash(kind, stored, input_names, output, None)
        else:
            kind = "python"
            parsed = PythonCode(source, label)
            parsed.check(len(input_names))
            stored = parsed.source
            digest = code_hash(kind, parsed.normalised(), input_names, output, parsed.frames())
        return self._save(name, kind, stored, digest, input_names, output, description)

    def _save(
        self,
        name: str,
        kind: TransformKind,
        code: str,
        digest: str,
        inputs: list[str],
        output: str,
        description: str | None,
    ) -> Transform:
        t = tables.transforms
        for _attempt in range(8):
            try:
                with self._db.write() as conn:
                    same = (
                        conn.execute(sa.select(t).where(t.c.name == name, t.c.code_hash == digest))
                        .mappings()
                        .first()
                    )
                    if same is not None:
                        return _transform_from_row(same)
                    latest = conn.execute(
                        sa.select(sa.func.max(t.c.version)).where(t.c.name == name)
                    ).scalar()
                    row = {
                        "id": new_id(),
                        "name": name,
                        "version": (latest or 0) + 1,
                        "kind": kind,
                        "code": code,
                        "code_hash": digest,
                        "inputs": inputs,
                        "output": output,
                        "description": description,
                        "created_at": now_ms(),
                        "created_by": local_actor(),
                    }
                    conn.execute(t.insert().values(**row))
                    self._audit.record(
                        conn,
                        "transform.register",
                        "transform",
                        f"{name}@{row['version']}",
                        {"kind": kind, "inputs": inputs, "output": output},
                    )
                    return _transform_from_row(row)  # type: ignore[arg-type]
            except DBIntegrityError:
                continue  # a concurrent registration took the number or the code; look again
        raise Conflict(f"could not register transform {name!r}: too many concurrent writers")

    # -- reading -------------------------------------------------------------------------

    def get(self, ref: str) -> Transform:
        """``NAME`` (its latest version), ``NAME@latest`` or ``NAME@N``."""
        name, version = parse_transform_ref(ref)
        t = tables.transforms
        query = sa.select(t).where(t.c.name == name)
        if version is None:
            query = query.order_by(t.c.version.desc()).limit(1)
        else:
            query = query.where(t.c.version == version)
        with self._db.read() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                latest = conn.execute(
                    sa.select(sa.func.max(t.c.version)).where(t.c.name == name)
                ).scalar()
        if row is None:
            if latest is None:
                raise NotFound(f"transform {name!r} does not exist")
            raise NotFound(f"transform {name!r} has no version {version} (latest is {latest})")
        return _transform_from_row(row)

    def get_by_id(self, transform_id: str) -> Transform:
        t = tables.transforms
        with self._db.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == transform_id)).mappings().first()
        if row is None:
            raise NotFound(f"transform {transform_id!r} does not exist")
        return _transform_from_row(row)

    def list(self) -> builtins.list[Transform]:
        """The latest version of every transform, by name."""
        t = tables.transforms
        latest = (
            sa.select(t.c.name, sa.func.max(t.c.version).label("version"))
            .group_by(t.c.name)
            .subquery()
        )
        query = (
            sa.select(t)
            .join(latest, sa.and_(t.c.name == latest.c.name, t.c.version == latest.c.version))
            .order_by(t.c.name)
        )
        with self._db.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [_transform_from_row(r) for r in rows]

    def versions(self, name: str) -> builtins.list[Transform]:
        check_name(name, "transform")
        t = tables.transforms
        with self._db.read() as conn:
            rows = (
                conn.execute(sa.select(t).where(t.c.name == name).order_by(t.c.version))
                .mappings()
                .all()
            )
        if not rows:
            raise NotFound(f"transform {name!r} does not exist")
        return [_transform_from_row(r) for r in rows]

    def runs(self, ref: str) -> builtins.list[TransformRun]:
        """The runs of ``NAME@N``, or of every version of ``NAME``, oldest first."""
        name, version = parse_transform_ref(ref)
        chosen = [self.get(ref)] if version is not None else self.versions(name)
        by_id = {t.id: t for t in chosen}
        r = tables.transform_runs
        with self._db.read() as conn:
            rows = (
                conn.execute(
                    sa.select(r)
                    .where(r.c.transform_id.in_(list(by_id)))
                    .order_by(r.c.created_at, r.c.id)
                )
                .mappings()
                .all()
            )
            outputs = self._refs(conn, [row["output_version_id"] for row in rows])
        return [self._run_from_row(row, by_id[row["transform_id"]], outputs, False) for row in rows]

    @staticmethod
    def _refs(conn: Connection, version_ids: Sequence[str]) -> dict[str, str]:
        d, dv = tables.datasets, tables.dataset_versions
        ids = sorted(set(version_ids))
        found: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            for vid, name, number in conn.execute(
                sa.select(dv.c.id, d.c.name, dv.c.version)
                .join(d, d.c.id == dv.c.dataset_id)
                .where(dv.c.id.in_(ids[i : i + 500]))
            ):
                found[vid] = f"{name}@{number}"
        return found

    @staticmethod
    def _run_from_row(
        row: RowMapping, transform: Transform, outputs: Mapping[str, str], cached: bool
    ) -> TransformRun:
        inputs = list(row["inputs"])
        return TransformRun(
            id=row["id"],
            transform=transform.ref,
            transform_id=transform.id,
            inputs=[f"{i['dataset']}@{i['version']}" for i in inputs],
            input_ids=[i["id"] for i in inputs],
            output=outputs.get(row["output_version_id"], row["output_version_id"]),
            output_id=row["output_version_id"],
            cached=cached,
            created_at=from_ms(row["created_at"]),
        )

    # -- running -------------------------------------------------------------------------

    def run(self, ref: str, inputs: Mapping[str, str | int] | None = None) -> TransformRun:
        """Run transform ``ref`` (``NAME`` is its latest version) over the latest version of each
        input, or the versions pinned in ``inputs`` (``{"raw": 3}`` or ``{"raw": "raw@3"}``).

        A run of the same transform version over the same input versions returns that run's
        output and computes nothing (``cached``). A failing function or query, a result that is
        not a frame and an unknown input raise, and write nothing."""
        the_transform = self.get(ref)
        versions = self._input_versions(the_transform, inputs or {})
        key = _run_key(the_transform.id, [v.id for v in versions])
        r = tables.transform_runs
        with self._db.read() as conn:
            row = (
                conn.execute(
                    sa.select(r).where(r.c.transform_id == the_transform.id, r.c.input_key == key)
                )
                .mappings()
                .first()
            )
            if row is not None:
                outputs = self._refs(conn, [row["output_version_id"]])
                return self._run_from_row(row, the_transform, outputs, True)
        table = self._compute(the_transform, versions)
        output = self._datasets.write_version(
            the_transform.output,
            table,
            kind="transform",
            parents=versions,
            relation="transformed",
        )
        return self._record(the_transform, versions, key, output)

    def _input_versions(
        self, the_transform: Transform, pins: Mapping[str, str | int]
    ) -> builtins.list[DatasetVersion]:
        unknown = sorted(set(pins) - set(the_transform.inputs))
        if unknown:
            raise InvalidInput(
                f"transform {the_transform.ref} has no input {unknown[0]!r}; its inputs: "
                + ", ".join(the_transform.inputs)
            )
        versions = []
        for name in the_transform.inputs:
            pin = pins.get(name)
            if pin is None:
                ref = name
            else:
                text = str(pin).strip()
                if "@" in text:
                    pinned_name = text.partition("@")[0]
                    if pinned_name != name:
                        raise InvalidInput(
                            f"input {name!r} of transform {the_transform.ref} is pinned to "
                            f"{text!r}, a version of another dataset"
                        )
                    ref = text
                else:
                    ref = f"{name}@{text}"
            try:
                versions.append(self._datasets.get(ref))
            except NotFound as exc:
                raise NotFound(
                    f"input of transform {the_transform.ref}: {exc.message}", details=exc.details
                ) from exc
        return versions

    def _compute(self, the_transform: Transform, versions: Sequence[DatasetVersion]) -> pa.Table:
        label = f"transform {the_transform.ref}"
        if the_transform.kind == "sql":
            table = self._compute_sql(the_transform, versions, label)
        else:
            result = self._compute_python(the_transform, versions, label)
            if isinstance(result, pl.LazyFrame):
                try:
                    result = result.collect()
                except Exception as exc:
                    raise InvalidInput(f"{label} failed: {type(exc).__name__}: {exc}") from exc
            is_pandas = type(result).__name__ == "DataFrame" and type(result).__module__.startswith(
                "pandas"
            )
            if not (isinstance(result, pl.DataFrame | pa.Table) or is_pandas):
                raise InvalidInput(
                    f"{label} returned {type(result).__name__}, not a frame: return a Polars "
                    "DataFrame or LazyFrame, an Arrow table or a pandas DataFrame"
                )
            table = to_arrow(result)
        if table.num_columns == 0 or table.num_rows == 0:
            raise InvalidInput(
                f"{label} produced {'no columns' if table.num_columns == 0 else 'no rows'}; "
                "a dataset version needs at least one row and one column"
            )
        return table

    def _compute_python(
        self, the_transform: Transform, versions: Sequence[DatasetVersion], label: str
    ) -> Any:
        parsed = PythonCode(the_transform.code, label)
        function = parsed.load()
        frames = parsed.frames()
        arguments: builtins.list[Any] = []
        for i, version in enumerate(versions):
            table = self._datasets.load(version)
            wanted = frames[i] if i < len(frames) else "polars"
            if wanted == "arrow":
                arguments.append(table)
            else:
                frame = pl.from_arrow(table)
                assert isinstance(frame, pl.DataFrame)
                arguments.append(frame.lazy() if wanted == "lazy" else frame)
        try:
            return function(*arguments)
        except Exception as exc:
            where = [
                f.lineno
                for f in traceback.extract_tb(exc.__traceback__)
                if f.filename.startswith("<transform ")
            ]
            at = f" (line {where[-1]} of its code)" if where else ""
            raise InvalidInput(f"{label} failed{at}: {type(exc).__name__}: {exc}") from exc

    def _compute_sql(
        self, the_transform: Transform, versions: Sequence[DatasetVersion], label: str
    ) -> pa.Table:
        # no files, no network, no extensions: a transform reads its inputs and nothing else
        con = duckdb.connect(
            ":memory:", config={"enable_external_access": False, "lock_configuration": True}
        )
        try:
            for name, version in zip(the_transform.inputs, versions, strict=True):
                con.register(name, self._datasets.load(version))
            relation = con.sql(the_transform.code)
            if relation is None:
                raise InvalidInput(f"the SQL of {label} returned no result: use one SELECT")
            fetch = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table
            table: pa.Table = fetch()
            return table
        except duckdb.Error as exc:
            raise InvalidInput(f"the SQL of {label} failed: {first_line(exc)}") from exc
        finally:
            con.close()

    def _record(
        self,
        the_transform: Transform,
        versions: Sequence[DatasetVersion],
        key: str,
        output: DatasetVersion,
    ) -> TransformRun:
        r = tables.transform_runs
        node = ("dataset_version", output.id)
        row = {
            "id": new_id(),
            "transform_id": the_transform.id,
            "input_key": key,
            "inputs": [{"dataset": v.dataset, "version": v.version, "id": v.id} for v in versions],
            "output_version_id": output.id,
            "created_at": now_ms(),
        }
        with self._db.write() as conn:
            self._lineage.add(conn, ("transform", the_transform.id), node, "produced")
            for version in versions:  # also when the output existed already (same content)
                self._lineage.add(conn, ("dataset_version", version.id), node, "transformed")
            added = conn.execute(
                _insert(conn)(r).values(**row).on_conflict_do_nothing().returning(r.c.id)
            ).first()
            if added is None:  # a concurrent run of the same inputs recorded it first
                found = (
                    conn.execute(
                        sa.select(r).where(
                            r.c.transform_id == the_transform.id, r.c.input_key == key
                        )
                    )
                    .mappings()
                    .one()
                )
                return self._run_from_row(found, the_transform, {output.id: output.ref}, False)
            self._audit.record(
                conn,
                "transform.run",
                "transform",
                the_transform.ref,
                {"inputs": [v.ref for v in versions], "output": output.ref},
            )
        return self._run_from_row(row, the_transform, {output.id: output.ref}, False)  # type: ignore[arg-type]
