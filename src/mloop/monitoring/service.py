"""Drift of served traffic against the model's training data."""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from mloop.core.clock import from_ms, now, to_ms
from mloop.core.errors import InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.core.lazy import lazy_module
from mloop.data import DatasetService
from mloop.monitoring.drift import (
    EFFECT_SIZE,
    P_VALUE,
    SMALL_SAMPLE,
    ColumnDrift,
    categorical_drift,
    numeric_drift,
)
from mloop.monitoring.report import DatasetDriftReport, compare_frames, profile_frame
from mloop.monitoring.summary import Profile, Summary, Thresholds, column_kind, compare
from mloop.registry import ModelVersion, RegistryService
from mloop.storage import Database, tables
from mloop.tracking import TrackingService
from mloop.training import REFERENCE_PREDICTIONS

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import pyarrow.parquet as pq
else:
    np = lazy_module("numpy")
    pl = lazy_module("polars")
    pq = lazy_module("pyarrow.parquet")

DATASET_DRIFT_SHARE = 0.5
MAX_REFERENCE_ROWS = 200_000
DEFAULT_WINDOW = timedelta(hours=1)


def _width_ms(width: timedelta) -> int:
    ms = int(width.total_seconds() * 1000)
    if ms < 1000:
        raise InvalidInput(f"a window must be at least 1 second wide, got {width}")
    return ms


class WindowUpdate(BaseModel):
    model: str
    version: int
    width_seconds: float
    folded: int  # predictions added to window summaries by this update
    windows: int  # windows they fell in
    last_prediction_id: int


class WindowDrift(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    start: datetime
    end: datetime
    rows: int
    against: str
    columns: list[ColumnDrift]
    drifted_columns: list[str]
    share_drifted: float


_POLARS_TYPES: dict[str, str] = {
    "integer": "Float64",
    "float": "Float64",
    "boolean": "Boolean",
    "string": "String",
}
# class labels decode as the target's own type, so that 1.0 reads "1.0" on both sides
_LABEL_TYPES: dict[str, str] = {"integer": "Int64", "float": "Float64", "boolean": "Boolean"}


class DriftReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    since: datetime | None
    until: datetime
    reference: str
    reference_rows: int
    current_rows: int
    features: list[ColumnDrift]
    outputs: list[ColumnDrift]
    drifted_features: list[str]
    drifted_outputs: list[str]
    share_drifted: float
    dataset_drift: bool
    thresholds: dict[str, float]


class MonitoringService:
    def __init__(
        self,
        db: Database,
        datasets: DatasetService,
        tracking: TrackingService,
        registry: RegistryService,
    ) -> None:
        self._db = db
        self._datasets = datasets
        self._tracking = tracking
        self._registry = registry
        self._profiles: dict[str, Profile] = {}

    def compare_datasets(
        self,
        reference: str,
        current: str,
        *,
        columns: list[str] | None = None,
        thresholds: Thresholds | None = None,
        multivariate: bool = False,
        html_path: str | os.PathLike[str] | None = None,
    ) -> DatasetDriftReport:
        """Drift of dataset ``current`` (``NAME[@V]``) against ``reference``: every column both
        have (or those named), from compact summaries; with ``multivariate``, a domain
        classifier's score too; with ``html_path``, the HTML report."""
        ref_version = self._datasets.get(reference)
        cur_version = self._datasets.get(current)
        return compare_frames(
            self._datasets.load_polars(ref_version),
            self._datasets.load_polars(cur_version),
            columns=columns,
            thresholds=thresholds,
            multivariate=multivariate,
            reference_name=ref_version.ref,
            current_name=cur_version.ref,
            html_path=html_path,
        )

    def current_window(
        self, version: ModelVersion, since: datetime | None, until: datetime
    ) -> pl.DataFrame:
        """The logged inputs and outputs of ``version`` in [since, until), decoded in Polars."""
        p = tables.predictions
        query = sa.select(p.c.inputs, p.c.outputs).where(
            p.c.model_name == version.name,
            p.c.model_version == version.version,
            p.c.ts < to_ms(until),
        )
        if since is not None:
            query = query.where(p.c.ts >= to_ms(since))
        with self._db.read() as conn:
            rows = conn.execute(query.order_by(p.c.id)).all()
        if not rows:
            raise NotFound(
                f"no predictions of {version.ref} were logged in {window_label(since, until)}"
            )
        return self._decode(version, [r[0] for r in rows], [r[1] for r in rows])

    @staticmethod
    def _decode(version: ModelVersion, inputs: list[str], outputs: list[str]) -> pl.DataFrame:
        """Logged JSON inputs and outputs as columns, in one vectorized pass each."""
        signature = version.require_signature()
        input_struct = pl.Struct(
            {c.name: getattr(pl, _POLARS_TYPES.get(c.type, "String")) for c in signature.inputs}
        )
        frame = pl.Series("inputs", inputs).str.json_decode(input_struct).struct.unnest()
        output_fields: dict[str, Any] = {
            "prediction": pl.Float64
            if signature.task == "regression"
            else getattr(pl, _LABEL_TYPES.get(signature.target_type, "String"))
        }
        classes = signature.classes or []
        if signature.task == "classification" and len(classes) == 2:
            output_fields["probabilities"] = pl.Struct({str(c): pl.Float64 for c in classes})
        decoded = (
            pl.Series("outputs", outputs).str.json_decode(pl.Struct(output_fields)).struct.unnest()
        )
        frame = frame.with_columns(prediction=decoded.get_column("prediction"))
        if "probabilities" in decoded.columns:
            frame = frame.with_columns(
                prediction_score=decoded.get_column("probabilities").struct.field(str(classes[-1]))
            )
        return frame

    def _training_frame(self, version: ModelVersion) -> tuple[Any, pl.DataFrame]:
        """The dataset version ``version`` was trained on, and its rows (a seeded sample of
        ``MAX_REFERENCE_ROWS`` when it has more)."""
        dataset_version_id = version.info.get("dataset_version_id")
        if not dataset_version_id:
            raise NotFound(f"{version.ref} records no training dataset to compare with")
        reference_version = self._datasets.get_by_id(dataset_version_id)
        reference = self._datasets.load_polars(reference_version)
        if reference.height > MAX_REFERENCE_ROWS:
            reference = reference.sample(MAX_REFERENCE_ROWS, seed=0)
        return reference_version, reference

    # -- windows of the prediction log ------------------------------------------------------

    def _profile(self, version: ModelVersion) -> Profile:
        """The profile of the version's training data over its input features (cached: the
        dataset version is immutable, and the profile deterministic)."""
        key = f"{version.name}@{version.version}"
        cached = self._profiles.get(key)
        if cached is not None:
            return cached
        _, reference = self._training_frame(version)
        inputs = version.require_signature().inputs
        numbers = ("integer", "float")
        numeric = [pl.col(c.name).cast(pl.Float64) for c in inputs if c.type in numbers]
        profile = profile_frame(
            reference.with_columns(numeric),
            [c.name for c in inputs if column_kind(reference.schema[c.name]) is not None],
        )
        self._profiles[key] = profile
        return profile

    def update_windows(
        self, model: str, *, width: timedelta = DEFAULT_WINDOW, batch_rows: int = 50_000
    ) -> WindowUpdate:
        """Fold the predictions of ``model`` logged since the last update into the summaries
        of their tumbling windows (``width`` wide, aligned on the Unix epoch): a batch of
        ``batch_rows`` at a time, so memory stays bounded however much was logged."""
        version = self._registry.resolve(model)
        width_ms = _width_ms(width)
        profile = self._profile(version)
        w, p = tables.monitor_windows, tables.predictions
        key = (w.c.model_name == version.name, w.c.model_version == version.version)
        with self._db.read() as conn:
            cursor = conn.execute(
                sa.select(sa.func.max(w.c.last_prediction_id)).where(*key, w.c.width_ms == width_ms)
            ).scalar()
        cursor = int(cursor or 0)
        folded, touched = 0, set()
        while True:
            with self._db.read() as conn:
                rows = conn.execute(
                    sa.select(p.c.id, p.c.ts, p.c.inputs, p.c.outputs)
                    .where(
                        p.c.model_name == version.name,
                        p.c.model_version == version.version,
                        p.c.id > cursor,
                        sa.or_(p.c.shadow.is_(None), p.c.shadow.is_(False)),
                    )
                    .order_by(p.c.id)
                    .limit(batch_rows)
                ).all()
            if not rows:
                break
            frame = self._decode(version, [r[2] for r in rows], [r[3] for r in rows])
            starts = pl.Series([r[1] // width_ms * width_ms for r in rows])
            ids = [r[0] for r in rows]
            frame = frame.with_columns(_start=starts, _id=pl.Series(ids))
            for (start,), part in frame.group_by("_start", maintain_order=True):
                self._fold(version, profile, width_ms, int(start), part)
                touched.add(int(start))
            cursor = ids[-1]
            folded += len(rows)
            if len(rows) < batch_rows:
                break
        return WindowUpdate(
            model=version.name,
            version=version.version,
            width_seconds=width_ms / 1000,
            folded=folded,
            windows=len(touched),
            last_prediction_id=cursor,
        )

    def _fold(
        self, version: ModelVersion, profile: Profile, width_ms: int, start: int, part: Any
    ) -> None:
        w = tables.monitor_windows
        where = (
            w.c.model_name == version.name,
            w.c.model_version == version.version,
            w.c.width_ms == width_ms,
            w.c.start_ms == start,
        )
        with self._db.write() as conn:
            existing = conn.execute(sa.select(w.c.id, w.c.summary).where(*where)).first()
            summary = (
                profile.window()
                if existing is None
                else profile.summary_from_dict(orjson.loads(existing.summary))
            )
            summary.update(part.drop("_start", "_id"))
            values = {
                "rows": summary.rows,
                "summary": orjson.dumps(summary.to_dict()).decode(),
                "last_prediction_id": int(part.get_column("_id").max()),
                "updated_at": to_ms(now()),
            }
            if existing is None:
                conn.execute(
                    w.insert().values(
                        id=new_id(),
                        model_name=version.name,
                        model_version=version.version,
                        width_ms=width_ms,
                        start_ms=start,
                        **values,
                    )
                )
            else:
                conn.execute(w.update().where(w.c.id == existing.id).values(**values))

    def window_drift(
        self,
        model: str,
        *,
        width: timedelta = DEFAULT_WINDOW,
        sliding: int = 1,
        against: str = "training",
        last: int | None = None,
        thresholds: Thresholds | None = None,
        update: bool = True,
    ) -> list[WindowDrift]:
        """Drift per window of served inputs: each tumbling window (or, with ``sliding`` = k,
        the k windows ending at it, merged) against the training data or, with ``against`` =
        "previous", against the window (of the same span) just before it. ``last``: only the
        newest so many. Brings the summaries up to date first unless ``update`` is false."""
        if against not in ("training", "previous"):
            raise InvalidInput(f"against must be 'training' or 'previous', got {against!r}")
        if sliding < 1:
            raise InvalidInput(f"sliding must be at least 1 window, got {sliding}")
        if last is not None and last < 1:
            raise InvalidInput(f"last must be at least 1, got {last}")
        if update:
            self.update_windows(model, width=width)
        version = self._registry.resolve(model)
        width_ms = _width_ms(width)
        profile = self._profile(version)
        w = tables.monitor_windows
        with self._db.read() as conn:
            stored = conn.execute(
                sa.select(w.c.start_ms, w.c.summary)
                .where(
                    w.c.model_name == version.name,
                    w.c.model_version == version.version,
                    w.c.width_ms == width_ms,
                )
                .order_by(w.c.start_ms)
            ).all()
        if not stored:
            raise NotFound(f"no predictions of {version.ref} were logged yet")
        by_start = {r.start_ms: r.summary for r in stored}

        def span(end_start: int) -> Summary | None:
            merged = profile.window()
            found = False
            for k in range(sliding):
                text = by_start.get(end_start - k * width_ms)
                if text is not None:
                    merged.merge(profile.summary_from_dict(orjson.loads(text)))
                    found = True
            return merged if found else None

        starts = [r.start_ms for r in stored]
        if last is not None:
            starts = starts[-last:]
        out = []
        for start in starts:
            current = span(start)
            assert current is not None
            reference: Profile | Summary
            if against == "training":
                reference, label = profile, "training data"
            else:
                previous = span(start - sliding * width_ms)
                if previous is None:
                    continue  # nothing before it to compare with
                reference, label = previous, "the previous window"
            results = compare(reference, current, thresholds)
            drifted = [r.column for r in results if r.drifted]
            out.append(
                WindowDrift(
                    model=version.name,
                    version=version.version,
                    start=from_ms(start - (sliding - 1) * width_ms),
                    end=from_ms(start + width_ms),
                    rows=current.rows,
                    against=label,
                    columns=results,
                    drifted_columns=drifted,
                    share_drifted=len(drifted) / max(len(results), 1),
                )
            )
        return out

    def drift(
        self,
        model: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> DriftReport:
        """Compare what ``model`` (``NAME``, ``NAME@ALIAS``, ``NAME@N``) was asked and answered
        in the window with its training data and its hold-out predictions."""
        version = self._registry.resolve(model)
        until = until or now()
        if since is not None and since >= until:
            raise InvalidInput(
                f"the window is empty: since {since.isoformat()} is not before "
                f"until {until.isoformat()}"
            )
        current = self.current_window(version, since, until)
        reference_version, reference = self._training_frame(version)

        features = [
            self._column(c.name, c.type, reference, current)
            for c in version.require_signature().inputs
        ]
        outputs = self._outputs(version, current)
        drifted = [f.column for f in features if f.drifted]
        share = len(drifted) / max(len(features), 1)
        return DriftReport(
            model=version.name,
            version=version.version,
            since=since,
            until=until,
            reference=reference_version.ref,
            reference_rows=reference.height,
            current_rows=current.height,
            features=features,
            outputs=outputs,
            drifted_features=drifted,
            drifted_outputs=[o.column for o in outputs if o.drifted],
            share_drifted=share,
            dataset_drift=share >= DATASET_DRIFT_SHARE,
            thresholds={
                "small_sample_rows": SMALL_SAMPLE,
                "p_value": P_VALUE,
                "effect_size": EFFECT_SIZE,
                "dataset_drift_share": DATASET_DRIFT_SHARE,
            },
        )

    @staticmethod
    def _column(
        name: str, ctype: str, reference: pl.DataFrame, current: pl.DataFrame
    ) -> ColumnDrift:
        ref, cur = reference.get_column(name), current.get_column(name)
        if ctype in ("integer", "float"):
            return numeric_drift(
                name,
                ref.cast(pl.Float64).fill_null(np.nan).to_numpy(),
                cur.cast(pl.Float64).fill_null(np.nan).to_numpy(),
            )
        return categorical_drift(name, ref, cur)

    def _outputs(self, version: ModelVersion, current: pl.DataFrame) -> list[ColumnDrift]:
        if not version.run_id:
            return []
        try:
            data = self._tracking.read_artifact(version.run_id, REFERENCE_PREDICTIONS)
        except NotFound:
            return []
        reference = pl.from_arrow(pq.read_table(io.BytesIO(data)))
        assert isinstance(reference, pl.DataFrame)
        results = []
        if version.require_signature().task == "regression":
            results.append(
                numeric_drift(
                    "prediction",
                    reference.get_column("prediction").cast(pl.Float64).to_numpy(),
                    current.get_column("prediction").cast(pl.Float64).fill_null(np.nan).to_numpy(),
                )
            )
        else:
            results.append(
                categorical_drift(
                    "prediction",
                    reference.get_column("prediction").cast(pl.String),
                    current.get_column("prediction").cast(pl.String),
                )
            )
        if "prediction_score" in reference.columns and "prediction_score" in current.columns:
            results.append(
                numeric_drift(
                    "prediction_score",
                    reference.get_column("prediction_score").to_numpy(),
                    current.get_column("prediction_score").fill_null(np.nan).to_numpy(),
                )
            )
        return results


def window_label(since: datetime | None, until: datetime) -> str:
    start = since.isoformat(timespec="seconds") if since else "the beginning"
    return f"{start} → {until.isoformat(timespec='seconds')}"
