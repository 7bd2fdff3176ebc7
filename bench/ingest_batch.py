"""Batch ingestion: files and an incremental SQL append, against the least work that could do
the same (Polars reading the file and writing one zstd Parquet file).

    python bench/ingest_batch.py            # 1M rows (~2 minutes on 2 cores)
    python bench/ingest_batch.py --quick    # 100k rows: checks the harness

``bench/ingest.py`` imports :func:`run_batch` for its batch section. One table (id, a time, an
amount, a city, an email, a quantity) of N rows is generated with a fixed seed into a CSV and a
Parquet file and a SQLite table. Each measurement runs in a fresh process, imports outside the
timed part: ingesting the CSV and the Parquet file as a version (read, check, hash, profile,
write the segment, commit), then reading the SQLite table by a cursor column (version 1: all
rows), inserting 10k rows and reading again — the new version stores only those rows, so the
store grows by one small segment. Peak memory (max RSS of the process) shows the file is not
held twice.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, Row, clean, run_ours

WORK = Path(os.environ.get("BENCH_WORK", "/tmp/mloop-bench-ingest-batch"))
SEED = 20261120

MAKE = """
import json, sqlite3
import numpy as np, polars as pl
n, work, seed = {rows}, {work!r}, {seed}
rng = np.random.default_rng(seed)
start = np.datetime64("2026-01-01T00:00:00")
def frame(lo, hi):
    k = hi - lo
    return pl.DataFrame({{
        "id": np.arange(lo, hi, dtype=np.int64),
        "updated_at": (start + np.arange(lo, hi).astype("timedelta64[s]")).astype("datetime64[us]"),
        "amount": rng.normal(100, 15, k).round(2),
        "city": np.array(["NY", "LA", "SF", "CHI", "BOS"])[rng.integers(0, 5, k)],
        "email": np.char.add(
            np.char.add("user", rng.integers(0, 10**6, k).astype(str)), "@example.com"),
        "qty": rng.integers(1, 20, k),
    }})
base = frame(0, n)
base.write_csv(f"{{work}}/data.csv")
base.write_parquet(f"{{work}}/data.parquet")
db = sqlite3.connect(f"{{work}}/source.db")
db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, updated_at TIMESTAMP, amount REAL, "
           "city TEXT, email TEXT, qty INTEGER)")
def insert(f):
    rows = f.with_columns(pl.col("updated_at").dt.strftime("%Y-%m-%d %H:%M:%S")).rows()
    db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.commit()
insert(base)
frame(n, n + {extra}).with_columns(pl.col("updated_at").dt.strftime("%Y-%m-%d %H:%M:%S")) \
    .write_parquet(f"{{work}}/extra.parquet")
print(json.dumps({{"csv_bytes": __import__("os").path.getsize(f"{{work}}/data.csv"),
                  "parquet_bytes": __import__("os").path.getsize(f"{{work}}/data.parquet")}}))
"""

OURS_FILE = """
import json, resource, time
from mloop.workspace import Workspace
import polars, pyarrow, pyarrow.compute, pyarrow.csv, pyarrow.json, pyarrow.parquet  # untimed
ws = Workspace.open({home!r})
ws.datasets.ingest([{{"warm": 1}}], name="warm-up")  # first-use costs outside the timing
t = time.perf_counter()
v = ws.datasets.ingest({path!r}, name="bench")
seconds = time.perf_counter() - t
print(json.dumps({{"seconds": seconds, "rows": v.row_count, "bytes": v.size_bytes,
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

BASELINE_FILE = """
import json, resource, time
import polars as pl
t = time.perf_counter()
frame = pl.read_csv({path!r}) if {path!r}.endswith(".csv") else pl.read_parquet({path!r})
frame.write_parquet({out!r}, compression="zstd")
seconds = time.perf_counter() - t
print(json.dumps({{"seconds": seconds,
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

OURS_SQL = """
import json, sqlite3, time
import polars as pl, pyarrow.compute, pyarrow.parquet, sqlalchemy  # imports outside the timing
from mloop.workspace import Workspace
ws = Workspace.open({home!r})
ws.datasets.ingest([{{"warm": 1}}], name="warm-up")  # first-use costs outside the timing
url = "sqlite:///{work}/source.db"
def store():
    return sum(p.stat().st_size for p in ws.artifacts.root.rglob("*") if p.is_file())
t = time.perf_counter()
v1 = ws.datasets.ingest_sql(url, name="events", table="events", cursor="updated_at", key="id")
first = time.perf_counter() - t
before = store()
db = sqlite3.connect("{work}/source.db")
db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
               pl.read_parquet("{work}/extra.parquet").rows())
db.commit()
t = time.perf_counter()
v2 = ws.datasets.ingest_sql(url, name="events", table="events", cursor="updated_at", key="id")
incremental = time.perf_counter() - t
added = store() - before
t = time.perf_counter()
v3 = ws.datasets.ingest_sql(url, name="events", table="events", cursor="updated_at", key="id")
nothing = time.perf_counter() - t
assert v3.id == v2.id and v2.row_count == v1.row_count + {extra}
print(json.dumps({{"first": first, "incremental": incremental, "nothing_new": nothing,
                  "bytes_added": added, "v1_bytes": v1.size_bytes,
                  "segments": [s["rows"] for s in ws.datasets.segments(v2)]}}))
"""


def run_batch(report: Report, rows: int, extra: int = 10_000) -> None:
    """Generate the data, run each measurement in a fresh process, add rows to ``report``."""
    clean(WORK)
    WORK.mkdir(parents=True, exist_ok=True)
    sizes = run_ours(MAKE.format(rows=rows, work=str(WORK), seed=SEED, extra=extra))
    report.notes.append(
        f"batch: {rows:,} rows × 6 columns; CSV {sizes['csv_bytes'] / 2**20:.0f} MiB, "
        f"Parquet {sizes['parquet_bytes'] / 2**20:.0f} MiB"
    )
    for fmt in ("csv", "parquet"):
        path = str(WORK / f"data.{fmt}")
        ours = run_ours(OURS_FILE.format(home=str(WORK / f"ws-{fmt}"), path=path))
        base = run_ours(BASELINE_FILE.format(path=path, out=str(WORK / f"baseline-{fmt}.parquet")))
        report.add(
            Row(
                f"ingest {rows:,}-row {fmt.upper()} as a version (s)",
                ours["seconds"],
                base["seconds"],
                note=f"peak RSS {ours['max_rss_mib']:.0f} MiB vs {base['max_rss_mib']:.0f} MiB; "
                f"version {ours['bytes'] / 2**20:.1f} MiB",
            )
        )
    sql = run_ours(OURS_SQL.format(home=str(WORK / "ws-sql"), work=str(WORK), extra=extra))
    report.add(Row(f"SQL cursor read, first run: {rows:,} rows (s)", sql["first"], None))
    report.add(
        Row(
            f"SQL incremental append: {extra:,} new rows onto {rows:,} (s)",
            sql["incremental"],
            None,
            note=f"store grew {sql['bytes_added'] / 1024:.0f} KiB (v1: "
            f"{sql['v1_bytes'] / 2**20:.1f} MiB); segments {sql['segments']}",
        )
    )
    report.add(Row("SQL incremental run with no new rows (s)", sql["nothing_new"], None))
    report.add(Row("bytes added by the incremental append", sql["bytes_added"], None, unit="B"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows")
    args = parser.parse_args()
    rows = 100_000 if args.quick else 1_000_000
    report = Report("Batch ingestion", "polars read + write_parquet")
    run_batch(report, rows)
    print(report.save("ingest-batch"))


if __name__ == "__main__":
    main()
