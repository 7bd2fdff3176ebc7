"""Experiment tracking: mloop against MLflow, side by side in one run.

    bench/peers/setup.sh mlflow          # once: MLflow in its own venv
    python bench/tracking.py             # the full benchmark (~10 minutes on 2 cores)
    python bench/tracking.py --quick     # a smaller run to check the harness

Each scenario runs in fresh processes against fresh stores. MLflow's server is started with
`--workers 1` (its default of 4 leaves TCP_NODELAY off: ~40 ms per call, uvicorn#3149), mloop's
with `mloop serve`. Results print as they come and are saved under bench/results/; paste the
markdown into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Report,
    Row,
    clean,
    free_port,
    run_ours,
    run_peer,
    start_server,
)

WORK = Path(os.environ.get("BENCH_WORK", "/tmp/mloop-bench-tracking"))
MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}
FILTER = "metrics.m0 > 0.5 and params.p1 = '3'"
ORDER = ["metrics.m2 DESC"]

# -- the same workload, written for each library --------------------------------------------------

MLOOP_METRICS = """
import json, time, mloop
mloop.init({uri!r})
mloop.set_experiment("bench")
start = time.perf_counter()
with mloop.start_run():
    for i in range({n}):
        mloop.log_metric("loss", 1.0 / (i + 1), step=i)
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""

MLFLOW_METRICS = """
import json, time, mlflow
mlflow.set_tracking_uri({uri!r})
mlflow.set_experiment("bench")
start = time.perf_counter()
with mlflow.start_run():
    for i in range({n}):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""

MLOOP_RUNS = """
import json, random, time, mloop
mloop.init({uri!r})
mloop.set_experiment("runs")
rng = random.Random(0)
start = time.perf_counter()
for i in range({n}):
    with mloop.start_run(run_name=f"run-{{i}}"):
        mloop.log_params({{f"p{{j}}": (i * (j + 1)) % 7 for j in range(10)}})
        mloop.log_metrics({{f"m{{j}}": rng.random() for j in range(10)}})
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""

MLFLOW_RUNS = """
import json, random, time, mlflow
mlflow.set_tracking_uri({uri!r})
mlflow.set_experiment("runs")
rng = random.Random(0)
start = time.perf_counter()
for i in range({n}):
    with mlflow.start_run(run_name=f"run-{{i}}"):
        mlflow.log_params({{f"p{{j}}": (i * (j + 1)) % 7 for j in range(10)}})
        mlflow.log_metrics({{f"m{{j}}": rng.random() for j in range(10)}})
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""

SEARCH_TIMER = """
def median_ms(fn, repeat=9):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000
"""

MLOOP_SEARCH = (
    SEARCH_TIMER
    + """
import json, time, mloop
client = mloop.MloopClient({uri!r})
exp = client.get_experiment_by_name("runs").id  # resolved once, as on the MLflow side
top = client.search_runs([exp], {filter!r}, {order!r}, max_results=100)
everything = client.search_runs([exp], max_results={n})
print(json.dumps({{
    "top_ms": median_ms(lambda: client.search_runs([exp], {filter!r}, {order!r}, max_results=100)),
    "all_ms": median_ms(lambda: client.search_runs([exp], max_results={n})),
    "top_ids": [r.id for r in top], "all": len(everything),
}}))
"""
)

MLFLOW_SEARCH = (
    SEARCH_TIMER
    + """
import json, time, mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri({uri!r})
client = MlflowClient()
exp = client.get_experiment_by_name("runs").experiment_id
top = client.search_runs([exp], {filter!r}, order_by={order!r}, max_results=100)
everything = client.search_runs([exp], max_results={n})
print(json.dumps({{
    "top_ms": median_ms(
        lambda: client.search_runs([exp], {filter!r}, order_by={order!r}, max_results=100)
    ),
    "all_ms": median_ms(lambda: client.search_runs([exp], max_results={n})),
    "top_names": [r.info.run_name for r in top], "all": len(everything),
}}))
"""
)

MLOOP_BIG = """
import json, random, time, mloop
from mloop.core.ids import new_id
from mloop.tracking import CreateRun, LogBatch, MetricValue, UpdateRun
ws = mloop.Workspace.open({home!r}{db})
exp = ws.tracking.get_or_create_experiment("big")
rng = random.Random(0)
start = time.perf_counter()
for _ in range({n} // 1000):
    ops = []
    for i in range(1000):
        rid, ts = new_id(), int(time.time() * 1000)
        ops += [
            CreateRun(run_id=rid, experiment_id=exp.id, start_time=ts),
            LogBatch(run_id=rid,
                     params={{"model": rng.choice(["xgb", "rf", "lr"]),
                              **{{f"p{{j}}": str(rng.randint(0, 9)) for j in range(9)}}}},
                     metrics=[MetricValue(key="auc", value=rng.random(), step=0, timestamp=ts)]
                     + [MetricValue(key=f"m{{j}}", value=rng.random(), step=0, timestamp=ts)
                        for j in range(9)],
                     tags={{"team": rng.choice(["risk-a", "risk-b", "growth"])}}),
            UpdateRun(run_id=rid, status="FINISHED", end_time=ts),
        ]
    ws.tracking.apply(ops)
created = time.perf_counter() - start
if ws.db.engine.dialect.name == "postgresql":
    # what autovacuum does within a minute by default; this machine's server runs without it
    with ws.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")  # outside a transaction: a rollback would undo it
flt = "metrics.auc > 0.9 and params.model = 'xgb' and tags.team LIKE 'risk%'"
def once():
    return ws.tracking.search_runs([exp.id], flt, ["metrics.auc DESC"], max_results=100)
once()
times = []
for _ in range(7):
    s = time.perf_counter(); page = once(); times.append(time.perf_counter() - s)
times.sort()
print(json.dumps({{"created_s": created, "search_ms": times[3] * 1000, "found": len(page.items)}}))
"""

MLOOP_MEMORY = """
import json, time, mloop
mloop.init({uri!r})
mloop.set_experiment("memory")
start = time.perf_counter()
for r in range({runs}):
    with mloop.start_run():
        for i in range({per_run}):
            mloop.log_metric("x", float(i), step=i)
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""

MODEL_SETUP_MLFLOW = """
import json, mlflow, numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
mlflow.set_tracking_uri({uri!r})
X = np.random.default_rng(0).normal(size=(2000, 10)); y = (X[:, 0] > 0).astype(int)
with mlflow.start_run():
    info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y),
                                    name="model", registered_model_name="bench-model")
MlflowClient().set_registered_model_alias("bench-model", "champion", info.registered_model_version)
print(json.dumps({{"ok": True}}))
"""

MODEL_LOAD_MLFLOW = """
import json, time
start = time.perf_counter()
import mlflow, numpy as np
mlflow.set_tracking_uri({uri!r})
model = mlflow.pyfunc.load_model("models:/bench-model@champion")
model.predict(np.zeros((1, 10)))
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""

MODEL_SETUP_MLOOP = """
import json, mloop, numpy as np, polars as pl
ws = mloop.Workspace.open({home!r})
X = np.random.default_rng(0).normal(size=(2000, 10))
frame = pl.DataFrame({{f"x{{i}}": X[:, i] for i in range(10)}}).with_columns(
    y=pl.Series((X[:, 0] > 0).astype(int)))
ws.datasets.ingest(frame, name="bench-data")
ws.training.train("bench-data", "y", model="sklearn.linear_model.LogisticRegression",
                  register="bench-model")
print(json.dumps({{"ok": True}}))
"""

MODEL_LOAD_MLOOP = """
import json, time
start = time.perf_counter()
import mloop
ws = mloop.Workspace.open({home!r})
ws.predict("bench-model@champion", [{{f"x{{i}}": 0.0 for i in range(10)}}])
print(json.dumps({{"seconds": time.perf_counter() - start}}))
"""


def mloop_server(home: Path, name: str = "mloop") -> object:
    port = free_port()
    return start_server(
        name,
        [sys.executable, "-m", "mloop", "--workspace", str(home), "serve", "--port", str(port)],
        port,
        WORK / f"{name}.log",
        ready_path="/readyz",
    )


def mlflow_server(store: Path, name: str = "mlflow") -> object:
    from common import VENVS

    port = free_port()
    env = {**MLFLOW_ENV, "PATH": f"{VENVS / 'mlflow' / 'bin'}:{os.environ['PATH']}"}
    return start_server(
        name,
        [
            str(VENVS / "mlflow" / "bin" / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        port,
        WORK / f"{name}.log",
        env=env,
        ready_path="/health",
        timeout=180,
    )


def watch_memory(server: object, samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(0.25):
        samples.append(server.rss_mib())  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the harness")
    parser.add_argument(
        "--pg",
        default=os.environ.get("BENCH_PG_URL"),
        help="a PostgreSQL database URL for the 100k-run search (optional)",
    )
    parser.add_argument(
        "--only",
        default="local,server,model,big",
        help="comma-separated sections: local, server, model, big (default: all)",
    )
    args = parser.parse_args()
    sections = set(args.only.split(","))
    n_metrics = 2_000 if args.quick else 10_000
    n_runs = 200 if args.quick else 1_000
    n_big = 10_000 if args.quick else 100_000
    memory_runs, memory_per_run = (10, 10_000) if args.quick else (100, 10_000)

    clean(WORK)
    version = run_peer("mlflow", "import json, mlflow; print(json.dumps(mlflow.__version__))")
    report = Report("Experiment tracking", f"MLflow {version}")
    print(f"mloop vs MLflow {version}; work folder {WORK}", flush=True)

    if "local" in sections:
        # 1. 10k metric values, local store
        ours = run_ours(MLOOP_METRICS.format(uri=str(clean(WORK / "local-mloop")), n=n_metrics))
        peer = run_peer(
            "mlflow",
            MLFLOW_METRICS.format(
                uri=f"sqlite:///{clean(WORK / 'local-mlflow') / 'mlflow.db'}", n=n_metrics
            ),
            MLFLOW_ENV,
        )
        report.add(
            Row(
                f"{n_metrics:,} log_metric calls in one run, local store (fluent API)",
                ours["seconds"],
                peer["seconds"],
                target="≥ 50×",
            )
        )

    if "server" in sections:
        # 2. over HTTP
        mloop_srv = mloop_server(clean(WORK / "server-mloop"))
        mlflow_srv = mlflow_server(clean(WORK / "server-mlflow"))
        try:
            idle_ours, idle_peer = mloop_srv.rss_mib(), mlflow_srv.rss_mib()
            ours = run_ours(MLOOP_METRICS.format(uri=mloop_srv.url, n=n_metrics))
            peer = run_peer(
                "mlflow", MLFLOW_METRICS.format(uri=mlflow_srv.url, n=n_metrics), MLFLOW_ENV
            )
            report.add(
                Row(
                    f"{n_metrics:,} log_metric calls in one run, over HTTP",
                    ours["seconds"],
                    peer["seconds"],
                    target="≥ 100× (MLflow --workers 1)",
                )
            )

            ours = run_ours(MLOOP_RUNS.format(uri=mloop_srv.url, n=n_runs))
            peer = run_peer("mlflow", MLFLOW_RUNS.format(uri=mlflow_srv.url, n=n_runs), MLFLOW_ENV)
            report.add(
                Row(
                    f"{n_runs:,} runs × 10 params × 10 metrics, over HTTP",
                    ours["seconds"],
                    peer["seconds"],
                    target="≥ 20×",
                )
            )

            ours = run_ours(
                MLOOP_SEARCH.format(uri=mloop_srv.url, filter=FILTER, order=ORDER, n=n_runs)
            )
            peer = run_peer(
                "mlflow",
                MLFLOW_SEARCH.format(uri=mlflow_srv.url, filter=FILTER, order=ORDER, n=n_runs),
                MLFLOW_ENV,
            )
            report.add(
                Row(
                    f"filtered, ordered top-100 search over {n_runs:,} runs",
                    ours["top_ms"],
                    peer["top_ms"],
                    unit="ms",
                    target="≥ 10×",
                )
            )
            report.add(
                Row(
                    f"fetch all {n_runs:,} runs",
                    ours["all_ms"],
                    peer["all_ms"],
                    unit="ms",
                    target="≥ 10×",
                )
            )
            same = len(ours["top_ids"]) == len(peer["top_names"]) and ours["all"] == peer["all"]
            report.notes.append(
                f"Search results agree in size: top-100 {len(ours['top_ids'])} vs "
                f"{len(peer['top_names'])}, all {ours['all']} vs {peer['all']}"
                + ("" if same else " — MISMATCH")
            )

            # memory while logging 1M values
            samples: list[float] = []
            stop = threading.Event()
            watcher = threading.Thread(target=watch_memory, args=(mloop_srv, samples, stop))
            # a short warm-up first: the first batches load lazily imported code and fill the
            # allocator's arenas once; "flat" is about what happens after that
            run_ours(MLOOP_MEMORY.format(uri=mloop_srv.url, runs=2, per_run=memory_per_run))
            before = mloop_srv.rss_mib()
            watcher.start()
            run_ours(
                MLOOP_MEMORY.format(uri=mloop_srv.url, runs=memory_runs, per_run=memory_per_run)
            )
            stop.set()
            watcher.join()
            after = mloop_srv.rss_mib()
            total = memory_runs * memory_per_run
            peak = max(samples or [after])
            report.add(
                Row(
                    "mloop server memory, idle at start",
                    idle_ours,
                    idle_peer,
                    unit="MiB",
                    target="< 200 MiB",
                    note="MLflow: its whole process tree",
                )
            )
            report.add(
                Row(
                    f"mloop server memory while {total:,} values are logged (peak)",
                    peak,
                    None,
                    unit="MiB",
                    note=f"after a 20,000-value warm-up {before:.0f}, at the end {after:.0f}; "
                    f"growth {100 * (peak - before) / before:+.0f}% (target ±10%)",
                )
            )
        finally:
            mloop_srv.stop()
            mlflow_srv.stop()

    if "model" in sections:
        # 3. a model loaded by alias in a fresh process
        home = clean(WORK / "model-mloop")
        run_ours(MODEL_SETUP_MLOOP.format(home=str(home)))
        ours = run_ours(MODEL_LOAD_MLOOP.format(home=str(home)))
        mlflow_srv = mlflow_server(clean(WORK / "model-mlflow"), "mlflow-model")
        try:
            run_peer("mlflow", MODEL_SETUP_MLFLOW.format(uri=mlflow_srv.url), MLFLOW_ENV)
            peer = run_peer("mlflow", MODEL_LOAD_MLFLOW.format(uri=mlflow_srv.url), MLFLOW_ENV)
        finally:
            mlflow_srv.stop()
        report.add(
            Row(
                "load a model by alias and predict, fresh process",
                ours["seconds"],
                peer["seconds"],
                note="mloop: local workspace; MLflow: from its server",
            )
        )

    if "big" in sections:
        # 4. search at scale (mloop only)
        big = run_ours(MLOOP_BIG.format(home=str(clean(WORK / "big-sqlite")), db="", n=n_big))
        report.add(
            Row(
                f"filtered, ordered top-100 search over {n_big:,} runs (SQLite)",
                big["search_ms"],
                None,
                unit="ms",
                target="< 300 ms",
                note=f"{big['found']} found; creating them took {big['created_s']:.0f} s",
            )
        )
        if args.pg:
            big = run_ours(
                MLOOP_BIG.format(
                    home=str(clean(WORK / "big-pg")), db=f", database_url={args.pg!r}", n=n_big
                )
            )
            report.add(
                Row(
                    f"filtered, ordered top-100 search over {n_big:,} runs (PostgreSQL)",
                    big["search_ms"],
                    None,
                    unit="ms",
                    target="< 300 ms",
                    note=f"{big['found']} found; ANALYZE after loading (autovacuum is off "
                    "on this server; by default it analyzes within a minute)",
                )
            )

    report.notes.append(
        "Fluent API on both sides; each scenario in fresh processes and fresh stores; MLflow "
        "server with --workers 1 and a SQLite backend store, mloop server with its default "
        "SQLite workspace."
    )
    path = report.save("tracking")
    print(f"\nsaved {path}\n")
    print(report.markdown())


if __name__ == "__main__":
    main()
