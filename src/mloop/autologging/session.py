"""What one outermost ``fit`` logs, and what a later ``score`` adds to the same run.

Every step is guarded on its own: a step that fails is reported as a warning on the
``mloop.autolog`` logger and the others still run. The user's ``fit`` is called exactly once,
with the arguments it was given, and its result (or its exception) is what the caller gets.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from mloop import fluent
from mloop.autologging import boosting, runs
from mloop.autologging import sklearn as sk
from mloop.autologging.arrays import ArrayInputModel
from mloop.autologging.data import (
    Training,
    find_version,
    frame_input,
    named_columns,
    signature_of,
    training_data,
    version_input,
)
from mloop.autologging.metrics import metric_family, task_of
from mloop.autologging.params import estimator_params
from mloop.autologging.patching import Method, inside, outermost
from mloop.core.errors import Conflict
from mloop.models import (
    FLAVOR_SKLEARN,
    META_FILE,
    ModelMeta,
    captured_dependencies,
    write_sklearn_package,
)

log = logging.getLogger("mloop.autolog")
T = TypeVar("T")

TRAINING_PREFIX = "training_"
VALIDATION_PREFIX = "val"
MAX_ERROR_TAG = 5000


@dataclass(frozen=True)
class Config:
    log_models: bool = True
    log_datasets: bool = True
    silent: bool = False


config: Config | None = None


def enabled() -> bool:
    return config is not None


def _settings() -> Config:
    return config or Config()


def warn(message: str) -> None:
    if _settings().silent:
        log.debug(message)
    else:
        log.warning(message)


def guard(what: str, step: Callable[..., T], *args: Any) -> T | None:
    """Run one autologging step; a failure is a warning, never the caller's exception."""
    try:
        return step(*args)
    except Exception as exc:
        warn(f"mloop autolog: could not {what}: {type(exc).__name__}: {exc}")
        return None


@contextmanager
def quiet() -> Iterator[None]:
    """With ``silent``, warnings raised by autologging's own work are not shown."""
    if not _settings().silent:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- which run a fitted estimator logged to ---------------------------------------------------


@dataclass
class Fitted:
    run_id: str
    training_digest: str | None


@dataclass
class Evaluations:
    """The evaluation datasets seen by one run, in order: digest → metric prefix."""

    prefixes: dict[str, str] = field(default_factory=dict)
    count: int = 0

    def prefix(self, digest: str | None) -> tuple[str, bool]:
        """The prefix of the data with ``digest`` (``val_``, ``val2_``…), and whether it is
        new. Data that could not be hashed is new every time."""
        if digest is not None and digest in self.prefixes:
            return self.prefixes[digest], False
        self.count += 1
        chosen = f"{VALIDATION_PREFIX}_" if self.count == 1 else f"{VALIDATION_PREFIX}{self.count}_"
        if digest is not None:
            self.prefixes[digest] = chosen
        return chosen, True


_lock = threading.Lock()
_fitted: weakref.WeakKeyDictionary[Any, Fitted] = weakref.WeakKeyDictionary()
_evaluations: dict[str, Evaluations] = {}


def _remember(estimator: Any, fitted: Fitted) -> None:
    with _lock:
        _fitted[estimator] = fitted


def fitted_run(estimator: Any) -> Fitted | None:
    with _lock:
        try:
            return _fitted.get(estimator)
        except TypeError:  # an estimator that cannot be weakly referenced
            return None


# -- the arguments of fit and score -----------------------------------------------------------


@dataclass
class Arguments:
    X: Any
    y: Any
    sample_weight: Any


def arguments(
    original: Method, estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Arguments:
    """``X``, ``y`` and ``sample_weight`` of a call, however they were passed."""
    try:
        signature = inspect.signature(original)
        bound = signature.bind(estimator, *args, **kwargs)
    except (TypeError, ValueError):
        return Arguments(
            X=args[0] if args else kwargs.get("X"),
            y=args[1] if len(args) > 1 else kwargs.get("y"),
            sample_weight=kwargs.get("sample_weight"),
        )
    values = dict(bound.arguments)
    parameters = list(signature.parameters.values())[1:]  # after self
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            values.update(values.pop(parameter.name, {}))
    positional = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    X = values.get(positional[0]) if positional else None
    y = None
    if len(positional) > 1 and positional[1] in ("y", "Y"):
        y = values.get(positional[1])
    return Arguments(X=X, y=y, sample_weight=values.get("sample_weight"))


# -- fit ----------------------------------------------------------------------------------------


def _public_path(cls: type) -> str:
    """``sklearn.linear_model.LogisticRegression``, not its private module's path."""
    parts = cls.__module__.split(".")
    for i in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None and getattr(module, cls.__name__, None) is cls:
            return f"{module.__name__}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def _dependencies() -> dict[str, str]:
    """Python's and the captured packages' versions (read once: they do not change)."""
    return captured_dependencies()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class FitSession:
    """The logging around one outermost fit."""

    def __init__(self, estimator: Any, args: Arguments) -> None:
        self.estimator = estimator
        self.args = args
        self.settings = _settings()
        self.owned = False
        self.run: fluent.ActiveRun | None = None
        self.data: Training | None = None
        self.path = _public_path(type(estimator))

    # before fit

    def begin(self) -> None:
        active = fluent.active_run()
        if active is None:
            active = fluent.start_run(run_name=type(self.estimator).__name__[:255])
            self.owned = True
        self.run = active
        guard("log tags", self._tags)
        guard("log params", self._params)

    def _tags(self) -> None:
        deps = dict(_dependencies())
        tags = {
            "mloop.autolog.estimator": self.path,
            "mloop.autolog.flavor": boosting.flavor_of(self.estimator),
            "mloop.python": deps.pop("python", ""),
        }
        tags.update({f"mloop.package.{k}": v for k, v in deps.items()})
        tags.update({f"mloop.package.{k}": v for k, v in boosting.versions().items()})
        task = task_of(self.estimator)
        if task is not None:
            tags["mloop.task"] = task
        fluent.set_tags(tags)

    def _params(self) -> None:
        log_params(estimator_params(self.estimator))

    # after fit

    def finish(self, seconds: float) -> None:
        assert self.run is not None
        try:
            self.data = guard("read the training data", training_data, self.args.X, self.args.y)
            digest = guard("hash the training data", _digest, self.data)
            guard("remember the run", _remember, self.estimator, Fitted(self.run.run_id, digest))
            guard("log training metrics", self._metrics, seconds)
            guard("log evaluation results", self._evaluations)
            if sk.is_search(self.estimator):
                guard("log the search", self._search)
            if self.settings.log_datasets:
                guard("log the training data", self._dataset)
            if self.settings.log_models:
                guard("log the model", self._model)
        finally:
            if self.owned:
                fluent.end_run()

    def fail(self, exc: BaseException) -> None:
        if not self.owned:
            return  # the user's run: their with-block decides how it ends
        try:
            guard(
                "tag the error",
                fluent.set_tag,
                "mloop.error",
                f"{type(exc).__name__}: {exc}"[:MAX_ERROR_TAG],
            )
        finally:
            fluent.end_run("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")

    def _metrics(self, seconds: float) -> None:
        values = metric_family(
            self.estimator, self.args.X, self.args.y, TRAINING_PREFIX, self.args.sample_weight
        )
        values["fit_seconds"] = seconds
        fluent.log_metrics(values)

    def _evaluations(self) -> None:
        booster = boosting.final_booster(self.estimator)
        if booster is None:
            return
        for step, values in enumerate(boosting.steps(boosting.eval_history(booster))):
            if values:
                fluent.log_metrics(values, step=step)
        best = boosting.best_iteration(booster)
        if best is not None:
            fluent.log_metric("best_iteration", best)

    def _search(self) -> None:
        assert self.run is not None
        log_params(sk.best_params(self.estimator))
        best = sk.best_metrics(self.estimator)
        if best:
            fluent.log_metrics(best)
        runs.upload("cv_results.csv", sk.cv_results_csv(self.estimator))
        inner = getattr(self.estimator, "estimator", None)
        tag = _public_path(type(inner)) if inner is not None else self.path
        runs.log_children(self.run, sk.candidates(self.estimator, tag))

    def _dataset(self) -> None:
        assert self.run is not None
        if self.data is None:
            return
        ws = runs.workspace()
        version = find_version(ws, self.data) if ws is not None else None
        if version is not None:
            fluent.log_input(version, context="training")
            fluent.set_tag("mloop.autolog.dataset", version.ref)
        else:
            item = frame_input(self.data.full, self.data.digest, "training", "training")
            runs.log_inputs_to(self.run.run_id, [item])

    def _model(self) -> None:
        assert self.run is not None
        task = task_of(self.estimator)
        if task is None or not hasattr(self.estimator, "predict"):
            # a clusterer, a transformer, a search with refit=False: nothing to serve
            log.debug("mloop autolog: %s does not predict a target: no model", self.path)
            return
        if self.data is None or self.data.target is None:
            warn(
                f"mloop autolog: no model logged for {self.path}: an mloop model takes a table "
                "of features (a frame or a 2-D array, not sparse) and one target column"
            )
            return
        classes = None
        if task == "classification":
            classes = [_plain(c) for c in np.asarray(self.estimator.classes_).tolist()]
        signature = signature_of(self.data, task, classes)  # type: ignore[arg-type]
        if signature is None:
            return
        by_name = named_columns(self.args.X)
        one_column = not by_name and np.ndim(self.args.X) == 1
        model = self.estimator if by_name else ArrayInputModel(self.estimator, one_column)
        deps = dict(_dependencies())
        deps.update(boosting.versions())
        meta = ModelMeta(
            flavor=FLAVOR_SKLEARN,
            signature=signature,
            estimator=self.path,
            dependencies=deps,
            info={
                "autolog": True,
                "run_id": self.run.run_id,
                "flavor": boosting.flavor_of(self.estimator),
                "input": "columns" if by_name else "array",
                "features": signature.input_names,
                "training_rows": self.data.features.num_rows,
            },
        )
        files = write_sklearn_package(model, meta)
        for name in sorted(files, key=lambda n: n == META_FILE):  # the manifest last: it marks
            runs.upload(f"model/{name}", files[name])  # the model whole for the registry


def _digest(data: Training | None) -> str | None:
    return None if data is None else data.digest


def log_params(params: dict[str, str]) -> None:
    """Log params to the active run; in a run that already has some of these keys with other
    values (a second fit in the same run), those keys are skipped with a warning."""
    if not params:
        return
    try:
        fluent.log_params(params)
        return
    except Conflict:
        pass
    skipped = []
    for key, value in params.items():
        try:
            fluent.log_params({key: value})
        except Conflict:
            skipped.append(key)
    if skipped:
        warn(
            "mloop autolog: the run already has other values for params "
            f"{', '.join(skipped[:10])}{'…' if len(skipped) > 10 else ''}; kept those"
        )


def on_fit(original: Method, estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if sk.excluded(type(estimator)):  # preprocessing inherits a patched fit: leave it alone
        with inside():
            return original(estimator, *args, **kwargs)
    with outermost():
        session: FitSession | None = None
        with quiet():
            try:
                session = FitSession(estimator, arguments(original, estimator, args, kwargs))
                session.begin()
            except Exception as exc:
                warn(f"mloop autolog: not logging this fit: {type(exc).__name__}: {exc}")
                session = None
        started = time.perf_counter()
        try:
            result = original(estimator, *args, **kwargs)
        except BaseException as exc:
            if session is not None:
                with quiet():
                    guard("end the run", session.fail, exc)
            raise
        if session is not None:
            with quiet():
                guard("finish the run", session.finish, time.perf_counter() - started)
    return result


# -- score --------------------------------------------------------------------------------------


def on_score(
    original: Method, estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    with outermost():
        result = original(estimator, *args, **kwargs)
        with quiet():
            guard("log validation metrics", _validation, original, estimator, args, kwargs, result)
    return result


def _validation(
    original: Method, estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any
) -> None:
    fitted = fitted_run(estimator)
    if fitted is None:
        return
    call = arguments(original, estimator, args, kwargs)
    data = training_data(call.X, call.y)
    digest = data.digest if data is not None else None
    if digest is not None and digest == fitted.training_digest:
        return  # the training data: its metrics are the training_ ones
    with _lock:
        evaluations = _evaluations.setdefault(fitted.run_id, Evaluations())
        prefix, new = evaluations.prefix(digest)
    values = metric_family(estimator, call.X, call.y, prefix, call.sample_weight)
    score = sk.number(result)
    if score is not None:
        values[f"{prefix}score"] = score
    runs.log_metrics_to(fitted.run_id, values)
    if new and data is not None and _settings().log_datasets:
        name = prefix.rstrip("_")
        ws = runs.workspace()
        version = find_version(ws, data) if ws is not None else None
        item = (
            version_input(version, "validation")
            if version is not None
            else frame_input(data.full, data.digest, name, "validation")
        )
        runs.log_inputs_to(fitted.run_id, [item])
