"""The BentoML 1.4 service of bench/serving.py, run by ``bentoml serve`` in the peer's venv.

    BENTOML_HOME=<store> BENCH_BENTO_BATCH=0|1 bentoml serve bento_service:Bench \
        --working-dir bench/serving_peers --port P

The model is the HistGradientBoosting classifier bench/serving.py trained, saved into the
BentoML model store as ``bench-hgb`` (``bentoml.sklearn.save_model``). The API takes mloop's
body, ``{"rows": [{"f0": ..., ..., "f19": ...}, ...]}``, at ``POST /predict``; it is a plain
synchronous method as the BentoML docs write one (BentoML runs it in its thread pool).

- ``BENCH_BENTO_BATCH=0`` (default): ``@bentoml.api``, one worker; answers
  ``{"predictions": [...], "probabilities": [{class: p}, ...]}``.
- ``BENCH_BENTO_BATCH=1``: ``@bentoml.api(batchable=True, max_batch_size=B,
  max_latency_ms=L)`` (adaptive batching; B and L from ``BENCH_BENTO_MAX_BATCH`` and
  ``BENCH_BENTO_MAX_LATENCY_MS``): requests' rows are concatenated into one ``predict_proba``
  and the answer is the list of ``{class: p}`` of the request's rows.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np
import pandas as pd

NAMES = [f"f{i}" for i in range(int(os.environ.get("BENCH_FEATURES", "20")))]
BATCH = os.environ.get("BENCH_BENTO_BATCH", "0") == "1"
MAX_BATCH = int(os.environ.get("BENCH_BENTO_MAX_BATCH", "32"))
MAX_LATENCY_MS = int(os.environ.get("BENCH_BENTO_MAX_LATENCY_MS", "100"))


@bentoml.service(workers=1)
class Bench:
    model_ref = bentoml.models.BentoModel("bench-hgb:latest")

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)
        self.classes = [c.item() if hasattr(c, "item") else c for c in self.model.classes_]
        self.keys = [str(c) for c in self.classes]

    def _proba(self, rows: list[dict[str, float]]) -> list[list[float]]:
        X = np.array([[row[n] for n in NAMES] for row in rows], dtype=np.float64)
        return self.model.predict_proba(pd.DataFrame(X, columns=NAMES)).tolist()

    if BATCH:

        @bentoml.api(batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
        def predict(self, rows: list[dict[str, float]]) -> list[dict[str, float]]:
            return [dict(zip(self.keys, p, strict=True)) for p in self._proba(rows)]

    else:

        @bentoml.api
        def predict(self, rows: list[dict[str, float]]) -> dict[str, Any]:
            proba = self._proba(rows)
            return {
                "predictions": [self.classes[p.index(max(p))] for p in proba],
                "probabilities": [dict(zip(self.keys, p, strict=True)) for p in proba],
            }
