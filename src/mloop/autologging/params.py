"""An estimator's hyper-parameters as run params: flat keys, plain text, within the limits."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Mapping
from typing import Any

from mloop.core.errors import InvalidInput
from mloop.tracking import check_key

MAX_PARAM_VALUE = 6000  # the tracking store's limit on a param value
MAX_KEY = 250
_NOT_IN_KEY = re.compile(r"[^\w\-./ :]")
_MAX_DEPTH = 5


class _Shown:
    """Something shown by a name instead of its repr (an estimator by its class name)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def _is_estimator(value: Any) -> bool:
    return not isinstance(value, type) and hasattr(value, "get_params") and hasattr(value, "fit")


def _plain(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return _Shown("...")
    if _is_estimator(value):
        return _Shown(type(value).__name__)
    if isinstance(value, type):
        return _Shown(value.__qualname__)
    if isinstance(value, functools.partial):
        return _Shown(f"partial({_name_of(value.func)})")
    if inspect.isfunction(value) or inspect.isbuiltin(value) or inspect.ismethod(value):
        return _Shown(_name_of(value))
    if isinstance(value, list | tuple):
        items = [_plain(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return value


def _name_of(function: Any) -> str:
    module = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", "function")
    return f"{module}.{name}" if module else str(name)


def param_text(value: Any) -> str:
    """A param value as text: estimators by class name, functions by dotted name, containers
    with their items shown the same way; cut to the store's limit."""
    plain = _plain(value)
    text = plain if isinstance(plain, str) else str(plain)
    return text[:MAX_PARAM_VALUE]


def param_key(key: Any) -> str:
    """A key the store accepts: characters it refuses become ``_``, long keys are cut."""
    text = _NOT_IN_KEY.sub("_", str(key))[:MAX_KEY] or "_"
    try:
        return check_key(text, "param")
    except InvalidInput:  # ".." as a path part, say
        return text.replace("..", "__")


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    return {param_key(f"{prefix}{k}"): param_text(v) for k, v in params.items()}


def estimator_params(estimator: Any) -> dict[str, str]:
    """``get_params(deep=True)``: nested estimators' params are already flat there
    (``clf__C``); the nested estimators themselves show as their class names."""
    return flat_params(estimator.get_params(deep=True))
