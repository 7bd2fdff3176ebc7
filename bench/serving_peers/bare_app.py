"""The bare baselines of bench/serving.py, served by uvicorn in mloop's venv, one worker.

    BENCH_BARE=sklearn|onnx|echo BENCH_MODEL=model.joblib|model.onnx \
        uvicorn bare_app:app --app-dir bench/serving_peers --workers 1

The request body is mloop's: ``{"rows": [{"f0": ..., ..., "f19": ...}, ...]}``.

- ``sklearn``: Starlette; the rows to a NumPy array, a DataFrame with the fitted names,
  ``predict_proba``; answers ``{"predictions": [...], "probabilities": [{class: p}, ...]}``.
- ``onnx``: Starlette; the rows to one float32 array, ``InferenceSession.run`` (one thread);
  the same answer.
- ``echo``: raw ASGI, no framework and no model: parses the JSON body and sends it back
  serialized again (the HTTP + JSON ceiling of one uvicorn worker).

No validation beyond what the JSON parser and NumPy do, no metrics, no logging.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

MODE = os.environ.get("BENCH_BARE", "echo")
NAMES = [f"f{i}" for i in range(int(os.environ.get("BENCH_FEATURES", "20")))]


async def _body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: accept and finish
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    body = await _body(receive) if scope["method"] == "POST" else b"{}"
    out = json.dumps(json.loads(body)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(out)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})


def _starlette(predict: Any, classes: list[Any]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    keys = [str(c) for c in classes]

    async def predict_route(request: Request) -> JSONResponse:
        rows = (await request.json())["rows"]
        X = np.array([[row[n] for n in NAMES] for row in rows], dtype=np.float64)
        proba = predict(X).tolist()
        labels = [classes[p.index(max(p))] for p in proba]
        return JSONResponse(
            {
                "predictions": labels,
                "probabilities": [dict(zip(keys, p, strict=True)) for p in proba],
            }
        )

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/predict", predict_route, methods=["POST"]), Route("/health", health)]
    )


def _app() -> Any:
    if MODE == "echo":
        return echo
    path = os.environ["BENCH_MODEL"]
    if MODE == "sklearn":
        import joblib
        import pandas as pd

        model = joblib.load(path)
        return _starlette(
            lambda X: model.predict_proba(pd.DataFrame(X, columns=NAMES)),
            [c.item() if hasattr(c, "item") else c for c in model.classes_],
        )
    if MODE == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        outputs = [o.name for o in session.get_outputs()]
        classes = json.loads(os.environ.get("BENCH_CLASSES", "[0, 1]"))
        return _starlette(lambda X: session.run(outputs, {name: X.astype(np.float32)})[1], classes)
    raise SystemExit(f"unknown BENCH_BARE={MODE!r}")


app = _app()
