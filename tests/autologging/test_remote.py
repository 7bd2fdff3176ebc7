"""Autologging to an mloop server: the same runs, over REST."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

import mloop
from autologging.support import all_runs, binary_frame, reset_fluent
from mloop.demo.runner import free_port, start_server, wait_ready
from mloop.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    home = tmp_path / "served"
    url = f"http://127.0.0.1:{free_port()}"
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("MLOOP_")}
    process = start_server(home, int(url.rsplit(":", 1)[1]), tmp_path / "server.log")
    try:
        wait_ready(url, process)
        mloop.init(url)
        mloop.autolog()
        yield url, home
    finally:
        mloop.autolog(disable=True)
        reset_fluent()
        process.terminate()
        process.wait(timeout=30)
        os.environ.update(saved)


def test_autologging_to_a_server(server: tuple[str, Path]) -> None:
    _url, home = server
    X, y = binary_frame(300)
    model = LogisticRegression().fit(X[:200], y[:200])
    accuracy = model.score(X[200:], y[200:])
    GridSearchCV(LogisticRegression(), {"C": [0.5, 2.0]}, cv=2).fit(X, y)

    runs = all_runs()
    assert len(runs) == 4  # the fit, the search and its two candidates
    run = mloop.get_run(runs[0].id)
    assert run.status == "FINISHED"
    assert run.metrics["training_accuracy"] == pytest.approx(
        skm.accuracy_score(y[:200], model.predict(X[:200]))
    )
    assert run.metrics["val_accuracy"] == pytest.approx(accuracy)
    assert [(i.name, i.context) for i in run.inputs] == [
        ("training", "training"),
        ("val", "validation"),
    ]
    with Workspace.open(home) as ws:
        ws.registry.register(run.id, "remote")
        rows = X.head(3).to_dict(orient="records")
        assert ws.predict("remote", rows).predictions == model.predict(X.head(3)).tolist()
