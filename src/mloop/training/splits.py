"""How a model is validated: a hold-out split, and optionally cross-validation over the
training part — K-fold, stratified K-fold, grouped K-fold (no group on both sides) or
time-series splits (each fold tests on rows after the ones it trained on).

With ``timeseries`` the hold-out is the latest ``test_size`` of the rows by the time column,
not a random sample: a model is always tested on rows later than the ones it learned from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mloop.core.errors import InvalidInput
from mloop.core.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

CV_KINDS = ("holdout", "kfold", "stratified", "group", "timeseries")
MAX_FOLDS = 50


@dataclass(frozen=True)
class Validation:
    """``kind`` (one of ``CV_KINDS``), ``folds`` for cross-validation, and the column that
    groups rows (``group``) or orders them in time (``timeseries``)."""

    kind: str = "holdout"
    folds: int = 5
    group_column: str | None = None
    time_column: str | None = None

    @property
    def cross_validates(self) -> bool:
        return self.kind != "holdout"

    @property
    def columns(self) -> list[str]:
        """Columns the validation reads: they are not model inputs."""
        return [c for c in (self.group_column, self.time_column) if c]


def check_validation(
    kind: str,
    *,
    folds: int,
    group_column: str | None,
    time_column: str | None,
    columns: dict[str, str],
    task: str | None = None,
) -> Validation:
    """A validation, checked against the dataset's ``columns`` (name → mloop type) before
    any compute: InvalidInput names what is wrong."""
    if kind not in CV_KINDS:
        raise InvalidInput(f"unknown validation {kind!r}: use one of {', '.join(CV_KINDS)}")
    if kind != "holdout" and not 2 <= folds <= MAX_FOLDS:
        raise InvalidInput(f"folds must be between 2 and {MAX_FOLDS}, not {folds}")
    if kind == "group" and not group_column:
        raise InvalidInput("grouped cross-validation needs the group column (--group-column)")
    if kind == "timeseries" and not time_column:
        raise InvalidInput("time-series validation needs the time column (--time-column)")
    if kind == "stratified" and task is not None:
        check_task(Validation(kind), task)
    if group_column and kind != "group":
        raise InvalidInput("a group column is read only by grouped cross-validation (cv=group)")
    if time_column and kind != "timeseries":
        raise InvalidInput("a time column is read only by time-series validation (cv=timeseries)")
    for label, column in (("group", group_column), ("time", time_column)):
        if column and column not in columns:
            raise InvalidInput(f"the dataset has no {label} column {column!r}")
    if time_column and columns[time_column] not in ("datetime", "date", "integer", "float"):
        raise InvalidInput(
            f"time column {time_column!r} is {columns[time_column]}: it must order rows in time "
            "(a datetime, a date or a number)"
        )
    return Validation(kind, folds, group_column, time_column)


def check_task(validation: Validation, task: str) -> None:
    """Stratification needs classes: refused for a regressor."""
    if validation.kind == "stratified" and task != "classification":
        raise InvalidInput("stratified cross-validation needs classes: use kfold for a regressor")


def holdout(
    y: Any,
    *,
    test_size: float,
    seed: int,
    validation: Validation,
    order: Any = None,
    stratify: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the training part and of the hold-out."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y))
    if validation.kind == "timeseries":
        ranked = np.argsort(np.asarray(order), kind="stable")
        cut = len(rows) - int(np.ceil(len(rows) * test_size))
        return np.sort(ranked[:cut]), np.sort(ranked[cut:])
    train, test = train_test_split(
        rows, test_size=test_size, random_state=seed, stratify=y if stratify else None
    )
    return np.asarray(train), np.asarray(test)


def folds(
    validation: Validation,
    y: Any,
    *,
    seed: int,
    groups: Any = None,
    order: Any = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The cross-validation folds over ``len(y)`` rows: (train rows, test rows) each."""
    from sklearn import model_selection as ms

    rows = np.arange(len(y))
    if validation.kind == "kfold":
        yield from ms.KFold(validation.folds, shuffle=True, random_state=seed).split(rows)
    elif validation.kind == "stratified":
        splitter = ms.StratifiedKFold(validation.folds, shuffle=True, random_state=seed)
        yield from splitter.split(rows, y)
    elif validation.kind == "group":
        distinct = len(set(_plain(groups)))
        if distinct < validation.folds:
            raise InvalidInput(
                f"group column {validation.group_column!r} has {distinct} groups in the "
                f"training rows: fewer than the {validation.folds} folds"
            )
        yield from ms.GroupKFold(validation.folds).split(rows, y, groups)
    elif validation.kind == "timeseries":
        ranked = np.argsort(np.asarray(order), kind="stable")
        for train, test in ms.TimeSeriesSplit(validation.folds).split(ranked):
            yield ranked[train], ranked[test]


def _plain(values: Sequence[Any] | Any) -> list[Any]:
    return [None if v != v else v for v in np.asarray(values, dtype=object).tolist()]
