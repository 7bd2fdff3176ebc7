"""Helpers shared by test modules (``pythonpath = ["tests"]`` puts this on the path)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from typer.testing import CliRunner

from mloop.cli import app
from mloop.workspace import Workspace


def run_cli(ws: Workspace, *args: str) -> tuple[int, str, str]:
    """Run ``mloop --workspace WS ARGS…`` in-process: (exit code, stdout, stderr on one line).

    An exception other than a clean exit is raised, so a crash never passes for an error."""
    result = CliRunner().invoke(app, ["--workspace", str(ws.home), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def is_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert an API error: the status, and the one error shape ``{"error", "message"}``."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert set(body) <= {"error", "message", "details"}
    return body


def drift_frame(n: int, seed: int, *, shifted: bool = False, labelled: bool = True) -> pl.DataFrame:
    """``x`` (normal), ``y`` (never shifted) and ``cat`` (four levels); ``shifted`` moves ``x``
    and ``cat`` only. ``label`` depends on ``x`` and ``cat``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(1.2 if shifted else 0.0, 1.0, n)
    p = [0.1, 0.2, 0.3, 0.4] if shifted else [0.4, 0.3, 0.2, 0.1]
    cat = rng.choice(["a", "b", "c", "d"], n, p=p)
    out = pl.DataFrame({"x": x, "y": rng.normal(5.0, 2.0, n), "cat": cat})
    if labelled:
        label = (x + (cat == "a") + rng.normal(0, 1, n) > 0.8).astype(np.int64)
        out = out.with_columns(label=pl.Series(label))
    return out
