"""ONNX export: predict latency of the ONNX Runtime export against scikit-learn, in one run.

    python bench/onnx.py                 # ~1-2 minutes on 2 cores
    python bench/onnx.py --small         # 10k training rows, fewer calls: the harness

A HistGradientBoostingClassifier (100 iterations, no early stopping) on 20 numeric features,
trained on 50,000 rows generated with a fixed seed, through mloop's ``build_pipeline``
(median imputation and scaling, then the model), exported with ``mloop.models.export_onnx``.

1. One row per call, p50 and p99 over many calls after a warm-up, on held-out rows taken in
   turn: scikit-learn ``pipeline.predict_proba`` on a 1-row DataFrame (the peer); mloop's
   ``OnnxPredictor.predict_rows`` on one JSON-like dict (validation, feeds, ONNX Runtime, labels
   and ``{class: probability}`` — the whole path a server calls); mloop's ``LoadedModel.
   predict_rows`` (today's native path, for scale); the floor, ``InferenceSession.run`` on
   prepared feeds.
2. A batch of 1,000 rows per call (median of repeats): scikit-learn ``predict_proba`` on the
   DataFrame, ``OnnxPredictor.predict_frame`` on the same DataFrame, and the raw session.

scikit-learn predicts with its OpenMP threads (2 here); the ONNX predictor uses one thread, as
a server worker would. The batch is also timed with scikit-learn held to one thread
(threadpoolctl). Agreement on 10,000 held-out rows (and the quantized model's) is reported
beside. Results print as they come and are saved under bench/results/ (``onnx-*.md``, ``.json``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import Report, Row  # noqa: E402 - the path is set just above

# this file is bench/onnx.py: with its folder on sys.path, `import onnx` would find it instead of
# the onnx package. `common` is imported; the folder goes.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

SEED = 20261124
FEATURES = 20


def _data(rows: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(rows, FEATURES))
    weights = rng.normal(size=FEATURES)
    logit = X @ weights / np.sqrt(FEATURES) + 0.5 * np.sin(3 * X[:, 0]) * X[:, 1]
    y = np.where(logit + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    X[rng.random(X.shape) < 0.02] = np.nan  # a few nulls, imputed inside the pipeline
    return X, y


def percentiles_us(fn: Callable[[int], Any], calls: int, warmup: int) -> tuple[float, float]:
    """p50 and p99 of ``fn(i)`` in microseconds, one timing per call."""
    for i in range(warmup):
        fn(i)
    times = []
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        fn(i)
        times.append(clock() - start)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="10k rows, fewer calls")
    args = parser.parse_args()
    train_rows = 10_000 if args.small else 50_000
    calls = 2_000 if args.small else 20_000
    repeat = 10 if args.small else 50

    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    from mloop.core.schema import Column
    from mloop.models import (
        FLAVOR_SKLEARN,
        LoadedModel,
        ModelMeta,
        OnnxPredictor,
        Signature,
        captured_dependencies,
        export_onnx,
        onnx_files,
    )
    from mloop.models.signature import frame_from_columns
    from mloop.training import build_pipeline

    load_before = os.getloadavg()
    report = Report("ONNX export (bench/onnx.py)", "scikit-learn")
    columns = [Column(name=f"f{i}", type="float") for i in range(FEATURES)]
    signature = Signature(
        inputs=columns,
        target="y",
        target_type="string",
        task="classification",
        classes=["no", "yes"],
    )
    X, y = _data(train_rows + 10_000)
    names = [c.name for c in columns]
    frame = frame_from_columns({n: X[:, i] for i, n in enumerate(names)}, signature)
    train, holdout = frame[:train_rows], frame[train_rows:].reset_index(drop=True)
    y_train, y_holdout = y[:train_rows], y[train_rows:]

    start = time.perf_counter()
    estimator = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=0)
    pipeline = build_pipeline(estimator, columns).fit(train, y_train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    model = export_onnx(pipeline, signature)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    files, checks = onnx_files(pipeline, signature, holdout, y_holdout)
    package_s = time.perf_counter() - start
    predictor = OnnxPredictor(model, signature)
    native = LoadedModel(
        ModelMeta(
            flavor=FLAVOR_SKLEARN,
            signature=signature,
            estimator="sklearn.ensemble.HistGradientBoostingClassifier",
            dependencies=captured_dependencies(),
        ),
        pipeline,
    )
    print(
        f"fit {fit_s:.1f}s, export {export_s:.2f}s, onnx_files {package_s:.2f}s; "
        f"ONNX {len(model) / 1024:.0f} KiB; max |Δp| {checks['onnx_max_abs_diff']:.2e}",
        flush=True,
    )

    # 1. one row per call, rows taken in turn from the held-out set
    pool = 1000
    one_frames = [holdout.iloc[[i]] for i in range(pool)]
    one_rows = [
        {
            n: (None if np.isnan(v) else float(v))
            for n, v in zip(names, holdout.iloc[i], strict=True)
        }
        for i in range(pool)
    ]
    one_feeds = [predictor.feeds_from_frame(f) for f in one_frames]
    session, outputs = predictor.session, [o.name for o in predictor.session.get_outputs()]
    warmup = max(200, calls // 20)

    # the same answer on the rows timed
    for i in range(0, pool, 97):
        ours = predictor.predict_rows([one_rows[i]])[1]
        theirs = pipeline.predict_proba(one_frames[i])[0]
        assert ours is not None
        assert abs(ours[0]["yes"] - theirs[1]) < 1e-5, (ours, theirs)

    # each takes hundreds of µs (and far more when OpenMP's threads wait for a busy core)
    sk_calls = calls // 20
    sk_p50, sk_p99 = percentiles_us(
        lambda i: pipeline.predict_proba(one_frames[i % pool]), sk_calls, warmup // 20
    )
    with threadpool_limits(limits=1):
        sk1_p50, sk1_p99 = percentiles_us(
            lambda i: pipeline.predict_proba(one_frames[i % pool]), sk_calls, warmup // 20
        )
    ox_p50, ox_p99 = percentiles_us(
        lambda i: predictor.predict_rows([one_rows[i % pool]]), calls, warmup
    )
    raw_p50, raw_p99 = percentiles_us(
        lambda i: session.run(outputs, one_feeds[i % pool]), calls, warmup
    )
    nat_p50, nat_p99 = percentiles_us(
        lambda i: native.predict_rows([one_rows[i % pool]]), calls // 20, warmup // 20
    )
    # the two in turn, call by call: on a shared machine both see the same load
    interleaved: tuple[list[int], list[int]] = ([], [])
    clock = time.perf_counter_ns
    with threadpool_limits(limits=1):
        for i in range(sk_calls * 2):
            t0 = clock()
            pipeline.predict_proba(one_frames[i % pool])
            t1 = clock()
            predictor.predict_rows([one_rows[i % pool]])
            t2 = clock()
            if i >= sk_calls // 5:
                interleaved[0].append(t1 - t0)
                interleaved[1].append(t2 - t1)
    il_sk, il_ox = sorted(interleaved[0]), sorted(interleaved[1])
    target = "≥ 5× lower"
    report.add(
        Row("1 row: OnnxPredictor.predict_rows vs predict_proba, p50", ox_p50, sk_p50, "µs", target)
    )
    report.add(
        Row("1 row: OnnxPredictor.predict_rows vs predict_proba, p99", ox_p99, sk_p99, "µs", target)
    )
    report.add(
        Row("1 row: OnnxPredictor vs predict_proba on 1 thread, p50", ox_p50, sk1_p50, "µs", target)
    )
    report.add(
        Row("1 row: OnnxPredictor vs predict_proba on 1 thread, p99", ox_p99, sk1_p99, "µs", target)
    )
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        ours, theirs = il_ox[int(len(il_ox) * q)] / 1000, il_sk[int(len(il_sk) * q)] / 1000
        what = f"1 row, in turn call by call: OnnxPredictor vs predict_proba 1 thread, {label}"
        report.add(Row(what, ours, theirs, "µs", target))
    report.add(
        Row("1 row: raw InferenceSession.run (floor) vs predict_proba, p50", raw_p50, sk_p50, "µs")
    )
    report.add(
        Row("1 row: raw InferenceSession.run (floor) vs predict_proba, p99", raw_p99, sk_p99, "µs")
    )
    report.add(
        Row(
            "1 row: OnnxPredictor vs mloop LoadedModel.predict_rows (native), p50",
            ox_p50,
            nat_p50,
            "µs",
        )
    )
    report.add(
        Row(
            "1 row: OnnxPredictor vs mloop LoadedModel.predict_rows (native), p99",
            ox_p99,
            nat_p99,
            "µs",
        )
    )

    # 2. a batch of 1,000 rows
    batch = holdout[:1000]
    batch_feeds = predictor.feeds_from_frame(batch)
    sk_batch = median_ms(lambda: pipeline.predict_proba(batch), repeat)
    with threadpool_limits(limits=1):
        sk_batch_1 = median_ms(lambda: pipeline.predict_proba(batch), repeat)
    ox_batch = median_ms(lambda: predictor.predict_frame(batch), repeat)
    raw_batch = median_ms(lambda: session.run(outputs, batch_feeds), repeat)
    report.add(
        Row(
            "1,000 rows: OnnxPredictor.predict_frame vs predict_proba",
            ox_batch,
            sk_batch,
            "ms",
            "report both",
        )
    )
    report.add(
        Row(
            "1,000 rows: OnnxPredictor.predict_frame vs predict_proba, 1 thread",
            ox_batch,
            sk_batch_1,
            "ms",
        )
    )
    report.add(
        Row("1,000 rows: raw InferenceSession.run vs predict_proba", raw_batch, sk_batch, "ms")
    )

    load_after = os.getloadavg()
    report.notes += [
        f"Model: HistGradientBoostingClassifier, {FEATURES} float features (2% nulls), 100 "
        f"iterations, trained on {train_rows:,} rows in {fit_s:.1f} s; exported in "
        f"{export_s:.2f} s to {len(model) / 1024:.0f} KiB; `onnx_files` (export, quantize, "
        f"verify both on 10,000 held-out rows) {package_s:.2f} s.",
        f"Agreement on 10,000 held-out rows: max |Δp| {checks['onnx_max_abs_diff']:.1e}, "
        f"labels {checks['onnx_label_agreement']:.4%}, accuracy "
        f"{checks['onnx_native_accuracy']:.4f} native / {checks['onnx_accuracy']:.4f} ONNX; "
        "ROC AUC Δ "
        f"{checks['onnx_roc_auc'] - checks['onnx_native_roc_auc']:+.1e}.",
        f"Dynamic quantization: {checks['onnx_quantized_nodes']:.0f} nodes quantized (tree "
        f"ensembles hold no MatMul/Gemm), {checks['onnx_bytes'] / 1024:.0f} → "
        f"{checks['onnx_quantized_bytes'] / 1024:.0f} KiB, accuracy Δ "
        f"{checks['onnx_quantized_accuracy_delta']:+.1e}.",
        f"1-row calls: {calls:,} per ONNX contender after {warmup:,} warm-up calls "
        f"(scikit-learn and LoadedModel: {calls // 20:,}); batch: median of {repeat}. "
        "scikit-learn uses its OpenMP threads (2) unless noted; the ONNX predictor one "
        "intra-op thread.",
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        "(the machine is shared).",
    ]
    for note in report.notes:
        print(" ", note)
    path = report.save("onnx")
    print(f"saved {path}")
    assert len(files) == 2


if __name__ == "__main__":
    main()
