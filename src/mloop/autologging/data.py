"""What a fit was given: its data as an Arrow table, a signature, a fingerprint, a dataset version.

``X`` may be a pandas or Polars frame, a NumPy array (its columns are named ``f0``…``fn``) or
anything ``numpy.asarray`` makes two-dimensional; ``y`` a Series, an array or a list. Sparse
matrices have no table form here: a fit on one logs no signature, model or input.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from mloop.core.schema import Column
from mloop.data import DatasetVersion, content_hash, logical_type, schema_of
from mloop.models import Signature, Task
from mloop.tracking import RunInput

if TYPE_CHECKING:
    from mloop.workspace import Workspace

DEFAULT_TARGET = "target"
MAX_NAME = 255


class Training:
    """The data of one fit, as tables: ``features`` (X), ``full`` (X and y side by side)."""

    def __init__(self, features: pa.Table, target: pa.Array | None, target_name: str) -> None:
        self.features = features
        self.target = target
        self.target_name = target_name
        self.full = features
        if target is not None:
            self.full = features.append_column(target_name, target)
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = content_hash(self.full)
        return self._digest


def _is_sparse(data: Any) -> bool:
    return hasattr(data, "tocsr") or type(data).__module__.startswith("scipy.sparse")


def named_columns(X: Any) -> bool:
    """Whether a fit on ``X`` saw column names: a frame whose columns are all strings."""
    columns = getattr(X, "columns", None)
    if columns is None or _is_sparse(X) or isinstance(X, np.ndarray):
        return False
    return all(isinstance(c, str) for c in columns)


def feature_table(X: Any) -> pa.Table | None:
    """``X`` as an Arrow table, or None when it has no table form (sparse, ragged, 3-D)."""
    if X is None or _is_sparse(X):
        return None
    from mloop.data import to_arrow

    if named_columns(X) and (hasattr(X, "to_arrow") or hasattr(X, "iloc")):
        return to_arrow(X)  # Polars or pandas
    if hasattr(X, "iloc") and getattr(X, "ndim", 0) == 2:  # pandas, columns not all strings
        return pa.table({f"f{i}": _arrow(X.iloc[:, i]) for i in range(X.shape[1])})
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    array = np.asarray(X)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        return None
    return pa.table({f"f{i}": _arrow(array[:, i]) for i in range(array.shape[1])})


def _arrow(values: Any) -> pa.Array:
    """One column: a Polars or pandas Series, or array-likes; objects become strings."""
    if hasattr(values, "iloc"):  # pandas
        return pa.Array.from_pandas(values)
    if hasattr(values, "to_arrow"):  # Polars
        array = values.to_arrow()
        return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    array = np.asarray(values)
    if array.dtype == object:
        return pa.array([None if v is None else str(v) for v in array.tolist()], pa.string())
    return pa.array(array)


def target_name(y: Any, taken: list[str]) -> str:
    name = getattr(y, "name", None)
    chosen = name if isinstance(name, str) and name else DEFAULT_TARGET
    while chosen in taken:
        chosen = f"{chosen}_"
    return chosen[:MAX_NAME]


def training_data(X: Any, y: Any) -> Training | None:
    features = feature_table(X)
    if features is None:
        return None
    if y is None:
        return Training(features, None, DEFAULT_TARGET)
    if np.ndim(y) != 1:
        shape = np.shape(y)
        if len(shape) == 2 and shape[1] == 1:
            y = np.asarray(y).ravel()
        else:
            return Training(features, None, DEFAULT_TARGET)  # multi-output: X alone
    name = target_name(y, features.column_names)
    target = _arrow(y)
    if len(target) != features.num_rows:
        return None
    return Training(features, target, name)


def signature_of(data: Training, task: Task, classes: list[Any] | None) -> Signature | None:
    """The signature of a model fitted on ``data``; None without a single target column."""
    if data.target is None:
        return None
    inputs: list[Column] = schema_of(data.features).columns
    return Signature(
        inputs=inputs,
        target=data.target_name,
        target_type=logical_type(data.target.type),
        task=task,
        classes=classes,
    )


def frame_input(data: pa.Table, digest: str, name: str, context: str) -> RunInput:
    """A run input describing a table by the hash of its content (as ``log_input`` does)."""
    return RunInput(
        name=name,
        digest=digest[:64],
        context=context,
        source_type="frame",
        schema=json.dumps({f.name: str(f.type) for f in data.schema}),
        profile=json.dumps({"rows": data.num_rows}),
    )


def version_input(version: DatasetVersion, context: str) -> RunInput:
    return RunInput(
        name=version.ref,
        digest=version.content_hash[:64],
        context=context,
        source_type="mloop",
        source=version.id,
    )


def find_version(ws: Workspace, data: Training) -> DatasetVersion | None:
    """The dataset version of the workspace whose content is exactly ``X`` and ``y`` together
    (in any column order), or else exactly ``X``; None when none is.

    Only versions with the same row count and column names are hashed, so the cost is one
    listing of the versions plus, at most, a hash per candidate."""
    tables = [data.full] if data.target is None else [data.full, data.features]
    shapes = {(t.num_rows, frozenset(t.column_names)): t for t in tables}
    hashed: dict[tuple[str, ...], str] = {}
    for dataset in ws.datasets.list():
        for version in ws.datasets.versions(dataset.name):
            names = version.schema_.names
            table = shapes.get((version.row_count, frozenset(names)))
            if table is None or len(names) != table.num_columns:
                continue
            order = tuple(names)
            if order not in hashed:
                hashed[order] = content_hash(table.select(list(order)))
            if hashed[order] == version.content_hash:
                return version
    return None
