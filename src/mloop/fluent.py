"""The fluent tracking API, shaped like MLflow's.

    import mloop

    mloop.set_experiment("churn")
    with mloop.start_run(run_name="baseline") as run:
        mloop.log_params({"C": 0.1, "penalty": "l2"})
        for epoch in range(100):
            mloop.log_metric("loss", loss, step=epoch)
        mloop.log_dict({"features": cols}, "features.json")

Logging calls return at once: params, tags and metric values are checked (keys, lengths, a param
logged twice with different values) and queued, and a background thread sends them in batches
every ``MLOOP_TRACKING_FLUSH_SECONDS`` (1 s) — one transaction locally, one request to a
server. ``end_run`` and a normal interpreter exit send what is queued and wait for it; a SIGKILL
loses at most the last flush interval. Artifacts are uploaded when they are logged.

Where it logs: ``mloop.init(uri)`` or ``MLOOP_TRACKING_URI`` — an mloop server
(``http://host:port``) or a workspace folder; by default the workspace (``$MLOOP_HOME`` or
``./.mloop``).
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import math
import numbers
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mloop.core.clock import now_ms
from mloop.core.errors import Conflict, InvalidInput, MloopError, NotFound
from mloop.core.ids import new_id
from mloop.core.settings import Settings
from mloop.security import local_actor
from mloop.tracking import (
    DEFAULT_EXPERIMENT_ID,
    TERMINAL,
    BatchLogger,
    CreateRun,
    Experiment,
    RemoteTrackingStore,
    Run,
    RunInput,
    RunList,
    RunStatus,
    SystemMetricsMonitor,
    TrackingStore,
    UpdateRun,
    check_key,
    parse_metric_value,
    search_run_list,
    validate_params,
    validate_tags,
)

if TYPE_CHECKING:
    from mloop.workspace import Workspace

log = logging.getLogger("mloop.tracking")

PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"


class ActiveRun:
    """The run the fluent API logs to; a context manager that ends it (FAILED on an error)."""

    def __init__(self, run_id: str, experiment_id: str, name: str | None) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.name = name
        self._monitor: SystemMetricsMonitor | None = None

    @property
    def id(self) -> str:
        return self.run_id

    @property
    def info(self) -> Run:
        """The run as the store has it now (what is queued is sent first)."""
        flush()
        return _context().store.get_run(self.run_id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status: RunStatus = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        if not any(r.run_id == self.run_id for r in _stack()):
            return
        if exc_type is None:
            _end(self.run_id, status)
            return
        try:
            _end(self.run_id, status)
        except MloopError as error:
            # the body's exception is the one to see; what logging met is reported beside it
            log.error("mloop tracking: ending run %s: %s", self.run_id, error.message)

    def __repr__(self) -> str:
        return f"ActiveRun(run_id={self.run_id!r}, experiment_id={self.experiment_id!r})"


class _Context:
    """The process-wide state: the store, the batch logger, the chosen experiment."""

    def __init__(self, store: TrackingStore, uri: str, owner: Workspace | None) -> None:
        settings = _settings()
        self.store = store
        self.uri = uri
        self.owner = owner
        self.logger = BatchLogger(store, interval=settings.tracking_flush_seconds)
        self.experiment_id: str | None = None
        self.params: dict[str, dict[str, str]] = {}  # what this process logged, per run
        self.active: dict[str, ActiveRun] = {}
        self.last: ActiveRun | None = None
        self.system_metrics = settings.system_metrics
        self.system_metrics_interval = settings.system_metrics_interval

    def close(self) -> None:
        try:
            self.logger.close()
        finally:
            if self.owner is not None:
                self.owner.close()
            elif isinstance(self.store, RemoteTrackingStore):
                self.store.close()


_lock = threading.RLock()
_ctx: _Context | None = None
_threads = threading.local()
_checked_keys: set[tuple[str, str]] = set()


def _stack() -> list[ActiveRun]:
    stack = getattr(_threads, "stack", None)
    if stack is None:
        stack = _threads.stack = []
    return stack


def _settings() -> Settings:
    """The settings; a bad ``MLOOP_*`` value is InvalidInput, as ``Workspace.open`` says it."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(
            f"invalid setting {where} (MLOOP_{where.upper()}): {first['msg']}"
        ) from exc


def _open(uri: str | None) -> tuple[TrackingStore, str, Workspace | None]:
    target = uri or _settings().tracking_uri
    if target and target.startswith(("http://", "https://")):
        return RemoteTrackingStore(target), target, None
    from mloop.workspace import Workspace

    ws = Workspace.open(target)
    return ws.tracking, str(ws.home), ws


def init(uri: str | os.PathLike[str] | None = None) -> TrackingStore:
    """Choose where the fluent API logs: an mloop server URL or a workspace folder (default:
    ``MLOOP_TRACKING_URI``, else the workspace). Ends nothing; active runs stay as they are."""
    global _ctx
    with _lock:
        store, resolved, owner = _open(None if uri is None else os.fspath(uri))
        previous = _ctx
        _ctx = _Context(store, resolved, owner)
        if previous is not None:
            previous.close()
        return store


set_tracking_uri = init


def _context() -> _Context:
    global _ctx
    with _lock:
        if _ctx is None:
            store, resolved, owner = _open(None)
            _ctx = _Context(store, resolved, owner)
        return _ctx


def get_tracking_uri() -> str:
    return _context().uri


# -- experiments ---------------------------------------------------------------------------------


def set_experiment(
    experiment_name: str | None = None, *, experiment_id: str | None = None
) -> Experiment:
    """Make an experiment the one new runs go to (created if a name is new)."""
    ctx = _context()
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidInput("give an experiment name or an experiment id, not both or neither")
    if experiment_id is not None:
        experiment = ctx.store.get_experiment(experiment_id)
    else:
        assert experiment_name is not None
        experiment = ctx.store.get_or_create_experiment(experiment_name)
    if experiment.lifecycle_stage != "active":
        raise Conflict(f"experiment {experiment.name!r} is deleted; restore it first")
    ctx.experiment_id = experiment.id
    return experiment


def _current_experiment(ctx: _Context) -> str:
    if ctx.experiment_id is not None:
        return ctx.experiment_id
    name = os.environ.get("MLOOP_EXPERIMENT_NAME")
    if name:
        return set_experiment(name).id
    return DEFAULT_EXPERIMENT_ID


# -- runs ----------------------------------------------------------------------------------------


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run (or resume ``run_id``) and make it the active one.

    With a run already active, pass ``nested=True`` to start a child of it. The run is created
    without a round trip: its id is made here, and the creation travels in the next batch."""
    ctx = _context()
    stack = _stack()
    if stack and not nested:
        raise Conflict(
            f"run {stack[-1].run_id} is already active: end it with mloop.end_run(), "
            "or start a nested run with start_run(nested=True)"
        )
    parent = parent_run_id or (stack[-1].run_id if stack and nested else None)
    user_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    validate_tags(user_tags)
    if run_id is not None:
        active = _resume(ctx, run_id, experiment_id, user_tags)
    else:
        experiment = experiment_id or _current_experiment(ctx)
        if run_name is not None and not 0 < len(run_name) <= 255:
            raise InvalidInput("run name must be 1-255 characters")
        if parent is not None:
            user_tags[PARENT_TAG] = parent
        if description:
            user_tags[NOTE_TAG] = description
        new = CreateRun(
            run_id=new_id(),
            experiment_id=experiment,
            name=run_name,
            start_time=now_ms(),
            user=local_actor(),
            parent_run_id=parent,
            tags=user_tags,
        )
        ctx.logger.create_run(new)
        assert new.run_id is not None
        active = ActiveRun(new.run_id, experiment, run_name)
    stack.append(active)
    ctx.active[active.run_id] = active
    if log_system_metrics if log_system_metrics is not None else ctx.system_metrics:
        _start_system_metrics(ctx, active)
    return active


def _resume(
    ctx: _Context, run_id: str, experiment_id: str | None, tags: dict[str, str]
) -> ActiveRun:
    ctx.logger.flush()
    run = ctx.store.get_run(run_id)
    if experiment_id is not None and run.experiment_id != experiment_id:
        raise InvalidInput(
            f"run {run_id} belongs to experiment {run.experiment_id}, not {experiment_id}"
        )
    if run.lifecycle_stage != "active":
        raise Conflict(f"run {run_id} is deleted; restore it before resuming it")
    if run.status in TERMINAL:
        ctx.store.update_run(run_id, status="RUNNING")
    ctx.params.setdefault(run_id, {}).update(run.params)
    if tags:
        ctx.logger.log(run_id, tags=tags)
    return ActiveRun(run_id, run.experiment_id, run.name)


def _start_system_metrics(ctx: _Context, active: ActiveRun) -> None:
    run_id = active.run_id

    def record(values: dict[str, float], step: int) -> None:
        ts = now_ms()
        ctx.logger.log(run_id, metrics=[(k, v, step, ts) for k, v in values.items()])

    active._monitor = SystemMetricsMonitor(record, interval=ctx.system_metrics_interval)
    active._monitor.start()


def active_run() -> ActiveRun | None:
    stack = _stack()
    return stack[-1] if stack else None


def last_active_run() -> ActiveRun | None:
    """The active run, or else the run that ended last."""
    return active_run() or (_ctx.last if _ctx is not None else None)


def _end(run_id: str, status: RunStatus) -> None:
    ctx = _context()
    stack = _stack()
    while stack:
        active = stack.pop()
        ctx.active.pop(active.run_id, None)
        if active._monitor is not None:
            active._monitor.stop()
        ctx.logger.update_run(UpdateRun(run_id=active.run_id, status=status, end_time=now_ms()))
        ctx.last = active
        if active.run_id == run_id:
            break
    ctx.logger.flush()


def end_run(status: RunStatus = "FINISHED") -> None:
    """End the active run (and wait until everything it logged is stored)."""
    stack = _stack()
    if not stack:
        return
    if status not in TERMINAL:
        raise InvalidInput(f"a run ends FINISHED, FAILED or KILLED, not {status!r}")
    _end(stack[-1].run_id, status)


def _run_id() -> str:
    stack = _stack()
    if stack:
        return stack[-1].run_id
    raise InvalidInput("no active run: call mloop.start_run() first")


# -- params, metrics, tags -----------------------------------------------------------------------


def _key(key: str, what: str) -> str:
    if (what, key) not in _checked_keys:
        check_key(key, what)
        _checked_keys.add((what, key))
    return key


def log_param(key: str, value: Any) -> Any:
    log_params({key: value})
    return value


def log_params(params: Mapping[str, Any]) -> None:
    """Params are write-once: logging a key again with another value is refused here, at once."""
    ctx = _context()
    run_id = _run_id()
    values = {str(k): str(v) for k, v in params.items()}
    validate_params(values)
    known = ctx.params.setdefault(run_id, {})
    for key, value in values.items():
        if key in known and known[key] != value:
            raise Conflict(
                f"param {key!r} of run {run_id} is already {known[key]!r}; "
                f"params cannot change (got {value!r})"
            )
    known.update(values)
    ctx.logger.log(run_id, params=values)


def _number(key: str, value: Any) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)  # NumPy scalars (float32, int64…) too, as MLflow takes them
    try:
        return parse_metric_value(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metric {key!r} value {value!r} is not a number") from exc


def _step(step: Any, what: str) -> int:
    if step is None:
        return 0
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise InvalidInput(f"{what}step must be an integer, not {step!r}")
    return int(step)


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    """Queue one value (``timestamp`` in Unix milliseconds; default now)."""
    ctx = _context()
    run_id = _run_id()
    _key(key, "metric")
    number = _number(key, value)
    at = _step(step, f"metric {key!r} ")
    ts = now_ms() if timestamp is None else int(timestamp)
    ctx.logger.log(run_id, metrics=[(key, number, at, ts)])


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    ctx = _context()
    run_id = _run_id()
    ts = now_ms() if timestamp is None else int(timestamp)
    at = _step(step, "")
    values = [(_key(key, "metric"), _number(key, value), at, ts) for key, value in metrics.items()]
    ctx.logger.log(run_id, metrics=values)


def set_tag(key: str, value: Any) -> None:
    set_tags({key: value})


def set_tags(tags: Mapping[str, Any]) -> None:
    values = {str(k): str(v) for k, v in tags.items()}
    validate_tags(values)
    _context().logger.log(_run_id(), tags=values)


def flush() -> None:
    """Send everything queued and wait; raise the first error a batch met."""
    if _ctx is not None:
        _ctx.logger.flush()


# -- artifacts -----------------------------------------------------------------------------------


def _upload(path: str, data: bytes) -> None:
    ctx = _context()
    run_id = _run_id()
    ctx.logger.flush()  # the run must exist on the store before its files do
    ctx.store.log_artifact_bytes(run_id, path, data)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Upload a file, under the folder ``artifact_path`` of the run's artifacts."""
    source = Path(local_path)
    if not source.is_file():
        raise NotFound(f"file {source} does not exist")
    name = f"{artifact_path.rstrip('/')}/{source.name}" if artifact_path else source.name
    ctx = _context()
    run_id = _run_id()
    ctx.logger.flush()
    ctx.store.log_artifact(run_id, source, name)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Upload every file under ``local_dir``, keeping the folder structure."""
    root = Path(local_dir)
    if not root.is_dir():
        raise NotFound(f"folder {root} does not exist")
    ctx = _context()
    run_id = _run_id()
    ctx.logger.flush()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        ctx.store.log_artifact(
            run_id, file, f"{artifact_path.rstrip('/')}/{relative}" if artifact_path else relative
        )


def log_text(text: str, artifact_file: str) -> None:
    _upload(artifact_file, text.encode())


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    """JSON, or YAML when ``artifact_file`` ends in .yaml/.yml."""
    if artifact_file.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_dump(dict(dictionary), sort_keys=False).encode()
    else:
        data = json.dumps(dictionary, indent=2, default=str).encode()
    _upload(artifact_file, data)


def log_figure(figure: Any, artifact_file: str) -> None:
    """A matplotlib figure (PNG, SVG, PDF… by suffix) or a plotly figure (.html or .json)."""
    suffix = Path(artifact_file).suffix.lower().lstrip(".")
    if hasattr(figure, "savefig"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix or "png")
        _upload(artifact_file, buffer.getvalue())
    elif hasattr(figure, "to_html") and hasattr(figure, "to_json"):
        if suffix not in ("html", "json"):
            raise InvalidInput("a plotly figure is logged as .html or .json")
        text = figure.to_html() if suffix == "html" else figure.to_json()
        _upload(artifact_file, text.encode())
    else:
        raise InvalidInput(
            f"cannot log a {type(figure).__name__} as a figure: pass a matplotlib or plotly figure"
        )


def log_table(data: Any, artifact_file: str) -> None:
    """A table (a dict of columns, or a pandas/polars frame) as JSON in MLflow's layout:
    ``{"columns": [...], "data": [[...], ...]}``."""
    if not artifact_file.endswith(".json"):
        raise InvalidInput("log_table writes JSON: name the file *.json")
    if isinstance(data, Mapping):
        columns = [str(c) for c in data]
        lengths = {len(v) for v in data.values()}
        if len(lengths) > 1:
            raise InvalidInput("the columns of a table must have the same length")
        rows = [list(r) for r in zip(*data.values(), strict=True)]
    elif hasattr(data, "to_dict") and hasattr(data, "columns") and hasattr(data, "values"):
        columns = [str(c) for c in data.columns]  # pandas
        rows = data.astype(object).values.tolist()
    elif hasattr(data, "rows") and hasattr(data, "columns"):
        columns = list(data.columns)  # polars
        rows = [list(r) for r in data.rows()]
    else:
        raise InvalidInput(f"cannot log a {type(data).__name__} as a table")

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value

    payload = {"columns": columns, "data": [[clean(v) for v in row] for row in rows]}
    _upload(artifact_file, json.dumps(payload, default=str).encode())


def log_input(data: Any, *, name: str | None = None, context: str = "training") -> None:
    """Record a dataset the active run reads: an mloop dataset version (or its ``NAME@N``), or
    a frame, identified by the hash of its content."""
    from mloop.data import DatasetVersion, content_hash, to_arrow

    ctx = _context()
    run_id = _run_id()
    if isinstance(data, str):
        if ctx.owner is None:
            raise InvalidInput("dataset references resolve against a local workspace")
        data = ctx.owner.datasets.get(data)
    if isinstance(data, DatasetVersion):
        item = RunInput(
            name=name or data.ref,
            digest=data.content_hash[:64],
            context=context,
            source_type="mloop",
            source=data.id,
        )
    else:
        table = to_arrow(data)
        item = RunInput(
            name=name or "dataset",
            digest=content_hash(table)[:64],
            context=context,
            source_type="frame",
            schema=json.dumps({f.name: str(f.type) for f in table.schema}),
            profile=json.dumps({"rows": table.num_rows}),
        )
    ctx.logger.flush()
    ctx.store.log_inputs(run_id, [item])
    if isinstance(data, DatasetVersion) and ctx.owner is not None:
        ctx.owner.tracking.add_input(run_id, ("dataset_version", data.id), context)


# -- lookups -------------------------------------------------------------------------------------


def get_run(run_id: str) -> Run:
    flush()
    return _context().store.get_run(run_id)


def search_runs(
    experiments: Sequence[str] | None = None,
    filter_string: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int = 1000,
    page_token: str | None = None,
) -> RunList:
    """Runs of ``experiments`` (names or ids; default: the current experiment) matching MLflow's
    filter grammar. A list of runs with ``.next_page_token`` and ``.to_pandas()``."""
    flush()
    ctx = _context()
    if experiments is None:
        experiments = [_current_experiment(ctx)]
    return search_run_list(ctx.store, experiments, filter_string, order_by, max_results, page_token)


# -- exit ----------------------------------------------------------------------------------------


def _at_exit() -> None:
    """A normal exit loses nothing: send what is queued and end the runs still active."""
    if _ctx is None:
        return
    for active in list(_ctx.active.values()):
        if active._monitor is not None:
            active._monitor.stop()
        _ctx.logger.update_run(
            UpdateRun(run_id=active.run_id, status="FINISHED", end_time=now_ms())
        )
    _ctx.active.clear()
    try:
        _ctx.logger.close()
    except MloopError as exc:
        import sys

        print(f"mloop: logging at exit failed: {exc.message}", file=sys.stderr)


atexit.register(_at_exit)

__all__ = [
    "ActiveRun",
    "active_run",
    "end_run",
    "flush",
    "get_run",
    "get_tracking_uri",
    "init",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_table",
    "log_text",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]
