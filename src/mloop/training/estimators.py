"""Estimators by dotted path, and the preprocessing that travels with them."""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from mloop.core.errors import InvalidInput
from mloop.core.schema import Column

DEFAULT_ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"
MAX_ONE_HOT_CATEGORIES = 50
TASK_ATTRIBUTE = "__mloop_task__"  # what classifier / regressor mark a function with


def classifier(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``function`` as fitting a classifier, for ``model="pyfunc:module.function"``."""
    setattr(function, TASK_ATTRIBUTE, "classification")
    return function


def regressor(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``function`` as fitting a regressor, for ``model="pyfunc:module.function"``."""
    setattr(function, TASK_ATTRIBUTE, "regression")
    return function


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v`` from the command line: v read as a Python literal when it is one, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInput(f"--param {text!r} is not of the form key=value")
    raw = raw.strip()
    lowered = {"true": True, "false": False, "none": None, "null": None}
    if raw.lower() in lowered:
        return key.strip(), lowered[raw.lower()]
    try:
        return key.strip(), ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key.strip(), raw


def resolve_estimator(path: str) -> type[Any]:
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise InvalidInput(
            f"unknown estimator {path!r}: give a dotted path such as {DEFAULT_ESTIMATOR}"
        )
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"unknown estimator {path!r}: {exc}") from exc
    if not inspect.isclass(cls) or not all(hasattr(cls, m) for m in ("fit", "predict")):
        raise InvalidInput(f"{path!r} is not an estimator class with fit() and predict()")
    return cls


def make_estimator(path: str, params: Mapping[str, Any]) -> Any:
    """Instantiate and check the hyper-parameters before any compute is spent.
    ``pyfunc:package.module.function`` makes a model of a Python function (see pyfunc.py)."""
    if path.startswith("pyfunc:"):
        from mloop.training.pyfunc import function_estimator

        return function_estimator(path, params)
    cls = resolve_estimator(path)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise InvalidInput(f"{path}: {exc}") from exc
    own_check = getattr(estimator, "check_params", None)  # mloop's own estimators
    if callable(own_check):
        own_check()
    validate = getattr(estimator, "_validate_params", None)
    # scikit-learn's own check; XGBoost's and LightGBM's classes inherit the method without
    # the constraints it reads, and check their parameters when they fit
    if callable(validate) and hasattr(estimator, "_parameter_constraints"):
        try:
            validate()
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"{path}: {exc}") from exc
    return estimator


def task_of(estimator: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(estimator):
        return "classification"
    if is_regressor(estimator):
        return "regression"
    raise InvalidInput(
        f"{type(estimator).__name__} is neither a classifier nor a regressor "
        "(scikit-learn's is_classifier / is_regressor)"
    )


def needs_encoded_labels(estimator: Any, classes: list[Any] | None) -> bool:
    """XGBoost's classifiers take only the labels 0..k-1."""
    module = type(estimator).__module__.split(".")[0]
    return module == "xgboost" and classes is not None and classes != list(range(len(classes)))


def build_pipeline(estimator: Any, features: list[Column], classes: list[Any] | None = None) -> Any:
    """Imputation, scaling and one-hot encoding, then the estimator: one object to save, so
    serving takes the raw columns. A classifier that takes only labels 0..k-1 (XGBoost) is
    wrapped to learn the codes of ``classes`` and answer in the labels."""
    if needs_encoded_labels(estimator, classes):
        from mloop.training.labels import LabelEncodedClassifier

        estimator = LabelEncodedClassifier(estimator)
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c.name for c in features if c.type in ("integer", "float", "boolean")]
    categorical = [c.name for c in features if c.type == "string"]
    steps = []
    if numeric:
        steps.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            )
        )
    if categorical:
        steps.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(
                                strategy="constant",
                                fill_value="__missing__",
                                keep_empty_features=True,
                            ),
                        ),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=MAX_ONE_HOT_CATEGORIES,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
    return Pipeline(
        [("preprocess", ColumnTransformer(steps, remainder="drop")), ("model", estimator)]
    )
