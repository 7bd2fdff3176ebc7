"""Evaluate a registered model version on a dataset version: the metrics suite, calibration,
single-row latency, and (for declared columns) slices and the fairness report. Results are
stored with the version (``model_evaluations``) and reused for the same version, dataset
version and options, so a champion is evaluated once per evaluation dataset."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module
from mloop.data import DatasetService, DatasetVersion
from mloop.models import frame_from_table
from mloop.registry import DEFAULT_LATENCY_ROWS, ModelVersion, RegistryService
from mloop.training.metrics import calibration, classification_metrics, regression_metrics

if TYPE_CHECKING:
    from mloop.training.card import ModelCard
    from mloop.training.explain import Explanation

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")


class Evaluation(BaseModel):
    """A version's results on a dataset version: ``metrics`` are flat numbers (what gates
    read: ``roc_auc``, ``latency_p99_ms``, ``demographic_parity_difference``, ...);
    ``details`` hold the calibration curve, slices and fairness groups."""

    model_config = ConfigDict(frozen=True)

    model: str  # NAME@VERSION
    model_version_id: str
    dataset: str  # NAME@VERSION
    dataset_version_id: str
    rows: int
    metrics: dict[str, float]
    details: dict[str, Any]
    evaluation_id: str
    reused: bool  # True: found stored, not computed again


class EvaluationService:
    def __init__(self, datasets: DatasetService, registry: RegistryService) -> None:
        self._datasets = datasets
        self._registry = registry

    def _version_and_data(
        self, model: str | ModelVersion, dataset: str, *, with_target: bool = False
    ) -> tuple[ModelVersion, DatasetVersion]:
        """The model version and the dataset version, which must hold every model input (and
        with ``with_target`` the model's target, checked first)."""
        version = self._registry.resolve(model) if isinstance(model, str) else model
        signature = version.require_signature()
        data = self._datasets.get(dataset)
        if with_target and signature.target not in data.schema_.names:
            raise InvalidInput(
                f"dataset {data.ref} has no target column {signature.target!r} "
                f"(model {version.ref} predicts it)"
            )
        lacking = [c.name for c in signature.inputs if c.name not in data.schema_.names]
        if lacking:
            raise InvalidInput(
                f"dataset {data.ref} lacks input {lacking[0]!r} of model {version.ref}"
            )
        return version, data

    def evaluate(
        self,
        model: str | ModelVersion,
        dataset: str,
        *,
        sensitive: Sequence[str] = (),
        slices: Sequence[str] = (),
        latency_rows: int = DEFAULT_LATENCY_ROWS,
        reuse: bool = True,
    ) -> Evaluation:
        """Evaluate ``model`` (``NAME``, ``NAME@ALIAS``, ``NAME@N`` or a version) on
        ``dataset`` (``NAME`` or ``NAME@V``), which must hold the model's target and inputs.

        Everything is checked before any prediction: the target column, the inputs, the
        sensitive and slice columns, ``latency_rows``."""
        version, data = self._version_and_data(model, dataset, with_target=True)
        signature = version.require_signature()
        names = set(data.schema_.names)
        for kind, columns in (("sensitive", sensitive), ("slice", slices)):
            if isinstance(columns, str):
                raise InvalidInput(f"give the {kind} columns as a list")
            for column in columns:
                if column not in names:
                    raise InvalidInput(f"dataset {data.ref} has no {kind} column {column!r}")
        if sensitive and signature.task != "classification":
            raise InvalidInput("a fairness report needs a classifier")
        if not 1 <= latency_rows <= 100_000:
            raise InvalidInput(f"latency_rows must be between 1 and 100000, not {latency_rows}")
        spec = {
            "sensitive": list(sensitive),
            "slices": list(slices),
            "latency_rows": latency_rows,
        }
        spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        if reuse:
            found = self._registry.find_evaluation(version, data.id, spec_hash)
            if found is not None:
                return Evaluation(
                    model=version.ref,
                    model_version_id=version.id,
                    dataset=data.ref,
                    dataset_version_id=data.id,
                    rows=int(found.details.get("rows", 0)),
                    metrics=found.metrics,
                    details=found.details,
                    evaluation_id=found.id,
                    reused=True,
                )

        table = self._datasets.load(data)
        y_all = table.column(signature.target)
        keep = pc.is_valid(y_all)
        if signature.target_type == "float":
            keep = pc.and_(keep, pc.invert(pc.is_nan(y_all.cast(pa.float64()))))
        table = table.filter(keep)
        if table.num_rows == 0:
            raise InvalidInput(f"dataset {data.ref} has no rows with a target value")
        loaded = self._registry.load(version)
        frame = frame_from_table(table, signature)
        y = table.column(signature.target).to_numpy(zero_copy_only=False)
        estimator = loaded.estimator
        predicted = np.asarray(estimator.predict(frame))
        details: dict[str, Any] = {"rows": table.num_rows}
        proba = None
        if signature.task == "classification":
            classes = list(estimator.classes_)
            if hasattr(estimator, "predict_proba"):
                proba = np.asarray(estimator.predict_proba(frame))
            metrics = classification_metrics(y, predicted, proba, classes)
            curve = calibration(y, proba, classes) if proba is not None else None
            if curve is not None:
                details["calibration"] = curve
        else:
            metrics = regression_metrics(y, predicted)
        inputs = [c.name for c in signature.inputs]
        metrics.update(_latency(loaded, table.select(inputs), latency_rows))
        if slices or sensitive:
            from mloop.training import evaluation as parts

            if slices:
                found_slices = parts.slice_metrics(
                    frame=table.select(list(slices)).to_pandas(),
                    y_true=y,
                    y_pred=predicted,
                    proba=proba,
                    classes=(
                        list(estimator.classes_) if signature.task == "classification" else None
                    ),
                    task=signature.task,
                    columns=list(slices),
                )
                details["slices"] = [s.model_dump(mode="json") for s in found_slices]
            if sensitive:
                positive = (signature.classes or list(estimator.classes_))[-1]
                report = parts.fairness_report(
                    y_true=y,
                    y_pred=predicted,
                    sensitive={
                        c: table.column(c).to_numpy(zero_copy_only=False) for c in sensitive
                    },
                    positive_label=positive,
                )
                metrics.update(report.summary())
                details["fairness"] = report.model_dump(mode="json")
        metrics = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        stored = self._registry.save_evaluation(version, data.id, spec_hash, spec, metrics, details)
        return Evaluation(
            model=version.ref,
            model_version_id=version.id,
            dataset=data.ref,
            dataset_version_id=data.id,
            rows=table.num_rows,
            metrics=metrics,
            details=details,
            evaluation_id=stored.id,
            reused=False,
        )

    def explain(
        self,
        model: str | ModelVersion,
        dataset: str,
        *,
        rows: int | None = None,
        store: bool = True,
    ) -> Explanation:
        """SHAP values of the version's predictions on ``dataset`` (up to ``rows`` rows, a
        seeded sample): TreeExplainer for tree models, exact or permutation Shapley values
        otherwise. ``store`` keeps them with the version (Parquet, ``mloop.explanation``)."""
        from mloop.training.explain import explain

        version, data = self._version_and_data(model, dataset)
        signature = version.require_signature()
        if rows is not None and rows < 1:
            raise InvalidInput(f"rows must be at least 1, not {rows}")
        table = self._datasets.load(data, columns=signature.input_names)
        frame = frame_from_table(table, signature)
        explanation = explain(self._registry.load(version).estimator, frame, max_rows=rows)
        if store:
            import io

            import pyarrow.parquet as pq

            sink = io.BytesIO()
            pq.write_table(explanation.to_table(), sink)
            self._registry.attach(version, "explanation", sink.getvalue())
        return explanation

    def card(
        self,
        model: str | ModelVersion,
        dataset: str,
        *,
        intended_use: str | None = None,
        limitations: str | None = None,
        sensitive: Sequence[str] = (),
        slices: Sequence[str] = (),
        explain: bool = True,
        store: bool = True,
    ) -> ModelCard:
        """The version's model card: its data, the metrics, slices and fairness on ``dataset``
        (the stored evaluation when there is one), the top SHAP features, the intended use and
        limits given. ``store`` keeps Markdown and HTML with the version (tags
        ``mloop.card.md`` and ``mloop.card.html``)."""
        from mloop.training.card import model_card
        from mloop.training.evaluation import FairnessReport, SliceResult

        version = self._registry.resolve(model) if isinstance(model, str) else model
        signature = version.require_signature()
        found = self.evaluate(version, dataset, sensitive=sensitive, slices=slices)
        explanation = self.explain(version, dataset, store=store) if explain else None
        fairness = found.details.get("fairness")
        card = model_card(
            version.name,
            version=version.version,
            description=version.description,
            estimator=self._registry.load(version).meta.estimator,
            task=signature.task,
            created=version.created_at,
            run_id=version.run_id,
            dataset=str(version.info.get("dataset") or "") or None,
            training_rows=version.info.get("train_rows"),
            evaluation_rows=found.rows,
            signature=signature,
            target=signature.target,
            classes=signature.classes,
            metrics=found.metrics,
            slices=[SliceResult.model_validate(s) for s in found.details.get("slices", [])],
            fairness=FairnessReport.model_validate(fairness) if fairness else None,
            explanation=explanation,
            intended_use=intended_use,
            limitations=limitations,
        )
        if store:
            self._registry.attach(version, "card.md", card.to_markdown().encode())
            self._registry.attach(version, "card.html", card.to_html().encode())
        return card


def _latency(loaded: Any, table: pa.Table, rows: int) -> dict[str, float]:
    """Single-row predictions through the serving path (rows validated against the signature,
    then predicted) on one thread: p50 and p99 in milliseconds, over up to ``rows`` rows after
    a warm-up. The rows are the table's own values, as a client sends them (a boolean with
    nulls stays true/false/None, where the model's frame holds it as 1.0/0.0/NaN)."""
    from threadpoolctl import threadpool_limits

    records = table.slice(0, rows).to_pylist()
    if not records:
        return {}
    times = []
    clock = time.perf_counter
    # one thread, as a serving worker predicts one row: OpenMP threads waking for one row
    # cost more than the row (and spin against anything else running on the machine)
    with threadpool_limits(limits=1):
        loaded.predict_rows(records[:1])  # warm-up: first-call costs are not the latency
        for record in records:
            start = clock()
            loaded.predict_rows([record])
            times.append((clock() - start) * 1000)
    times.sort()
    return {
        "latency_p50_ms": times[len(times) // 2],
        "latency_p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    }
