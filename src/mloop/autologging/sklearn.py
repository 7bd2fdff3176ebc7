"""scikit-learn: which classes to patch, and what a hyper-parameter search adds to its run.

Every class ``sklearn.utils.all_estimators()`` lists is patched through the classes of its
method resolution order that scikit-learn defines: that reaches the bases the list leaves out
(``BaseSearchCV.fit``, ``ClassifierMixin.score``, ``RegressorMixin.score``).

Preprocessing is left out, as MLflow leaves it out: scikit-learn fits ``LabelEncoder`` and
``LabelBinarizer`` inside its own metric functions, and a run per scaler or imputer fitted on
its own is noise. A Pipeline holding them is logged as a whole.
"""

from __future__ import annotations

import functools
import io
import math
import numbers
from typing import Any

import numpy as np

from mloop.autologging.params import flat_params, param_key, param_text
from mloop.autologging.runs import Child

MAX_CANDIDATE_RUNS = 50
EXCLUDED_MODULES = (
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.feature_extraction",
    "sklearn.feature_selection",
)
EXCLUDED_CLASSES = frozenset({"ColumnTransformer"})


def excluded(cls: type) -> bool:
    """Whether fits of ``cls`` are left alone: scikit-learn's preprocessing."""
    return cls.__module__.startswith(EXCLUDED_MODULES) or (
        cls.__name__ in EXCLUDED_CLASSES and cls.__module__.startswith("sklearn.")
    )


@functools.cache
def estimator_classes() -> list[type]:
    """(Listing them imports all of scikit-learn, about a second: done once.)"""
    from sklearn.utils import all_estimators

    found: dict[type, None] = {}
    for _name, cls in all_estimators():
        if excluded(cls):
            continue
        for base in cls.__mro__:
            if base.__module__.split(".")[0] == "sklearn":
                found[base] = None
    return list(found)


def is_search(estimator: Any) -> bool:
    return hasattr(estimator, "cv_results_") and isinstance(
        getattr(estimator, "cv_results_", None), dict
    )


def number(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Real):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    return None


def best_params(search: Any) -> dict[str, str]:
    """``best_params_`` as params prefixed ``best_``."""
    best = getattr(search, "best_params_", None)
    return flat_params(best, prefix="best_") if isinstance(best, dict) else {}


def best_metrics(search: Any) -> dict[str, float]:
    value = number(getattr(search, "best_score_", None))
    return {} if value is None else {"best_cv_score": value}


def cv_results_csv(search: Any) -> bytes:
    import pandas as pd

    frame = pd.DataFrame(search.cv_results_)
    if "params" in frame.columns:
        frame["params"] = frame["params"].map(param_text)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def _rank_key(results: dict[str, Any]) -> str | None:
    if "rank_test_score" in results:
        return "rank_test_score"
    return next((k for k in results if k.startswith("rank_test_")), None)


def candidates(search: Any, estimator_tag: str) -> list[Child]:
    """One child run per candidate of ``cv_results_``, best first, at most
    ``MAX_CANDIDATE_RUNS``: the candidate's params, and its numbers (mean and per-split test
    scores, ranks, fit and score times) as metrics."""
    results: dict[str, Any] = search.cv_results_
    params = results.get("params")
    if not params:
        return []
    n = len(params)
    rank = _rank_key(results)
    order = list(range(n))
    if rank is not None:
        ranks = np.asarray(results[rank], dtype=float)
        order = [int(i) for i in np.argsort(ranks, kind="stable")]
    numeric = [k for k in results if k != "params" and not k.startswith("param_")]
    children = []
    for index in order[:MAX_CANDIDATE_RUNS]:
        metrics: dict[str, float] = {}
        for key in numeric:
            try:
                value = number(results[key][index])
            except (IndexError, TypeError):
                continue
            if value is not None:
                metrics[param_key(key)] = value
        children.append(
            Child(
                name=f"candidate-{index}",
                params=flat_params(params[index]),
                metrics=metrics,
                tags={
                    "mloop.autolog.estimator": estimator_tag,
                    "mloop.autolog.candidate": str(index),
                },
            )
        )
    return children
