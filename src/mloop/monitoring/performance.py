"""Live performance: labels that arrive after the prediction (feedback), joined to the
prediction log by (request_id, row_index); metrics per window and per model version; decay of
a version against the hold-out metrics its training run logged.

Labels are recorded all-or-nothing per call: a label naming no served prediction (an unknown
request id, a row the request did not have, a shadow or failed row) or of the wrong type for
the model version that made the prediction refuses the whole batch, naming the first few. A
label sent again replaces the earlier one. Metrics come from one SQL join of feedback and
predictions per query, decoded and scored column-wise (Polars, scikit-learn); classification
metrics are the ones training logs (``classification_metrics``: binary precision/recall/F1 of
the last class, ROC AUC when probabilities were logged), plus their macro averages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from mloop.core.clock import from_ms, now_ms, to_ms
from mloop.core.errors import InvalidInput, NotFound, SchemaMismatch
from mloop.core.lazy import lazy_module
from mloop.models import Signature
from mloop.registry import ModelVersion, RegistryService
from mloop.storage import Database, tables
from mloop.tracking import TrackingService
from mloop.training import classification_metrics, regression_metrics

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")

DEFAULT_WIDTH = timedelta(hours=1)
DEFAULT_TOLERANCE = 0.05
DEFAULT_MIN_LABELS = 50
LOOKUP_BATCH = 5_000  # request ids per query of the prediction log
FILE_CHUNK = 50_000  # rows of a labels file handled at a time
SOURCES = ("api", "file", "stream", "sdk")
DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse"}
HIGHER_IS_BETTER = frozenset(
    {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "roc_auc",
        "pr_auc",
        "r2",
    }
)
LOWER_IS_BETTER = frozenset({"rmse", "mae", "mape", "log_loss", "brier"})
_SHOWN = 5  # unknown ids or bad labels named in an error
_ITEM_KEYS = frozenset({"request_id", "row_index", "label", "labels"})
MAX_ROW_INDEX = 2**31 - 1  # the prediction log's row_index column is a 32-bit integer
# class labels decode as the target's own type (as the monitoring service decodes predictions)
_LABEL_TYPES: dict[str, str] = {"integer": "Int64", "float": "Float64", "boolean": "Boolean"}


class FeedbackResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    accepted: int  # labels written (new or replacing)
    replaced: int  # ... of which replaced a label sent before
    source: str


class PerformanceWindow(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    start: datetime
    end: datetime
    predictions: int  # served (not shadow, not failed) in the window
    labeled: int  # ... of which have a label
    metrics: dict[str, float]


class VersionPerformance(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    predictions: int
    labeled: int
    metrics: dict[str, float]


class DecayReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    decayed: bool
    verdict: bool  # False: too few labels (or the metric undefined) to judge
    metric: str
    higher_is_better: bool
    baseline: float  # the training run's hold-out value
    current: float | None
    drop: float | None  # relative: (baseline - current) / |baseline|, sign so worse > 0
    tolerance: float
    start: datetime | None
    end: datetime | None
    labeled: int
    min_labels: int
    reason: str


def _width_ms(width: timedelta) -> int:
    ms = int(width.total_seconds() * 1000)
    if ms < 1000:
        raise InvalidInput(f"a window must be at least 1 second wide, got {width}")
    return ms


def _shown(values: Sequence[Any]) -> str:
    names = ", ".join(str(v) for v in values[:_SHOWN])
    more = len(values) - _SHOWN
    return names + (f" (and {more} more)" if more > 0 else "")


def _items(labels: Any) -> tuple[list[str], list[int], list[Any]]:
    """Label items as three parallel lists: request ids, row indexes, values."""
    if isinstance(labels, dict):
        labels = [labels]
    if not isinstance(labels, list | tuple):
        raise InvalidInput(
            'labels must be a list of {"request_id", "row_index", "label"} objects, '
            f"not {type(labels).__name__}"
        )
    ids: list[str] = []
    rows: list[int] = []
    values: list[Any] = []
    for i, item in enumerate(labels):
        if not isinstance(item, dict):
            raise InvalidInput(f"label {i} is not an object but {type(item).__name__}")
        extra = sorted(set(item) - _ITEM_KEYS)
        if extra:
            raise InvalidInput(
                f"label {i} has unknown field(s) {', '.join(map(repr, extra))}: "
                "use request_id, row_index and label (or labels)"
            )
        rid = item.get("request_id")
        if not isinstance(rid, str) or not rid:
            raise InvalidInput(f"label {i} has no request_id (a non-empty string)")
        if "labels" in item:
            many = item["labels"]
            if "label" in item or "row_index" in item:
                raise InvalidInput(
                    f"label {i} (request {rid}): give row_index and label, or labels "
                    "(one per row, in order), not both"
                )
            if not isinstance(many, list) or not many:
                raise InvalidInput(f"label {i} (request {rid}): labels must be a non-empty list")
            ids.extend([rid] * len(many))
            rows.extend(range(len(many)))
            values.extend(many)
            continue
        if "label" not in item:
            raise InvalidInput(f"label {i} (request {rid}) has no label")
        row = item.get("row_index", 0)
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row <= MAX_ROW_INDEX:
            raise InvalidInput(
                f"label {i} (request {rid}): row_index must be a whole number from 0 to "
                f"{MAX_ROW_INDEX}, got {row!r}"
            )
        ids.append(rid)
        rows.append(row)
        values.append(item["label"])
    if not ids:
        raise InvalidInput("no labels given")
    return ids, rows, values


def _class_key(value: Any) -> tuple[str, Any] | None:
    """How a class compares: numbers by value (1 == 1.0), booleans and strings as themselves."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        return ("s", value)
    return None


class _LabelCheck:
    """Turns raw labels into the JSON a version's predictions are compared with, or says why
    not."""

    def __init__(self, version: ModelVersion) -> None:
        self.ref = version.ref
        self.signature = version.require_signature()
        classes = self.signature.classes
        self.classes: dict[tuple[str, Any], Any] | None = None
        if self.signature.task == "classification" and classes:
            self.classes = {k: c for c in classes if (k := _class_key(c)) is not None}
        self._numeric_classes = bool(self.classes) and all(
            k[0] == "n" for k in (self.classes or {})
        )

    def encode(self, value: Any) -> str | None:
        """The label as stored (JSON text), or None when it does not fit."""
        if value is None:
            return None
        if self.signature.task == "regression":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            return orjson.dumps(float(value)).decode() if math.isfinite(value) else None
        if self.classes is None:  # no classes recorded: any scalar
            return orjson.dumps(value).decode() if _class_key(value) is not None else None
        key = _class_key(value)
        if key is None:
            return None
        if key[0] == "s" and self._numeric_classes:  # "1" from a text file
            try:
                key = ("n", float(key[1]))
            except ValueError:
                return None
        found = self.classes.get(key, _MISSING)
        return None if found is _MISSING else orjson.dumps(found).decode()

    def why(self, value: Any) -> str:
        if self.signature.task == "regression":
            return f"a regression label must be a number, got {_shown_value(value)}"
        classes = ", ".join(repr(c) for c in (self.signature.classes or []))
        return f"{_shown_value(value)} is not a class of {self.ref} (classes: {classes})"


_MISSING = object()


def _shown_value(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    kind = "null" if value is None else type(value).__name__
    return f"{text[:40]} ({kind})"


class PerformanceService:
    """Feedback (late labels) and the live performance it measures."""

    def __init__(self, db: Database, registry: RegistryService, tracking: TrackingService) -> None:
        self._db = db
        self._registry = registry
        self._tracking = tracking

    # -- feedback --------------------------------------------------------------------------

    def record(
        self,
        labels: Any,
        *,
        source: str = "api",
        flush: Callable[[], object] | None = None,
    ) -> FeedbackResult:
        """Record labels — ``{"request_id", "row_index" (default 0), "label"}`` items, or
        ``{"request_id", "labels": [...]}`` for every row of a request — all or nothing.
        ``flush``: called once, then the lookup retried, when some predictions are not in the
        log yet (a server passes its prediction logger's ``flush``)."""
        ids, rows, values = _items(labels)
        prepared = self._prepare(ids, rows, values, flush)
        return self._write(prepared, source)

    def record_file(
        self,
        path: str | os.PathLike[str],
        *,
        source: str = "file",
        chunk_rows: int = FILE_CHUNK,
    ) -> FeedbackResult:
        """Record the labels of a CSV, Parquet or JSON-lines file with columns ``request_id``,
        ``row_index`` (optional, default 0) and ``label``: every chunk checked first, then
        written — a bad row anywhere writes nothing."""
        for _ in self._file_chunks(path, chunk_rows):
            pass  # the first pass only checks
        accepted = replaced = 0
        for prepared in self._file_chunks(path, chunk_rows):
            result = self._write(prepared, source)
            accepted += result.accepted
            replaced += result.replaced
        return FeedbackResult(accepted=accepted, replaced=replaced, source=source)

    def _file_chunks(self, path: str | os.PathLike[str], chunk_rows: int) -> Iterator[pl.DataFrame]:
        file = Path(path)
        if not file.is_file():
            raise NotFound(f"no labels file at {file}")
        suffix = file.suffix.lower()
        try:
            if suffix == ".csv":
                lazy = pl.scan_csv(file)
            elif suffix in (".parquet", ".pq"):
                lazy = pl.scan_parquet(file)
            elif suffix in (".jsonl", ".ndjson", ".json"):
                lazy = pl.scan_ndjson(file)
            else:
                raise InvalidInput(
                    f"{file.name}: labels files are .csv, .parquet or .jsonl (JSON lines)"
                )
            columns = lazy.collect_schema().names()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InvalidInput(f"cannot read labels from {file.name}: {exc}") from None
        missing = [c for c in ("request_id", "label") if c not in columns]
        extra = [c for c in columns if c not in ("request_id", "row_index", "label")]
        if missing or extra:
            raise InvalidInput(
                f"{file.name} must have the columns request_id, label and optionally row_index"
                + (f"; missing: {', '.join(missing)}" if missing else "")
                + (f"; unexpected: {', '.join(extra)}" if extra else "")
            )
        offset = 0
        while True:
            try:
                chunk = lazy.slice(offset, chunk_rows).collect()
            except pl.exceptions.PolarsError as exc:
                raise InvalidInput(f"cannot read labels from {file.name}: {exc}") from None
            if chunk.height == 0:
                if offset == 0:
                    raise InvalidInput(f"{file.name} holds no labels")
                return
            if chunk.get_column("request_id").null_count():
                raise InvalidInput(f"{file.name}: a row after line {offset} has no request_id")
            row_index = (
                chunk.get_column("row_index").fill_null(0)
                if "row_index" in chunk.columns
                else pl.Series([0] * chunk.height)
            )
            if not row_index.dtype.is_integer() or (row_index.len() and row_index.min() < 0):  # type: ignore[operator]
                raise InvalidInput(f"{file.name}: row_index must hold whole numbers ≥ 0")
            yield self._prepare(
                chunk.get_column("request_id").cast(pl.String).to_list(),
                row_index.to_list(),
                chunk.get_column("label").to_list(),
                None,
            )
            offset += chunk.height

    def _lookup(self, ids: list[str]) -> pl.DataFrame:
        """The served predictions of these requests: one query per ``LOOKUP_BATCH`` ids."""
        p = tables.predictions
        found: list[Any] = []
        unique = list(dict.fromkeys(ids))
        with self._db.read() as conn:
            for start in range(0, len(unique), LOOKUP_BATCH):
                found.extend(
                    conn.execute(
                        sa.select(
                            p.c.request_id, p.c.row_index, p.c.model_name, p.c.model_version, p.c.ts
                        ).where(
                            p.c.request_id.in_(unique[start : start + LOOKUP_BATCH]),
                            tables.ANSWERED,
                        )
                    ).all()
                )
        schema = {
            "request_id": pl.String,
            "row_index": pl.Int64,
            "model_name": pl.String,
            "model_version": pl.Int64,
            "prediction_ts": pl.Int64,
        }
        frame = pl.DataFrame([tuple(r) for r in found], schema=schema, orient="row")
        # a batch the prediction log wrote twice (its writer died mid-way) counts once
        return frame.unique(["request_id", "row_index"], keep="first", maintain_order=True)

    def _prepare(
        self,
        ids: list[str],
        rows: list[int],
        values: list[Any],
        flush: Callable[[], object] | None,
    ) -> pl.DataFrame:
        """Labels joined to their predictions and encoded, or the error naming what is wrong."""
        labels = pl.DataFrame(
            {"request_id": ids, "row_index": rows, "_i": range(len(ids))},
            schema={"request_id": pl.String, "row_index": pl.Int64, "_i": pl.Int64},
        ).unique(["request_id", "row_index"], keep="last", maintain_order=True)  # last wins
        joined = labels.join(self._lookup(ids), on=["request_id", "row_index"], how="left")
        missing = joined.filter(pl.col("model_name").is_null())
        if missing.height and flush is not None:
            flush()  # the prediction log is written off the request path: catch it up, once
            joined = labels.join(self._lookup(ids), on=["request_id", "row_index"], how="left")
            missing = joined.filter(pl.col("model_name").is_null())
        if missing.height:
            known = set(joined.filter(pl.col("model_name").is_not_null())["request_id"].to_list())
            unknown_ids = list(dict.fromkeys(missing["request_id"].to_list()))
            no_request = [r for r in unknown_ids if r not in known]
            no_row = [
                f"{r} row {i}"
                for r, i in missing.select("request_id", "row_index").iter_rows()
                if r in known
            ]
            parts = []
            if no_request:
                parts.append(f"unknown request id(s) {_shown(no_request)}")
            if no_row:
                parts.append(f"no served prediction for {_shown(no_row)}")
            raise NotFound(
                f"{missing.height} label(s) match no served prediction — {'; '.join(parts)}; "
                "nothing was recorded"
            )
        encoded: list[str | None] = [None] * joined.height
        bad: list[str] = []
        for (name, number), part in joined.with_row_index("_row").group_by(
            ["model_name", "model_version"]
        ):
            check = _LabelCheck(self._registry.get_version(str(name), int(number)))
            for row, i, rid, index in part.select("_row", "_i", "request_id", "row_index").rows():
                text = check.encode(values[i])
                if text is None:
                    bad.append(f"request {rid} row {index}: {check.why(values[i])}")
                encoded[row] = text
        if bad:
            raise SchemaMismatch(
                f"{len(bad)} label(s) do not fit their model: {_shown(bad)}; nothing was recorded"
            )
        return joined.drop("_i").with_columns(label=pl.Series(encoded, dtype=pl.String))

    def _write(self, prepared: pl.DataFrame, source: str) -> FeedbackResult:
        if source not in SOURCES:
            raise InvalidInput(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        f = tables.feedback
        received = now_ms()
        values = [
            {**row, "received_at": received, "source": source}
            for row in prepared.select(
                "request_id", "row_index", "label", "model_name", "model_version", "prediction_ts"
            ).iter_rows(named=True)
        ]
        from sqlalchemy.dialects import postgresql, sqlite

        stmt: Any = (postgresql if self._db.dialect == "postgresql" else sqlite).insert(f)
        upsert = stmt.on_conflict_do_update(
            index_elements=["request_id", "row_index"],
            set_={
                c: stmt.excluded[c]
                for c in (
                    "label",
                    "model_name",
                    "model_version",
                    "prediction_ts",
                    "received_at",
                    "source",
                )
            },
        )
        ids = list(dict.fromkeys(prepared["request_id"].to_list()))
        replaced = 0
        with self._db.write() as conn:
            existing: list[Any] = []
            for start in range(0, len(ids), LOOKUP_BATCH):
                existing.extend(
                    conn.execute(
                        sa.select(f.c.request_id, f.c.row_index).where(
                            f.c.request_id.in_(ids[start : start + LOOKUP_BATCH])
                        )
                    ).all()
                )
            if existing:
                before = pl.DataFrame(
                    [tuple(r) for r in existing],
                    schema={"request_id": pl.String, "row_index": pl.Int64},
                    orient="row",
                )
                replaced = prepared.join(before, on=["request_id", "row_index"]).height
            for start in range(0, len(values), 1000):
                conn.execute(upsert, values[start : start + 1000])
        return FeedbackResult(accepted=len(values), replaced=replaced, source=source)

    # -- reading ---------------------------------------------------------------------------

    def labeled_count(
        self, model_name: str, since_ms: int | None = None, *, version: int | None = None
    ) -> int:
        """Labels of ``model_name`` (of one version) received since ``since_ms`` (epoch ms):
        the volume of new labeled data, for a retraining trigger."""
        f = tables.feedback
        query = sa.select(sa.func.count()).select_from(f).where(f.c.model_name == model_name)
        if since_ms is not None:
            query = query.where(f.c.received_at >= since_ms)
        if version is not None:
            query = query.where(f.c.model_version == version)
        with self._db.read() as conn:
            return int(conn.execute(query).scalar() or 0)

    def _target(self, model: str, version: int | None) -> tuple[str, int | None]:
        """``NAME`` (every version) or ``NAME@ALIAS``/``NAME@N`` (that version)."""
        if "@" in model:
            resolved = self._registry.resolve(model)
            if version is not None and version != resolved.version:
                raise InvalidInput(f"{model} is version {resolved.version}, not {version}")
            return resolved.name, resolved.version
        name = self._registry.get_model(model).name  # NotFound for an unknown model
        if version is not None:
            self._registry.get_version(name, version)
        return name, version

    def _labeled(
        self, name: str, version: int | None, since_ms: int | None, until_ms: int | None
    ) -> pl.DataFrame:
        """Labeled predictions (one SQL join): version, prediction time, label, outputs."""
        f, p = tables.feedback, tables.predictions
        query = (
            sa.select(
                f.c.request_id,
                f.c.row_index,
                f.c.model_version,
                f.c.prediction_ts,
                f.c.label,
                p.c.outputs,
            )
            .join(
                p,
                sa.and_(
                    p.c.request_id == f.c.request_id,
                    p.c.row_index == f.c.row_index,
                    p.c.model_name == f.c.model_name,
                    p.c.model_version == f.c.model_version,
                ),
            )
            .where(f.c.model_name == name, tables.ANSWERED)
        )
        if version is not None:
            query = query.where(f.c.model_version == version)
        if since_ms is not None:
            query = query.where(f.c.prediction_ts >= since_ms)
        if until_ms is not None:
            query = query.where(f.c.prediction_ts < until_ms)
        with self._db.read() as conn:
            found = conn.execute(query.order_by(f.c.id, p.c.id)).all()
        schema = {
            "request_id": pl.String,
            "row_index": pl.Int64,
            "version": pl.Int64,
            "ts": pl.Int64,
            "label": pl.String,
            "outputs": pl.String,
        }
        frame = pl.DataFrame([tuple(r) for r in found], schema=schema, orient="row")
        return frame.unique(["request_id", "row_index"], keep="first", maintain_order=True).drop(
            "request_id", "row_index"
        )

    def _served_counts(
        self,
        name: str,
        version: int | None,
        since_ms: int | None,
        until_ms: int | None,
        width_ms: int | None,
    ) -> dict[tuple[int, int], int]:
        """Served predictions per (version, window start) — start 0 without a width."""
        p = tables.predictions
        bucket = (p.c.ts - p.c.ts % width_ms) if width_ms else sa.literal(0, sa.BigInteger)
        bucket = bucket.label("bucket")
        query = (
            sa.select(p.c.model_version, bucket, sa.func.count())
            .where(p.c.model_name == name, tables.ANSWERED)
            .group_by(p.c.model_version, bucket)
        )
        if version is not None:
            query = query.where(p.c.model_version == version)
        if since_ms is not None:
            query = query.where(p.c.ts >= since_ms)
        if until_ms is not None:
            query = query.where(p.c.ts < until_ms)
        with self._db.read() as conn:
            return {(int(v), int(b)): int(n) for v, b, n in conn.execute(query).all()}

    def windows(
        self,
        model: str,
        *,
        width: timedelta = DEFAULT_WIDTH,
        last: int | None = None,
        version: int | None = None,
    ) -> list[PerformanceWindow]:
        """Metrics per tumbling window of prediction time (``width`` wide, aligned on the Unix
        epoch) and per version: ``model`` is ``NAME`` (every version) or ``NAME@ALIAS`` /
        ``NAME@N`` (one). ``last``: only the newest so many windows. Oldest first."""
        if last is not None and last < 1:
            raise InvalidInput(f"last must be at least 1, got {last}")
        width_ms = _width_ms(width)
        name, number = self._target(model, version)
        counts = self._served_counts(name, number, None, None, width_ms)
        labeled = self._labeled(name, number, None, None).with_columns(
            bucket=pl.col("ts") - pl.col("ts") % width_ms
        )
        keys = set(counts) | {
            (int(v), int(b)) for v, b in labeled.select("version", "bucket").unique().iter_rows()
        }
        starts = sorted({b for _, b in keys})
        if last is not None:
            keep = set(starts[-last:])
            keys = {k for k in keys if k[1] in keep}
        out: list[PerformanceWindow] = []
        for v in sorted({k[0] for k in keys}):
            part = labeled.filter(pl.col("version") == v)
            scored = self._scored(name, v, part) if part.height else None
            groups = (
                {int(b): g for (b,), g in scored.group_by("bucket", maintain_order=True)}
                if scored is not None
                else {}
            )
            signature = self._signature(name, v)
            for start in sorted(b for vv, b in keys if vv == v):
                group = groups.get(start)
                out.append(
                    PerformanceWindow(
                        model=name,
                        version=v,
                        start=from_ms(start),
                        end=from_ms(start + width_ms),
                        predictions=counts.get((v, start), 0),
                        labeled=0 if group is None else group.height,
                        metrics={} if group is None else _metrics(signature, group),
                    )
                )
        out.sort(key=lambda w: (w.start, w.version))
        return out

    def by_version(
        self,
        model_name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> dict[int, VersionPerformance]:
        """Labeled rows and metrics of each version of ``model_name`` over predictions made in
        [since, until): a canary challenger beside its champion, say."""
        name, _ = self._target(model_name, None)
        since_ms = to_ms(since) if since is not None else None
        until_ms = to_ms(until) if until is not None else None
        counts = self._served_counts(name, None, since_ms, until_ms, None)
        labeled = self._labeled(name, None, since_ms, until_ms)
        versions = sorted({v for v, _ in counts} | set(labeled["version"].unique().to_list()))
        out: dict[int, VersionPerformance] = {}
        for v in versions:
            part = labeled.filter(pl.col("version") == v)
            scored = self._scored(name, v, part) if part.height else None
            out[v] = VersionPerformance(
                model=name,
                version=v,
                predictions=counts.get((v, 0), 0),
                labeled=0 if scored is None else scored.height,
                metrics={} if scored is None else _metrics(self._signature(name, v), scored),
            )
        return out

    def _signature(self, name: str, version: int) -> Signature:
        return self._registry.get_version(name, version).require_signature()

    def _scored(self, name: str, version: int, part: pl.DataFrame) -> pl.DataFrame:
        """Labels and logged outputs decoded into y_true, y_pred (and class probabilities)."""
        signature = self._signature(name, version)
        if signature.task == "regression":
            dtype: Any = pl.Float64
        else:
            dtype = getattr(pl, _LABEL_TYPES.get(signature.target_type, "String"))
        fields: dict[str, Any] = {"prediction": dtype}
        classes = signature.classes or []
        if signature.task == "classification" and classes:
            fields["probabilities"] = pl.Struct({str(c): pl.Float64 for c in classes})
        y_true = (
            pl.concat_str([pl.lit('{"v":'), pl.col("label"), pl.lit("}")])
            .str.json_decode(pl.Struct({"v": dtype}))
            .struct.field("v")
            .alias("y_true")
        )
        outputs = pl.col("outputs").str.json_decode(pl.Struct(fields))
        columns = [y_true, outputs.struct.field("prediction").alias("y_pred")]
        if "probabilities" in fields:
            columns.append(outputs.struct.field("probabilities").alias("proba"))
        scored = part.with_columns(columns).drop("label", "outputs")
        return scored.filter(pl.col("y_true").is_not_null() & pl.col("y_pred").is_not_null())

    # -- decay -----------------------------------------------------------------------------

    def baseline(self, version: ModelVersion | str, metric: str) -> tuple[float, bool]:
        """The hold-out ``metric`` the version's training run logged, and whether higher is
        better: what live values are compared with."""
        if isinstance(version, str):
            version = self._registry.resolve(version)
        if metric not in HIGHER_IS_BETTER and metric not in LOWER_IS_BETTER:
            known = ", ".join(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER))
            raise InvalidInput(f"unknown metric {metric!r}; use one of {known}")
        if not version.run_id:
            raise NotFound(f"{version.ref} has no training run to take a baseline {metric} from")
        logged = self._tracking.get_run(version.run_id).metrics
        if metric not in logged:
            usable = sorted(k for k in logged if k in HIGHER_IS_BETTER | LOWER_IS_BETTER)
            raise NotFound(
                f"the training run of {version.ref} logged no {metric!r}; "
                f"it logged {', '.join(usable) or 'no comparable metric'}"
            )
        return float(logged[metric]), metric in HIGHER_IS_BETTER

    def decay(
        self,
        model: str,
        *,
        width: timedelta = DEFAULT_WIDTH,
        metric: str | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        min_labels: int = DEFAULT_MIN_LABELS,
    ) -> DecayReport:
        """Has ``model`` (``NAME`` is its champion) got worse than at training time? Its newest
        labeled window's ``metric`` (default: accuracy or rmse) against the hold-out value its
        run logged: decayed when worse by more than ``tolerance`` (relative). A window with
        fewer than ``min_labels`` labels gives no verdict."""
        if not (tolerance >= 0 and math.isfinite(tolerance)):
            raise InvalidInput(f"tolerance is a relative drop (0.05: 5% worse), got {tolerance}")
        if min_labels < 1:
            raise InvalidInput(f"min_labels must be at least 1, got {min_labels}")
        version = self._registry.resolve(model)
        metric = metric or DEFAULT_METRIC[version.require_signature().task]
        baseline, higher = self.baseline(version, metric)
        found = [w for w in self.windows(version.ref, width=width) if w.labeled]
        base = {
            "model": version.name,
            "version": version.version,
            "metric": metric,
            "higher_is_better": higher,
            "baseline": baseline,
            "tolerance": tolerance,
            "min_labels": min_labels,
        }
        if not found:
            return DecayReport(
                **base,
                decayed=False,
                verdict=False,
                current=None,
                drop=None,
                start=None,
                end=None,
                labeled=0,
                reason=f"no labeled predictions of {version.ref} yet",
            )
        window = found[-1]
        where = {"start": window.start, "end": window.end, "labeled": window.labeled}
        current = window.metrics.get(metric)
        if window.labeled < min_labels or current is None:
            why = (
                f"{window.labeled} label(s) in the newest labeled window, fewer than "
                f"{min_labels}: no verdict"
                if window.labeled < min_labels
                else f"{metric} is undefined on the newest window's labels (one class only?)"
            )
            return DecayReport(
                **base,
                **where,
                decayed=False,
                verdict=False,
                current=current,
                drop=None,
                reason=why,
            )
        worse = (baseline - current) if higher else (current - baseline)
        drop = worse / abs(baseline) if baseline else (math.inf if worse > 0 else 0.0)
        decayed = drop > tolerance
        reason = (
            f"{metric} {current:.4g} on {window.labeled} labels vs {baseline:.4g} at training: "
            + (
                f"{drop:.1%} worse, beyond the {tolerance:.0%} tolerance"
                if decayed
                else f"within the {tolerance:.0%} tolerance"
            )
        )
        return DecayReport(
            **base,
            **where,
            decayed=decayed,
            verdict=True,
            current=current,
            drop=drop,
            reason=reason,
        )


def _metrics(signature: Signature, scored: pl.DataFrame) -> dict[str, float]:
    """The metrics of one group of decoded rows (as training computes them)."""
    y_true = scored.get_column("y_true").to_numpy()
    y_pred = scored.get_column("y_pred").to_numpy()
    if signature.task == "regression":
        return regression_metrics(y_true, y_pred)
    from sklearn import metrics as skm

    classes = list(signature.classes or sorted(set(y_true.tolist()) | set(y_pred.tolist())))
    proba = None
    if "proba" in scored.columns and scored.get_column("proba").null_count() == 0:
        matrix = scored.get_column("proba").struct.unnest().to_numpy()
        if not np.isnan(matrix).any():
            proba = matrix
    out = classification_metrics(y_true, y_pred, proba, classes)
    for name, fn in (
        ("precision_macro", skm.precision_score),
        ("recall_macro", skm.recall_score),
        ("f1_macro", skm.f1_score),
    ):
        out[name] = float(fn(y_true, y_pred, average="macro", zero_division=0))
    return out
