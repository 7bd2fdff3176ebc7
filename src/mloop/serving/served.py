"""A model version ready for micro-batched serving: validate per request, predict per batch.

``prepare`` runs in the request's handler: it checks the request's rows against the signature
(a bad request fails alone, with the model layer's 422) and turns them into the model's input.
``run`` predicts a whole batch of prepared requests in one call and splits the answer back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mloop.core.errors import SchemaMismatch
from mloop.core.lazy import lazy_module
from mloop.models import LoadedModel, OnnxPredictor, frame_from_rows

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")

Output = tuple[list[Any], list[dict[str, float]] | None]


class ServedModel:
    """A loaded model behind the batching interface. ``runtime`` is ``onnx`` or ``native``."""

    def __init__(self, model: LoadedModel | OnnxPredictor, runtime: str) -> None:
        self.model = model
        self.runtime = runtime
        self.signature = model.signature
        self.input_names = model.signature.input_names
        self.input_types = {c.name: c.type for c in model.signature.inputs}

    def prepare(self, rows: Any) -> tuple[Any, int]:
        """The model input for ``rows`` and its row count; SchemaMismatch when they do not fit."""
        model = self.model
        if isinstance(model, OnnxPredictor):
            feeds = model.feeds_from_rows(rows) if isinstance(rows, list) and rows else None
            if feeds is None:  # not an exact fit: the frame path names the problem (or fixes it)
                frame = frame_from_rows(rows, self.signature)
                return model.feeds_from_frame(frame), len(frame)
            return feeds, len(rows)
        frame = frame_from_rows(rows, self.signature)
        return frame, len(frame)

    def run(self, batch: Sequence[tuple[Any, int]]) -> list[Output]:
        """Predict every prepared input of ``batch`` in one model call."""
        model = self.model
        if len(batch) == 1:
            return [self._predict(batch[0][0])]
        if isinstance(model, OnnxPredictor):
            first = batch[0][0]
            joined: Any = {name: np.concatenate([b[0][name] for b in batch]) for name in first}
        else:
            joined = pd.concat([b[0] for b in batch], ignore_index=True)
        labels, probabilities = self._predict(joined)
        out: list[Output] = []
        start = 0
        for _, rows in batch:
            end = start + rows
            out.append(
                (labels[start:end], probabilities[start:end] if probabilities is not None else None)
            )
            start = end
        return out

    def _predict(self, prepared: Any) -> Output:
        model = self.model
        if isinstance(model, OnnxPredictor):
            try:
                return model.predict_feeds(prepared)
            except Exception as exc:  # ONNX Runtime refuses what the graph cannot take
                raise SchemaMismatch(f"the model cannot predict on these rows: {exc}") from exc
        return model.predict_frame(prepared)
