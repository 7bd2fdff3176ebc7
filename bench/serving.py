"""Serving: mloop's REST endpoint against BentoML, MLflow and bare baselines, in one run; and
batch inference of many rows against the same rows through REST (issue 7).

    python bench/serving.py                        # every row, 10 s per point, 3 runs (medians)
    python bench/serving.py --quick                # 2 s per point, 1 run: the harness check
    python bench/serving.py --only mlflow,mloop     # some rows only (names below)
    python bench/serving.py --client asyncio       # the bounded asyncio client instead of wrk

Peers come from their own venvs (``bench/peers/setup.sh bentoml mlflow``); the baselines run
in mloop's venv. Results print as they come and are saved under bench/results/
(``serving-*.md`` and ``.json``).

**The model.** 60,000 rows of 20 numeric features (``make_classification``, 10 informative,
fixed seed), one Parquet file; a ``HistGradientBoostingClassifier(max_iter=100,
early_stopping=False)`` fitted once on the first 50,000 rows (a pandas frame, columns
f0..f19) in mloop's venv and handed to every peer and baseline (the same scikit-learn 1.9.1
everywhere, so the same pickle). mloop trains its own with the same estimator and parameters
on the same 50,000 rows through its trainer, ``ws.training.train(..., onnx=True)`` (its default
20 % hold-out aside; its pipeline adds median imputation and scaling, and the version carries
the ONNX export it serves).

**The servers** (``--only`` names), each one worker, pinned to core 0 (``taskset -c 0``, with
``OMP_NUM_THREADS=1``: a one-core server gains nothing from OpenMP threads):

- ``bentoml``: BentoML 1.4 ``bentoml serve`` of bench/serving_peers/bento_service.py, a plain
  ``@bentoml.api`` (default settings, ``workers=1``), the model from its model store.
- ``bentoml-batching``: the same with adaptive batching, ``batchable=True`` tuned for c=32
  (``max_batch_size=32``, ``max_latency_ms=100`` unless ``--bento-batch B,L``; with
  10 ms it answers most requests at c=32 with 503 "process is overloaded"; failed requests
  are counted and reported).
- ``mlflow``: ``mlflow models serve --env-manager local -w 1`` of the model saved with
  ``mlflow.sklearn.save_model(pyfunc_predict_fn="predict_proba")``; body
  ``{"dataframe_records": [...]}`` at ``/invocations``.
- ``starlette-sklearn``: bare Starlette + ``predict_proba`` (bench/serving_peers/bare_app.py).
- ``starlette-onnx``: bare Starlette + ONNX Runtime (one thread) on the model converted by
  skl2onnx (with mloop's converter fixes), one float32 array input.
- ``echo``: raw ASGI JSON echo, no framework and no model: the HTTP ceiling of one worker.
- ``mloop``: ``mloop deploy bench --model bench@1`` then ``mloop serve --workers 1`` on a fresh
  workspace, validation, routing, metrics and prediction logging on (the defaults); ``POST
  /v1/deployments/bench/predict``.

The baselines run under uvicorn ``--http httptools --loop uvloop`` (both installed here); the
others as their own CLI starts them.

**A point**: single-row requests (mloop's body ``{"rows": [{...}]}`` everywhere but MLflow),
taken in turn from 200 held-out rows, for 10 s on c keep-alive connections from wrk
(``-t1``, the Lua script bench/serving_peers/post.lua prints its percentiles) pinned to core 1;
c=1 (requests per second and p50) and c=32 (requests per second and p99). A 1-s warm-up at
c=32 before each server's first point; ``--runs N`` (3) points each, the medians reported. A
server that fails to start or answers one request wrongly is reported as failed, and the run
goes on with the next.

**Batch** (``batch``): 1,000,000 rows (``--batch-rows``) of the same 20 features as a Parquet
file; (a) one ``predict_proba`` of the peers' model over the whole frame in a fresh process
(the frame read beforehand, not timed; scikit-learn with its OpenMP threads, both cores); (b)
``mloop predict batch --deployment bench --input bench-batch --output bench-batch-out`` after
``mloop data ingest`` of the file (not timed): the wall time of the CLI, start-up included (the
start-up alone, ``mloop --help``, is reported beside); (c) the same rows through mloop's REST
endpoint, extrapolated from a bounded sample: 20,000 rows (50,000 without ``--quick``) in
requests of 1,000 rows, 4 connections, asyncio client on core 1, server on core 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH,
    RESULTS,
    VENVS,
    Report,
    Row,
    Server,
    clean,
    free_port,
    run_ours,
    run_peer,
    start_server,
)

# with bench/ on sys.path, `import onnx` (skl2onnx does) would find bench/onnx.py: it goes
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

WORK = Path(os.environ.get("BENCH_WORK", "/tmp/mloop-bench-serving"))
HERE = BENCH / "serving_peers"
SEED = 20261124
FEATURES = 20
NAMES = [f"f{i}" for i in range(FEATURES)]
TRAIN_ROWS = 50_000
HELD_OUT = 10_000
POOL = 200  # distinct single-row bodies, sent in turn
SERVER_CPUS = "0"
CLIENT_CPUS = "1"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SERVERS = {
    "bentoml": "BentoML 1.4, default",
    "bentoml-batching": "BentoML 1.4, adaptive batching, tuned",
    "mlflow": "`mlflow models serve`",
    "starlette-sklearn": "bare Starlette + scikit-learn `predict_proba`",
    "starlette-onnx": "bare Starlette + ONNX Runtime",
    "echo": "raw ASGI JSON echo, no model (the HTTP ceiling)",
    "mloop": "mloop",
}
ALL = [*SERVERS, "batch"]


# --- data and the model ---------------------------------------------------------------------


@dataclass
class Paths:
    data: Path  # TRAIN_ROWS + HELD_OUT rows, features and label
    train: Path  # the first TRAIN_ROWS rows
    model: Path  # joblib of the fitted HistGradientBoostingClassifier
    onnx: Path
    bodies: Path  # mloop's body, one row each, POOL lines
    mlflow_bodies: Path  # MLflow's dataframe_records
    classes: list[Any] = field(default_factory=list)


def prepare(work: Path) -> Paths:
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier

    paths = Paths(
        data=work / "data.parquet",
        train=work / "train.parquet",
        model=work / "model.joblib",
        onnx=work / "model.onnx",
        bodies=work / "bodies.jsonl",
        mlflow_bodies=work / "bodies-mlflow.jsonl",
    )
    X, y = make_classification(
        TRAIN_ROWS + HELD_OUT, FEATURES, n_informative=10, flip_y=0.05, random_state=SEED
    )
    frame = pd.DataFrame(X, columns=NAMES)
    frame["label"] = y.astype(np.int64)
    frame.to_parquet(paths.data, index=False)
    frame[:TRAIN_ROWS].to_parquet(paths.train, index=False)
    start = time.perf_counter()
    model = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0)
    model.fit(frame[NAMES][:TRAIN_ROWS], y[:TRAIN_ROWS])
    print(f"model fitted in {time.perf_counter() - start:.1f} s", flush=True)
    joblib.dump(model, paths.model)
    paths.classes = [int(c) for c in model.classes_]
    paths.onnx.write_bytes(_to_onnx(model))
    held = frame[NAMES][TRAIN_ROWS : TRAIN_ROWS + POOL]
    records = [{n: float(v) for n, v in zip(NAMES, row, strict=True)} for row in held.to_numpy()]
    paths.bodies.write_text("".join(json.dumps({"rows": [r]}) + "\n" for r in records))
    paths.mlflow_bodies.write_text(
        "".join(json.dumps({"dataframe_records": [r]}) + "\n" for r in records)
    )
    return paths


def _to_onnx(model: Any) -> bytes:
    """skl2onnx, one float32 input of FEATURES columns, no ZipMap; mloop's converter fixes
    registered first (skl2onnx 1.20 fails on HistGradientBoosting without them)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    from mloop.models.onnx import TARGET_OPSET, _register_converters

    _register_converters()
    onnx_model = convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, FEATURES]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    return bytes(onnx_model.SerializeToString())


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    start: Callable[[int, Path], Server]
    path: str
    bodies: Path
    version: str = ""
    rss_mib: float = 0.0


def _pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", SERVER_CPUS, *argv]


def _peer_env(peer: str) -> dict[str, str]:
    return {**ONE_THREAD, "PATH": f"{VENVS / peer / 'bin'}:{os.environ.get('PATH', '')}"}


SAVE_BENTO = """
import json, sys, joblib, bentoml
args = json.loads(sys.argv[1])
model = joblib.load(args["model"])
saved = bentoml.sklearn.save_model("bench-hgb", model)
print(json.dumps({"tag": str(saved.tag), "version": bentoml.__version__}))
"""

SAVE_MLFLOW = """
import json, sys, shutil, joblib, pandas as pd, mlflow
from mlflow.models import infer_signature
args = json.loads(sys.argv[1])
model = joblib.load(args["model"])
example = pd.read_parquet(args["data"]).drop(columns="label").head(5)
shutil.rmtree(args["out"], ignore_errors=True)
# skops (the default format since 3.17) refuses HistGradientBoosting's TreePredictor unless
# trusted: we made the file
trusted = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
mlflow.sklearn.save_model(model, args["out"], pyfunc_predict_fn="predict_proba",
                          skops_trusted_types=trusted,
                          signature=infer_signature(example, model.predict_proba(example)))
print(json.dumps({"version": mlflow.__version__}))
"""


def _with_args(code: str, args: dict[str, Any]) -> str:
    return f"import sys; sys.argv[1:] = [{json.dumps(json.dumps(args))}]\n" + code


_SAVED: dict[str, str] = {}


def bento_target(paths: Paths, work: Path, batching: bool, batch: tuple[int, int]) -> Target:
    home = work / "bentoml-home"
    env = {
        **_peer_env("bentoml"),
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "BENCH_BENTO_BATCH": "1" if batching else "0",
        "BENCH_BENTO_MAX_BATCH": str(batch[0]),
        "BENCH_BENTO_MAX_LATENCY_MS": str(batch[1]),
    }
    target = Target("bentoml-batching" if batching else "bentoml", None, "/predict", paths.bodies)  # type: ignore[arg-type]

    def start(port: int, log: Path) -> Server:
        if "bentoml" not in _SAVED:
            saved = run_peer("bentoml", _with_args(SAVE_BENTO, {"model": str(paths.model)}), env)
            _SAVED["bentoml"] = f"BentoML {saved['version']}"
        target.version = _SAVED["bentoml"]
        bentoml = VENVS / "bentoml" / "bin" / "bentoml"
        argv = [str(bentoml), "serve", "bento_service:Bench", "--working-dir", str(HERE)]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        return start_server(target.name, _pinned(argv), port, log, env, ready_path="/readyz")

    target.start = start
    return target


def mlflow_target(paths: Paths, work: Path) -> Target:
    out = work / "mlflow-model"
    env = {**_peer_env("mlflow"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    target = Target("mlflow", None, "/invocations", paths.mlflow_bodies)  # type: ignore[arg-type]

    def start(port: int, log: Path) -> Server:
        args = {"model": str(paths.model), "data": str(paths.train), "out": str(out)}
        saved = run_peer("mlflow", _with_args(SAVE_MLFLOW, args), env)
        target.version = f"MLflow {saved['version']}"
        mlflow = VENVS / "mlflow" / "bin" / "mlflow"
        argv = [str(mlflow), "models", "serve", "-m", str(out), "--env-manager", "local"]
        argv += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
        return start_server("mlflow", _pinned(argv), port, log, env, ready_path="/ping")

    target.start = start
    return target


def bare_target(name: str, paths: Paths) -> Target:
    mode = {"starlette-sklearn": "sklearn", "starlette-onnx": "onnx", "echo": "echo"}[name]
    model = {"sklearn": paths.model, "onnx": paths.onnx, "echo": paths.model}[mode]
    env = {
        **ONE_THREAD,
        "BENCH_BARE": mode,
        "BENCH_MODEL": str(model),
        "BENCH_CLASSES": json.dumps(paths.classes),
    }
    path = "/" if mode == "echo" else "/predict"

    def start(port: int, log: Path) -> Server:
        argv = [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(HERE)]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        argv += ["--http", "httptools", "--loop", "uvloop", "--no-access-log"]
        argv += ["--log-level", "warning"]
        return start_server(name, _pinned(argv), port, log, env, ready_path="/health")

    import uvicorn

    return Target(name, start, path, paths.bodies, f"uvicorn {uvicorn.__version__}")


# --- mloop: the one place that knows its interface --------------------------------------------

MLOOP_PREPARE = """
import json, sys
import polars as pl
from mloop.workspace import Workspace
args = json.loads(sys.argv[1])
with Workspace.open(args["home"]) as ws:
    ws.datasets.ingest(pl.read_parquet(args["train"]), name="bench")
    result = ws.training.train(
        "bench", "label", model="sklearn.ensemble.HistGradientBoostingClassifier",
        params={"max_iter": 100, "early_stopping": False, "random_state": 0},
        experiment="bench-serving", register="bench", onnx=True, plots=False)
import mloop
print(json.dumps({"version": mloop.__version__}))
"""

MLOOP_PATH = "/v1/deployments/bench/predict"


def mloop_cli(home: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """``mloop ARGS`` on workspace ``home``; raises with its output when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "mloop", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "MLOOP_HOME": str(home)},
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`mloop {' '.join(args)}` failed ({done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-3000:]}"
        )
    return done


_MLOOP_READY: dict[str, str] = {}


def mloop_workspace(paths: Paths, work: Path) -> Path:
    """A fresh workspace with ``bench`` trained (ONNX export on), registered as ``bench`` and
    deployed as ``bench`` (``mloop deploy bench --model bench@1``); made once a harness run."""
    home = work / "mloop-home"
    if "error" in _MLOOP_READY:  # failed once this run: the same failure, not a second try
        raise RuntimeError(_MLOOP_READY["error"])
    if "version" not in _MLOOP_READY:
        try:
            clean(home)
            args = {"home": str(home), "train": str(paths.train)}
            version = run_ours(_with_args(MLOOP_PREPARE, args))["version"]
            mloop_cli(home, "deploy", "bench", "--model", "bench@1")
        except Exception as exc:
            _MLOOP_READY["error"] = str(exc)
            raise
        _MLOOP_READY["version"] = version
    return home


def mloop_target(paths: Paths, work: Path) -> Target:
    target = Target("mloop", None, MLOOP_PATH, paths.bodies)  # type: ignore[arg-type]

    def start(port: int, log: Path) -> Server:
        home = mloop_workspace(paths, work)
        target.version = f"mloop {_MLOOP_READY['version']}"
        argv = [sys.executable, "-m", "mloop", "serve", "--port", str(port), "--workers", "1"]
        env = {**ONE_THREAD, "MLOOP_HOME": str(home)}
        return start_server("mloop", _pinned(argv), port, log, env, ready_path="/healthz")

    target.start = start
    return target


# --- load -------------------------------------------------------------------------------------


def load(
    client: str,
    url: str,
    bodies: Path,
    connections: int,
    seconds: int,
    requests: int | None = None,
) -> dict[str, Any]:
    """One point from core CLIENT_CPUS: wrk's (or the asyncio client's) summary, with
    ``req_s``, ``p50_ms``, ``p99_ms`` and ``errors`` added."""
    if client == "wrk" and requests is None:
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
        argv += ["-s", str(HERE / "post.lua"), url]
    else:
        argv = [sys.executable, str(HERE / "asyncio_load.py"), url, str(bodies)]
        argv += ["-c", str(connections), "-d", str(seconds)]
        if requests is not None:
            argv += ["-n", str(requests)]
    done = subprocess.run(
        ["taskset", "-c", CLIENT_CPUS, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODIES": str(bodies)},
        timeout=seconds + 600,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"load client failed:\n{(done.stdout + done.stderr)[-2000:]}")
    out: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    out["req_s"] = out["requests"] / (out["duration_us"] / 1e6)
    out["p50_ms"] = out["p50_us"] / 1000
    out["p99_ms"] = out["p99_us"] / 1000
    out["errors"] = sum(out[k] for k in ("connect", "read", "write", "status", "timeout"))
    return out


def check_answer(name: str, url: str, bodies: Path) -> str:
    """One request: a 2xx JSON answer with probabilities (or the echo); its text, shortened."""
    body = bodies.read_text().splitlines()[0]
    answer = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
    if answer.status_code >= 300:
        raise RuntimeError(f"{name}: HTTP {answer.status_code}: {answer.text[:500]}")
    data = answer.json()
    text = json.dumps(data)
    if name == "mloop" and not ("predictions" in data and "probabilities" in data):
        raise RuntimeError(f"mloop: no predictions/probabilities in {text[:500]}")
    return text[:160]


@dataclass
class Result:
    name: str
    version: str = ""
    points: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    error: str = ""
    answer: str = ""
    rss_mib: float = 0.0

    def median(self, connections: int, key: str) -> float | None:
        points = self.points.get(connections)
        return statistics.median(p[key] for p in points) if points else None

    def errors(self) -> int:
        return sum(p["errors"] for ps in self.points.values() for p in ps)


def measure(target: Target, args: argparse.Namespace, logs: Path) -> Result:
    result = Result(target.name)
    port = free_port()
    try:
        server = target.start(port, logs / f"{target.name}.log")
    except Exception as exc:  # a failed row is reported, the run goes on
        result.error = f"did not start: {str(exc).strip()[:1500]}"
        print(f"  {target.name}: FAILED, {result.error}", flush=True)
        return result
    result.version = target.version
    url = server.url + target.path
    try:
        result.answer = check_answer(target.name, url, target.bodies)
        load(args.client, url, target.bodies, 32, 1)  # warm-up
        for run in range(args.runs):
            for c in (1, 32):
                point = load(args.client, url, target.bodies, c, args.seconds)
                result.points.setdefault(c, []).append(point)
                print(
                    f"  {target.name:<18} run {run + 1} c={c:<3} {point['req_s']:9.0f} req/s  "
                    f"p50 {point['p50_ms']:7.2f} ms  p99 {point['p99_ms']:7.2f} ms"
                    + (f"  ERRORS {point['errors']}" if point["errors"] else ""),
                    flush=True,
                )
        result.rss_mib = server.rss_mib()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {str(exc).strip()[:1500]}"
        print(f"  {target.name}: FAILED, {result.error}", flush=True)
    finally:
        server.stop()
    return result


# --- batch ------------------------------------------------------------------------------------

GENERATE_BATCH = """
import json, sys
import numpy as np, pandas as pd
args = json.loads(sys.argv[1])
rng = np.random.default_rng(args["seed"])
X = rng.normal(size=(args["rows"], args["features"])) * 1.5
pd.DataFrame(X, columns=[f"f{i}" for i in range(args["features"])]).to_parquet(
    args["out"], index=False)
print(json.dumps({"rows": len(X)}))
"""

PREDICT_PROBA = """
import json, sys, time
import joblib, pandas as pd
args = json.loads(sys.argv[1])
model = joblib.load(args["model"])
frame = pd.read_parquet(args["data"])
model.predict_proba(frame.head(1000))
times = []
for _ in range(args["repeat"]):
    start = time.perf_counter()
    proba = model.predict_proba(frame)
    times.append(time.perf_counter() - start)
print(json.dumps({"seconds": sorted(times)[len(times) // 2], "rows": len(proba)}))
"""


@dataclass
class Batch:
    rows: int
    proba_s: float | None = None
    cli_s: float | None = None
    job_s: float | None = None
    cli_startup_s: float | None = None
    rest_rows: int = 0
    rest_s: float | None = None  # the sample's wall time
    rest_extrapolated_s: float | None = None
    rest_point: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def batch_part(paths: Paths, work: Path, args: argparse.Namespace, logs: Path) -> Batch:
    batch = Batch(args.batch_rows)
    data = work / f"batch-{args.batch_rows}.parquet"
    if not data.exists():
        code = {"rows": args.batch_rows, "features": FEATURES, "seed": SEED + 1, "out": str(data)}
        run_ours(_with_args(GENERATE_BATCH, code))
    # (a) one predict_proba over the whole frame
    try:
        code = {"model": str(paths.model), "data": str(data), "repeat": 1 if args.quick else 3}
        batch.proba_s = run_ours(_with_args(PREDICT_PROBA, code))["seconds"]
        print(f"  batch: predict_proba over {args.batch_rows:,} rows {batch.proba_s:.2f} s")
    except Exception as exc:
        batch.errors.append(f"predict_proba: {exc}")
    # (b) mloop predict batch, the CLI
    try:
        home = mloop_workspace(paths, work)
        mloop_cli(home, "data", "ingest", str(data), "--name", "bench-batch")
        start = time.perf_counter()
        mloop_cli(home, "--help")
        batch.cli_startup_s = time.perf_counter() - start
        start = time.perf_counter()
        done = mloop_cli(
            home,
            *("predict", "batch", "--deployment", "bench", "--json"),
            *("--input", "bench-batch", "--output", "bench-batch-out"),
        )
        batch.cli_s = time.perf_counter() - start
        # the job's own time, as the command reports it: resolving the model, reading the
        # input version, predicting, writing and registering the output version (the
        # interpreter's and the CLI's start-up are outside it, and reported apart)
        batch.job_s = float(json.loads(done.stdout)["seconds"])
        print(
            f"  batch: mloop predict batch {batch.job_s:.2f} s (the command: {batch.cli_s:.2f} s)",
            flush=True,
        )
    except Exception as exc:
        batch.errors.append(f"mloop predict batch: {str(exc).strip()[:1500]}")
        print(f"  batch: mloop predict batch FAILED: {str(exc).strip()[:300]}", flush=True)
    # (c) the same rows through mloop's REST endpoint, a bounded sample
    per_request = 1000
    sample = 20_000 if args.quick else 50_000
    sample = min(sample, args.batch_rows)
    try:
        import pandas as pd

        frame = pd.read_parquet(data).head(sample)
        bodies = work / "bodies-batch.jsonl"
        with bodies.open("w") as out:
            for i in range(0, len(frame), per_request):
                rows = frame.iloc[i : i + per_request].to_dict("records")
                out.write(json.dumps({"rows": rows}) + "\n")
        target = mloop_target(paths, work)
        port = free_port()
        server = target.start(port, logs / "mloop-batch.log")
        try:
            url = server.url + target.path
            check_answer("mloop", url, bodies)
            n = len(frame) // per_request
            point = load("asyncio", url, bodies, 4, 3600, requests=n)
            if point["errors"]:
                raise RuntimeError(f"{point['errors']} failed requests: {point}")
            batch.rest_point = point
            batch.rest_rows = point["requests"] * per_request
            batch.rest_s = point["duration_us"] / 1e6
            batch.rest_extrapolated_s = batch.rest_s * args.batch_rows / batch.rest_rows
            print(
                f"  batch: REST {batch.rest_rows:,} rows in {batch.rest_s:.2f} s → "
                f"{args.batch_rows:,} rows ≈ {batch.rest_extrapolated_s:.1f} s",
                flush=True,
            )
        finally:
            server.stop()
    except Exception as exc:
        batch.errors.append(f"REST: {str(exc).strip()[:1500]}")
        print(f"  batch: REST FAILED: {str(exc).strip()[:300]}", flush=True)
    return batch


# --- report -----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


class ServingReport(Report):
    def __init__(self) -> None:
        super().__init__("Serving: mloop vs BentoML, MLflow and bare baselines", "peers")
        self.results: list[Result] = []
        self.targets: list[tuple[str, str, str, bool | None]] = []

    def table(self) -> list[str]:
        lines = [
            "| server (one worker) | c=1 req/s | c=1 p50 | c=32 req/s | c=32 p99 | RSS | note |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in self.results:
            if r.error and not r.points:
                lines.append(
                    f"| {SERVERS[r.name]} | — | — | — | — | — | failed: "
                    f"{r.error.splitlines()[0][:200]} |"
                )
                continue
            note = r.version
            if r.errors():
                note += f"; {r.errors()} failed requests"
            if r.error:
                note += f"; failed: {r.error.splitlines()[0][:200]}"
            lines.append(
                f"| {SERVERS[r.name]} | {_fmt(r.median(1, 'req_s'))} | "
                f"{_fmt(r.median(1, 'p50_ms'), 2)} ms | {_fmt(r.median(32, 'req_s'))} | "
                f"{_fmt(r.median(32, 'p99_ms'), 2)} ms | {r.rss_mib:.0f} MiB | {note} |"
            )
        return lines

    def markdown(self) -> str:
        base = super().markdown().splitlines()
        head = base[:4]
        rest = base[4:]
        lines = [*head, *self.table(), ""]
        if self.targets:
            lines += ["| target | needed | measured | met |", "|---|---|---|---|"]
            for what, needed, got, met in self.targets:
                mark = "—" if met is None else ("**yes**" if met else "no")
                lines.append(f"| {what} | {needed} | {got} | {mark} |")
            lines.append("")
        if self.rows:
            lines += rest
        else:
            lines += ["", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(lines)

    def save(self, name: str) -> Path:
        path = super().save(name)
        extra = json.loads(path.with_suffix(".json").read_text())
        extra["servers"] = [r.__dict__ for r in self.results]
        extra["targets"] = self.targets
        path.with_suffix(".json").write_text(json.dumps(extra, indent=2))
        return path


def targets(report: ServingReport, batch: Batch | None) -> None:
    by = {r.name: r for r in report.results}

    def c32(name: str) -> float | None:
        r = by.get(name)
        return r.median(32, "req_s") if r and not r.error else None

    ours = c32("mloop")
    if "mloop" not in by:
        return

    def ratio(what: str, peers: list[str], needed: float) -> None:
        theirs = [v for v in (c32(p) for p in peers) if v]
        if not theirs:
            return
        best = max(theirs)
        got = f"{ours / best:.2f}×" if ours else "mloop failed"
        report.targets.append(
            (what, f"≥ {needed:g}×", got, None if not ours else ours / best >= needed)
        )

    ratio("c=32 req/s vs BentoML's best configuration", ["bentoml", "bentoml-batching"], 5)
    ratio("c=32 req/s vs `mlflow models serve`", ["mlflow"], 10)
    ratio("c=32 req/s vs bare Starlette + ONNX Runtime", ["starlette-onnx"], 0.6)
    r = by.get("mloop")
    if r is not None:
        p99, p50 = r.median(32, "p99_ms"), r.median(1, "p50_ms")
        report.targets.append(
            (
                "mloop p99 at c=32",
                "≤ 15 ms",
                f"{_fmt(p99, 2)} ms",
                None if p99 is None else p99 <= 15,
            )
        )
        report.targets.append(
            (
                "mloop p50 at c=1",
                "≤ 0.3 ms",
                f"{_fmt(p50, 3)} ms",
                None if p50 is None else p50 <= 0.3,
            )
        )
    if batch is not None:
        rows = f"{batch.rows:,} rows"
        if batch.job_s is not None and batch.rest_extrapolated_s is not None:
            x = batch.rest_extrapolated_s / batch.job_s
            report.targets.append((f"batch {rows}: faster than REST", "≥ 5×", f"{x:.1f}×", x >= 5))
        if batch.job_s is not None and batch.proba_s is not None:
            x = batch.job_s / batch.proba_s
            report.targets.append(
                (f"batch {rows}: vs one `predict_proba`", "≤ 1.5× its time", f"{x:.2f}×", x <= 1.5)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-s points, 1 run")
    parser.add_argument("--runs", type=int, default=None, help="points per server (3)")
    parser.add_argument("--seconds", type=int, default=None, help="seconds per point (10)")
    parser.add_argument("--only", default="", help=f"comma-separated: {','.join(ALL)}")
    parser.add_argument("--client", choices=("wrk", "asyncio"), default=None)
    parser.add_argument("--batch-rows", type=int, default=None, help="1,000,000 (quick: 100,000)")
    parser.add_argument("--bento-batch", default="32,100", help="max_batch_size,max_latency_ms")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.seconds = args.seconds or (2 if args.quick else 10)
    args.batch_rows = args.batch_rows or (100_000 if args.quick else 1_000_000)
    if args.client is None:
        args.client = "wrk" if shutil.which("wrk") else "asyncio"
    only = [n for n in args.only.split(",") if n] or ALL
    unknown = sorted(set(only) - set(ALL))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {ALL}")
    bento_batch = tuple(int(v) for v in args.bento_batch.split(","))
    assert len(bento_batch) == 2, "--bento-batch B,L"
    if shutil.which("taskset") is None:
        sys.exit("taskset is needed (util-linux)")

    # batch inputs are kept between runs (1M rows take a while to write)
    WORK.mkdir(parents=True, exist_ok=True)
    for child in WORK.iterdir():
        if not child.name.startswith("batch-"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    logs = RESULTS / "serving-logs"
    logs.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    print(
        f"{len(only)} row(s), client {args.client}, {args.seconds} s per point, {args.runs} "
        f"run(s); server on core {SERVER_CPUS}, client on core {CLIENT_CPUS}; load average "
        f"{load_before[0]:.2f}",
        flush=True,
    )
    paths = prepare(WORK)
    makers: dict[str, Callable[[], Target]] = {
        "bentoml": lambda: bento_target(paths, WORK, False, bento_batch),  # type: ignore[arg-type]
        "bentoml-batching": lambda: bento_target(paths, WORK, True, bento_batch),  # type: ignore[arg-type]
        "mlflow": lambda: mlflow_target(paths, WORK),
        "starlette-sklearn": lambda: bare_target("starlette-sklearn", paths),
        "starlette-onnx": lambda: bare_target("starlette-onnx", paths),
        "echo": lambda: bare_target("echo", paths),
        "mloop": lambda: mloop_target(paths, WORK),
    }
    report = ServingReport()
    for name in SERVERS:
        if name in only:
            report.results.append(measure(makers[name](), args, logs))
    batch = batch_part(paths, WORK, args, logs) if "batch" in only else None
    if batch is not None:
        if batch.job_s is not None and batch.proba_s is not None:
            report.add(
                Row(
                    f"batch {batch.rows:,} rows: mloop predict batch vs one predict_proba",
                    batch.job_s,
                    batch.proba_s,
                    "s",
                    "≤ 1.5× predict_proba's time",
                )
            )
        if batch.job_s is not None and batch.rest_extrapolated_s is not None:
            report.add(
                Row(
                    f"batch {batch.rows:,} rows: mloop predict batch vs REST (extrapolated)",
                    batch.job_s,
                    batch.rest_extrapolated_s,
                    "s",
                    "≥ 5× faster",
                )
            )
        if batch.cli_s is not None:
            report.add(
                Row(
                    "`mloop predict batch`, the whole command (interpreter and CLI start-up too)",
                    batch.cli_s,
                    batch.proba_s,
                    "s",
                )
            )
        if batch.cli_startup_s is not None:
            report.add(
                Row(
                    "`mloop --help` (CLI start-up, inside the batch time)",
                    batch.cli_startup_s,
                    None,
                    "s",
                )
            )
        if batch.rest_point:
            p = batch.rest_point
            report.notes.append(
                f"Batch through REST: {batch.rest_rows:,} rows in requests of 1,000 rows, 4 "
                f"connections (asyncio client, core {CLIENT_CPUS}; mloop on core {SERVER_CPUS}) "
                f"took {batch.rest_s:.2f} s (p50 {p['p50_ms']:.1f} ms a request), extrapolated "
                f"linearly to {batch.rows:,} rows: {batch.rest_extrapolated_s:.1f} s."
            )
        report.notes += [f"Batch failed: {e}" for e in batch.errors]
    targets(report, batch)
    load_after = os.getloadavg()
    client = (
        "wrk 4.1 (Debian), `-t1`, Lua script bench/serving_peers/post.lua"
        if args.client == "wrk"
        else "the asyncio client bench/serving_peers/asyncio_load.py (uvloop)"
    )
    report.notes += [
        f"Load: {client}, pinned to core {CLIENT_CPUS}; servers pinned to core {SERVER_CPUS} "
        "with OMP_NUM_THREADS=1. Single-row requests taken in turn from "
        f"{POOL} held-out rows; {args.seconds} s per point after a 1-s warm-up at c=32; "
        f"medians of {args.runs} run(s).",
        "Model: HistGradientBoostingClassifier(max_iter=100, early_stopping=False), 20 "
        f"features (make_classification, seed {SEED}), {TRAIN_ROWS:,} training rows; the "
        "same fitted model for every peer and baseline; mloop trains its own with the same "
        "estimator and parameters through its trainer (imputer + scaler + model, ONNX export).",
        f"BentoML adaptive batching: max_batch_size={bento_batch[0]}, "
        f"max_latency_ms={bento_batch[1]}. Baselines: uvicorn --http httptools --loop uvloop.",
        "Answers (first request): "
        + "; ".join(f"{r.name}: `{r.answer}`" for r in report.results if r.answer),
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({os.cpu_count()} cores). Server logs: bench/results/serving-logs/.",
    ]
    for r in report.results:
        if r.error:
            report.notes.append(f"{r.name} failed: {r.error}")
    print()
    print("\n".join(report.table()))
    for what, needed, got, met in report.targets:
        print(f"  target {what}: needed {needed}, measured {got}, met {met}")
    path = report.save("serving")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
