"""Tuning with Optuna: trials become child runs, the best is refit, studies resume after a
kill, trials run in worker processes and on Ray, bad input is refused before any compute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import polars as pl
import pytest
import sqlalchemy as sa

from helpers import run_cli
from mloop import InvalidInput, NotFound
from mloop.demo.data import transactions
from mloop.training import TuningService, load_space, validate_space
from mloop.workspace import Workspace

HGB = "sklearn.ensemble.HistGradientBoostingClassifier"
SGD = "sklearn.linear_model.SGDClassifier"
SPACE: dict[str, Any] = {
    "learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
    "max_depth": {"type": "int", "low": 2, "high": 4},
    "l2_regularization": {"type": "categorical", "choices": [0.0, 1.0]},
}
FAST = {"max_iter": 10}


@pytest.fixture(autouse=True)
def _one_thread_per_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One OpenMP thread per process, here and in workers: on a busy 2-core machine
    HistGradientBoosting's threads otherwise wait on each other for seconds."""
    from threadpoolctl import threadpool_limits

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with threadpool_limits(limits=1):
        yield


@pytest.fixture
def tx(ws: Workspace) -> Workspace:
    ws.datasets.ingest(transactions(600, seed=7), name="tx")
    return ws


@pytest.fixture
def small(sqlite_ws: Workspace) -> Workspace:
    sqlite_ws.datasets.ingest(transactions(600, seed=7), name="tx")
    return sqlite_ws


def _children(ws: Workspace, parent_id: str) -> list[Any]:
    page = ws.tracking.search_runs(None, f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return sorted(page.items, key=lambda r: int(r.tags["mloop.trial"]))


def _study(ws: Workspace, name: str) -> optuna.Study:
    storage = ws.tuning.storage()
    return optuna.load_study(study_name=name, storage=storage.open(None))


def test_trials_are_child_runs_and_the_best_is_refit_and_registered(tx: Workspace) -> None:
    ws = tx
    seen: list[tuple[int, int]] = []
    result = ws.tuning.tune(
        "tx",
        "is_fraud",
        space=SPACE,
        params=FAST,
        exclude=["transaction_id"],
        n_trials=4,
        cv=2,
        study="fraud-hgb",
        experiment="tuning",
        register="fraud",
        progress=lambda done, total, _best: seen.append((done, total)),
    )
    assert (result.study, result.metric, result.n_trials) == ("fraud-hgb", "roc_auc", 4)
    assert result.complete + result.pruned == 4
    assert seen[0] == (0, 4)
    assert seen[-1] == (4, 4)

    # the study's run, and one child run per trial with its params, score and state
    study_run = ws.tracking.get_run(result.run.id)
    assert (study_run.status, study_run.experiment, study_run.name) == (
        "FINISHED",
        "tuning",
        "fraud-hgb",
    )
    assert study_run.params["metric"] == "roc_auc"
    assert study_run.params["model.max_iter"] == "10"
    assert study_run.metrics["best_roc_auc"] == pytest.approx(result.best_score)
    children = _children(ws, study_run.id)
    assert [int(c.tags["mloop.trial"]) for c in children] == [0, 1, 2, 3]
    study = _study(ws, "fraud-hgb")
    for child, trial in zip(children, study.get_trials(), strict=True):
        assert child.parent_run_id == study_run.id
        assert child.experiment == "tuning"
        assert child.params == {k: str(v) for k, v in trial.params.items()}
        assert child.tags["mloop.trial.state"] == trial.state.name
        assert child.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[trial.state.name]
        if trial.state.name == "COMPLETE":
            assert child.metrics["roc_auc"] == pytest.approx(trial.value)
    best = next(c for c in children if int(c.tags["mloop.trial"]) == result.best_trial)
    assert best.metrics["roc_auc"] == pytest.approx(result.best_score)

    # the best parameters, refit through training: a normal registered version
    assert result.refit is not None
    refit = ws.tracking.get_run(result.refit.run.id)
    assert refit.tags["mloop.study"] == "fraud-hgb"
    assert refit.tags["mloop.study.run"] == study_run.id
    assert refit.tags["mloop.best_trial"] == str(result.best_trial)
    assert float(refit.tags["mloop.best_roc_auc"]) == pytest.approx(result.best_score)
    for key, value in result.best_params.items():
        assert refit.params[f"model.{key}"] == str(value)
    assert refit.params["model.max_iter"] == "10"
    assert study_run.tags["mloop.refit.run"] == refit.id
    version = ws.registry.resolve("fraud")
    assert version.run_id == refit.id
    assert result.refit.model_version is not None
    assert result.refit.model_version.version == version.version


def test_the_study_is_kept_apart_from_mloop_s_tables(tx: Workspace) -> None:
    ws = tx
    result = ws.tuning.tune(
        "tx", "is_fraud", space=SPACE, params=FAST, n_trials=1, cv=2, refit=False, study="apart"
    )
    assert ws.tuning.study_names() == ["apart"]
    assert ws.db.current_revision() is not None  # mloop's Alembic history untouched
    if ws.db.dialect == "postgresql":
        assert "schema mloop_optuna" in result.storage
        with ws.db.read() as conn:
            schemas = {
                row[0]
                for row in conn.exec_driver_sql(
                    "SELECT table_schema FROM information_schema.tables "
                    "WHERE table_name IN ('studies', 'trials')"
                )
            }
        assert schemas == {"mloop_optuna"}
    else:
        assert result.storage.endswith("/ws/optuna.db")
        assert (ws.home / "optuna.db").exists()
        assert "studies" not in sa.inspect(ws.db.engine).get_table_names()


RESUME_SCRIPT = """
import sys
from mloop.workspace import Workspace
ws = Workspace.open(sys.argv[1])
ws.tuning.tune(
    "tx", "is_fraud", space=SPACE, params=PARAMS, n_trials=8, cv=2, study="crash",
    refit=False, heartbeat_seconds=1,
)
"""


def test_a_killed_study_resumes_to_n_trials(small: Workspace) -> None:
    ws = small
    slow = {"max_iter": 300, "early_stopping": False}  # a trial takes a while: kill mid-trial
    script = (
        f"SPACE = {json.dumps(SPACE).replace('true', 'True')}\n"
        f"PARAMS = {json.dumps(slow).replace('false', 'False')}\n" + textwrap.dedent(RESUME_SCRIPT)
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(ws.home)])
    try:
        deadline = time.monotonic() + 120
        finished = 0
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            if not (ws.home / "optuna.db").exists():
                continue
            try:
                trials = _study(ws, "crash").get_trials()
            except KeyError:
                continue  # the study is not created yet
            finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
            if finished >= 2 and trials[-1].state.name == "RUNNING":
                break
        assert process.poll() is None, "the study ended before it could be killed"
        assert finished >= 2
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    states = [t.state.name for t in _study(ws, "crash").get_trials()]
    # killed mid-trial, unless (rarely) between one trial's end and the next one's start
    interrupted = states.count("RUNNING")
    time.sleep(2.5)  # the grace period (2 heartbeats) of the killed trial

    result = ws.tuning.tune(
        "tx",
        "is_fraud",
        space=SPACE,
        params=slow,
        n_trials=8,
        cv=2,
        study="crash",
        refit=False,
        heartbeat_seconds=1,
    )
    trials = _study(ws, "crash").get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 8
    assert result.complete + result.pruned == 8
    assert "RUNNING" not in states
    assert states.count("FAIL") == interrupted  # the trial the kill interrupted
    assert result.failed == states.count("FAIL")
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))
    # the study's run is the one the killed process started; each trial logged once
    children = _children(ws, result.run.id)
    assert sorted(int(c.tags["mloop.trial"]) for c in children) == numbers
    assert result.run.status == "FINISHED"
    assert len(ws.tracking.list_runs()) == 1 + len(trials)


def test_two_worker_processes_share_the_study(small: Workspace) -> None:
    ws = small
    result = ws.tuning.tune(
        "tx", "is_fraud", space=SPACE, params=FAST, n_trials=4, cv=2, workers=2, refit=False
    )
    assert result.complete + result.pruned == 4
    children = _children(ws, result.run.id)
    assert len(children) == 4
    pids = {c.tags["mloop.worker"].rsplit(":", 1)[1] for c in children}
    assert len(pids) == 2
    assert str(os.getpid()) not in pids


def test_pruning_stops_bad_trials_early(small: Workspace) -> None:
    """With a huge ``alpha`` SGD's weights vanish and every fold scores 0.5: such trials
    fall below the median after the first fold and are pruned."""
    ws = small
    result = ws.tuning.tune(
        "tx",
        "is_fraud",
        model=SGD,
        params={"loss": "log_loss"},
        space={"alpha": {"type": "float", "low": 1e-5, "high": 1e4, "log": True}},
        exclude=["transaction_id"],
        n_trials=10,
        cv=4,
        sampler="random",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
        refit=False,
    )
    assert result.pruned >= 1
    assert result.complete + result.pruned == 10
    pruned = [c for c in _children(ws, result.run.id) if c.tags["mloop.trial.state"] == "PRUNED"]
    assert len(pruned) == result.pruned
    for child in pruned:
        assert child.status == "KILLED"
        assert "roc_auc" not in child.metrics
        steps = ws.tracking.metric_history(child.id, "cv_roc_auc")
        assert len(steps) < 4  # stopped before the last fold


def _bad_inputs() -> list[Any]:
    ok: dict[str, Any] = {"space": SPACE, "params": FAST}
    cases = [
        ({"model": "sklearn.nope.Missing"}, "unknown estimator"),
        ({"target": "no_such_column"}, "not in dataset"),
        ({"space": {}}, "search space is empty"),
        ({"space": {"n_estimators": {"type": "int", "low": 1, "high": 3}}}, "no parameter"),
        ({"space": {"max_depth": {"type": "integer", "low": 1, "high": 3}}}, "unknown type"),
        ({"space": {"max_depth": {"type": "int", "low": 5, "high": 3}}}, "must be below high"),
        ({"space": {"max_depth": {"type": "int", "low": 1.5, "high": 3}}}, "must be an integer"),
        # worker processes started early are stopped
        ({"workers": 2, "space": {"max_depth": {"type": "int", "low": 3, "high": 3}}}, "below"),
        (
            {"space": {"learning_rate": {"type": "float", "low": 0.0, "high": 1, "log": True}}},
            "log scale needs low > 0",
        ),
        ({"space": {"loss": {"type": "categorical", "choices": []}}}, "non-empty list"),
        ({"space": {"max_depth": {"type": "int", "low": 1, "hi": 3}}}, "unknown key"),
        ({"space": {"max_depth": {"type": "int", "low": 0, "high": 3}}}, "does not accept 0"),
        ({"space": {"loss": {"type": "categorical", "choices": ["nope"]}}}, "does not accept"),
        ({"space": "max_depth"}, "must be a mapping"),
        ({"params": {"max_depth": 3}}, "both fixed"),
        ({"params": {"no_such": 1}}, "unexpected keyword"),
        ({"metric": "no_such_metric"}, "unknown metric"),
        ({"n_trials": 0}, "n_trials"),
        ({"workers": 0}, "workers"),
        ({"backend": "dask"}, "unknown backend"),
        ({"sampler": "grid"}, "unknown sampler"),
        ({"cv": 0}, "cv must be"),
        ({"study": "bad name!"}, "study name"),
        ({"register": "bad name!"}, "model name"),
        ({"dataset": "constant", "target": "y", "model": "sklearn.linear_model.Ridge"}, "constant"),
        ({"dataset": "one_class", "target": "y"}, "one class only"),
        ({"dataset": "rare", "target": "y", "cv": 3}, "rarest class"),
    ]
    return [pytest.param({**ok, **change}, text, id=text) for change, text in cases]


@pytest.mark.parametrize(("kwargs", "message"), _bad_inputs())
def test_bad_input_is_refused_before_any_study_or_run(
    small: Workspace, kwargs: dict[str, Any], message: str
) -> None:
    ws = small
    ws.datasets.ingest(pl.DataFrame({"x": [1.0, 2, 3, 4, 5, 6], "y": [1.0] * 6}), name="constant")
    ws.datasets.ingest(pl.DataFrame({"x": [1.0, 2, 3, 4, 5, 6], "y": [1] * 6}), name="one_class")
    ws.datasets.ingest(
        pl.DataFrame({"x": [float(i) for i in range(12)], "y": [0] * 10 + [1] * 2}), name="rare"
    )
    if "space" in kwargs and kwargs["space"] is SPACE and "dataset" in kwargs:
        kwargs = {**kwargs, "space": {"alpha": {"type": "float", "low": 0.1, "high": 1.0}}}
        if "Ridge" not in kwargs.get("model", ""):
            kwargs["model"] = SGD
    if kwargs.get("model") == "sklearn.linear_model.Ridge":
        kwargs["params"] = {}
    dataset = kwargs.pop("dataset", "tx")
    target = kwargs.pop("target", "is_fraud")
    with pytest.raises(InvalidInput, match=message):
        ws.tuning.tune(dataset, target, **kwargs)
    assert not (ws.home / "optuna.db").exists()
    assert ws.tracking.list_runs() == []


def test_an_unknown_dataset_is_not_found(small: Workspace) -> None:
    with pytest.raises(NotFound):
        small.tuning.tune("nope", "y", space=SPACE)
    assert not (small.home / "optuna.db").exists()


def test_a_study_resumes_only_with_the_same_settings(small: Workspace) -> None:
    ws = small
    ws.tuning.tune(
        "tx", "is_fraud", space=SPACE, params=FAST, n_trials=1, cv=2, study="same", refit=False
    )
    with pytest.raises(InvalidInput, match="exists with another space"):
        ws.tuning.tune(
            "tx",
            "is_fraud",
            space={"max_depth": {"type": "int", "low": 2, "high": 5}},
            params=FAST,
            n_trials=2,
            cv=2,
            study="same",
        )
    # asking again for trials it has: nothing runs, the same run finishes again
    again = ws.tuning.tune(
        "tx", "is_fraud", space=SPACE, params=FAST, n_trials=1, cv=2, study="same", refit=False
    )
    assert again.complete + again.pruned == 1
    assert len(_children(ws, again.run.id)) == 1


def test_space_files_and_validation(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    (tmp_path / "space.yaml").write_text(
        "learning_rate: {type: float, low: 0.01, high: 0.3, log: true}\n"
        "max_depth: {type: int, low: 2, high: 8, step: 2}\n"
        "loss: {type: categorical, choices: [log_loss]}\n"
    )
    space = load_space(tmp_path / "space.yaml")
    assert validate_space(space, HistGradientBoostingClassifier()) == {
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "max_depth": {"type": "int", "low": 2, "high": 8, "log": False, "step": 2},
        "loss": {"type": "categorical", "choices": ["log_loss"]},
    }
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    assert load_space(tmp_path / "space.json") == SPACE
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(InvalidInput, match="mapping"):
        load_space(tmp_path / "bad.yaml")
    with pytest.raises(InvalidInput, match="cannot read"):
        load_space(tmp_path / "missing.yaml")


def test_ray_workers_run_the_trials(small: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import ray
    except ImportError:
        pytest.skip("ray is not installed (pip install 'mloop[ray]')")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = small.tuning.tune(
            "tx",
            "is_fraud",
            space=SPACE,
            params=FAST,
            n_trials=4,
            cv=2,
            workers=2,
            backend="ray",
            refit=False,
        )
    finally:
        ray.shutdown()
    assert result.complete + result.pruned == 4
    children = _children(small, result.run.id)
    assert len(children) == 4
    assert str(os.getpid()) not in {c.tags["mloop.worker"].rsplit(":", 1)[1] for c in children}


def test_the_cli_tunes_and_registers(small: Workspace, tmp_path: Path) -> None:
    ws = small
    (tmp_path / "space.yaml").write_text(
        "learning_rate: {type: float, low: 0.05, high: 0.3, log: true}\n"
        "max_depth: {type: int, low: 2, high: 4}\n"
    )
    code, out, err = run_cli(
        ws,
        "tune",
        "tx",
        "--target",
        "is_fraud",
        "--space",
        str(tmp_path / "space.yaml"),
        "--trials",
        "2",
        "--cv",
        "2",
        "--param",
        "max_iter=10",
        "--study",
        "cli",
        "--register",
        "fraud",
    )
    assert (code, err) == (0, "")
    assert "study cli: " in out
    assert "registered fraud@1 (alias champion)" in out

    code, out, _ = run_cli(
        ws,
        "tune",
        "tx",
        "-t",
        "is_fraud",
        "-s",
        str(tmp_path / "space.yaml"),
        "-n",
        "3",
        "--cv",
        "2",
        "-p",
        "max_iter=10",
        "--study",
        "cli",
        "--no-refit",
        "--json",
    )
    assert code == 0
    body = json.loads(out)
    assert (body["study"], body["n_trials"], body["refit"]) == ("cli", 3, None)
    assert body["complete"] + body["pruned"] == 3

    code, _, err = run_cli(ws, "tune", "tx", "-t", "is_fraud", "-s", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "cannot read search space" in err


def test_the_service_is_exported() -> None:
    assert TuningService.__module__ == "mloop.training.tuning"


def test_processes_opening_a_new_study_storage_at_once_all_get_it(tmp_path: Path) -> None:
    # Optuna stamps a new database's schema version on first open; two openers at once used to
    # fail one of them with "UNIQUE constraint failed: alembic_version.version_num"
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    code = (
        "import sys, time\n"
        "from mloop.training.tuning import StudyStorage\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "StudyStorage(sys.argv[1]).open(None)\n"
    )
    start = str(time.time() + 4)  # every process past its imports: they open together
    processes = [
        subprocess.Popen([sys.executable, "-c", code, url, start], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode()[-500:] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
