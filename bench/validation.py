"""Data validation: mloop against Great Expectations and pandera, side by side in one run.

    bench/peers/setup.sh great_expectations pandera   # once: the peers in their own venvs
    python bench/validation.py                        # the full benchmark (~5 minutes on 2 cores)
    python bench/validation.py --quick                # 100k rows, fewer runs: checks the harness

One table of 1M rows × 25 columns (ints, floats, strings, a boolean, a timestamp; 1% nulls in
ten columns) is generated with a fixed seed into a Parquet file, and one suite is written for
every library: a type check on each of the 25 columns, not-null on 10, ranges on 10, allowed
values on 5 and a unique id — 51 checks. Each contender runs in a fresh process of its own
venv; imports and the Parquet read are outside the timed part, which is the median of several
runs after a warm-up. The same suite then runs on a copy with the ids shuffled, and on one
with 0.1% of the rows broken (so every tool also builds its failure report). Whole-process
times run each tool's script once,
imports and read included, as a user would (`mloop data validate data.parquet suite.yaml`).

Results print as they come and are saved under bench/results/; paste the markdown into
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, Row, clean, run_ours, run_peer

WORK = Path(os.environ.get("BENCH_WORK", "/tmp/mloop-bench-validation"))
SEED = 20240601

# -- the data and the suite, made once in mloop's interpreter ------------------------------------

MAKE_DATA = """
import json, sys
import numpy as np, polars as pl
n, seed, work = {rows}, {seed}, {work!r}
rng = np.random.default_rng(seed)
cols = {{"id": np.arange(n, dtype=np.int64)}}
for i in range(10):
    cols[f"f{{i}}"] = rng.normal(100 + 10 * i, 15, n)
for i in range(5):
    cols[f"i{{i}}"] = rng.integers(0, 1000 * (i + 1), n)
cats = [["NY", "LA", "SF", "CHI", "BOS"], ["web", "ios", "android"],
        ["a", "b", "c", "d", "e", "f", "g", "h"], ["EUR", "USD", "GBP", "JPY"],
        ["bronze", "silver", "gold"]]
for i, values in enumerate(cats):
    cols[f"c{{i}}"] = np.array(values)[rng.integers(0, len(values), n)]
for i in range(2):
    cols[f"s{{i}}"] = np.char.add(f"user{{i}}_", rng.integers(0, 10**7, n).astype(str))
cols["b0"] = rng.random(n) < 0.3
start = np.datetime64("2024-01-01T00:00:00")
cols["ts"] = (start + rng.integers(0, 86400 * 365, n).astype("timedelta64[s]")).astype(
    "datetime64[us]")
frame = pl.DataFrame(cols)
nullable = ["f5", "f6", "f7", "f8", "f9", "i3", "i4", "c3", "c4", "s1"]
frame = frame.with_columns(
    pl.when(pl.lit(rng.random(n) < 0.01)).then(None).otherwise(pl.col(c)).alias(c)
    for c in nullable
)
frame.write_parquet(f"{{work}}/clean.parquet")
# the same rows with the ids in random order (no fast path for increasing ids)
frame.with_columns(pl.Series("id", rng.permutation(n))).write_parquet(f"{{work}}/shuffled.parquet")
# 0.1% of the rows broken: out of range, an unknown city, a null, a repeated id
bad = rng.random(n) < 0.001
i = pl.int_range(pl.len())
dirty = frame.with_columns(
    pl.when(pl.lit(bad)).then(-1e6).otherwise(pl.col("f0")).alias("f0"),
    pl.when(pl.lit(np.roll(bad, 1))).then(pl.lit("XX")).otherwise(pl.col("c0")).alias("c0"),
    pl.when(pl.lit(np.roll(bad, 2))).then(None).otherwise(pl.col("f1")).alias("f1"),
    pl.when(i % 100_000 == 1).then(0).otherwise(pl.col("id")).alias("id"),
)
dirty.write_parquet(f"{{work}}/dirty.parquet")
spec = {{
    "types": {{c: str(t) for c, t in frame.schema.items()}},
    "not_null": ["id", "f0", "f1", "f2", "f3", "f4", "c0", "c1", "c2", "ts"],
    "ranges": {{**{{f"f{{i}}": [100 + 10 * i - 100, 100 + 10 * i + 100] for i in range(8)}},
               "i0": [0, 999], "i1": [0, 1999]}},
    "sets": {{f"c{{i}}": v for i, v in enumerate(cats)}},
    "unique": "id",
}}
json.dump(spec, open(f"{{work}}/spec.json", "w"))

from mloop.data import (BetweenCheck, ColumnTypeCheck, InSetCheck, NotNullCheck, Suite,
                        UniqueCheck)
from mloop.data.validation import polars_type
checks = [ColumnTypeCheck(column=c, expected=polars_type(t)) for c, t in frame.schema.items()]
checks += [NotNullCheck(column=c) for c in spec["not_null"]]
checks += [BetweenCheck(column=c, min=lo, max=hi) for c, (lo, hi) in spec["ranges"].items()]
checks += [InSetCheck(column=c, values=v) for c, v in spec["sets"].items()]
checks += [UniqueCheck(column=spec["unique"])]
open(f"{{work}}/suite.yaml", "w").write(Suite(name="bench", expectations=checks).to_yaml())
print(json.dumps({{"checks": len(checks), "frame_mib": frame.estimated_size() / 2**20,
                  "file_mib": __import__("os").path.getsize(f"{{work}}/clean.parquet") / 2**20}}))
"""

# -- what every timed script shares: time the validation, median of runs after a warm-up --------

TIMER = """
import json, statistics, time
def timed(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out
"""

MLOOP = (
    TIMER
    + """
from pathlib import Path
import polars as pl
from mloop.data import load_suite_file, validate_frame

def status():
    found = {{}}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found

base = status()["VmRSS"]
frame = pl.read_parquet({path!r})
suite = load_suite_file(Path({suite!r}))
loaded = status()["VmRSS"]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
before = status()["VmRSS"]
report = validate_frame(frame, suite)  # the first run: every allocation is new
peak = status()["VmHWM"]
seconds, report = timed(lambda: validate_frame(frame, suite), {repeat}, 1)
print(json.dumps({{"seconds": seconds, "checks": len(report.checks),
    "failed": report.failed_checks, "failing_rows": report.failing_rows,
    "frame_mib": frame.estimated_size() / 2**20, "base_mib": base, "loaded_mib": loaded,
    "before_mib": before, "peak_mib": peak}}))
"""
)

POLARS = (
    TIMER
    + """
import polars as pl
spec = json.load(open({spec!r}))
frame = pl.read_parquet({path!r})

def run():
    failed = sum(str(t) != spec["types"][c] for c, t in frame.schema.items())
    exprs = [pl.col(c).null_count().alias(f"n_{{c}}") for c in spec["not_null"]]
    exprs += [pl.col(c).is_between(lo, hi).not_().sum().alias(f"r_{{c}}")
              for c, (lo, hi) in spec["ranges"].items()]
    exprs += [pl.col(c).is_in(pl.Series(v).implode()).not_().sum().alias(f"s_{{c}}")
              for c, v in spec["sets"].items()]
    exprs += [(pl.col(spec["unique"]).n_unique() != pl.len()).alias("u")]
    row = frame.lazy().select(exprs).collect().row(0)
    return failed + sum(bool(v) for v in row)

seconds, failed = timed(run, {repeat}, 1)
print(json.dumps({{"seconds": seconds, "failed": failed}}))
"""
)

NUMPY_ARROW = (
    TIMER
    + """
import numpy as np
import pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
spec = json.load(open({spec!r}))
table = pq.read_table({path!r})
arrow_types = {{"Int64": {{pa.int64()}}, "Float64": {{pa.float64()}},
               "String": {{pa.string(), pa.large_string(), pa.string_view()}},
               "Boolean": {{pa.bool_()}},
               "Datetime(time_unit='us', time_zone=None)": {{pa.timestamp("us")}}}}

def run():
    failed = 0
    for field in table.schema:
        failed += field.type not in arrow_types[spec["types"][field.name]]
    for c in spec["not_null"]:
        failed += table.column(c).null_count > 0
    for c, (lo, hi) in spec["ranges"].items():
        column = table.column(c)
        values = column.to_numpy()  # nulls become NaN (floats) or the column is null-free
        bad = int(np.count_nonzero((values < lo) | (values > hi)))
        failed += bad > 0
    for c, v in spec["sets"].items():
        column = table.column(c)
        inside = pc.sum(pc.is_in(column, value_set=pa.array(v))).as_py() or 0
        failed += inside != len(column) - column.null_count
    ids = table.column(spec["unique"])
    failed += pc.count_distinct(ids).as_py() != len(ids) - ids.null_count
    return failed

seconds, failed = timed(run, {repeat}, 1)
print(json.dumps({{"seconds": seconds, "failed": failed}}))
"""
)

PANDERA_POLARS = (
    TIMER
    + """
import pandera.polars as pa
import polars as pl
spec = json.load(open({spec!r}))
frame = pl.read_parquet({path!r})
columns = {{}}
for c, dtype in frame.schema.items():
    checks = []
    if c in spec["ranges"]:
        checks.append(pa.Check.in_range(*spec["ranges"][c]))
    if c in spec["sets"]:
        checks.append(pa.Check.isin(spec["sets"][c]))
    columns[c] = pa.Column(dtype, checks=checks, nullable=c not in spec["not_null"],
                           unique=c == spec["unique"])
schema = pa.DataFrameSchema(columns)

def run():
    try:
        schema.validate(frame, lazy=True)
        return 0
    except pa.errors.SchemaErrors as exc:
        return len(exc.schema_errors)

seconds, failed = timed(run, {repeat}, {warmup})
print(json.dumps({{"seconds": seconds, "failed": failed}}))
"""
)

PANDERA_PANDAS = (
    TIMER
    + """
import pandas as pd
import pandera.pandas as pa
spec = json.load(open({spec!r}))
frame = pd.read_parquet({path!r})
columns = {{}}
for c, dtype in frame.dtypes.items():
    checks = []
    if c in spec["ranges"]:
        checks.append(pa.Check.in_range(*spec["ranges"][c]))
    if c in spec["sets"]:
        checks.append(pa.Check.isin(spec["sets"][c]))
    columns[c] = pa.Column(dtype, checks=checks, nullable=c not in spec["not_null"],
                           unique=c == spec["unique"])
schema = pa.DataFrameSchema(columns)

def run():
    try:
        schema.validate(frame, lazy=True)
        return 0
    except pa.errors.SchemaErrors as exc:
        return len(exc.schema_errors)

seconds, failed = timed(run, {repeat}, {warmup})
print(json.dumps({{"seconds": seconds, "failed": failed}}))
"""
)

GREAT_EXPECTATIONS = (
    TIMER
    + """
import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
spec = json.load(open({spec!r}))
frame = pd.read_parquet({path!r})
context = gx.get_context(mode="ephemeral")
try:  # no progress bars on stderr
    from great_expectations.data_context.types.base import ProgressBarsConfig
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
except Exception:
    pass
batch_definition = (
    context.data_sources.add_pandas("bench")
    .add_dataframe_asset("frame")
    .add_batch_definition_whole_dataframe("whole")
)
suite = context.suites.add(gx.ExpectationSuite(name="bench"))
for c, dtype in frame.dtypes.items():
    suite.add_expectation(gxe.ExpectColumnValuesToBeOfType(column=c, type_=str(dtype)))
for c in spec["not_null"]:
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=c))
for c, (lo, hi) in spec["ranges"].items():
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi))
for c, values in spec["sets"].items():
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=values))
suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=spec["unique"]))
batch = batch_definition.get_batch(batch_parameters={{"dataframe": frame}})

def run():
    result = batch.validate(suite)
    return result.statistics["unsuccessful_expectations"], result.statistics[
        "evaluated_expectations"]

seconds, (failed, checks) = timed(run, {repeat}, {warmup})
print(json.dumps({{"seconds": seconds, "failed": failed, "checks": checks}}))
"""
)


def timed_process(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, int]:
    """Wall time, peak RSS (MiB) and exit code of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    assert process.stderr is not None
    err = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if code not in (0, 1):
        raise RuntimeError(f"{argv[0]} failed ({code}):\n{err[-3000:]}")
    if code and err.strip():
        print(f"  {Path(argv[0]).name} exit {code}: {err.strip()[-500:]}", flush=True)
    return elapsed, usage.ru_maxrss / 1024, code


def median_process(argv: list[str], runs: int, cwd: Path) -> tuple[float, float, int]:
    results = sorted(timed_process(argv, cwd=cwd) for _ in range(runs))
    return results[len(results) // 2]


def peer_script(template: str, **values: Any) -> str:
    return template.format(**values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k rows, 3 runs")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per contender")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (3 if args.quick else 5)
    slow_repeat = max(1, min(repeat, 3))  # Great Expectations and pandas: seconds per run
    work = clean(WORK)
    made = run_ours(MAKE_DATA.format(rows=rows, seed=SEED, work=str(work)))
    suite, spec = str(work / "suite.yaml"), str(work / "spec.json")
    print(
        f"validation: {rows:,} rows × 25 columns, {made['checks']} checks; frame "
        f"{made['frame_mib']:.0f} MiB in memory, {made['file_mib']:.0f} MiB of Parquet",
        flush=True,
    )
    report = Report("Data validation", "peer")
    report.notes.append(
        f"{rows:,} rows × 25 columns (seed {SEED}), {made['checks']} checks: a type per "
        "column, not-null on 10, ranges on 10, allowed values on 5, a unique id. Timed: "
        f"validation only (imports and the Parquet read excluded), median of {repeat} runs "
        f"({slow_repeat} for Great Expectations and pandas) after a warm-up, each tool in a "
        "fresh process of its own venv."
    )
    mloop_bin = str(Path(sys.executable).parent / "mloop")
    results: dict[str, dict[str, Any]] = {}
    for case in ("clean", "shuffled", "dirty"):
        path = str(work / f"{case}.parquet")
        print(f"\n[{case}]", flush=True)
        ours = run_ours(MLOOP.format(path=path, suite=suite, repeat=repeat))
        polars = run_ours(POLARS.format(path=path, spec=spec, repeat=repeat))
        baseline = run_ours(NUMPY_ARROW.format(path=path, spec=spec, repeat=repeat))
        pandera_pl = run_peer(
            "pandera", PANDERA_POLARS.format(path=path, spec=spec, repeat=repeat, warmup=1)
        )
        pandera_pd = run_peer(
            "pandera", PANDERA_PANDAS.format(path=path, spec=spec, repeat=slow_repeat, warmup=1)
        )
        gx = run_peer(
            "great_expectations",
            GREAT_EXPECTATIONS.format(path=path, spec=spec, repeat=slow_repeat, warmup=1),
        )
        results[case] = {
            "mloop": ours,
            "polars": polars,
            "numpy_arrow": baseline,
            "pandera_polars": pandera_pl,
            "pandera_pandas": pandera_pd,
            "great_expectations": gx,
        }
        print(
            f"  failed checks — mloop {ours['failed']}, GE {gx['failed']} (of {gx['checks']}), "
            f"pandera-polars {pandera_pl['failed']}, pandera-pandas {pandera_pd['failed']}, "
            f"polars {polars['failed']}, numpy+arrow {baseline['failed']}",
            flush=True,
        )
        label = {
            "clean": "clean data",
            "shuffled": "clean, ids shuffled",
            "dirty": "0.1% of rows broken",
        }[case]
        t = ours["seconds"]
        report.add(
            Row(
                f"validate, {label}: vs Great Expectations 1.24 (pandas)",
                t,
                gx["seconds"],
                target="≥ 10×" if case == "clean" else "",
            )
        )
        report.add(
            Row(
                f"validate, {label}: vs pandera 0.35 on Polars",
                t,
                pandera_pl["seconds"],
                target="≥ 2×" if case == "clean" else "",
            )
        )
        report.add(Row(f"validate, {label}: vs pandera 0.35 on pandas", t, pandera_pd["seconds"]))
        report.add(Row(f"validate, {label}: vs a hand-written Polars pass", t, polars["seconds"]))
        report.add(
            Row(
                f"validate, {label}: vs NumPy + PyArrow baseline",
                t,
                baseline["seconds"],
                target="ratio ≥ 0.33 (within 3×)" if case == "clean" else "",
            )
        )
    # whole processes, as a user runs them: imports, read, suite, validation, report
    print("\n[whole process]", flush=True)
    clean_path = str(work / "clean.parquet")
    runs = 1 if args.quick else 3
    for key in [k for k in os.environ if k.startswith("MLOOP_")]:
        del os.environ[key]  # a data folder with no workspace, as a user validating files
    ours_wall, ours_rss, code = median_process(
        [mloop_bin, "data", "validate", clean_path, suite, "--json"], runs, cwd=work
    )
    if code != 0:
        sys.exit("mloop data validate failed the clean data: run it by hand to see why")
    gx_wall = whole_peer(
        "great_expectations", GREAT_EXPECTATIONS, clean_path, spec, runs, work / "gx_whole.py"
    )
    pandera_wall = whole_peer(
        "pandera", PANDERA_POLARS, clean_path, spec, runs, work / "pandera_whole.py"
    )
    report.add(
        Row(
            "whole process: mloop data validate vs Great Expectations script",
            ours_wall,
            gx_wall,
            target="≥ 3×",
        )
    )
    report.add(
        Row(
            "whole process: mloop data validate vs pandera-on-Polars script",
            ours_wall,
            pandera_wall,
        )
    )
    ours = results["clean"]["mloop"]
    frame = ours["frame_mib"]
    working = ours["peak_mib"] - ours["before_mib"]
    report.add(
        Row(
            "memory: validation's own peak (above the loaded frame) ÷ frame size",
            working / frame,
            None,
            unit="×",
            target="peak ≤ 2× frame",
        )
    )
    report.add(
        Row(
            "memory: peak RSS with the frame loaded, over the bare interpreter ÷ frame",
            (ours["peak_mib"] - ours["base_mib"]) / frame,
            None,
            unit="×",
        )
    )
    report.add(Row("memory: mloop data validate process peak RSS (MiB)", ours_rss, None, "MiB"))
    report.notes.append(
        f"Frame {frame:.0f} MiB (Polars estimated_size). In the validating process: bare "
        f"interpreter + libraries {ours['base_mib']:.0f} MiB, {ours['loaded_mib']:.0f} MiB with "
        f"the frame read (Polars memory-maps the Parquet file; its pages count in RSS), peak "
        f"{ours['peak_mib']:.0f} MiB while validating. The whole `mloop data validate` process "
        f"peaks at {ours_rss:.0f} MiB."
    )
    report.notes.append(
        "Great Expectations: ephemeral context, pandas datasource, whole-dataframe batch, "
        "default result format (SUMMARY); its type check compares pandas dtypes. pandera: "
        "DataFrameSchema with lazy=True (every failure collected). The hand-written Polars pass "
        "is one select of the same checks without a report; NumPy + PyArrow is per-column "
        "kernels (null_count, NumPy comparisons, pyarrow.compute is_in and count_distinct)."
    )
    report.notes.append(
        "The ids are increasing in `clean` and `dirty`; mloop proves a strictly monotonic "
        "integer column unique from its differences (no hashing), so `clean, ids shuffled` "
        "shows the general path (a distinct count)."
    )
    report.notes.append(
        f"Whole process: median of {runs} runs of `mloop data validate clean.parquet "
        "suite.yaml --json` (no workspace is opened: a file against a suite file) against the "
        "median of as many runs of each peer's script (import, read, build the suite, validate "
        "once)."
    )
    (work / "results.json").write_text(json.dumps(results, indent=2))
    saved = report.save("validation")
    print(f"\nsaved {saved}")


def whole_peer(peer: str, template: str, path: str, spec: str, runs: int, script: Path) -> float:
    from common import VENVS, peer_python

    code = template.format(path=path, spec=spec, repeat=1, warmup=0)
    script.write_text(code)
    env = {"PATH": f"{VENVS / peer / 'bin'}:{os.environ.get('PATH', '')}"}
    times = sorted(
        timed_process([str(peer_python(peer)), str(script)], env=env)[0] for _ in range(runs)
    )
    return times[len(times) // 2]


if __name__ == "__main__":
    main()
