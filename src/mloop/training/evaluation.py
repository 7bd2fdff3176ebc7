"""Held-out metrics by slice, and a fairness report over declared sensitive columns.

Both are pure functions over arrays: the evaluation service feeds them the hold-out frame, its
labels and the model's predictions, and stores what they return with the model version.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module
from mloop.training.metrics import classification_metrics, regression_metrics

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
    pd = lazy_module("pandas")

DEFAULT_MAX_SLICES = 20
DEFAULT_MIN_ROWS = 10
DEFAULT_BINS = 5
# a numeric column with at most this many distinct values is sliced by value, not binned
MAX_DISCRETE_VALUES = 10
MAX_OTHER_VALUES_LISTED = 50
NULL_LABEL = "null"
OTHER_LABEL = "other"

SliceKind = Literal["value", "bin", "null", "other"]


class SliceResult(BaseModel):
    """The rows of one value (or bin, or group of rare values) of one column, and their metrics."""

    model_config = ConfigDict(frozen=True)

    column: str
    value: str  # a label for humans: "F", "(1.5, 3]", "null", "other (4 values)"
    kind: SliceKind
    rows: int
    fraction: float  # of all evaluated rows
    metrics: dict[str, float]
    lower: float | None = None  # a bin's edges: (lower, upper], the first bin closed at lower
    upper: float | None = None
    values: list[str] | None = None  # the values grouped into an "other" slice (the first 50)


class GroupStats(BaseModel):
    """One group of one sensitive column. Rates are of the positive label; a rate with no rows
    to count (TPR of a group without positives) is 0, as Fairlearn counts it."""

    model_config = ConfigDict(frozen=True)

    group: str
    count: int
    positives: int  # rows whose true label is the positive label
    negatives: int
    selection_rate: float
    true_positive_rate: float
    false_positive_rate: float
    accuracy: float


class SensitiveColumnReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    groups: list[GroupStats]
    demographic_parity_difference: float
    demographic_parity_ratio: float
    equalized_odds_difference: float
    equalized_odds_ratio: float


FAIRNESS_METRICS = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
)


class FairnessReport(BaseModel):
    """Group fairness of a classifier's predictions, per declared sensitive column."""

    model_config = ConfigDict(frozen=True)

    positive_label: Any
    rows: int
    columns: list[SensitiveColumnReport]

    def column(self, name: str) -> SensitiveColumnReport:
        for c in self.columns:
            if c.column == name:
                return c
        raise InvalidInput(
            f"no fairness report for column {name!r} (have: {', '.join(self.names)})"
        )

    @property
    def names(self) -> list[str]:
        return [c.column for c in self.columns]

    def summary(self) -> dict[str, float]:
        """Flat numbers for gates and metric stores.

        ``demographic_parity_difference`` and ``equalized_odds_difference`` are the worst
        (largest) over the sensitive columns, the ``..._ratio`` ones the worst (smallest);
        ``demographic_parity_difference[sex]`` and so on give each column's own value.
        """
        out: dict[str, float] = {}
        for key in FAIRNESS_METRICS:
            values = [float(getattr(c, key)) for c in self.columns]
            worst = min(values) if key.endswith("_ratio") else max(values)
            out[key] = worst
        for c in self.columns:
            for key in FAIRNESS_METRICS:
                out[f"{key}[{c.column}]"] = float(getattr(c, key))
        return out


# ---------------------------------------------------------------------------------------------
# slices


def _as_array(values: Any, name: str, n: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 and name != "proba":
        raise InvalidInput(f"{name} must be one-dimensional, got shape {array.shape}")
    if n is not None and len(array) != n:
        raise InvalidInput(f"{name} has {len(array)} rows, the frame has {n}")
    return array


def _label(value: Any) -> str:
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return f"{number:.6g}"
    return str(value)


def _is_null(series: pd.Series) -> np.ndarray:
    return np.asarray(series.isna().to_numpy(), dtype=bool)


def _numeric(series: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not bool(
        pd.api.types.is_bool_dtype(series.dtype)
    )


def _slice_masks(
    series: pd.Series, *, max_slices: int, min_rows: int, bins: int
) -> list[tuple[str, SliceKind, np.ndarray, dict[str, Any]]]:
    """(label, kind, row mask, extra fields) for each slice of one column."""
    nulls = _is_null(series)
    out: list[tuple[str, SliceKind, np.ndarray, dict[str, Any]]] = []
    present = ~nulls
    if _numeric(series):
        values = np.asarray(series.to_numpy(), dtype="float64")
        distinct = np.unique(values[present])
        if len(distinct) > MAX_DISCRETE_VALUES:
            edges = np.unique(np.quantile(values[present], np.linspace(0, 1, bins + 1)))
            # bin i holds edges[i] < v <= edges[i + 1]; the first bin also holds the minimum
            index = np.searchsorted(edges[1:-1], values, side="left")
            for i in range(len(edges) - 1):
                lo, hi = float(edges[i]), float(edges[i + 1])
                mask = present & (index == i)
                opening = "[" if i == 0 else "("
                out.append(
                    (
                        f"{opening}{lo:.4g}, {hi:.4g}]",
                        "bin",
                        mask,
                        {"lower": lo, "upper": hi},
                    )
                )
            if nulls.any():
                out.append((NULL_LABEL, "null", nulls, {}))
            return [s for s in out if s[2].any()]
        keys = values
    else:
        keys = np.asarray(series.astype(object).to_numpy(), dtype=object)
    labels = np.array([_label(v) for v in keys[present]], dtype=object)
    full = np.empty(len(series), dtype=object)
    full[present] = labels
    counts = Counter(labels.tolist())
    # frequent values first (ties by label); rare ones and any beyond the cap go to "other"
    order = sorted(counts.items(), key=lambda t: (-t[1], t[0]))
    room = max_slices - (1 if nulls.any() else 0)
    kept = [(v, c) for v, c in order if c >= min_rows]
    if len(kept) < len(order) or len(kept) > room:  # something is grouped: room for "other"
        kept = kept[: max(room - 1, 0)]
    kept_values = {str(v) for v, _ in kept}
    for value, _count in kept:
        out.append((str(value), "value", full == value, {}))
    rest = [str(v) for v, _ in order if str(v) not in kept_values]
    if rest:
        mask = present & ~np.isin(full, list(kept_values))
        label = f"{OTHER_LABEL} ({len(rest)} value{'s' if len(rest) != 1 else ''})"
        out.append((label, "other", mask, {"values": rest[:MAX_OTHER_VALUES_LISTED]}))
    if nulls.any():
        out.append((NULL_LABEL, "null", nulls, {}))
    return out


def slice_metrics(
    frame: pd.DataFrame,
    y_true: Any,
    y_pred: Any,
    proba: Any,
    classes: Sequence[Any] | None,
    task: str,
    columns: Sequence[str],
    *,
    max_slices: int = DEFAULT_MAX_SLICES,
    min_rows: int = DEFAULT_MIN_ROWS,
    bins: int = DEFAULT_BINS,
) -> list[SliceResult]:
    """The metrics of each slice of each named column of ``frame`` (row-aligned with the labels).

    A column is sliced by value; a numeric column with more than ten distinct values into
    ``bins`` quantile bins instead. Nulls are a slice of their own. Values with fewer than
    ``min_rows`` rows, and those beyond ``max_slices`` slices per column (the most frequent are
    kept), are grouped into one ``other`` slice. Metrics are those of the whole hold-out
    (:func:`classification_metrics` / :func:`regression_metrics`) on the slice's rows.
    ``classes`` (the model's ``classes_``, which order ``proba``'s columns) may be left out
    when there is no ``proba``: the sorted labels are used.
    """
    if task not in ("classification", "regression"):
        raise InvalidInput(f"task must be 'classification' or 'regression', not {task!r}")
    if max_slices < 2:
        raise InvalidInput(f"max_slices must be at least 2, not {max_slices}")
    if min_rows < 1:
        raise InvalidInput(f"min_rows must be at least 1, not {min_rows}")
    if bins < 2:
        raise InvalidInput(f"bins must be at least 2, not {bins}")
    if not columns:
        raise InvalidInput("name at least one column to slice by")
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise InvalidInput(
            f"cannot slice by unknown column {unknown[0]!r} "
            f"(the frame has: {', '.join(map(str, frame.columns))})"
        )
    n = len(frame)
    if n == 0:
        raise InvalidInput("no rows to evaluate")
    truth = _as_array(y_true, "y_true", n)
    pred = _as_array(y_pred, "y_pred", n)
    if task == "classification" and not classes:
        # the model's classes_ are best (they order proba's columns); without proba, the
        # sorted labels seen give the same positive class for a binary model
        if proba is not None:
            raise InvalidInput("classification slices with probabilities need the classes")
        classes = sorted(set(truth.tolist()) | set(pred.tolist()), key=lambda v: (str(type(v)), v))
    probs = None if proba is None else np.asarray(proba)
    if probs is not None and (probs.ndim != 2 or len(probs) != n):
        raise InvalidInput(f"proba must have shape (rows, classes), got {probs.shape}")
    results: list[SliceResult] = []
    for column in dict.fromkeys(columns):
        for label, kind, mask, extra in _slice_masks(
            frame[column], max_slices=max_slices, min_rows=min_rows, bins=bins
        ):
            rows = int(mask.sum())
            if rows == 0:
                continue
            if task == "classification":
                assert classes is not None
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a slice with one class: no ROC-AUC
                    metrics = classification_metrics(
                        truth[mask],
                        pred[mask],
                        None if probs is None else probs[mask],
                        list(classes),
                    )
            else:
                metrics = regression_metrics(truth[mask], pred[mask])
            results.append(
                SliceResult(
                    column=str(column),
                    value=label,
                    kind=kind,
                    rows=rows,
                    fraction=rows / n,
                    metrics=metrics,
                    **extra,
                )
            )
    return results


# ---------------------------------------------------------------------------------------------
# fairness


def _group_labels(values: Any, name: str, n: int) -> np.ndarray:
    series = pd.Series(
        np.asarray(values, dtype=object)
        if not isinstance(values, pd.Series)
        else values.to_numpy(dtype=object)
    )
    if len(series) != n:
        raise InvalidInput(f"sensitive column {name!r} has {len(series)} rows, the labels {n}")
    nulls = series.isna().to_numpy()
    labels = np.array([_label(v) for v in series.to_numpy()], dtype=object)
    labels[nulls] = NULL_LABEL
    return labels


def _finite(value: Any, *, undefined: float = 0.0) -> float:
    number = float(value)
    return number if math.isfinite(number) else undefined


def fairness_report(
    y_true: Any,
    y_pred: Any,
    sensitive: Mapping[str, Any] | Sequence[str],
    positive_label: Any,
    *,
    frame: pd.DataFrame | None = None,
    task: str = "classification",
) -> FairnessReport:
    """Fairlearn's group metrics of a classifier's predictions for each sensitive column.

    ``sensitive`` maps a column name to its values (row-aligned with the labels), or names
    columns of ``frame``. Labels are binarized as "is ``positive_label``" (a multiclass model is
    judged one class against the rest). Per group: rows, selection rate (share predicted
    positive), true- and false-positive rates, accuracy; per column: demographic parity and
    equalized odds differences (largest gap between groups, 0 is parity) and ratios (smallest
    over largest, 1 is parity). Nulls form a group of their own.
    """
    if task != "classification":
        raise InvalidInput(f"a fairness report needs a classifier; this model does {task}")
    if not sensitive:
        raise InvalidInput("name at least one sensitive column")
    truth = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if truth.ndim != 1 or pred.ndim != 1 or len(truth) != len(pred):
        raise InvalidInput(
            f"y_true and y_pred must be one-dimensional and of one length, got {truth.shape} "
            f"and {pred.shape}"
        )
    n = len(truth)
    if n == 0:
        raise InvalidInput("no rows to evaluate")
    if positive_label not in set(truth.tolist()) | set(pred.tolist()):
        raise InvalidInput(
            f"positive label {positive_label!r} occurs neither in the labels nor in the predictions"
        )
    if isinstance(sensitive, Mapping):
        named: dict[str, Any] = dict(sensitive)
    else:
        if isinstance(sensitive, str):
            sensitive = [sensitive]
        if frame is None:
            raise InvalidInput("sensitive columns given by name need the frame that holds them")
        missing = [c for c in sensitive if c not in frame.columns]
        if missing:
            raise InvalidInput(
                f"unknown sensitive column {missing[0]!r} "
                f"(the frame has: {', '.join(map(str, frame.columns))})"
            )
        named = {c: frame[c] for c in dict.fromkeys(sensitive)}

    flm = importlib.import_module("fairlearn.metrics")  # untyped, optional (extra 'explain')
    from sklearn.metrics import accuracy_score

    yt = (truth == positive_label).astype(int)
    yp = (pred == positive_label).astype(int)
    reports: list[SensitiveColumnReport] = []
    for name, values in named.items():
        groups = _group_labels(values, name, n)
        distinct = np.unique(groups)
        if len(distinct) < 2:
            raise InvalidInput(
                f"sensitive column {name!r} has one group ({distinct[0]!r} for every row): "
                "there is nothing to compare"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a group without positives: its TPR counts as 0
            frame_ = flm.MetricFrame(
                metrics={
                    "count": flm.count,
                    "selection_rate": flm.selection_rate,
                    "true_positive_rate": flm.true_positive_rate,
                    "false_positive_rate": flm.false_positive_rate,
                    "accuracy": accuracy_score,
                },
                y_true=yt,
                y_pred=yp,
                sensitive_features=groups,
            )
            by_group = frame_.by_group
            kw = {"sensitive_features": groups}
            dp_diff = flm.demographic_parity_difference(yt, yp, **kw)
            dp_ratio = flm.demographic_parity_ratio(yt, yp, **kw)
            eo_diff = flm.equalized_odds_difference(yt, yp, **kw)
            eo_ratio = flm.equalized_odds_ratio(yt, yp, **kw)
        stats = []
        for group in by_group.index:
            in_group = groups == group
            row = by_group.loc[group]
            stats.append(
                GroupStats(
                    group=str(group),
                    count=int(row["count"]),
                    positives=int(yt[in_group].sum()),
                    negatives=int((1 - yt[in_group]).sum()),
                    selection_rate=_finite(row["selection_rate"]),
                    true_positive_rate=_finite(row["true_positive_rate"]),
                    false_positive_rate=_finite(row["false_positive_rate"]),
                    accuracy=_finite(row["accuracy"]),
                )
            )
        reports.append(
            SensitiveColumnReport(
                column=str(name),
                groups=stats,
                demographic_parity_difference=_finite(dp_diff),
                demographic_parity_ratio=_finite(dp_ratio, undefined=1.0),  # 0/0: all equal
                equalized_odds_difference=_finite(eo_diff),
                equalized_odds_ratio=_finite(eo_ratio, undefined=1.0),
            )
        )
    label = positive_label.item() if isinstance(positive_label, np.generic) else positive_label
    return FairnessReport(positive_label=label, rows=n, columns=reports)
