"""Drift of served traffic against the model's training data."""

from __future__ import annotations

import io
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from mloop.core.clock import now, to_ms
from mloop.core.errors import InvalidInput, NotFound
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
from mloop.monitoring.report import DatasetDriftReport, compare_frames
from mloop.monitoring.summary import Thresholds
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
        signature = version.require_signature()
        input_struct = pl.Struct(
            {c.name: getattr(pl, _POLARS_TYPES.get(c.type, "String")) for c in signature.inputs}
        )
        inputs = pl.Series("inputs", [r[0] for r in rows]).str.json_decode(input_struct)
        frame = inputs.struct.unnest()
        output_fields: dict[str, Any] = {
            "prediction": pl.Float64
            if signature.task == "regression"
            else getattr(pl, _LABEL_TYPES.get(signature.target_type, "String"))
        }
        classes = signature.classes or []
        if signature.task == "classification" and len(classes) == 2:
            output_fields["probabilities"] = pl.Struct({str(c): pl.Float64 for c in classes})
        outputs = (
            pl.Series("outputs", [r[1] for r in rows])
            .str.json_decode(pl.Struct(output_fields))
            .struct.unnest()
        )
        frame = frame.with_columns(prediction=outputs.get_column("prediction"))
        if "probabilities" in outputs.columns:
            frame = frame.with_columns(
                prediction_score=outputs.get_column("probabilities").struct.field(str(classes[-1]))
            )
        return frame

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
        dataset_version_id = version.info.get("dataset_version_id")
        if not dataset_version_id:
            raise NotFound(f"{version.ref} records no training dataset to compare with")
        reference_version = self._datasets.get_by_id(dataset_version_id)
        reference = self._datasets.load_polars(reference_version)
        if reference.height > MAX_REFERENCE_ROWS:
            reference = reference.sample(MAX_REFERENCE_ROWS, seed=0)

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
