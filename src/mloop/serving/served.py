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
_TABLE, _FEEDS = "table", "feeds"


class ServedModel:
    """A loaded model behind the batching interface. ``runtime`` is ``onnx`` or ``native``."""

    def __init__(self, model: LoadedModel | OnnxPredictor, runtime: str) -> None:
        self.model = model
        self.runtime = runtime
        self.signature = model.signature
        self.input_names = model.signature.input_names
        self.input_types = {c.name: c.type for c in model.signature.inputs}

    def prepare(self, rows: Any) -> tuple[Any, int]:
        """The model input for ``rows`` and its row count; SchemaMismatch when they do not fit.

        For ONNX Runtime the input is a plain table (a list of value lists) when the rows fit
        the signature exactly — a batch of them is one list, turned into arrays once — else
        the feeds built through :func:`frame_from_rows`, which names any problem."""
        model = self.model
        if isinstance(model, OnnxPredictor):
            table = model.table_from_rows(rows) if isinstance(rows, list) and rows else None
            if table is None:  # not an exact fit: the frame path names the problem (or fixes it)
                frame = frame_from_rows(rows, self.signature)
                return (_FEEDS, model.feeds_from_frame(frame)), len(frame)
            return (_TABLE, table), len(table)
        frame = frame_from_rows(rows, self.signature)
        return frame, len(frame)

    def run(self, batch: Sequence[tuple[Any, int]]) -> list[Output]:
        """Predict every prepared input of ``batch`` in one model call."""
        model = self.model
        joined: Any
        if isinstance(model, OnnxPredictor):
            if all(kind == _TABLE for (kind, _), _ in batch):
                table: list[list[Any]] = []
                for (_, part), _ in batch:
                    table += part
                joined = model.feeds_from_table(table)
            else:
                feeds = [
                    part if kind == _FEEDS else model.feeds_from_table(part)
                    for (kind, part), _ in batch
                ]
                joined = (
                    feeds[0]
                    if len(feeds) == 1
                    else {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
                )
        elif len(batch) == 1:
            joined = batch[0][0]
        else:
            joined = pd.concat([b[0] for b in batch], ignore_index=True)
        labels, probabilities = self._predict(joined)
        if len(batch) == 1:
            return [(labels, probabilities)]
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
