"""XGBoost and LightGBM through their scikit-learn classes, when they are installed.

Their ``fit`` is patched like scikit-learn's (``XGBModel``, ``XGBClassifier``…,
``LGBMModel``, ``LGBMClassifier``…). What they add: the per-iteration evaluation results of
``eval_set`` (``evals_result_``), logged as ``<set>-<metric>`` (``valid_0-binary_logloss``,
``validation_0-logloss``: the names the libraries give) with ``step`` = the iteration, from 0;
and ``best_iteration`` when early stopping chose one.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from typing import Any

from mloop.autologging.params import param_key

LIBRARIES = {
    "lightgbm": ("lightgbm.sklearn", "LGBMModel"),
    "xgboost": ("xgboost.sklearn", "XGBModel"),
}


def installed() -> list[str]:
    return [name for name in LIBRARIES if importlib.util.find_spec(name) is not None]


def estimator_classes() -> list[type]:
    """The scikit-learn API classes of the libraries that import (importing them)."""
    found: list[type] = []
    for library in installed():
        module_name, base_name = LIBRARIES[library]
        try:
            module = importlib.import_module(module_name)
        except Exception:  # a broken install is not autologging's failure to report
            continue
        base = getattr(module, base_name, None)
        if base is None:
            continue
        found.extend(
            cls
            for cls in vars(module).values()
            if inspect.isclass(cls) and issubclass(cls, base) and cls.__module__ == module_name
        )
    return found


def flavor_of(estimator: Any) -> str:
    root = type(estimator).__module__.split(".")[0]
    return root if root in LIBRARIES else "sklearn"


def versions() -> dict[str, str]:
    """The versions of the boosting libraries imported in this process."""
    found = {}
    for library in LIBRARIES:
        module = sys.modules.get(library)
        version = getattr(module, "__version__", None)
        if isinstance(version, str):
            found[library] = version
    return found


def final_booster(estimator: Any) -> Any | None:
    """The XGBoost or LightGBM model a fit produced: the estimator, the last step of a
    pipeline, or a search's best estimator (recursively); None if there is none."""
    seen = 0
    while estimator is not None and seen < 10:
        seen += 1
        if flavor_of(estimator) != "sklearn":
            return estimator
        if hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        elif hasattr(estimator, "steps") and estimator.steps:
            estimator = estimator.steps[-1][1]
        else:
            return None
    return None


def eval_history(booster: Any) -> dict[str, list[float]]:
    """``{"<set>-<metric>": [value per iteration]}`` from the booster's evaluation results."""
    results = getattr(booster, "evals_result_", None)
    if not results and callable(getattr(booster, "evals_result", None)):
        try:
            results = booster.evals_result()
        except Exception:  # XGBoost raises when fit had no eval_set
            results = None
    if not isinstance(results, dict):
        return {}
    history: dict[str, list[float]] = {}
    for data_name, by_metric in results.items():
        if not isinstance(by_metric, dict):
            continue
        for metric, values in by_metric.items():
            history[param_key(f"{data_name}-{metric}")] = [float(v) for v in values]
    return history


def best_iteration(booster: Any) -> int | None:
    for attribute in ("best_iteration_", "best_iteration"):
        try:
            value = getattr(booster, attribute, None)
        except Exception:  # XGBoost's property raises without early stopping
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def steps(history: dict[str, list[float]]) -> list[dict[str, float]]:
    """The history by iteration: one mapping of metric → value per step."""
    length = max((len(v) for v in history.values()), default=0)
    return [
        {k: v[i] for k, v in history.items() if i < len(v) and math.isfinite(v[i])}
        for i in range(length)
    ]
