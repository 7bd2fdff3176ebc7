"""mloop predict: inference in bulk — over a dataset (batch) or a stream."""

from __future__ import annotations

from mloop.cli._common import new_app
from mloop.cli.predict_batch import batch
from mloop.cli.predict_stream import stream

app = new_app("Predict in bulk with a deployment: over a dataset (batch) or a stream.")

app.command("stream")(stream)
app.command("batch")(batch)
