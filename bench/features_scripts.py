"""The scripts `bench/features.py` runs, each in a fresh process: mloop's (and the DuckDB and
sqlite3 baselines) with mloop's interpreter, Feast's (and the redis-py baseline) in Feast's venv.

Each script reads its parameters from the JSON in ``$FEATURES_BENCH`` and prints one JSON
document last. Times are medians after a warm-up where a run is cheap; peak memory is the
process's VmHWM after it was reset (``/proc/self/clear_refs``) just before the timed part, so it
covers the operation with its inputs loaded, imports included.
"""

PRELUDE = r'''
import gc, json, os, statistics, sys, time
P = json.loads(os.environ["FEATURES_BENCH"])
FEATURES = [f"f{i}" for i in range(P["n_features"])]

def status():
    found = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            found[line.split(":")[0]] = int(line.split()[1]) / 1024
    return found

def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

def timed(fn, repeat, budget):
    """Median of up to `repeat` runs; stops once a run took longer than `budget` seconds (the
    slow contenders run once at full size). Returns (median, times, last output)."""
    times, out = [], None
    for _ in range(repeat):
        gc.collect()
        cpu = time.process_time()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        CPU.append(time.process_time() - cpu)
        if times[-1] > budget:
            break
    return statistics.median(times), times, out

CPU = []  # CPU seconds (user + system, every thread) of each timed run

def latencies(call, keys, warmup):
    """Per-call latency in microseconds (p50, p99, mean) over `keys`, after `warmup` calls."""
    for k in keys[:warmup]:
        call(k)
    gc.collect()
    out = []
    clock = time.perf_counter_ns
    for k in keys[warmup:]:
        start = clock()
        call(k)
        out.append((clock() - start) / 1000)
    out.sort()
    return {"p50": out[len(out) // 2], "p99": out[min(len(out) - 1, int(len(out) * 0.99))],
            "mean": sum(out) / len(out), "calls": len(out)}

def random_keys(seed, n, size):
    import random
    rng = random.Random(seed)
    return [rng.randrange(n) for _ in range(size)]

def checksum_rows(rows):
    """Sum and count of the feature values in a list of dicts (the same keys on every side)."""
    total, found = 0.0, 0
    for row in rows:
        for f in FEATURES:
            v = row.get(f)
            if v is not None and v == v:
                total += v
                found += 1
    return {"sum": round(total, 6), "values": found}

def done(**kw):
    kw["peak_mib"] = status()["VmHWM"]
    print(json.dumps(kw))
'''

# -- the data, once, in mloop's interpreter ----------------------------------------------------

MAKE_DATA = r"""
import numpy as np, polars as pl
rng = np.random.default_rng(P["seed"])
n_rows, n_ent, nf = P["rows"], P["entities"], P["n_features"]
end_us, span_us, ttl_us = P["end_us"], P["days"] * 86400 * 10**6, P["ttl_days"] * 86400 * 10**6
start_us = end_us - span_us
ts = np.sort(start_us + rng.integers(0, span_us, n_rows))
source = pl.DataFrame({
    "driver_id": rng.integers(0, n_ent, n_rows, dtype=np.int64),
    "event_timestamp": pl.Series(ts).cast(pl.Datetime("us", "UTC")),
    **{f"f{i}": rng.random(n_rows) for i in range(nf)},
})
source.write_parquet(P["source"])
# entity rows: random drivers at random times in [start + ttl, end] (before start + ttl the
# window is cut by the start of the data and many more rows would have no value)
entities = pl.DataFrame({
    "driver_id": rng.integers(0, n_ent, P["entity_rows"], dtype=np.int64),
    "event_timestamp": pl.Series(
        start_us + ttl_us + rng.integers(0, span_us - ttl_us, P["entity_rows"])
    ).cast(pl.Datetime("us", "UTC")),
})
entities.write_parquet(P["entities_path"])
# the online floors' table: the latest row per entity
latest = source.sort("event_timestamp").group_by("driver_id").last()
latest.write_parquet(P["latest"])
done(source_mib=os.path.getsize(P["source"]) / 2**20, entities_with_rows=latest.height,
     start_us=start_us)
"""

# -- point-in-time training sets ---------------------------------------------------------------

# the workspace is made in a process of its own: the measured one holds no more than Feast's
# (which reads the Parquet file in place), not the source rows it wrote
MLOOP_PIT_SETUP = r"""
import pyarrow.parquet as pq
from mloop.workspace import Workspace
from mloop.features import Entity, FeatureView
ws = Workspace.open(P["folder"])
ws.datasets.write_version("driver_stats", pq.read_table(P["source"]))
driver = Entity("driver", join_keys={"driver_id": "integer"})
view = FeatureView("driver_stats", entities=[driver], source="driver_stats",
                   timestamp_column="event_timestamp", features=FEATURES,
                   ttl=f"{P['ttl_days']}d")
ws.features.apply([driver, view])
done()
"""

MLOOP_PIT = r"""
import pyarrow.parquet as pq, pyarrow.compute as pc
from mloop.workspace import Workspace
ws = Workspace.open(P["folder"])
entity_df = pq.read_table(P["entities_path"])
refs = [f"driver_stats:{f}" for f in FEATURES]
before = status()["VmRSS"]
reset_peak()
runs = iter(range(1000))
# a new dataset name each run: every run writes its result (the same content again under the
# same name would be recognised and not written twice)
# register=False: the join alone, what Feast's to_df() and the DuckDB query do; register=True
# (the default) also writes the rows as a dataset version with its lineage
seconds, times, ts = timed(
    lambda: ws.features.training_set(entity_df, refs, timestamp_column="event_timestamp",
                                     name=f"training_set_{next(runs)}",
                                     register=P["register"]),
    P["repeat"], P["budget"])
t = ts.table
done(seconds=seconds, times=times, cpu=CPU, rows=t.num_rows,
     with_values=t.num_rows - t.column("f0").null_count,
     f0_sum=round(pc.sum(t.column("f0")).as_py() or 0.0, 6), before_mib=before)
"""

DUCKDB_PIT = r"""
import duckdb, pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc
con = duckdb.connect()
entities = pq.read_table(P["entities_path"])
entities = entities.append_column("rid", pa.array(range(entities.num_rows), pa.int64()))
con.register("entities", entities)
feats = ", ".join(
    f"CASE WHEN s.event_timestamp >= e.event_timestamp - INTERVAL {P['ttl_days']} DAY "
    f"THEN s.{f} END AS {f}" for f in FEATURES)
sql = (f"SELECT e.driver_id, e.event_timestamp, {feats} FROM entities e "
       f"ASOF LEFT JOIN read_parquet('{P['source']}') s "
       "ON e.driver_id = s.driver_id AND e.event_timestamp >= s.event_timestamp")
ordered = sql + " ORDER BY e.rid"
def run(q):
    res = con.sql(q)
    return res.fetch_arrow_table() if hasattr(res, "fetch_arrow_table") else res.arrow()
before = status()["VmRSS"]
run(ordered)  # warm-up (the Parquet file's pages in the OS cache, like the others' first run)
reset_peak()
seconds, times, t = timed(lambda: run(ordered), P["repeat"], P["budget"])
peak = status()["VmHWM"]
unordered, u_times, _ = timed(lambda: run(sql), P["repeat"], P["budget"])
if hasattr(t, "read_all"):
    t = t.read_all()
done(seconds=seconds, times=times, cpu=CPU[:len(times)], unordered_seconds=unordered,
     rows=t.num_rows,
     with_values=t.num_rows - t.column("f0").null_count,
     f0_sum=round(pc.sum(t.column("f0")).as_py() or 0.0, 6), before_mib=before,
     ordered_peak_mib=peak)
"""

FEAST_COMMON = r"""
os.environ.setdefault("FEAST_USAGE", "False")
import logging, warnings
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
from datetime import datetime, timedelta, timezone
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.types import Float64, Int64

def feast_store(repo, offline="file", online="sqlite", apply=True):
    os.makedirs(repo, exist_ok=True)
    if online == "sqlite":
        online_cfg = {"type": "sqlite", "path": os.path.join(repo, "online.db")}
    else:
        online_cfg = {"type": "redis", "connection_string": P["feast_redis"]}
    config = RepoConfig(
        project="bench", provider="local", registry=os.path.join(repo, "registry.db"),
        offline_store={"type": offline}, online_store=online_cfg,
        entity_key_serialization_version=3, repo_path=repo,
    )
    store = FeatureStore(config=config)
    if apply:
        driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
        source = FileSource(name="driver_stats_source", path=P["source"],
                            timestamp_field="event_timestamp")
        view = FeatureView(
            name="driver_stats", entities=[driver], ttl=timedelta(days=P["ttl_days"]),
            schema=[Field(name="driver_id", dtype=Int64),
                    *[Field(name=f, dtype=Float64) for f in FEATURES]],
            source=source, online=True)
        store.apply([driver, view])
    return store

REFS = [f"driver_stats:{f}" for f in FEATURES]
"""

FEAST_PIT = r"""
import pandas as pd
store = feast_store(P["repo"], offline=P["offline"])
entity_df = pd.read_parquet(P["entities_path"])
entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
before = status()["VmRSS"]
reset_peak()
seconds, times, df = timed(
    lambda: store.get_historical_features(entity_df=entity_df, features=REFS).to_df(),
    P["repeat"], P["budget"])
done(seconds=seconds, times=times, cpu=CPU, rows=len(df),
     with_values=int(df["f0"].notna().sum()),
     f0_sum=round(float(df["f0"].sum()), 6), before_mib=before)
"""

# -- materialization -----------------------------------------------------------------------------

FEAST_MATERIALIZE = r"""
import contextlib, io
store = feast_store(P["repo"], offline="file", online=P["online"])
start = datetime.fromtimestamp(P["start_us"] / 1e6, timezone.utc) - timedelta(minutes=1)
end = datetime.fromtimestamp(P["end_us"] / 1e6, timezone.utc) + timedelta(minutes=1)
before = status()["VmRSS"]
reset_peak()
t0 = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    store.materialize(start, end)
seconds = time.perf_counter() - t0
peak = status()["VmHWM"]
try:  # how many entities it wrote (not timed)
    if P["online"] == "sqlite":
        import sqlite3
        with sqlite3.connect(os.path.join(P["repo"], "online.db")) as conn:
            entities = conn.execute(
                "SELECT COUNT(DISTINCT entity_key) FROM bench_driver_stats").fetchone()[0]
    else:
        import redis
        host, port, db = P["floor_redis"]  # Feast's db (its keys only, before the floor's)
        entities = redis.Redis(host=host, port=port, db=db).dbsize()
except Exception as exc:
    entities = repr(exc)[:200]
done(seconds=seconds, before_mib=before, entities=entities, op_peak_mib=peak)
"""

MLOOP_MATERIALIZE = r"""
from datetime import datetime, timedelta, timezone
import pyarrow.parquet as pq
from mloop.workspace import Workspace
from mloop.features import Entity, FeatureView
kw = {"online_store": P["mloop_redis"]} if P["online"] == "redis" else {}
ws = Workspace.open(P["folder"], **kw)
ws.datasets.write_version("driver_stats", pq.read_table(P["source"]))
driver = Entity("driver", join_keys={"driver_id": "integer"})
view = FeatureView("driver_stats", entities=[driver], source="driver_stats",
                   timestamp_column="event_timestamp", features=FEATURES,
                   ttl=f"{P['online_ttl_days']}d")
ws.features.apply([driver, view])
start = datetime.fromtimestamp(P["start_us"] / 1e6, timezone.utc) - timedelta(minutes=1)
end = datetime.fromtimestamp(P["end_us"] / 1e6, timezone.utc) + timedelta(minutes=1)
before = status()["VmRSS"]
reset_peak()
t0 = time.perf_counter()
out = ws.features.materialize(["driver_stats"], start=start, end=end)
seconds = time.perf_counter() - t0
done(seconds=seconds, before_mib=before, entities=sum(m.entities_written for m in out),
     rows_read=sum(m.rows_read for m in out))
"""

# -- online reads --------------------------------------------------------------------------------

FEAST_ONLINE = r"""
store = feast_store(P["repo"], offline="file", online=P["online"], apply=False)
def one(k):
    return store.get_online_features(features=REFS, entity_rows=[{"driver_id": k}]).to_dict()
def many(keys):
    return store.get_online_features(
        features=REFS, entity_rows=[{"driver_id": k} for k in keys]).to_dict()
n = P["entities"]
single = latencies(one, random_keys(1, n, P["warmup"] + P["single_calls"]), P["warmup"])
batches = [random_keys(100 + i, n, 100) for i in range(P["warmup"] // 10 + P["batch_calls"])]
batch = latencies(many, batches, P["warmup"] // 10)
out = many(list(range(100)))
rows = [{f: out[f][i] for f in FEATURES} for i in range(100)]
done(single=single, batch=batch, check=checksum_rows(rows))
"""

MLOOP_ONLINE = r"""
from mloop.workspace import Workspace
kw = {"online_store": P["mloop_redis"]} if P["online"] == "redis" else {}
ws = Workspace.open(P["folder"], **kw)
REFS = [f"driver_stats:{f}" for f in FEATURES]
def one(k):
    return ws.features.online([{"driver_id": k}], REFS).rows
def many(keys):
    return ws.features.online([{"driver_id": k} for k in keys], REFS).rows
n = P["entities"]
single = latencies(one, random_keys(1, n, P["warmup"] + P["single_calls"]), P["warmup"])
batches = [random_keys(100 + i, n, 100) for i in range(P["warmup"] // 10 + P["batch_calls"])]
batch = latencies(many, batches, P["warmup"] // 10)
rows = many(list(range(100)))
done(single=single, batch=batch, check=checksum_rows(rows), sample=repr(rows[0])[:300])
"""

SQLITE_FLOOR = r"""
import sqlite3, pyarrow.parquet as pq
latest = pq.read_table(P["latest"]).select(["driver_id", *FEATURES])
path = P["floor_db"]
if os.path.exists(path):
    os.remove(path)
conn = sqlite3.connect(path)
cols = ", ".join(f"{f} REAL" for f in FEATURES)
conn.execute(f"CREATE TABLE t (driver_id INTEGER PRIMARY KEY, {cols})")
conn.executemany(f"INSERT INTO t VALUES ({', '.join('?' * (1 + len(FEATURES)))})",
                 zip(*[latest.column(c).to_pylist() for c in latest.column_names]))
conn.commit()
conn.close()
conn = sqlite3.connect(path)
sel = ", ".join(FEATURES)
one_sql = f"SELECT {sel} FROM t WHERE driver_id = ?"
many_sql = f"SELECT driver_id, {sel} FROM t WHERE driver_id IN ({', '.join('?' * 100)})"
def one(k):
    row = conn.execute(one_sql, (k,)).fetchone()
    return [dict(zip(FEATURES, row))] if row else [{}]
def many(keys):
    got = {r[0]: dict(zip(FEATURES, r[1:])) for r in conn.execute(many_sql, keys)}
    return [got.get(k, {}) for k in keys]
n = P["entities"]
single = latencies(one, random_keys(1, n, P["warmup"] + P["single_calls"]), P["warmup"])
batches = [random_keys(100 + i, n, 100) for i in range(P["warmup"] // 10 + P["batch_calls"])]
batch = latencies(many, batches, P["warmup"] // 10)
done(single=single, batch=batch, check=checksum_rows(many(list(range(100)))))
"""

REDIS_FLOOR = r"""
import struct, pyarrow.parquet as pq, redis
latest = pq.read_table(P["latest"]).select(["driver_id", *FEATURES])
host, port, db = P["floor_redis"]
r = redis.Redis(host=host, port=port, db=db)
fmt = struct.Struct(f"<{len(FEATURES)}d")
pipe = r.pipeline(transaction=False)
for i, row in enumerate(zip(*[latest.column(c).to_pylist() for c in latest.column_names])):
    pipe.set(f"floor:driver:{row[0]}", fmt.pack(*row[1:]))
    if i % 5000 == 4999:
        pipe.execute()
pipe.execute()
def one(k):
    raw = r.get(f"floor:driver:{k}")
    return [dict(zip(FEATURES, fmt.unpack(raw)))] if raw else [{}]
def many(keys):
    raws = r.mget([f"floor:driver:{k}" for k in keys])
    return [dict(zip(FEATURES, fmt.unpack(raw))) if raw else {} for raw in raws]
n = P["entities"]
single = latencies(one, random_keys(1, n, P["warmup"] + P["single_calls"]), P["warmup"])
batches = [random_keys(100 + i, n, 100) for i in range(P["warmup"] // 10 + P["batch_calls"])]
batch = latencies(many, batches, P["warmup"] // 10)
done(single=single, batch=batch, check=checksum_rows(many(list(range(100)))))
"""

RAW_REDIS_FLOOR = r"""
# the same keys as REDIS_FLOOR (run it first), read over a plain socket speaking RESP: what
# a GET costs here without a client library's layers
import socket, struct
host, port, db = P["floor_redis"]
sock = socket.create_connection((host, port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
reader = sock.makefile("rb")
FEATURES = FEATURES
fmt = struct.Struct(f"<{len(FEATURES)}d")

def command(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    sock.sendall(b"".join(out))

def bulk():
    line = reader.readline()
    n = int(line[1:])
    if n < 0:
        return None
    return reader.read(n + 2)[:-2]

command(b"SELECT", str(db).encode())
assert reader.readline().startswith(b"+OK")
def one(k):
    command(b"GET", b"floor:driver:%d" % k)
    raw = bulk()
    return [dict(zip(FEATURES, fmt.unpack(raw)))] if raw else [{}]
def many(keys):
    command(b"MGET", *[b"floor:driver:%d" % k for k in keys])
    count = int(reader.readline()[1:])
    raws = [bulk() for _ in range(count)]
    return [dict(zip(FEATURES, fmt.unpack(raw))) if raw else {} for raw in raws]
n = P["entities"]
single = latencies(one, random_keys(1, n, P["warmup"] + P["single_calls"]), P["warmup"])
batches = [random_keys(100 + i, n, 100) for i in range(P["warmup"] // 10 + P["batch_calls"])]
batch = latencies(many, batches, P["warmup"] // 10)
done(single=single, batch=batch, check=checksum_rows(many(list(range(100)))))
"""
