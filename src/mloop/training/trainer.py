"""Train a model on a dataset version, tracked as a run, optionally registered."""

from __future__ import annotations

import io
import math
import pickle
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput, MloopError
from mloop.core.lazy import lazy_module
from mloop.core.schema import NUMERIC_TYPES, Column
from mloop.data import DatasetService, DatasetVersion
from mloop.features import FeatureService
from mloop.models import (
    FEATURE_TYPES,
    FLAVOR_SKLEARN,
    ModelMeta,
    Signature,
    captured_dependencies,
    frame_from_table,
    write_sklearn_package,
)
from mloop.registry import DEFAULT_ALIAS, ModelVersion, RegistryService, check_alias
from mloop.tracking import DEFAULT_EXPERIMENT, Run, TrackingService
from mloop.training.estimators import DEFAULT_ESTIMATOR, build_pipeline, make_estimator, task_of
from mloop.training.metrics import classification_metrics, regression_metrics
from mloop.training.plots import classification_plots, regression_plots
from mloop.training.splits import Validation, check_task, check_validation, folds, holdout

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")

MAX_CLASSES = 100
REFERENCE_PREDICTIONS = "reference/holdout_predictions.parquet"


class TrainingResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    run: Run
    metrics: dict[str, float]
    model_version: ModelVersion | None = None
    alias: str | None = None


@dataclass(frozen=True)
class PreparedData:
    """What ``TrainingService.prepare`` checked and loaded: the rows with a target value, the
    signature (features, target, task, classes) and the configured, unfitted estimator."""

    version: DatasetVersion
    table: pa.Table
    signature: Signature
    estimator: Any
    dropped: int  # rows left out because their target was missing
    store_spec: dict[str, Any] | None = None  # set when the dataset is a feature-store training set


def git_commit() -> tuple[str | None, bool]:
    """The commit of the working directory's git checkout, and whether it has local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if commit.returncode != 0:
            return None, False
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return commit.stdout.strip() or None, bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def _ordinal(column: Any) -> np.ndarray:
    """A time (or number) column as sortable numbers (nulls first)."""
    values = column
    if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        values = column.cast(pa.timestamp("us")).cast(pa.int64())
    found: np.ndarray = np.asarray(values.to_numpy(zero_copy_only=False), dtype=float)
    found[np.isnan(found)] = -np.inf
    return found


def _min_count(y: np.ndarray) -> int:
    return int(np.unique(y, return_counts=True)[1].min())


class TrainingService:
    def __init__(
        self,
        datasets: DatasetService,
        tracking: TrackingService,
        registry: RegistryService,
        feature_store: FeatureService | None = None,
    ) -> None:
        self._datasets = datasets
        self._tracking = tracking
        self._registry = registry
        self._feature_store = feature_store

    def prepare(
        self,
        dataset: str,
        target: str,
        *,
        model: str = DEFAULT_ESTIMATOR,
        params: Mapping[str, Any] | None = None,
        features: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        test_size: float = 0.2,
        seed: int = 42,
        register: str | None = None,
        alias: str | None = None,
    ) -> PreparedData:
        """Check everything that can be checked before compute is spent, and load the data.

        The dataset, the target, the features, the estimator and its hyper-parameters, the
        classes, the registered name and alias: a mistake raises ``InvalidInput`` (or
        ``NotFound``) here, before any run starts. ``train`` and tuning both begin with it.
        """
        if not 0 < test_size < 1:
            raise InvalidInput(f"test_size must be between 0 and 1, not {test_size}")
        if register is not None:
            from mloop.data import check_name

            check_name(register, "model")
        if alias is not None:
            check_alias(alias)
        version = self._datasets.get(dataset)
        store_spec = (
            self._feature_store.training_set_spec(version.id)
            if self._feature_store is not None
            else None
        )
        if store_spec is not None:
            # a training set: its join keys and time say which row, they are not inputs
            bookkeeping = [*store_spec["keys"], store_spec["timestamp_column"]]
            exclude = [*exclude, *(c for c in bookkeeping if c not in exclude and c != target)]
        feature_cols = self._features(version, target, features, exclude)
        estimator = make_estimator(model, dict(params or {}))
        seedable = hasattr(estimator, "get_params") and "random_state" in estimator.get_params()
        if seedable and "random_state" not in (params or {}):
            # the same seed, the same model: a random estimator is seeded unless told otherwise
            estimator.set_params(random_state=seed)
        task = task_of(estimator)
        table = self._datasets.load(version)
        target_col = version.schema_.column(target)
        assert target_col is not None
        y_all = table.column(target)
        keep = pc.is_valid(y_all)
        if target_col.type == "float":
            keep = pc.and_(keep, pc.invert(pc.is_nan(y_all.cast(pa.float64()))))
        dropped = table.num_rows - int(pc.sum(keep.cast(pa.int64())).as_py() or 0)
        table = table.filter(keep)
        if table.num_rows == 0:
            raise InvalidInput(f"target column {target!r} has no values")
        y = table.column(target).to_numpy(zero_copy_only=False)
        classes: list[Any] | None = None
        if task == "classification":
            classes = sorted(np.unique(y).tolist())
            if len(classes) < 2:
                raise InvalidInput(
                    f"target {target!r} has one class only ({classes[0]!r}); "
                    "a classifier needs at least two"
                )
            if target_col.type == "float" and len(classes) > 20:
                raise InvalidInput(
                    f"target {target!r} looks continuous ({len(classes)} distinct numbers); "
                    "use a regressor"
                )
            if len(classes) > MAX_CLASSES:
                raise InvalidInput(
                    f"target {target!r} has {len(classes)} classes; at most {MAX_CLASSES}"
                )
        else:
            if target_col.type not in NUMERIC_TYPES:
                raise InvalidInput(
                    f"target {target!r} is {target_col.type}; a regressor needs numbers"
                )
            if float(np.nanstd(y.astype(float))) == 0.0:
                raise InvalidInput(f"target {target!r} is constant; there is nothing to learn")
        n_test = math.ceil(table.num_rows * test_size)  # as train_test_split counts
        n_train = table.num_rows - n_test
        # a stratified split (every class seen twice or more) puts each class on both sides
        n_classes = len(classes) if classes is not None and _min_count(y) >= 2 else 1
        if n_test < max(1, n_classes) or n_train < max(2, n_classes):
            raise InvalidInput(
                f"dataset {version.ref} has {table.num_rows} usable rows: too few to hold out "
                f"{test_size:.0%} for testing"
            )

        signature = Signature(
            inputs=feature_cols,
            target=target,
            target_type=target_col.type,
            task=task,
            classes=classes,
        )
        return PreparedData(
            version=version,
            table=table,
            signature=signature,
            estimator=estimator,
            dropped=dropped,
            store_spec=store_spec,
        )

    def train(
        self,
        dataset: str,
        target: str,
        *,
        model: str = DEFAULT_ESTIMATOR,
        params: Mapping[str, Any] | None = None,
        features: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        experiment: str = DEFAULT_EXPERIMENT,
        run_name: str | None = None,
        test_size: float = 0.2,
        seed: int = 42,
        register: str | None = None,
        alias: str | None = None,
        tags: Mapping[str, str] | None = None,
        cv: str = "holdout",
        folds: int = 5,
        group_column: str | None = None,
        time_column: str | None = None,
        onnx: bool = False,
        plots: bool = True,
    ) -> TrainingResult:
        """Fit ``model`` (a dotted class path) on ``dataset`` to predict ``target``.

        Everything that can be checked is checked before the run starts (``prepare``): the
        dataset, the target, the features, the estimator and its hyper-parameters, the classes,
        the validation. ``tags`` are added to the run's own.

        The model is tested on a hold-out of ``test_size`` (for ``cv="timeseries"``, the latest
        rows by ``time_column``). ``cv`` also cross-validates on the training part:
        ``kfold``, ``stratified``, ``group`` (by ``group_column``) or ``timeseries``, logging
        each metric's mean and standard deviation over the ``folds`` (``cv_<metric>_mean``).
        ``plots`` logs curves as PNG artifacts; ``onnx`` adds an ONNX export to the package,
        verified against the model on the hold-out, and its quantized variant.
        """
        described = self._datasets.get(dataset)
        validation = check_validation(
            cv,
            folds=folds,
            group_column=group_column,
            time_column=time_column,
            columns={c.name: c.type for c in described.schema_.columns},
        )
        if validation.columns:  # they order or group rows: never model inputs
            exclude = [*exclude, *(c for c in validation.columns if c not in exclude)]
            if features is not None:
                clash = [c for c in validation.columns if c in features]
                if clash:
                    raise InvalidInput(
                        f"column {clash[0]!r} groups or orders the rows; it cannot be a feature"
                    )
        prepared = self.prepare(
            dataset,
            target,
            model=model,
            params=params,
            features=features,
            exclude=exclude,
            test_size=test_size,
            seed=seed,
            register=register,
            alias=alias,
        )
        version, table, signature = prepared.version, prepared.table, prepared.signature
        estimator, task, store_spec = prepared.estimator, signature.task, prepared.store_spec
        check_task(validation, task)
        dropped = prepared.dropped
        commit, dirty = git_commit()
        # the packages the model needs where it is loaded: its estimator's, ONNX's if exported
        roots = {type(estimator).__module__.split(".")[0]} - {"sklearn", "mloop", "__main__"}
        if model.startswith("pyfunc:"):
            roots.add(model.removeprefix("pyfunc:").split(".")[0])
        if type(estimator).__module__ == "mloop.training.torch_models":
            roots.add("torch")
        if onnx:
            roots |= {"onnx", "onnxruntime"}
        deps = captured_dependencies(sorted(roots))
        run_tags = {
            "mloop.dataset": version.ref,
            "mloop.estimator": model,
            "mloop.task": task,
            "mloop.python": deps["python"],
        }
        run_tags.update({f"mloop.package.{k}": v for k, v in deps.items() if k != "python"})
        if commit:
            run_tags["mloop.git.commit"] = commit
            run_tags["mloop.git.dirty"] = str(dirty).lower()
        run_tags.update(tags or {})
        run = self._tracking.start_run(experiment, name=run_name, tags=run_tags)
        try:
            metrics = self._fit_and_log(
                run,
                version,
                table,
                signature,
                estimator,
                model,
                params or {},
                test_size,
                seed,
                dropped,
                deps,
                store_spec,
                validation=validation,
                onnx=onnx,
                plots=plots,
            )
            finished = self._tracking.end_run(run.id, "FINISHED")
        except BaseException as exc:
            try:
                self._tracking.set_tag(run.id, "mloop.error", f"{type(exc).__name__}: {exc}"[:5000])
                self._tracking.end_run(
                    run.id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
                )
            except MloopError:
                pass
            if isinstance(exc, pickle.PicklingError) or (
                isinstance(exc, AttributeError) and "pickle" in str(exc)
            ):
                raise InvalidInput(
                    f"the fitted model cannot be saved: {exc} (a model is pickled: its classes "
                    "and functions must be importable, defined at module level)"
                ) from exc
            if isinstance(exc, ValueError | TypeError) and not isinstance(exc, MloopError):
                raise InvalidInput(f"training failed: {exc}") from exc
            raise

        result = TrainingResult(run=finished, metrics=metrics)
        if register:
            model_version = self._registry.register(finished.id, register)
            chosen = alias
            if chosen is None and model_version.version == 1:
                chosen = DEFAULT_ALIAS  # the registry made the first version champion
            elif chosen is not None and chosen not in model_version.aliases:
                model_version = self._registry.set_alias(
                    register, chosen, model_version.version, reason=f"trained by run {finished.id}"
                )
            result = TrainingResult(
                run=finished, metrics=metrics, model_version=model_version, alias=chosen
            )
        return result

    def _features(
        self,
        version: DatasetVersion,
        target: str,
        features: Sequence[str] | None,
        exclude: Sequence[str],
    ) -> list[Column]:
        names = version.schema_.names
        if target not in names:
            raise InvalidInput(
                f"target column {target!r} is not in dataset {version.ref} "
                f"(its columns: {', '.join(names)})"
            )
        for col in [*(features or []), *exclude]:
            if col not in names:
                raise InvalidInput(f"column {col!r} is not in dataset {version.ref}")
        if features:
            chosen = [version.schema_.column(f) for f in features if f != target]
            bad = [c for c in chosen if c is not None and c.type not in FEATURE_TYPES]
            if bad:
                raise InvalidInput(
                    f"column {bad[0].name!r} is {bad[0].type}; features must be numbers, "
                    "booleans or strings"
                )
        else:
            chosen = [
                c
                for c in version.schema_.columns
                if c.name != target and c.name not in exclude and c.type in FEATURE_TYPES
            ]
        result = [c for c in chosen if c is not None]
        if not result:
            raise InvalidInput(
                f"dataset {version.ref} has no usable feature columns besides {target!r}"
            )
        return result

    def _fit_and_log(
        self,
        run: Run,
        version: DatasetVersion,
        table: pa.Table,
        signature: Signature,
        estimator: Any,
        model: str,
        params: Mapping[str, Any],
        test_size: float,
        seed: int,
        dropped: int,
        deps: dict[str, str],
        store_spec: dict[str, Any] | None = None,
        *,
        validation: Validation | None = None,
        onnx: bool = False,
        plots: bool = True,
    ) -> dict[str, float]:
        validation = validation or Validation()
        self._tracking.add_input(run.id, ("dataset_version", version.id))
        X = frame_from_table(table, signature)
        y = table.column(signature.target).to_numpy(zero_copy_only=False)
        stratify = signature.task == "classification" and _min_count(y) >= 2
        order = _ordinal(table.column(validation.time_column)) if validation.time_column else None
        train_rows, test_rows = holdout(
            y,
            test_size=test_size,
            seed=seed,
            validation=validation,
            order=order,
            stratify=stratify,
        )
        X_train, X_test = X.iloc[train_rows], X.iloc[test_rows]
        y_train, y_test = y[train_rows], y[test_rows]
        logged_params: dict[str, Any] = {
            "estimator": model,
            "target": signature.target,
            "dataset": version.ref,
            "test_size": test_size,
            "seed": seed,
            "n_features": len(signature.inputs),
            "train_rows": len(X_train),
            "test_rows": len(X_test),
            "rows_dropped_null_target": dropped,
            "stratified": stratify and validation.kind != "timeseries",
            "validation": validation.kind,
        }
        if validation.cross_validates:
            logged_params["folds"] = validation.folds
        for column in validation.columns:
            logged_params[
                "group_column" if column == validation.group_column else "time_column"
            ] = column
        estimator_params = (
            estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
        )
        logged_params.update({f"model.{k}": v for k, v in estimator_params.items()})
        logged_params.update({f"model.{k}": v for k, v in params.items()})
        self._tracking.log_params(run.id, logged_params)

        pipeline = build_pipeline(estimator, signature.inputs, signature.classes)
        cv_metrics: dict[str, float] = {}
        if validation.cross_validates:
            cv_metrics = self._cross_validate(
                run,
                pipeline,
                X_train,
                y_train,
                signature,
                validation,
                seed,
                groups=(
                    table.column(validation.group_column).to_numpy(zero_copy_only=False)[train_rows]
                    if validation.group_column
                    else None
                ),
                order=order[train_rows] if order is not None else None,
            )
        started = time.perf_counter()
        pipeline.fit(X_train, y_train)
        fit_seconds = time.perf_counter() - started

        started = time.perf_counter()
        y_pred = pipeline.predict(X_test)
        predict_seconds = time.perf_counter() - started
        proba = None
        if signature.task == "classification":
            # a classifier without probabilities (LinearSVC, say) still gets its label metrics
            if hasattr(pipeline, "predict_proba"):
                proba = pipeline.predict_proba(X_test)
            metrics = classification_metrics(y_test, y_pred, proba, list(pipeline.classes_))
        else:
            metrics = regression_metrics(y_test, y_pred)
        metrics["fit_seconds"] = fit_seconds
        metrics["predict_ms_per_row"] = 1000 * predict_seconds / max(len(X_test), 1)
        metrics.update(cv_metrics)
        onnx_package: dict[str, bytes] = {}
        if onnx:
            from mloop.models import onnx_files

            onnx_package, onnx_report = onnx_files(pipeline, signature, X_test, y_test)
            metrics.update(onnx_report)
        self._tracking.log_metrics(run.id, metrics)
        if plots:
            drawn = (
                classification_plots(y_test, y_pred, proba, list(pipeline.classes_))
                if signature.task == "classification"
                else regression_plots(y_test, y_pred)
            )
            for name, data in drawn.items():
                self._tracking.log_artifact_bytes(run.id, name, data)

        info = {
            "dataset": version.ref,
            "dataset_version_id": version.id,
            "run_id": run.id,
            "target": signature.target,
            "features": [c.name for c in signature.inputs],
            "metrics": metrics,
            "train_rows": len(X_train),
            "test_rows": len(X_test),
        }
        inputs = {c.name for c in signature.inputs}
        used = [f for f in (store_spec or {}).get("features", []) if f.partition(":")[2] in inputs]
        if store_spec is not None and used:
            # served by entity keys: the feature store fetches these, the same code path
            info["feature_store"] = {
                "features": used,
                "keys": store_spec["keys"],
                "request": {k: v for k, v in store_spec["request"].items() if k in inputs},
                "training_set": version.ref,
            }
        meta = ModelMeta(
            flavor=FLAVOR_SKLEARN,
            signature=signature,
            estimator=model,
            dependencies=deps,
            info=info,
        )
        files = {**write_sklearn_package(pipeline, meta), **onnx_package}
        for name, data in files.items():  # mloop's files and MLflow's (MLmodel, model.pkl)
            self._tracking.log_artifact_bytes(run.id, f"model/{name}", data)

        reference: dict[str, Any] = {"prediction": np.asarray(y_pred).tolist()}
        if proba is not None and proba.shape[1] == 2:
            reference["prediction_score"] = proba[:, 1].astype(float)
        sink = io.BytesIO()
        pq.write_table(pa.table(reference), sink)
        self._tracking.log_artifact_bytes(run.id, REFERENCE_PREDICTIONS, sink.getvalue())
        return metrics

    def _cross_validate(
        self,
        run: Run,
        pipeline: Any,
        X: Any,
        y: np.ndarray,
        signature: Signature,
        validation: Validation,
        seed: int,
        *,
        groups: np.ndarray | None,
        order: np.ndarray | None,
    ) -> dict[str, float]:
        """Fit a copy of ``pipeline`` per fold of the training rows; log each fold's metrics
        (``cv_<metric>`` at step = fold) and return their mean and standard deviation."""
        from sklearn.base import clone

        per_fold: list[dict[str, float]] = []
        for number, (fit_rows, test_rows) in enumerate(
            folds(validation, y, seed=seed, groups=groups, order=order)
        ):
            fold = clone(pipeline)
            fold.fit(X.iloc[fit_rows], y[fit_rows])
            predicted = fold.predict(X.iloc[test_rows])
            if signature.task == "classification":
                found = classification_metrics(
                    y[test_rows],
                    predicted,
                    (
                        fold.predict_proba(X.iloc[test_rows])
                        if hasattr(fold, "predict_proba")
                        else None
                    ),
                    list(fold.classes_),
                )
            else:
                found = regression_metrics(y[test_rows], predicted)
            per_fold.append(found)
            self._tracking.log_metrics(
                run.id, {f"cv_{k}": v for k, v in found.items()}, step=number
            )
        summary: dict[str, float] = {}
        for key in sorted({k for found in per_fold for k in found}):
            values = np.array([found[key] for found in per_fold if key in found])
            summary[f"cv_{key}_mean"] = float(values.mean())
            summary[f"cv_{key}_std"] = float(values.std())
        return summary
