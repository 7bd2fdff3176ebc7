"""Drift: mloop's data-drift report against Evidently's DataDriftPreset and a hand-written
NumPy/SciPy pass, side by side in one run (issue 8); and the cost of updating a window's
summaries.

    python bench/drift.py              # 1M + 1M rows, each contender once (~5-10 minutes)
    python bench/drift.py --rows 100000 --only mloop,numpy   # quicker
    python bench/drift.py --rounds 2   # each contender twice, the best wall kept

Evidently runs in its own venv (``bench/peers/setup.sh evidently``). Results print as they
come and are saved under bench/results/ (``drift-*.md`` and ``.json``).

**The data.** Reference and current, ``--rows`` (1,000,000) rows each, 20 numeric columns
(normal, log-normal, uniform, integer counts) and 5 categorical (4-12 categories, skewed
shares), seeded; in the current data 7 columns are shifted — 5 numeric (location by 0.15-0.5
standard deviations, or scale by 1.3-1.5) and 2 categorical (shares moved) — and the other 18
are fresh samples of the same distributions. Two Parquet files every contender reads.

**The contenders**, each in a fresh process, the Parquet read beforehand (not timed), the wall
time of the report alone and the process's peak RSS (``ru_maxrss``: the data included, in each
one's own frame library):

- ``evidently``: ``Report([DataDriftPreset()]).run(current, reference)`` on pandas frames with a
  ``DataDefinition`` naming the numeric and categorical columns; the drifted columns read from
  its per-column drift scores and their thresholds.
- ``numpy``: a hand-written pass with the same rules: ``scipy.stats.wasserstein_distance`` ÷
  the reference's std for numbers, ``scipy.spatial.distance.jensenshannon`` (base 2) of the
  category shares, drift at ≥ 0.1.
- ``mloop``: ``mloop.monitoring.compare_frames(pl.scan_parquet(reference),
  pl.scan_parquet(current))``: profile the reference, summarise the current data over its
  edges, compare — reading one column of each file at a time, inside the timing (its peak
  memory is its working set, not the data).
- ``mloop-frames``: the same on both Polars frames read beforehand, like the others.

**Window update**: a profile of the reference, then ``Summary.update`` with 10,000 new rows
(of the 25 columns): the median of 50 updates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, Row, clean, run_ours, run_peer

WORK = Path("/tmp/mloop-bench-drift")
SEED = 20261124
SHIFTED = ["n0", "n3", "n7", "n11", "n16", "c1", "c3"]

GENERATE = """
import json, sys
import numpy as np, polars as pl
args = json.loads(sys.argv[1])
rows, seed, shifted = args["rows"], args["seed"], set(args["shifted"])

def make(rng, shift):
    cols = {}
    for i in range(20):
        kind = i % 4
        if kind == 0:
            x = rng.normal(50, 10, rows)
        elif kind == 1:
            x = rng.lognormal(1, 0.6, rows)
        elif kind == 2:
            x = rng.uniform(-5, 5, rows)
        else:
            x = rng.poisson(6, rows).astype(np.float64)
        name = f"n{i}"
        if shift and name in shifted:
            # location by 0.15-0.5 std, or scale by 1.3-1.5
            if i % 2 == 0:
                x = x + (0.15 + 0.35 * (i % 3) / 2) * x.std()
            else:
                x = x.mean() + (x - x.mean()) * (1.3 + 0.2 * (i % 2))
        cols[name] = x
    for j in range(5):
        k = 4 + 2 * j
        shares = np.geomspace(1, 0.1, k)
        if shift and f"c{j}" in shifted:
            shares = shares[::-1].copy()
        shares = shares / shares.sum()
        cols[f"c{j}"] = np.array([f"cat{j}_{v}" for v in range(k)])[rng.choice(k, rows, p=shares)]
    return pl.DataFrame(cols)

make(np.random.default_rng(seed), False).write_parquet(args["reference"])
make(np.random.default_rng(seed + 1), True).write_parquet(args["current"])
print(json.dumps({"ok": True}))
"""

MEASURE = """
import json, resource, sys, time
args = json.loads(sys.argv[1])
def done(drifted, wall, extra=None):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"drifted": sorted(drifted), "wall": wall, "peak_mib": peak, **(extra or {})}))
"""

EVIDENTLY = (
    MEASURE
    + """
import warnings; warnings.filterwarnings("ignore")
import pandas as pd
from evidently import Dataset, DataDefinition, Report
from evidently.presets import DataDriftPreset
reference = pd.read_parquet(args["reference"])
current = pd.read_parquet(args["current"])
numeric = [c for c in reference.columns if c.startswith("n")]
categorical = [c for c in reference.columns if c.startswith("c")]
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
started = time.perf_counter()
ref = Dataset.from_pandas(reference, data_definition=definition)
cur = Dataset.from_pandas(current, data_definition=definition)
snapshot = Report([DataDriftPreset()]).run(cur, ref)
result = snapshot.dict()
wall = time.perf_counter() - started
drifted, scores = [], {}
for metric in result["metrics"]:
    config = metric.get("config", {})
    if config.get("type", "").endswith("ValueDrift"):
        column, value = config["column"], metric["value"]
        method, threshold = config.get("method"), config.get("threshold")
        scores[column] = [method, value, threshold]
        is_test = method is not None and ("p_value" in method or "test" in method)
        if (value < threshold) if is_test else (value >= threshold):
            drifted.append(column)
done(drifted, wall, {"scores": scores})
"""
)

NUMPY = (
    MEASURE
    + """
import numpy as np, pandas as pd
from scipy.stats import wasserstein_distance
from scipy.spatial.distance import jensenshannon
reference = pd.read_parquet(args["reference"])
current = pd.read_parquet(args["current"])
started = time.perf_counter()
drifted = []
for name in reference.columns:
    ref, cur = reference[name], current[name]
    if name.startswith("n"):
        r, c = ref.to_numpy(np.float64), cur.to_numpy(np.float64)
        score = wasserstein_distance(r, c) / np.std(r)
    else:
        counts = pd.concat([ref.value_counts(), cur.value_counts()], axis=1).fillna(0)
        score = jensenshannon(counts.iloc[:, 0], counts.iloc[:, 1], base=2)
    if score >= 0.1:
        drifted.append(name)
done(drifted, time.perf_counter() - started)
"""
)

MLOOP = (
    MEASURE
    + """
import polars as pl
from mloop.monitoring import compare_frames
if args.get("frames"):  # both frames in memory, read beforehand like the others'
    reference = pl.read_parquet(args["reference"])
    current = pl.read_parquet(args["current"])
else:  # the Parquet files scanned: a column of each at a time, read inside the timing
    reference = pl.scan_parquet(args["reference"])
    current = pl.scan_parquet(args["current"])
started = time.perf_counter()
report = compare_frames(reference, current)
wall = time.perf_counter() - started
done(report.drifted_columns, wall, {
    "scores": {c.column: [c.method, c.statistic, c.threshold] for c in report.columns}})
"""
)

UPDATE = """
import json, sys, time
import polars as pl
from mloop.monitoring import Profile
args = json.loads(sys.argv[1])
reference = pl.read_parquet(args["reference"])
current = pl.read_parquet(args["current"]).head(200_000)
profile = Profile.from_frame(reference)
window = profile.window()
batches = [current.slice(i * 10_000, 10_000) for i in range(20)]
window.update(batches[0])  # warm-up: the first call imports what it needs
times = []
for i in range(50):
    started = time.perf_counter()
    window.update(batches[i % 20])
    times.append(time.perf_counter() - started)
times.sort()
print(json.dumps({"median_ms": times[len(times) // 2] * 1000, "p90_ms": times[44] * 1000}))
"""


def _with_args(code: str, args: dict[str, Any]) -> str:
    return f"import sys; sys.argv[1:] = [{json.dumps(json.dumps(args))}]\n" + code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default="evidently,numpy,mloop,mloop-frames,update")
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = clean(WORK)
    files = {"reference": str(work / "reference.parquet"), "current": str(work / "current.parquet")}
    run_ours(_with_args(GENERATE, {"rows": args.rows, "seed": SEED, "shifted": SHIFTED, **files}))
    print(f"{args.rows:,} + {args.rows:,} rows, 25 columns, shifted {SHIFTED}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    contenders = {
        "evidently": lambda: run_peer("evidently", _with_args(EVIDENTLY, files)),
        "numpy": lambda: run_ours(_with_args(NUMPY, files)),
        "mloop": lambda: run_ours(_with_args(MLOOP, files)),
        "mloop-frames": lambda: run_ours(_with_args(MLOOP, {**files, "frames": True})),
    }
    for _ in range(args.rounds):
        for name, run in contenders.items():
            if name not in only:
                continue
            try:
                out = run()
            except Exception as exc:  # a failed contender is reported, the run goes on
                print(f"  {name}: FAILED {str(exc)[-600:]}", flush=True)
                continue
            exact = sorted(out["drifted"]) == sorted(SHIFTED)
            print(
                f"  {name:<10} {out['wall']:8.2f} s  peak {out['peak_mib']:8.0f} MiB  "
                f"drifted {out['drifted']} {'(exactly the shifted)' if exact else '(NOT exact)'}",
                flush=True,
            )
            if name not in results or out["wall"] < results[name]["wall"]:
                results[name] = out

    report = Report("Drift: data-drift report vs Evidently's DataDriftPreset", "Evidently")
    ours = results.get("mloop")
    evidently = results.get("evidently")
    numpy = results.get("numpy")
    frames = results.get("mloop-frames")
    if frames:
        report.notes.append(
            f"mloop on both frames in memory (read beforehand, like the others): "
            f"{frames['wall']:.2f} s, peak {frames['peak_mib']:.0f} MiB."
        )
    if ours:
        report.add(
            Row(
                f"full data-drift report, {args.rows:,} + {args.rows:,} rows × 25 columns",
                ours["wall"],
                evidently["wall"] if evidently else None,
                target="≥ 15× faster",
            )
        )
        report.add(
            Row(
                "peak memory of the process (data included)",
                ours["peak_mib"],
                evidently["peak_mib"] if evidently else None,
                unit="MiB",
                target="≤ 1/4 of Evidently's",
            )
        )
        if numpy:
            report.notes.append(
                f"hand-written NumPy/SciPy pass: {numpy['wall']:.2f} s, peak "
                f"{numpy['peak_mib']:.0f} MiB; mloop takes {ours['wall'] / numpy['wall']:.2f}× "
                "its time (target ≤ 1.5×)."
            )
    for name, out in results.items():
        verdict = (
            "exactly the 7 shifted columns"
            if sorted(out["drifted"]) == sorted(SHIFTED)
            else f"NOT exactly the shifted {SHIFTED}"
        )
        report.notes.append(f"{name} flagged {', '.join(out['drifted']) or 'nothing'}: {verdict}.")
    if "update" in only:
        update = run_ours(_with_args(UPDATE, files))
        report.add(
            Row(
                "update a window's summaries with 10,000 rows (median of 50)",
                update["median_ms"],
                None,
                unit="ms",
                target="≤ 5 ms",
            )
        )
        report.notes.append(f"window update p90: {update['p90_ms']:.2f} ms.")
    scores = {n: r.get("scores") for n, r in results.items() if r.get("scores")}
    if scores:
        report.notes.append("per-column scores (method, score, threshold): " + json.dumps(scores))
    print(report.markdown())
    print(f"saved {report.save('drift')}")


if __name__ == "__main__":
    main()
