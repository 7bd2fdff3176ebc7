"""Drift of served traffic against the model's training data."""

from __future__ import annotations

import io
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from mloop.core.clock import from_ms, now, to_ms
from mloop.core.errors import InvalidInput, NotFound
from mloop.core.ids import new_id
from mloop.core.lazy import lazy_module
from mloop.data import DatasetService, Suite
from mloop.monitoring.drift import (
    EFFECT_SIZE,
    P_VALUE,
    SMALL_SAMPLE,
    ColumnDrift,
    categorical_drift,
    numeric_drift,
)
from mloop.monitoring.quality import (
    ColumnRules,
    QualityThresholds,
    WindowQuality,
    assess,
    rules_from_suite,
)
from mloop.monitoring.report import (
    DatasetDriftReport,
    WindowSection,
    _field,
    compare_frames,
    profile_frame,
    render_window_report,
)
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
OUTPUTS = ("prediction", "prediction_score")  # the outputs summarised in each window
REPORT_WINDOWS = 24  # windows a report shows unless told


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
    columns: list[ColumnDrift]  # the inputs
    drifted_columns: list[str]
    share_drifted: float
    # the model's outputs (prediction, prediction_score) against its hold-out predictions or
    # the previous window; empty when the run kept no reference predictions
    outputs: list[ColumnDrift] = []
    drifted_outputs: list[str] = []


class _Window:
    """A window of the log (one tumbling window or several merged) and its reference."""

    def __init__(
        self, start_ms: int, end_ms: int, current: Summary, previous: Summary | None
    ) -> None:
        self.start, self.end = from_ms(start_ms), from_ms(end_ms)
        self.current, self.previous = current, previous


class _Basis(NamedTuple):
    """What a look at the windows starts from: the version, its profile (training inputs and
    hold-out outputs), the suite's rules, where the limits come from, and the windows."""

    version: ModelVersion
    profile: Profile
    rules: dict[str, ColumnRules]
    bounds: str
    windows: list[_Window]


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

    def _suite(self, version: ModelVersion) -> Suite | None:
        """The validation suite of the version's training data: the latest suite named after
        its dataset (what ``mloop data suite`` infers and edits) or, without one, the latest
        inferred from that very dataset version."""
        dataset_version_id = version.info.get("dataset_version_id")
        if not dataset_version_id:
            return None
        dataset = self._datasets.get_by_id(dataset_version_id).dataset
        t = tables.expectation_suites
        with self._db.read() as conn:
            row = None
            for where in (t.c.name == dataset, t.c.inferred_from == dataset_version_id):
                row = (
                    conn.execute(sa.select(t).where(where).order_by(t.c.version.desc()))
                    .mappings()
                    .first()
                )
                if row is not None:
                    break
        if row is None:
            return None
        return Suite.parse(
            {
                **row["body"],
                "name": row["name"],
                "version": row["version"],
                "inferred_from": row["inferred_from"],
            }
        )

    def _reference_outputs(self, version: ModelVersion) -> pl.DataFrame | None:
        """The hold-out predictions the run kept (REFERENCE_PREDICTIONS), if any."""
        if not version.run_id:
            return None
        try:
            data = self._tracking.read_artifact(version.run_id, REFERENCE_PREDICTIONS)
        except NotFound:
            return None
        reference = pl.from_arrow(pq.read_table(io.BytesIO(data)))
        assert isinstance(reference, pl.DataFrame)
        return reference

    @staticmethod
    def _as_outputs(version: ModelVersion, frame: pl.DataFrame) -> pl.DataFrame:
        """Outputs as the window summaries count them: a class label as a category."""
        if version.require_signature().task != "regression" and "prediction" in frame.columns:
            frame = frame.with_columns(pl.col("prediction").cast(pl.String))
        return frame

    def _profile(self, version: ModelVersion) -> tuple[Profile, dict[str, ColumnRules], str]:
        """The profile of the version's training data over its input features and of its
        hold-out predictions (when the run kept them), with the validation suite's ranges as
        the inputs' out-of-range limits; the suite's rules by column; and where the limits
        come from ("training data" or "suite NAME@N"). Cached per suite version: the dataset
        version is immutable, and the profile deterministic."""
        suite = self._suite(version)
        bounds = f"suite {suite.name}@{suite.version}" if suite else "training data"
        key = f"{version.name}@{version.version} {bounds}"
        rules = rules_from_suite(suite)
        cached = self._profiles.get(key)
        if cached is not None:
            return cached, rules, bounds
        _, reference = self._training_frame(version)
        inputs = version.require_signature().inputs
        numbers = ("integer", "float")
        numeric = [pl.col(c.name).cast(pl.Float64) for c in inputs if c.type in numbers]
        profile = profile_frame(
            reference.with_columns(numeric),
            [c.name for c in inputs if column_kind(reference.schema[c.name]) is not None],
        )
        outputs = self._reference_outputs(version)
        if outputs is not None:
            outputs = self._as_outputs(version, outputs)
            names = [c for c in OUTPUTS if c in outputs.columns]
            profile.columns.update(profile_frame(outputs, names).columns)
        for name, rule in rules.items():
            if rule.between is not None and name not in OUTPUTS:
                ref = profile.columns.get(name)
                if ref is not None and ref.kind == "numeric":
                    profile.set_limits(name, rule.low, rule.high)
        self._profiles[key] = profile
        return profile, rules, bounds

    def update_windows(
        self, model: str, *, width: timedelta = DEFAULT_WINDOW, batch_rows: int = 50_000
    ) -> WindowUpdate:
        """Fold the predictions of ``model`` logged since the last update into the summaries
        of their tumbling windows (``width`` wide, aligned on the Unix epoch): a batch of
        ``batch_rows`` at a time, so memory stays bounded however much was logged. Shadow
        predictions and failed requests (an error code, no prediction) are left out."""
        version = self._registry.resolve(model)
        width_ms = _width_ms(width)
        profile, _, _ = self._profile(version)
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
                        tables.ANSWERED,
                    )
                    .order_by(p.c.id)
                    .limit(batch_rows)
                ).all()
            if not rows:
                break
            frame = self._decode(version, [r[2] for r in rows], [r[3] for r in rows])
            frame = self._as_outputs(version, frame)
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

    def _windows(
        self,
        model: str,
        *,
        width: timedelta,
        sliding: int,
        last: int | None,
        previous: bool,
        update: bool,
    ) -> _Basis:
        """The windows of the log, oldest first: each tumbling window (or, with ``sliding`` =
        k, the k ending at it, merged), and with ``previous`` the window of the same span just
        before it (None when nothing was logged then)."""
        if sliding < 1:
            raise InvalidInput(f"sliding must be at least 1 window, got {sliding}")
        if last is not None and last < 1:
            raise InvalidInput(f"last must be at least 1, got {last}")
        width_ms = _width_ms(width)
        if update:
            self.update_windows(model, width=width)
        version = self._registry.resolve(model)
        profile, rules, bounds = self._profile(version)
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
        texts = {r.start_ms: r.summary for r in stored}
        parsed: dict[int, Summary] = {}

        def one(start: int) -> Summary | None:
            if start not in parsed:
                text = texts.get(start)
                if text is None:
                    return None
                parsed[start] = profile.summary_from_dict(orjson.loads(text))
            return parsed[start]

        def span(end_start: int) -> Summary | None:
            merged = profile.window()
            found = False
            for k in range(sliding):
                summary = one(end_start - k * width_ms)
                if summary is not None:
                    merged.merge(summary)
                    found = True
            return merged if found else None

        starts = [r.start_ms for r in stored]
        if last is not None:
            starts = starts[-last:]
        out = []
        for start in starts:
            current = span(start)
            assert current is not None
            before = span(start - sliding * width_ms) if previous else None
            out.append(_Window(start - (sliding - 1) * width_ms, start + width_ms, current, before))
        return _Basis(version, profile, rules, bounds, out)

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
        """Drift per window of served inputs and of the model's outputs: each tumbling window
        (or, with ``sliding`` = k, the k windows ending at it, merged) against the training
        data and the run's hold-out predictions or, with ``against`` = "previous", against the
        window (of the same span) just before it. ``last``: only the newest so many. Brings
        the summaries up to date first unless ``update`` is false."""
        if against not in ("training", "previous"):
            raise InvalidInput(f"against must be 'training' or 'previous', got {against!r}")
        basis = self._windows(
            model,
            width=width,
            sliding=sliding,
            last=last,
            previous=against == "previous",
            update=update,
        )
        drifts = (_drift_of(basis, w, against, thresholds) for w in basis.windows)
        return [d for d in drifts if d is not None]

    def window_quality(
        self,
        model: str,
        *,
        width: timedelta = DEFAULT_WINDOW,
        sliding: int = 1,
        last: int | None = None,
        thresholds: QualityThresholds | None = None,
        update: bool = True,
    ) -> list[WindowQuality]:
        """Data quality of served inputs per window (see :mod:`mloop.monitoring.quality`):
        null rates, values out of the suite's (or the training data's) range, categories
        the training data did not have — each column judged against what the training
        data's validation suite allows, plus ``thresholds``' tolerances."""
        basis = self._windows(
            model, width=width, sliding=sliding, last=last, previous=False, update=update
        )
        limits = thresholds or QualityThresholds()
        return [_quality_of(basis, w, limits) for w in basis.windows]

    def window_report(
        self,
        model: str,
        *,
        width: timedelta = DEFAULT_WINDOW,
        sliding: int = 1,
        against: str = "training",
        last: int | None = REPORT_WINDOWS,
        thresholds: Thresholds | None = None,
        quality: QualityThresholds | None = None,
        performance: list[Any] | None = None,
        path: str | os.PathLike[str] | None = None,
        update: bool = True,
    ) -> str:
        """An HTML page of the newest ``last`` windows (24 unless told; None: all): per
        window, drift per feature and for the predictions with a small chart of each (from
        the summaries, so the page's size does not depend on the rows), data quality per
        feature, and live performance when ``performance`` windows are given (objects or
        dicts with start, end, version, labeled and metrics). Written to ``path`` too."""
        if against not in ("training", "previous"):
            raise InvalidInput(f"against must be 'training' or 'previous', got {against!r}")
        basis = self._windows(
            model,
            width=width,
            sliding=sliding,
            last=last,
            previous=against == "previous",
            update=update,
        )
        limits = quality or QualityThresholds()
        sections = []
        for w in basis.windows:
            reference = basis.profile if against == "training" else w.previous
            sections.append(
                WindowSection(
                    start=w.start,
                    end=w.end,
                    rows=w.current.rows,
                    drift=_drift_of(basis, w, against, thresholds),
                    quality=_quality_of(basis, w, limits),
                    reference=reference,
                    current=w.current,
                )
            )
        title = f"{basis.version.ref}: drift, quality and performance per {_duration(width)} window"
        if sliding > 1:
            title += f" (sliding over {sliding})"
        if performance is not None:  # this version's windows (a NAME covers them all)
            performance = [
                w for w in performance if _field(w, "version") in (None, basis.version.version)
            ]
        page = render_window_report(title, sections, performance)
        if path is not None:
            from pathlib import Path

            try:
                Path(path).write_text(page, encoding="utf-8")
            except OSError as exc:
                raise InvalidInput(f"cannot write the HTML report to {path}: {exc}") from exc
        return page

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
        reference = self._reference_outputs(version)
        if reference is None:
            return []
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


def _drift_of(
    basis: _Basis, window: _Window, against: str, thresholds: Thresholds | None
) -> WindowDrift | None:
    reference: Profile | Summary
    if against == "training":
        reference, label = basis.profile, "training data"
    elif window.previous is None:
        return None  # nothing before it to compare with
    else:
        reference, label = window.previous, "the previous window"
    results = compare(reference, window.current, thresholds)
    inputs = [r for r in results if r.column not in OUTPUTS]
    outputs = [r for r in results if r.column in OUTPUTS]
    drifted = [r.column for r in inputs if r.drifted]
    return WindowDrift(
        model=basis.version.name,
        version=basis.version.version,
        start=window.start,
        end=window.end,
        rows=window.current.rows,
        against=label,
        columns=inputs,
        drifted_columns=drifted,
        share_drifted=len(drifted) / max(len(inputs), 1),
        outputs=outputs,
        drifted_outputs=[r.column for r in outputs if r.drifted],
    )


def _quality_of(basis: _Basis, window: _Window, limits: QualityThresholds) -> WindowQuality:
    profile = basis.profile
    inputs = [c.name for c in basis.version.require_signature().inputs if c.name in profile.columns]
    columns = assess(profile, window.current, inputs, basis.rules, limits)
    failed = [c.column for c in columns if c.failed]
    return WindowQuality(
        model=basis.version.name,
        version=basis.version.version,
        start=window.start,
        end=window.end,
        rows=window.current.rows,
        bounds=basis.bounds,
        columns=columns,
        failed_columns=failed,
        failed=bool(failed),
        thresholds=limits.as_dict(),
    )


def _duration(width: timedelta) -> str:
    seconds = int(width.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def window_label(since: datetime | None, until: datetime) -> str:
    start = since.isoformat(timespec="seconds") if since else "the beginning"
    return f"{start} → {until.isoformat(timespec='seconds')}"
