"""Batch inference: a deployment's model over a whole dataset version, written as a new one.

``predict(deployment, input, output)`` resolves the deployment's model **once** (its first
served variant, or the one named), reads the input version column-wise with Arrow, turns each
chunk of rows into the model's frame through :func:`mloop.models.frame_from_table` (the one
coercion path training uses), predicts each chunk in one call and writes the input's columns
plus ``prediction`` (and ``proba_<class>`` per class, for a classifier) as a version of
dataset ``output``, with lineage edges from the input version and the model version.

Chunks run in this process (``workers=1``, the default: scikit-learn's own threads, or one
ONNX Runtime session per core), in local worker processes (``workers=N``: each loads the
model once) or as Ray tasks (``ray_address``). Rows keep their order whatever ran them. The
same job again (same input version, same model version) writes the same content: the datasets
layer returns the existing version and nothing new is stored.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput, MloopError, NotFound, SchemaMismatch
from mloop.core.lazy import lazy_module
from mloop.data import DatasetService, DatasetVersion, check_name
from mloop.models import ONNX_FILE, LoadedModel, OnnxPredictor, Signature, frame_from_table
from mloop.registry import ModelVersion, RegistryService
from mloop.security import AuditLog
from mloop.serving.deployments import DeploymentService, Variant
from mloop.storage import ArtifactStore, Database, LineageStore

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
else:
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")

DEFAULT_CHUNK_ROWS = 100_000
MAX_WORKERS = 256
PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"
METADATA_KEY = b"mloop.batch"  # the Parquet schema metadata naming the model and the input
RELATION = "predicted"  # lineage: input version and model version --predicted--> output
NUMERIC = frozenset({"integer", "float", "boolean"})

Progress = Callable[[int, int], None]


class BatchPrediction(BaseModel):
    """What a batch job did: the output version and what made it."""

    model_config = ConfigDict(frozen=True)

    output: DatasetVersion
    input: str  # the input version's reference, NAME@N
    deployment: str
    variant: str
    model: str  # the model version's reference, NAME@N
    model_version_id: str
    runtime: Literal["onnx", "native"]
    backend: Literal["process", "local", "ray"]  # this process, local processes, Ray tasks
    workers: int  # threads (in this process), processes, or Ray tasks in flight
    chunks: int
    rows: int
    seconds: float
    unchanged: bool  # the output dataset held this very content already: nothing was written

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


# == scoring: the same code in this process, in worker processes and in Ray tasks ============


@dataclass(frozen=True)
class _ModelPayload:
    """How a worker builds the model: small, picklable, keyed by content."""

    key: str  # the model's content digest: a worker loads each model once
    runtime: Literal["onnx", "native"]
    data: bytes  # the ONNX graph, or the pickled LoadedModel
    signature: Signature


class _Scorer:
    """A model that scores Arrow tables: labels (or values) and class probabilities as arrays."""

    def __init__(self, model: LoadedModel | OnnxPredictor) -> None:
        self.model = model
        self.signature = model.signature
        self.classifier = self.signature.task == "classification"
        self.classes: np.ndarray | None = None
        if isinstance(model, OnnxPredictor):
            if self.classifier:
                self.classes = np.asarray(model.classes)
        elif self.classifier and hasattr(model.estimator, "predict_proba"):
            self.classes = np.asarray(model.estimator.classes_)

    @property
    def class_names(self) -> list[str]:
        if self.classes is None:
            return []
        return [str(c.item() if isinstance(c, np.generic) else c) for c in self.classes]

    def score(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray | None]:
        frame = frame_from_table(table, self.signature)
        model = self.model
        try:
            if isinstance(model, OnnxPredictor):
                values, probabilities = model.run(model.feeds_from_frame(frame))
            elif self.classes is not None:
                probabilities = model.estimator.predict_proba(frame)
                values = None
            else:
                values, probabilities = model.estimator.predict(frame), None
        except (ValueError, TypeError) as exc:
            raise SchemaMismatch(f"the model cannot predict on these rows: {exc}") from exc
        except Exception as exc:  # ONNX Runtime refuses what the graph cannot take
            if isinstance(model, OnnxPredictor):
                raise SchemaMismatch(f"the model cannot predict on these rows: {exc}") from exc
            raise
        if probabilities is not None and self.classes is not None:
            probabilities = np.asarray(probabilities, dtype=np.float64)
            # the class of highest probability, the first on a tie: scikit-learn's predict
            values = self.classes[probabilities.argmax(axis=1)]
            return values, probabilities
        return np.asarray(values).ravel(), None


def _scorer_from(payload: _ModelPayload) -> _Scorer:
    if payload.runtime == "onnx":
        return _Scorer(OnnxPredictor(payload.data, payload.signature))
    model = pickle.loads(payload.data)
    assert isinstance(model, LoadedModel)
    return _Scorer(model)


_WORKER_SCORERS: dict[str, _Scorer] = {}  # in a worker process: its models, by content
_WORKER_MODELS_KEPT = 4  # a Ray worker outlives jobs: keep a few models, not every one


def _worker_init(payload: _ModelPayload) -> None:
    """A local worker process: one thread per library (the processes are the parallelism),
    then the model, once."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    try:  # libraries loaded before (by the parent's __main__, say) are limited at run time
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        pass
    _WORKER_SCORERS[payload.key] = _scorer_from(payload)


def _worker_score(payload: _ModelPayload | str, data: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Score one chunk (Arrow IPC bytes) in a worker: its model loaded once per process."""
    key = payload if isinstance(payload, str) else payload.key
    scorer = _WORKER_SCORERS.get(key)
    if scorer is None:
        assert not isinstance(payload, str), "the worker was started without its model"
        if len(_WORKER_SCORERS) >= _WORKER_MODELS_KEPT:
            _WORKER_SCORERS.clear()
        scorer = _WORKER_SCORERS[key] = _scorer_from(payload)
    return scorer.score(_from_ipc(data))


def _to_ipc(table: pa.Table) -> pa.Buffer:
    """A chunk as Arrow IPC: only its rows' bytes (a pickled slice may carry whole buffers)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(data: Any) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data) if isinstance(data, bytes) else data).read_all()


# == the service ==============================================================================


@dataclass
class _Job:
    deployment: str
    variant: Variant
    version: ModelVersion
    input: DatasetVersion
    output: str
    keep: list[str]


@dataclass
class _Loaded:
    scorer: _Scorer
    runtime: Literal["onnx", "native"]
    key: str
    signature: Signature
    onnx_digest: str | None


class BatchPredictionService:
    """Predict over dataset versions with a deployment's model; the output is a dataset
    version with lineage to the model version and the input version."""

    def __init__(
        self,
        db: Database,
        datasets: DatasetService,
        deployments: DeploymentService,
        registry: RegistryService,
        artifacts: ArtifactStore,
        audit: AuditLog,
        lineage: LineageStore,
    ) -> None:
        self._db = db
        self._datasets = datasets
        self._deployments = deployments
        self._registry = registry
        self._artifacts = artifacts
        self._audit = audit
        self._lineage = lineage

    def predict(
        self,
        deployment: str,
        input: str,
        output: str,
        *,
        workers: int | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        variant: str | None = None,
        keep: Sequence[str] | Literal["all"] | None = None,
        ray_address: str | None = None,
        progress: Progress | None = None,
    ) -> BatchPrediction:
        """Predict every row of dataset version ``input`` (``NAME``, ``NAME@N``) with
        ``deployment``'s model; write them as a version of dataset ``output``.

        The model is the deployment's first served variant (its stable one), or ``variant``;
        its reference is resolved once, so an alias moving during the job changes nothing.
        ONNX Runtime runs it when the variant's runtime allows (``auto``, ``onnx``) and the
        version has a verified export, as in serving; otherwise the native model.

        For a classifier, ``prediction`` is the class of highest probability (the first on a
        tie), which is what scikit-learn's ``predict`` gives for the models mloop trains and
        what the ONNX path gives: one model call per chunk, not two.

        The output's rows are the input's, in order. Its columns: by default the input's
        columns the model does not take (ids, keys, labels, times: what says which row it
        is), ``keep="all"`` every input column, or ``keep=[...]`` those (``[]``: none); then
        ``prediction`` and, for a classifier, ``proba_<class>`` per class. The features are
        not copied by default: they stay in the input version, which lineage points to, and
        writing them again would cost more than predicting them. The output's Parquet
        metadata (``mloop.batch``) names the model version, deployment, variant and input.

        ``workers``: 1 (default) predicts in this process (a chunk per core, on threads);
        N > 1 in N local processes, each loading the model once. With
        ``ray_address`` chunks run as Ray tasks instead (``local`` starts Ray in this process;
        else an address for ``ray.init``, such as ``auto``; a Ray already initialised is
        used as it is). ``progress(rows_done, rows_total)`` is called after each chunk.

        Bad input (unknown deployment, variant or dataset, an input without the model's
        columns, bad ``workers`` or ``chunk_rows``) raises before anything is computed;
        nothing is written unless every chunk was predicted."""
        started = time.perf_counter()
        if workers is not None and (
            isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
        ):
            raise InvalidInput(f"workers is a whole number of at least 1, not {workers!r}")
        if workers is not None and workers > MAX_WORKERS:
            raise InvalidInput(f"at most {MAX_WORKERS} workers, not {workers}")
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InvalidInput(f"chunk_rows is a whole number of at least 1, not {chunk_rows!r}")
        job = self._plan(deployment, input, output, variant, keep)
        loaded = self._model(job)
        scorer = loaded.scorer
        names = job.version.require_signature().input_names
        table = self._datasets.load(job.input, columns=list(dict.fromkeys([*job.keep, *names])))
        total = table.num_rows
        bounds = [(s, min(chunk_rows, total - s)) for s in range(0, total, chunk_rows)]
        chunks = [table.slice(s, n).select(names) for s, n in bounds]
        if progress is not None:
            progress(0, total)
        backend: Literal["process", "local", "ray"]
        if ray_address is not None:
            backend = "ray"
            results, used = _run_on_ray(
                self._payload(loaded), chunks, ray_address, workers, progress, total
            )
        elif workers is not None and workers > 1:
            backend, used = "local", min(workers, len(chunks))
            results = _run_in_processes(self._payload(loaded), chunks, used, progress, total)
        else:
            backend = "process"
            used = min(_cores(), len(chunks))
            results = _run_here(scorer, chunks, used, progress, total)
        result = self._assemble(job, scorer, table, results)
        result = result.replace_schema_metadata(
            {
                **(result.schema.metadata or {}),
                METADATA_KEY: json.dumps(self._describe(job, loaded.runtime)).encode(),
            }
        )
        before = self._latest_id(job.output)
        version = self._datasets.write_version(
            job.output,
            result,
            kind="prediction",
            description=f"predictions of deployment {job.deployment!r}",
            parents=[job.input],
            relation=RELATION,
        )
        unchanged = version.id == before
        with self._db.write() as conn:  # also when the content existed: the edge is idempotent
            self._lineage.add(
                conn, ("model_version", job.version.id), ("dataset_version", version.id), RELATION
            )
            if not unchanged:
                self._audit.record(
                    conn,
                    "batch.predict",
                    "dataset_version",
                    version.ref,
                    {**self._describe(job, loaded.runtime), "rows": total, "backend": backend},
                )
        return BatchPrediction(
            output=version,
            input=job.input.ref,
            deployment=job.deployment,
            variant=job.variant.name,
            model=job.version.ref,
            model_version_id=job.version.id,
            runtime=loaded.runtime,
            backend=backend,
            workers=used,
            chunks=len(chunks),
            rows=total,
            seconds=time.perf_counter() - started,
            unchanged=unchanged,
        )

    # -- planning: every check before any compute ------------------------------------------

    def _plan(
        self,
        deployment: str,
        input: str,
        output: str,
        variant: str | None,
        keep: Sequence[str] | Literal["all"] | None,
    ) -> _Job:
        check_name(output, "output dataset")
        found = self._deployments.get(deployment)
        if variant is None:
            chosen = found.served()[0]
        else:
            match = [v for v in found.variants if v.name == variant]
            if not match:
                raise NotFound(
                    f"deployment {deployment!r} has no variant {variant!r}; its variants: "
                    + ", ".join(v.name for v in found.variants)
                )
            chosen = match[0]
        version = self._registry.resolve(chosen.model)  # once: the whole job uses this version
        signature = version.require_signature()
        source = self._datasets.get(input)
        if source.dataset == output:
            raise InvalidInput(
                f"the output must be another dataset than the input ({source.dataset!r})"
            )
        types = {c.name: c.type for c in source.schema_.columns}
        missing = [c.name for c in signature.inputs if c.name not in types]
        if missing:
            raise SchemaMismatch(
                f"{source.ref} has no column {missing[0]!r}, which {version.ref} takes"
                + (
                    f" ({len(missing)} missing: {', '.join(missing[:5])})"
                    if len(missing) > 1
                    else ""
                )
            )
        for col in signature.inputs:
            have = types[col.name]
            fits = have in NUMERIC if col.type in NUMERIC else have == "string"
            if not fits:
                want = "a number or boolean" if col.type in NUMERIC else "a string"
                raise SchemaMismatch(
                    f"column {col.name!r} of {source.ref} is {have}; {version.ref} takes {want}"
                )
        if keep is None:  # what says which row it is: ids, keys, labels, times
            taken = set(signature.input_names)
            kept = [name for name in types if name not in taken]
        elif keep == "all":
            kept = list(types)
        else:
            if isinstance(keep, str):
                raise InvalidInput("keep is a list of column names, or 'all'")
            kept = list(dict.fromkeys(keep))
            unknown = [k for k in kept if k not in types]
            if unknown:
                raise InvalidInput(f"{source.ref} has no column {unknown[0]!r} to keep")
        outputs = {PREDICTION_COLUMN}
        if signature.task == "classification":
            outputs |= {f"{PROBA_PREFIX}{c}" for c in signature.classes or []}
        clash = [
            k for k in kept if k == PREDICTION_COLUMN or k in outputs or k.startswith(PROBA_PREFIX)
        ]
        if clash:
            raise InvalidInput(
                f"{source.ref} has a column {clash[0]!r}, which the predictions would take: "
                "leave it out with keep"
            )
        return _Job(found.name, chosen, version, source, output, kept)

    def _model(self, job: _Job) -> _Loaded:
        """The model to run: ONNX Runtime when the variant allows and a verified export
        exists (as serving chooses), else the native model."""
        version, variant = job.version, job.variant
        signature = version.require_signature()
        if variant.runtime in ("auto", "onnx"):
            onnx = self._registry.load_onnx(version)
            if onnx is not None:
                digest = self._registry.files(version)[ONNX_FILE]
                return _Loaded(_Scorer(onnx), "onnx", f"onnx:{digest}", signature, digest)
            if variant.runtime == "onnx":
                raise InvalidInput(
                    f"variant {variant.name!r} asks for ONNX Runtime, but {version.ref} has no "
                    "verified ONNX export (train with onnx=True; pip install 'mloop[onnx]')"
                )
        model = self._registry.load(version)
        return _Loaded(_Scorer(model), "native", version.manifest_digest, signature, None)

    def _payload(self, loaded: _Loaded) -> _ModelPayload:
        """How a worker builds the model: the ONNX graph, or the native model pickled."""
        if loaded.onnx_digest is not None:
            data = self._artifacts.get_bytes(loaded.onnx_digest)
        else:
            data = pickle.dumps(loaded.scorer.model, protocol=pickle.HIGHEST_PROTOCOL)
        return _ModelPayload(loaded.key, loaded.runtime, data, loaded.signature)

    # -- output -------------------------------------------------------------------------

    def _assemble(
        self,
        job: _Job,
        scorer: _Scorer,
        table: pa.Table,
        results: list[tuple[np.ndarray, np.ndarray | None]],
    ) -> pa.Table:
        values = np.concatenate([r[0] for r in results]) if len(results) > 1 else results[0][0]
        arrays: list[Any] = [table.column(k) for k in job.keep]
        names = list(job.keep)
        arrays.append(_to_arrow(values))
        names.append(PREDICTION_COLUMN)
        if scorer.classes is not None:
            parts = [r[1] for r in results]
            probabilities = np.concatenate(parts) if len(parts) > 1 else parts[0]  # type: ignore[arg-type]
            assert probabilities is not None
            for j, name in enumerate(scorer.class_names):
                arrays.append(pa.array(np.ascontiguousarray(probabilities[:, j])))
                names.append(f"{PROBA_PREFIX}{name}")
        return pa.Table.from_arrays(arrays, names=names)

    @staticmethod
    def _describe(job: _Job, runtime: str) -> dict[str, Any]:
        return {
            "model": job.version.name,
            "model_version": job.version.version,
            "model_ref": job.version.ref,
            "model_version_id": job.version.id,
            "deployment": job.deployment,
            "variant": job.variant.name,
            "runtime": runtime,
            "input": job.input.ref,
            "input_version_id": job.input.id,
        }

    def _latest_id(self, name: str) -> str | None:
        try:
            return self._datasets.get(name).id
        except NotFound:
            return None


def _cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _to_arrow(values: np.ndarray) -> pa.Array:
    if values.dtype == object:
        return pa.array(values.tolist())
    return pa.array(np.ascontiguousarray(values))


# == runners =================================================================================


def _run_here(
    scorer: _Scorer,
    chunks: list[pa.Table],
    threads: int,
    progress: Progress | None,
    total: int,
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """In this process, a chunk per thread, ``threads`` at once. The libraries run one thread
    each meanwhile (scikit-learn's OpenMP and BLAS; an ONNX session has one): many small
    parallel regions each waiting on its slowest thread cost more than chunks side by side,
    above all on a busy machine. Their own threading comes back when the job ends."""
    if threads <= 1 or len(chunks) == 1:
        results, done = [], 0
        for chunk in chunks:
            results.append(scorer.score(chunk))
            done += chunk.num_rows
            if progress is not None:
                progress(done, total)
        return results
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1), ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(scorer.score, chunk) for chunk in chunks]
        return _collect(futures, chunks, progress, total)


def _collect(
    futures: list[Future[Any]],
    chunks: list[pa.Table],
    progress: Progress | None,
    total: int,
) -> list[Any]:
    """Each future's result, in chunk order, reporting progress as they finish; the first
    failure cancels what has not started and is raised."""
    pending = set(futures)
    rows = {f: c.num_rows for f, c in zip(futures, chunks, strict=True)}
    done = 0
    try:
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # raises the chunk's error
                done += rows[future]
            if progress is not None:
                progress(done, total)
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    return [f.result() for f in futures]


def _run_in_processes(
    payload: _ModelPayload,
    chunks: list[pa.Table],
    workers: int,
    progress: Progress | None,
    total: int,
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """In ``workers`` spawned processes, each loading the model once (its initializer)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    ready = payload
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_worker_init, initargs=(ready,)
        ) as pool:
            futures = [pool.submit(_worker_score, ready.key, _to_ipc(c)) for c in chunks]
            try:
                return _collect(futures, chunks, progress, total)
            except BaseException:
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()  # our own workers: stop what runs, not only what waits
                raise
    except BrokenProcessPool as exc:
        raise MloopError(f"a batch inference worker process died: {exc}") from exc


def _run_on_ray(
    payload: _ModelPayload,
    chunks: list[pa.Table],
    address: str,
    workers: int | None,
    progress: Progress | None,
    total: int,
) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], int]:
    """As Ray tasks of one CPU each, the model put in the object store once and loaded once
    per Ray worker process; at most ``workers`` chunks in flight (default: the cluster's CPUs)."""
    try:
        import ray as ray_module
    except ImportError as exc:
        raise InvalidInput("Ray is not installed: pip install 'mloop[ray]'") from exc
    ray: Any = ray_module
    if not ray.is_initialized():
        ray.init(
            address=None if address == "local" else address,
            include_dashboard=False,
            log_to_driver=False,
        )
    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    limit = workers or cpus
    remote = ray.remote(num_cpus=1)(_worker_score)
    model_ref = ray.put(payload)
    refs: list[Any] = []
    index: dict[Any, int] = {}
    results: list[Any] = [None] * len(chunks)
    done, submitted = 0, 0
    in_flight: list[Any] = []
    try:
        while submitted < len(chunks) or in_flight:
            while submitted < len(chunks) and len(in_flight) < limit:
                ref = remote.remote(model_ref, _to_ipc(chunks[submitted]))
                index[ref] = submitted
                refs.append(ref)
                in_flight.append(ref)
                submitted += 1
            finished, in_flight = ray.wait(in_flight, num_returns=1)
            for ref in finished:
                i = index[ref]
                results[i] = _unwrap_ray(ray, ref)
                done += chunks[i].num_rows
            if progress is not None:
                progress(done, total)
    except BaseException:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise
    return results, min(limit, len(chunks))


def _unwrap_ray(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # our own errors come back as themselves
        cause = exc.as_instanceof_cause()
        if isinstance(cause, MloopError):
            raise cause from None
        raise
