"""Hyper-parameter tuning with Optuna: a study of trials, each a child run, the best refit.

The study lives beside the workspace's metadata, never in its tables (Optuna brings its own
Alembic history): on SQLite in ``optuna.db`` in the workspace folder, on PostgreSQL in the schema
``mloop_optuna`` of the same database. A named study resumes where it stopped; trials of a process
that was killed are marked FAIL by Optuna's heartbeat and do not count.

Trials run in this process (``workers=1``), in local worker processes (``workers=N``) or as Ray
tasks (``backend="ray"``); every worker runs ``study.optimize`` against the shared storage. The
calling process logs finished trials as child runs of the study's run, in batches (one
transaction per batch), so logging costs the workers nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sqlite3
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput, MloopError, NotFound
from mloop.core.lazy import lazy_module
from mloop.core.schema import Column
from mloop.models import frame_from_table
from mloop.tracking import (
    DEFAULT_EXPERIMENT,
    TERMINAL,
    CreateRun,
    LogBatch,
    MetricValue,
    Operation,
    Run,
    TrackingService,
    UpdateRun,
)
from mloop.training.estimators import DEFAULT_ESTIMATOR, build_pipeline
from mloop.training.trainer import TrainingResult, TrainingService

if TYPE_CHECKING:
    import numpy as np
    import optuna
else:
    np = lazy_module("numpy")
    optuna = lazy_module("optuna")

OPTUNA_SCHEMA = "mloop_optuna"  # PostgreSQL: Optuna's tables, apart from mloop's
OPTUNA_FILE = "optuna.db"  # SQLite: a file of its own in the workspace folder
SPACE_TYPES = ("float", "int", "categorical")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
BACKENDS = ("local", "ray")
MAX_TRIALS = 100_000
SYNC_SECONDS = 1.0  # the calling process logs finished trials at most this often
_FINISHED = ("COMPLETE", "PRUNED", "FAIL")
_RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}

Progress = Callable[[int, int, float | None], None]  # (finished trials, n_trials, best score)


class TuningResult(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    study: str
    storage: str  # where the study is kept (no password)
    run: Run  # the study's run; every trial is a child run of it
    metric: str  # the scikit-learn scorer maximized (greater is better)
    n_trials: int  # the target: finished (complete or pruned) trials in the study
    complete: int
    pruned: int
    failed: int
    best_trial: int
    best_score: float
    best_params: dict[str, Any]
    refit: TrainingResult | None = None  # the best parameters trained on all the data


# == the search space ==============================================================================


def load_space(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A search space from a YAML or JSON file (a mapping of parameter → spec)."""
    import yaml

    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read search space {file}: {exc.strerror or exc}") from exc
    try:
        space = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"search space {file} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(space, dict):
        raise InvalidInput(f"search space {file} must be a mapping of parameter → spec")
    return space


def _number(value: Any, what: str, *, integer: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if integer:
        ok = ok and float(value).is_integer()
    if not ok or not math.isfinite(float(value)):
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"{what} must be {kind}, not {value!r}")
    return float(value)


def validate_space(space: Mapping[str, Any], estimator: Any) -> dict[str, dict[str, Any]]:
    """Check a search space against the estimator before any trial runs; the normalized space.

    Each entry is ``{"type": "float"|"int", "low", "high", "log"?, "step"?}`` or
    ``{"type": "categorical", "choices": [...]}``; its name must be a hyper-parameter of the
    estimator (``get_params()``), and the estimator must accept both ends and every choice."""
    if not isinstance(space, Mapping):
        raise InvalidInput(
            f"the search space must be a mapping of parameter → spec, not {type(space).__name__}"
        )
    if not space:
        raise InvalidInput("the search space is empty: give at least one parameter to tune")
    accepted = estimator.get_params() if hasattr(estimator, "get_params") else {}
    name_of = type(estimator).__name__
    normalized: dict[str, dict[str, Any]] = {}
    for name, spec in space.items():
        where = f"search space parameter {name!r}"
        if not isinstance(name, str) or name not in accepted:
            known = ", ".join(sorted(k for k in accepted if "__" not in k))
            raise InvalidInput(f"{name_of} has no parameter {name!r} (its parameters: {known})")
        if not isinstance(spec, Mapping):
            raise InvalidInput(f"{where}: give a mapping with a 'type', not {spec!r}")
        kind = spec.get("type")
        if kind not in SPACE_TYPES:
            raise InvalidInput(
                f"{where}: unknown type {kind!r}; use one of {', '.join(SPACE_TYPES)}"
            )
        extra = set(spec) - _SPEC_KEYS[kind]
        if extra:
            raise InvalidInput(
                f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))} for type {kind}"
            )
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list | tuple) or not choices:
                raise InvalidInput(f"{where}: choices must be a non-empty list")
            for choice in choices:
                if choice is not None and not isinstance(choice, bool | int | float | str):
                    raise InvalidInput(
                        f"{where}: choice {choice!r} is not a number, string, boolean or null"
                    )
            if len({json.dumps(c) for c in choices}) != len(choices):
                raise InvalidInput(f"{where}: choices repeat")
            normalized[name] = {"type": kind, "choices": list(choices)}
            continue
        integer = kind == "int"
        if "low" not in spec or "high" not in spec:
            raise InvalidInput(f"{where}: give both low and high")
        low = _number(spec["low"], f"{where}: low", integer=integer)
        high = _number(spec["high"], f"{where}: high", integer=integer)
        if low >= high:
            raise InvalidInput(f"{where}: low ({spec['low']}) must be below high ({spec['high']})")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise InvalidInput(f"{where}: log must be true or false, not {log!r}")
        if log and low <= 0:
            raise InvalidInput(f"{where}: a log scale needs low > 0, not {spec['low']}")
        entry: dict[str, Any] = {
            "type": kind,
            "low": int(low) if integer else low,
            "high": int(high) if integer else high,
            "log": log,
        }
        if spec.get("step") is not None:
            step = _number(spec["step"], f"{where}: step", integer=integer)
            if step <= 0:
                raise InvalidInput(f"{where}: step must be positive, not {spec['step']}")
            if log and (not integer or step != 1):
                raise InvalidInput(f"{where}: step and log cannot be used together")
            entry["step"] = int(step) if integer else step
        normalized[name] = entry
    _check_values(normalized, estimator)
    return normalized


def _check_values(space: Mapping[str, dict[str, Any]], estimator: Any) -> None:
    """The estimator's own parameter check (scikit-learn's ``_validate_params``) on both ends of
    every range and on every choice, so a bad bound fails now and not in trial 37."""
    from sklearn.base import clone

    validate = getattr(estimator, "_validate_params", None)
    if not callable(validate):
        return
    for name, spec in space.items():
        values = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        for value in values:
            probe = clone(estimator).set_params(**{name: value})
            try:
                probe._validate_params()
            except (ValueError, TypeError) as exc:
                raise InvalidInput(
                    f"search space parameter {name!r}: {type(estimator).__name__} does not "
                    f"accept {value!r}: {exc}"
                ) from exc


def suggest(trial: optuna.Trial, space: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec["type"]
        if kind == "categorical":
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif kind == "int":
            params[name] = trial.suggest_int(
                name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec["log"]
            )
        else:
            params[name] = trial.suggest_float(
                name, spec["low"], spec["high"], step=spec.get("step"), log=spec["log"]
            )
    return params


# == the objective: what a worker runs ============================================================


@dataclass
class Objective:
    """One trial: the suggested parameters, fitted and scored fold by fold (reported to the
    pruner after each fold). Picklable: it travels to worker processes and Ray tasks."""

    estimator: Any  # configured, unfitted (with the fixed parameters)
    inputs: list[Column]
    space: dict[str, dict[str, Any]]
    metric: str
    X: Any  # the model's frame
    y: Any
    splits: list[tuple[Any, Any]]  # (train rows, validation rows) per fold

    def __call__(self, trial: optuna.Trial) -> float:
        from sklearn.base import clone
        from sklearn.metrics import get_scorer

        params = suggest(trial, self.space)
        estimator = clone(self.estimator).set_params(**params)
        scorer = get_scorer(self.metric)
        trial.set_user_attr("mloop.worker", f"{socket.gethostname()}:{os.getpid()}")
        total = 0.0
        for step, (train_rows, valid_rows) in enumerate(self.splits):
            pipeline = build_pipeline(clone(estimator), self.inputs)
            pipeline.fit(self.X.iloc[train_rows], self.y[train_rows])
            total += float(scorer(pipeline, self.X.iloc[valid_rows], self.y[valid_rows]))
            score = total / (step + 1)
            if len(self.splits) > 1:
                trial.report(score, step)
                # after the last fold the compute is spent: the trial completes
                if step < len(self.splits) - 1 and trial.should_prune():
                    raise optuna.TrialPruned(f"fold {step + 1}: mean {score:.6g}")
        return total / len(self.splits)


@dataclass(frozen=True)
class StudyStorage:
    """Where Optuna keeps a study: a URL and the engine options, both picklable."""

    url: str
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    display: str = ""

    def open(self, heartbeat_seconds: int | None) -> optuna.storages.RDBStorage:
        """Optuna's storage. Two processes opening a new database at once both create its
        schema and stamp its version, and one fails ("UNIQUE constraint failed:
        alembic_version", "table ... already exists"): the loser tries again, and finds the
        schema made."""
        import sqlalchemy.exc

        for attempt in range(_OPEN_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        self.url,
                        engine_kwargs=self.engine_kwargs,
                        heartbeat_interval=heartbeat_seconds,
                        grace_period=None if heartbeat_seconds is None else 2 * heartbeat_seconds,
                    )
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
                if attempt == _OPEN_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")


_OPEN_ATTEMPTS = 10


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(pruner: str | Any) -> Any:
    if pruner == "median":
        return optuna.pruners.MedianPruner()
    if pruner == "none":
        return optuna.pruners.NopPruner()
    return pruner


def worker_main() -> None:
    """A local worker process: import what trials need while the caller prepares, then run
    the arguments pickled on stdin (None: nothing to do)."""
    import importlib
    import pickle
    import sys

    import sklearn.compose
    import sklearn.metrics
    import sklearn.pipeline  # noqa: F401 - imported now, while the caller checks the input

    with contextlib.suppress(ImportError, IndexError):
        importlib.import_module(sys.argv[1].rpartition(".")[0])
    optuna.logging.get_verbosity()  # optuna imported too
    payload = pickle.loads(sys.stdin.buffer.read())
    if payload is None:
        return
    storage, study_name, objective_path, *rest = payload
    objective = pickle.loads(Path(objective_path).read_bytes())
    run_worker(storage, study_name, objective, *rest)


def run_worker(
    storage: StudyStorage,
    study_name: str,
    objective: Objective,
    n_trials: int,
    sampler: str,
    seed: int,
    pruner: str | Any,
    heartbeat_seconds: int | None,
) -> int:
    """One worker: ``study.optimize`` for ``n_trials`` against the shared storage; its PID."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=storage.open(heartbeat_seconds),
        sampler=_sampler(sampler, seed),
        pruner=_pruner(pruner),
    )
    study.optimize(objective, n_trials=n_trials, catch=(Exception,))
    return os.getpid()


# == the service ==================================================================================


def _child_run_id(parent_run_id: str, number: int) -> str:
    """The child run of trial ``number``: the same id every time, so a resumed study knows
    which trials it has logged."""
    return hashlib.sha256(f"{parent_run_id}:trial:{number}".encode()).hexdigest()[:32]


def _ms(moment: Any) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


class _TrialLogger:
    """Logs finished trials as child runs of the study's run: a batch per call, one
    transaction, each trial once."""

    def __init__(self, tracking: TrackingService, parent: Run, metric: str) -> None:
        self._tracking = tracking
        self._parent = parent
        self._metric = metric
        self.logged: set[int] = set()
        page: str | None = None
        while True:
            found = tracking.search_runs(
                [parent.experiment_id],
                f"tags.`mlflow.parentRunId` = '{parent.id}'",
                max_results=1000,
                page_token=page,
            )
            for run in found.items:
                if "mloop.trial" in run.tags:
                    self.logged.add(int(run.tags["mloop.trial"]))
            page = found.next_page_token
            if not page:
                break

    def log(self, trials: Sequence[optuna.trial.FrozenTrial]) -> None:
        ops: list[Operation] = []
        for trial in trials:
            state = trial.state.name
            if state not in _FINISHED or trial.number in self.logged:
                continue
            run_id = _child_run_id(self._parent.id, trial.number)
            end = _ms(trial.datetime_complete) or _ms(trial.datetime_start) or 0
            tags = {
                "mlflow.parentRunId": self._parent.id,
                "mloop.trial": str(trial.number),
                "mloop.trial.state": state,
            }
            worker = trial.user_attrs.get("mloop.worker")
            if worker:
                tags["mloop.worker"] = str(worker)
            reason = trial.system_attrs.get("fail_reason")
            if reason:
                tags["mloop.error"] = str(reason)[:5000]
            metrics = [
                MetricValue(key=f"cv_{self._metric}", value=v, step=int(step), timestamp=end)
                for step, v in sorted(trial.intermediate_values.items())
            ]
            if state == "COMPLETE" and trial.value is not None:
                metrics.append(MetricValue(key=self._metric, value=trial.value, timestamp=end))
            ops += [
                CreateRun(
                    run_id=run_id,
                    experiment_id=self._parent.experiment_id,
                    name=f"trial-{trial.number}",
                    start_time=_ms(trial.datetime_start),
                    parent_run_id=self._parent.id,
                    tags=tags,
                ),
                LogBatch(
                    run_id=run_id,
                    params={k: str(v) for k, v in trial.params.items()},
                    metrics=metrics,
                ),
                UpdateRun(run_id=run_id, status=_RUN_STATUS[state], end_time=end),
            ]
        if ops:
            self._tracking.apply(ops)
            self.logged.update(
                t.number
                for t in trials
                if t.state.name in _FINISHED and t.number not in self.logged
            )


class TuningService:
    """Optuna studies over the training service: validate, search, log, refit."""

    def __init__(
        self,
        training: TrainingService,
        tracking: TrackingService,
        database_url: str,
        home: Path,
    ) -> None:
        self._training = training
        self._tracking = tracking
        self._database_url = database_url
        self._home = home

    # -- where studies live -----------------------------------------------------------------

    def storage(self) -> StudyStorage:
        """The study storage of this workspace (created on first use)."""
        import sqlalchemy as sa

        url = sa.make_url(self._database_url)
        if url.get_backend_name() == "postgresql":
            engine = sa.create_engine(url)
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}")
            except sa.exc.IntegrityError:
                pass  # another process created it at the same moment
            finally:
                engine.dispose()
            return StudyStorage(
                url.render_as_string(hide_password=False),
                {"connect_args": {"options": f"-csearch_path={OPTUNA_SCHEMA} -c jit=off"}},
                f"{url.render_as_string(hide_password=True)} (schema {OPTUNA_SCHEMA})",
            )
        path = (self._home / OPTUNA_FILE).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=60) as conn:  # WAL: readers never block a writer
            conn.execute("PRAGMA journal_mode=WAL")
        return StudyStorage(
            f"sqlite:///{path}", {"connect_args": {"timeout": 60}}, f"sqlite:///{path}"
        )

    def study_names(self) -> list[str]:
        storage = self.storage().open(None)
        try:
            return sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
        finally:
            storage.engine.dispose()

    # -- tuning -----------------------------------------------------------------------------

    def tune(
        self,
        dataset: str,
        target: str,
        *,
        space: Mapping[str, Any],
        model: str = DEFAULT_ESTIMATOR,
        params: Mapping[str, Any] | None = None,
        n_trials: int = 20,
        workers: int = 1,
        backend: Literal["local", "ray"] = "local",
        study: str | None = None,
        metric: str | None = None,
        cv: int = 3,
        sampler: Literal["tpe", "random"] = "tpe",
        pruner: str | Any = "median",
        features: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        experiment: str = DEFAULT_EXPERIMENT,
        test_size: float = 0.2,
        seed: int = 42,
        refit: bool = True,
        register: str | None = None,
        alias: str | None = None,
        heartbeat_seconds: int = 10,
        progress: Progress | None = None,
    ) -> TuningResult:
        """Search ``space`` for the hyper-parameters of ``model`` that score best in ``cv``-fold
        cross-validation (``cv=1``: one hold-out of ``test_size``), ``n_trials`` finished trials
        in all; then (``refit``) train the best on the dataset like ``train`` does, registered
        under ``register`` when given.

        Every input is checked before the study is created or a run started. A ``study`` that
        exists resumes (the same dataset, target, model, space and metric only).

        Local worker processes (``workers`` > 1) are started once the arguments above are
        checked, so that they import their libraries while the data is checked and loaded;
        they are stopped at once if anything is refused."""
        if not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_TRIALS:
            raise InvalidInput(f"n_trials must be 1-{MAX_TRIALS}, not {n_trials!r}")
        if not isinstance(workers, int) or not 1 <= workers <= 256:
            raise InvalidInput(f"workers must be 1-256, not {workers!r}")
        if backend not in BACKENDS:
            raise InvalidInput(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if sampler not in SAMPLERS:
            raise InvalidInput(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
        if isinstance(pruner, str) and pruner not in PRUNERS:
            raise InvalidInput(f"unknown pruner {pruner!r}; use one of {', '.join(PRUNERS)}")
        if not isinstance(cv, int) or not 1 <= cv <= 100:
            raise InvalidInput(f"cv must be 1 (one hold-out) to 100 folds, not {cv!r}")
        if not isinstance(heartbeat_seconds, int) or heartbeat_seconds < 1:
            raise InvalidInput("heartbeat_seconds must be a positive integer")
        if study is not None:
            from mloop.data import check_name

            check_name(study, "study")
        if backend == "ray":
            try:
                import ray  # noqa: F401
            except ImportError as exc:
                raise InvalidInput("backend 'ray' needs Ray: pip install 'mloop[ray]'") from exc
        pool = _LocalWorkers(workers, model) if backend == "local" and workers > 1 else None
        try:
            return self._search(
                pool,
                dataset,
                target,
                space=space,
                model=model,
                fixed=dict(params or {}),
                n_trials=n_trials,
                workers=workers,
                backend=backend,
                study=study,
                metric=metric,
                cv=cv,
                sampler=sampler,
                pruner=pruner,
                features=features,
                exclude=exclude,
                experiment=experiment,
                test_size=test_size,
                seed=seed,
                refit=refit,
                register=register,
                alias=alias,
                heartbeat_seconds=heartbeat_seconds,
                progress=progress,
            )
        finally:
            if pool is not None:
                pool.close()

    def _search(
        self,
        pool: _LocalWorkers | None,
        dataset: str,
        target: str,
        *,
        space: Mapping[str, Any],
        model: str,
        fixed: dict[str, Any],
        n_trials: int,
        workers: int,
        backend: str,
        study: str | None,
        metric: str | None,
        cv: int,
        sampler: str,
        pruner: str | Any,
        features: Sequence[str] | None,
        exclude: Sequence[str],
        experiment: str,
        test_size: float,
        seed: int,
        refit: bool,
        register: str | None,
        alias: str | None,
        heartbeat_seconds: int,
        progress: Progress | None,
    ) -> TuningResult:
        """``tune`` after the cheap checks, with the worker processes (if any) starting."""
        from sklearn.metrics import get_scorer

        overlap = sorted(set(fixed) & set(space if isinstance(space, Mapping) else {}))
        if overlap:
            raise InvalidInput(
                f"parameter(s) {', '.join(overlap)} are both fixed (params) and searched (space)"
            )
        prepared = self._training.prepare(
            dataset,
            target,
            model=model,
            params=fixed,
            features=features,
            exclude=exclude,
            test_size=test_size,
            seed=seed,
            register=register if refit else None,
            alias=alias if refit else None,
        )
        signature = prepared.signature
        normalized = validate_space(space, prepared.estimator)
        classes = signature.classes or []
        if metric is None:
            if signature.task == "classification":
                metric = "roc_auc" if len(classes) == 2 else "accuracy"
            else:
                metric = "neg_root_mean_squared_error"
        try:
            get_scorer(metric)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(
                f"unknown metric {metric!r}: use a scikit-learn scorer name such as "
                "roc_auc, accuracy, f1, neg_log_loss, r2, neg_root_mean_squared_error"
            ) from exc
        X = frame_from_table(prepared.table, signature)
        y = prepared.table.column(signature.target).to_numpy(zero_copy_only=False)
        splits = self._splits(y, signature.task, cv, test_size, seed)
        objective = Objective(
            prepared.estimator, signature.inputs, normalized, metric, X, y, splits
        )
        study_name = (
            study or f"{prepared.version.ref.replace('@', '-')}-{target}-{os.urandom(3).hex()}"
        )
        identity = {
            "dataset": prepared.version.ref,
            "target": target,
            "model": model,
            "params": json.dumps(fixed, sort_keys=True, default=str),
            "space": json.dumps(normalized, sort_keys=True),
            "metric": metric,
            "cv": cv,
        }

        # -- the study and its run --------------------------------------------------------------
        storage = self.storage()
        rdb = storage.open(heartbeat_seconds)
        try:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            handle = optuna.create_study(
                storage=rdb, study_name=study_name, direction="maximize", load_if_exists=True
            )
            stored = handle.user_attrs.get("mloop.identity")
            if stored is None:
                handle.set_user_attr("mloop.identity", identity)
            elif stored != identity:
                differ = sorted(k for k in identity if stored.get(k) != identity[k])
                raise InvalidInput(
                    f"study {study_name!r} exists with another {', '.join(differ)}: "
                    f"resume it with the same settings or choose another study name"
                )
            with warnings.catch_warnings():  # trials of a process that was killed
                warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(handle)
            parent = self._study_run(handle, experiment, study_name, storage, prepared, identity)
            parent_params = {
                "n_trials": n_trials,
                "workers": workers,
                "backend": backend,
                "sampler": sampler,
                "pruner": pruner if isinstance(pruner, str) else type(pruner).__name__,
                "seed": seed,
            }
            with contextlib.suppress(MloopError):
                # a resumed study with other worker settings: the first ones stay
                self._tracking.log_params(parent.id, parent_params)
            logger = _TrialLogger(self._tracking, parent, metric)
            try:
                self._optimize(
                    pool,
                    handle,
                    storage,
                    objective,
                    n_trials,
                    workers,
                    backend,
                    sampler,
                    seed,
                    pruner,
                    heartbeat_seconds,
                    logger,
                    progress,
                )
                trials = handle.get_trials(deepcopy=False)
                logger.log(trials)
                counts = {s: sum(t.state.name == s for t in trials) for s in _FINISHED}
                complete = [t for t in trials if t.state.name == "COMPLETE"]
                if not complete:
                    reasons = [str(t.system_attrs.get("fail_reason", "")) for t in trials]
                    first = next((r for r in reasons if r), "every trial was pruned")
                    raise InvalidInput(f"no trial of study {study_name!r} completed: {first}")
                best = handle.best_trial
                assert best.value is not None
                self._tracking.log_batch(
                    parent.id,
                    [MetricValue(key=f"best_{metric}", value=best.value, timestamp=_now_ms())],
                    tags={"mloop.best_trial": best.number},
                )
                refit_result = None
                if refit:
                    refit_result = self._training.train(
                        prepared.version.ref,
                        target,
                        model=model,
                        params={**fixed, **best.params},
                        features=features,
                        exclude=exclude,
                        experiment=experiment,
                        run_name=f"{study_name}-best",
                        test_size=test_size,
                        seed=seed,
                        register=register,
                        alias=alias,
                        tags={
                            "mloop.study": study_name,
                            "mloop.study.run": parent.id,
                            "mloop.best_trial": str(best.number),
                            f"mloop.best_{metric}": repr(best.value),
                        },
                    )
                    self._tracking.set_tags(parent.id, {"mloop.refit.run": refit_result.run.id})
                finished = self._tracking.end_run(parent.id, "FINISHED")
            except BaseException as exc:
                self._abort(parent.id, exc, logger, handle)
                raise
        finally:
            rdb.remove_session()
            rdb.engine.dispose()
        return TuningResult(
            study=study_name,
            storage=storage.display,
            run=finished,
            metric=metric,
            n_trials=n_trials,
            complete=counts["COMPLETE"],
            pruned=counts["PRUNED"],
            failed=counts["FAIL"],
            best_trial=best.number,
            best_score=float(best.value),
            best_params=dict(best.params),
            refit=refit_result,
        )

    # -- the parts ----------------------------------------------------------------------------

    @staticmethod
    def _splits(
        y: np.ndarray, task: str, cv: int, test_size: float, seed: int
    ) -> list[tuple[Any, Any]]:
        from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

        rows = np.arange(len(y))
        classification = task == "classification"
        smallest = int(np.unique(y, return_counts=True)[1].min()) if classification else len(y)
        if cv == 1:
            stratify = y if classification and smallest >= 2 else None
            train_rows, valid_rows = train_test_split(
                rows, test_size=test_size, random_state=seed, stratify=stratify
            )
            return [(train_rows, valid_rows)]
        if len(y) < cv * 2:
            raise InvalidInput(f"{len(y)} rows are too few for {cv}-fold cross-validation")
        if classification:
            if smallest < cv:
                raise InvalidInput(
                    f"the rarest class has {smallest} rows: too few for {cv}-fold stratified "
                    "cross-validation (lower cv)"
                )
            folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
            return list(folds.split(rows, y))
        return list(KFold(n_splits=cv, shuffle=True, random_state=seed).split(rows))

    def _study_run(
        self,
        handle: optuna.Study,
        experiment: str,
        study_name: str,
        storage: StudyStorage,
        prepared: Any,
        identity: Mapping[str, Any],
    ) -> Run:
        """The study's run: the one it had (resumed), or a new one."""
        run_id = handle.user_attrs.get("mloop.run_id")
        if run_id:
            try:
                run = self._tracking.get_run(str(run_id))
                if run.lifecycle_stage == "active":
                    if run.status in TERMINAL:
                        run = self._tracking.update_run(run.id, status="RUNNING")
                    return run
            except NotFound:
                pass
        run = self._tracking.start_run(
            experiment,
            name=study_name,
            tags={
                "mloop.study": study_name,
                "mloop.study.storage": storage.display,
                "mloop.dataset": prepared.version.ref,
                "mloop.estimator": identity["model"],
                "mloop.task": prepared.signature.task,
            },
        )
        self._tracking.log_params(
            run.id,
            {
                "target": identity["target"],
                "metric": identity["metric"],
                "cv": identity["cv"],
                "space": identity["space"][:6000],
                **{f"model.{k}": v for k, v in json.loads(identity["params"]).items()},
            },
        )
        handle.set_user_attr("mloop.run_id", run.id)
        return run

    def _optimize(
        self,
        pool: _LocalWorkers | None,
        handle: optuna.Study,
        storage: StudyStorage,
        objective: Objective,
        n_trials: int,
        workers: int,
        backend: str,
        sampler: str,
        seed: int,
        pruner: str | Any,
        heartbeat_seconds: int,
        logger: _TrialLogger,
        progress: Progress | None,
    ) -> None:
        done = _finished(handle)
        remaining = n_trials - done
        if progress is not None:
            progress(done, n_trials, _best(handle))
        if remaining <= 0:
            return
        # a resumed study samples anew, not the first points again
        seed += 7919 * len(handle.get_trials(deepcopy=False))
        if workers == 1 and backend == "local":
            handle.sampler = _sampler(sampler, seed)
            handle.pruner = _pruner(pruner)
            last = time.monotonic()
            pending: list[optuna.trial.FrozenTrial] = []
            best = _best(handle)

            def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
                nonlocal last, done, best
                pending.append(trial)
                done += trial.state.name in ("COMPLETE", "PRUNED")
                if trial.state.name == "COMPLETE" and trial.value is not None:
                    best = trial.value if best is None else max(best, trial.value)
                if progress is not None:
                    progress(done, n_trials, best)
                if time.monotonic() - last >= SYNC_SECONDS:
                    logger.log(pending)
                    pending.clear()
                    last = time.monotonic()

            handle.optimize(
                objective, n_trials=remaining, catch=(Exception,), callbacks=[after_trial]
            )
            logger.log(pending)
            return
        shares = [remaining // workers + (i < remaining % workers) for i in range(workers)]
        shares = [s for s in shares if s > 0]
        args = [
            (
                storage,
                handle.study_name,
                objective,
                share,
                sampler,
                seed + i,
                pruner,
                heartbeat_seconds,
            )
            for i, share in enumerate(shares)
        ]

        def poll() -> None:
            trials = handle.get_trials(deepcopy=False, states=_finished_states())
            logger.log(trials)
            if progress is not None:
                finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
                progress(finished, n_trials, _best_of(trials))

        if backend == "ray":
            self._run_on_ray(args, poll)
        else:
            assert pool is not None
            pool.run(args, poll)
        poll()

    @staticmethod
    def _run_on_ray(args: list[tuple[Any, ...]], poll: Callable[[], None]) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
        remote = ray.remote(num_cpus=1)(run_worker)
        objective_ref = ray.put(args[0][2])
        refs = [remote.remote(a[0], a[1], objective_ref, *a[3:]) for a in args]
        pending = list(refs)
        try:
            while pending:
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=SYNC_SECONDS * 2)
                poll()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        ray.get(refs)

    def _abort(
        self, run_id: str, exc: BaseException, logger: _TrialLogger, handle: optuna.Study
    ) -> None:
        with contextlib.suppress(Exception):  # the original error matters more
            logger.log(handle.get_trials(deepcopy=False))
        try:
            self._tracking.set_tag(run_id, "mloop.error", f"{type(exc).__name__}: {exc}"[:5000])
            self._tracking.end_run(
                run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            )
        except MloopError:
            pass


class _LocalWorkers:
    """Worker interpreters (``python -c``: nothing of the caller's ``__main__`` is imported
    again, so a script without a ``__main__`` guard works). Started early, they import their
    libraries and wait on stdin; ``run`` sends each its arguments, the objective (the data with
    it) pickled once into a file they all read."""

    def __init__(self, n: int, model: str) -> None:
        import subprocess
        import sys
        import tempfile

        self._folder = Path(tempfile.mkdtemp(prefix="mloop-tune-"))
        self._processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        code = "from mloop.training.tuning import worker_main; worker_main()"
        try:
            for i in range(n):
                log = self._folder / f"worker-{i}.log"
                with log.open("wb") as stderr:
                    process = subprocess.Popen(
                        [sys.executable, "-c", code, model], stdin=subprocess.PIPE, stderr=stderr
                    )
                self._processes.append((process, log))
        except BaseException:
            self.close()
            raise

    def run(self, args: list[tuple[Any, ...]], poll: Callable[[], None]) -> None:
        import pickle

        shared = self._folder / "objective.pickle"
        shared.write_bytes(pickle.dumps(args[0][2], protocol=pickle.HIGHEST_PROTOCOL))
        for i, (process, _) in enumerate(self._processes):
            payload = (*args[i][:2], str(shared), *args[i][3:]) if i < len(args) else None
            assert process.stdin is not None
            try:
                process.stdin.write(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
                process.stdin.close()
            except BrokenPipeError:
                pass  # it died on start: its log says why
        running = [p for p, _ in self._processes]
        while any(p.poll() is None for p in running):
            deadline = time.monotonic() + SYNC_SECONDS * 2
            while time.monotonic() < deadline and any(p.poll() is None for p in running):
                time.sleep(0.05)
            poll()
        errors = []
        for process, log in self._processes:
            if process.returncode != 0:
                lines = log.read_text(errors="replace").strip().splitlines()
                errors.append(lines[-1] if lines else f"exit status {process.returncode}")
        if errors:
            raise MloopError(f"a tuning worker failed: {errors[0]}")

    def close(self) -> None:
        """Stop whatever still runs (they hold trials), and clean up."""
        import shutil

        for process, _ in self._processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdin is not None and not process.stdin.closed:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _finished_states() -> tuple[Any, ...]:
    S = optuna.trial.TrialState
    return (S.COMPLETE, S.PRUNED, S.FAIL)


def _finished(handle: optuna.Study) -> int:
    S = optuna.trial.TrialState
    return len(handle.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED)))


def _best_of(trials: Sequence[optuna.trial.FrozenTrial]) -> float | None:
    values = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return max(values) if values else None


def _best(handle: optuna.Study) -> float | None:
    try:
        return float(handle.best_value)
    except ValueError:
        return None
