"""Replacing a method on estimator classes, and putting the original back.

Only a class that defines the method itself is patched (its subclasses inherit the patch), so a
method is wrapped once however many estimators share it. A method wrapped in scikit-learn's
``available_if`` keeps its condition: the function inside the descriptor is wrapped, not the
descriptor, so ``hasattr(pipeline, "score")`` answers as before. The wrappers keep the original's
name, docstring and signature (``__wrapped__``), which scikit-learn's metadata routing reads.

A thread-local depth tells the outermost call from the calls it makes: a Pipeline's ``fit``
fitting its steps, a search fitting its candidates, ``LGBMClassifier.fit`` calling
``LGBMModel.fit`` all run at depth one or more and are left alone. Work a call hands to other
threads (joblib's threading backend, an IsolationForest's trees) has no depth there, so while
an outermost call runs, calls on every other thread count as inside it too — as in MLflow, two
threads fitting at the same moment log one fit, not two.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Method = Callable[..., Any]
# (original method, the estimator, positional args, keyword args) → the method's result
Handler = Callable[[Method, Any, tuple[Any, ...], dict[str, Any]], Any]


class _Depth(threading.local):
    value = 0


_depth = _Depth()
_outermost = 0  # outermost calls running now, on any thread
_outermost_lock = threading.Lock()


def busy() -> bool:
    """Whether a patched call is running: on this thread, or an outermost one anywhere."""
    return _depth.value > 0 or _outermost > 0


@contextmanager
def inside() -> Iterator[None]:
    _depth.value += 1
    try:
        yield
    finally:
        _depth.value -= 1


@contextmanager
def outermost() -> Iterator[None]:
    """The outermost call: inside it, on this thread and on every other."""
    global _outermost
    with _outermost_lock:
        _outermost += 1
    try:
        with inside():
            yield
    finally:
        with _outermost_lock:
            _outermost -= 1


def wrap(original: Method, handler: Handler, enabled: Callable[[], bool]) -> Method:
    """``original``, but the outermost call on a thread goes to ``handler`` while enabled."""

    @functools.wraps(original)
    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        if busy() or not enabled():
            with inside():
                return original(self, *args, **kwargs)
        return handler(original, self, args, kwargs)

    patched.__mloop_autolog__ = True  # type: ignore[attr-defined]
    return patched


def _replacement(value: Any, make: Callable[[Method], Method]) -> Any:
    if inspect.isfunction(value):
        return make(value)
    inner = getattr(value, "fn", None)  # scikit-learn's available_if descriptor
    if inspect.isfunction(inner) and hasattr(value, "__get__"):
        descriptor = copy.copy(value)
        descriptor.fn = make(inner)
        return descriptor
    return None


class Patches:
    """The methods replaced so far, to put back."""

    def __init__(self) -> None:
        self._originals: dict[tuple[type, str], Any] = {}

    def patch(self, cls: type, name: str, make: Callable[[Method], Method]) -> bool:
        """Wrap ``cls.name`` if ``cls`` defines it itself; whether it is (now) wrapped."""
        if (cls, name) in self._originals:
            return True
        value = cls.__dict__.get(name)
        if value is None:
            return False
        replacement = _replacement(value, make)
        if replacement is None:
            return False
        setattr(cls, name, replacement)
        self._originals[(cls, name)] = value
        return True

    def restore(self) -> None:
        for (cls, name), original in self._originals.items():
            setattr(cls, name, original)
        self._originals.clear()

    def __contains__(self, key: tuple[type, str]) -> bool:
        return key in self._originals

    def __len__(self) -> int:
        return len(self._originals)
