"""Heavy libraries imported on first use, so a process only pays for what it touches.

    if TYPE_CHECKING:
        import polars as pl
    else:
        pl = lazy_module("polars")

The server idles without NumPy, pandas, Polars, Arrow or scikit-learn in memory, and
``mloop --help`` starts in a fraction of a second; the first call that needs one imports it.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._mloop_target = name

    def _load(self) -> types.ModuleType:
        return importlib.import_module(self._mloop_target)

    def __getattr__(self, attr: str) -> Any:
        # only reached for names not cached yet: after the first lookup a name is an ordinary
        # attribute of this stand-in, as fast as on the module itself
        value = getattr(self._load(), attr)
        if not attr.startswith("__"):
            self.__dict__[attr] = value
        return value

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        return f"<lazy module {self._mloop_target!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports on first attribute access."""
    return _LazyModule(name)
