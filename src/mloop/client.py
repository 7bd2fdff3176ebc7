"""``MloopClient``: lookups and management over a tracking store, local or remote.

client = mloop.MloopClient()                       # same store as the fluent API
client = mloop.MloopClient("http://127.0.0.1:8000")
runs = client.search_runs(["churn"], "metrics.auc > 0.9", ["metrics.auc DESC"])
runs.to_pandas()
client.compare_runs([r.id for r in runs[:3]])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.core.clock import now_ms
from mloop.core.ids import new_id
from mloop.tracking import (
    DEFAULT_EXPERIMENT_ID,
    ArtifactInfo,
    Comparison,
    CreateRun,
    Experiment,
    LogBatch,
    MetricPoint,
    MetricValue,
    Page,
    RemoteTrackingStore,
    Run,
    RunList,
    TrackingStore,
    ViewType,
    resolve_experiment,
    search_run_list,
)

if TYPE_CHECKING:
    from mloop.workspace import Workspace


class MloopClient:
    """Lookups and management over a tracking store. A client given a ``uri`` opens a store of
    its own (a workspace, or a connection to a server): ``close()`` it, or use it in ``with``."""

    _owner: Workspace | None = None

    def __init__(
        self, uri: str | os.PathLike[str] | None = None, *, store: TrackingStore | None = None
    ) -> None:
        self._own_store = uri is not None and store is None
        self._shares_fluent = False
        if store is not None:
            self.store = store
        elif uri is None:
            from mloop import fluent

            self.store = fluent._context().store
            self._shares_fluent = True
        else:
            from mloop.fluent import _open

            self.store, _resolved, self._owner = _open(os.fspath(uri))

    def close(self) -> None:
        """Release what the client opened itself (nothing if it shares the fluent API's store)."""
        if not self._own_store:
            return
        self._own_store = False
        if self._owner is not None:
            self._owner.close()
        elif isinstance(self.store, RemoteTrackingStore):
            self.store.close()

    def __enter__(self) -> MloopClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- experiments -----------------------------------------------------------------------

    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> Experiment:
        return self.store.create_experiment(name, tags)

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.store.get_experiment(experiment_id)

    def get_experiment_by_name(self, name: str) -> Experiment:
        return self.store.get_experiment_by_name(name)

    def resolve_experiment(self, name_or_id: str) -> Experiment:
        """An experiment by id (32 hex digits, or MLflow's "0"), else by name."""
        return resolve_experiment(self.store, name_or_id)

    def search_experiments(
        self,
        view: ViewType | str = "active",
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page[Experiment]:
        return self.store.search_experiments(
            view=view,
            filter_string=filter_string,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
        )

    def rename_experiment(self, name_or_id: str, new_name: str) -> Experiment:
        return self.store.rename_experiment(self.resolve_experiment(name_or_id).id, new_name)

    def delete_experiment(self, name_or_id: str) -> Experiment:
        return self.store.delete_experiment(self.resolve_experiment(name_or_id).id)

    def restore_experiment(self, experiment_id: str) -> Experiment:
        return self.store.restore_experiment(experiment_id)

    # -- runs ------------------------------------------------------------------------------

    def _sync(self) -> None:
        """Sharing the fluent API's store, read after what it queued is written (as MLflow's
        synchronous client would show it)."""
        if self._shares_fluent:
            from mloop import fluent

            fluent.flush()

    def get_run(self, run_id: str) -> Run:
        self._sync()
        return self.store.get_run(run_id)

    def create_run(
        self,
        experiment_id: str = DEFAULT_EXPERIMENT_ID,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
    ) -> Run:
        """A new RUNNING run, created now (not batched)."""
        run_id = new_id()
        self.store.apply(
            [
                CreateRun(
                    run_id=run_id,
                    experiment_id=experiment_id,
                    name=run_name,
                    tags={k: str(v) for k, v in (tags or {}).items()},
                    parent_run_id=parent_run_id,
                )
            ]
        )
        return self.store.get_run(run_id)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[MetricValue] = (),
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Log at once, in one transaction or request (MlflowClient's log_batch)."""
        self._sync()
        self.store.apply(
            [
                LogBatch(
                    run_id=run_id,
                    metrics=list(metrics),
                    params={k: str(v) for k, v in (params or {}).items()},
                    tags={k: str(v) for k, v in (tags or {}).items()},
                )
            ]
        )

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        step: int = 0,
        timestamp: int | None = None,
    ) -> None:
        ts = timestamp if timestamp is not None else now_ms()
        self.log_batch(run_id, [MetricValue(key=key, value=value, step=step, timestamp=ts)])

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params={key: value})

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags={key: value})

    def delete_tag(self, run_id: str, key: str) -> None:
        self._sync()
        self.store.delete_tag(run_id, key)

    def search_runs(
        self,
        experiments: Sequence[str] | None = None,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int | None = 1000,
        page_token: str | None = None,
        view: ViewType | str = "active",
    ) -> RunList:
        """Runs of ``experiments`` (names or ids; None: all) matching MLflow's filter grammar,
        e.g. ``metrics.auc > 0.9 and params.model = 'xgb' and tags.team LIKE 'risk%'``."""
        self._sync()
        return search_run_list(
            self.store, experiments, filter_string, order_by, max_results, page_token, view
        )

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        self._sync()
        return self.store.metric_history(run_id, key)

    def compare_runs(self, run_ids: Sequence[str]) -> Comparison:
        self._sync()
        return self.store.compare_runs(run_ids)

    def delete_run(self, run_id: str) -> Run:
        return self.store.delete_run(run_id)

    def restore_run(self, run_id: str) -> Run:
        return self.store.restore_run(run_id)

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> Run:
        return self.store.update_run(run_id, status=status)  # type: ignore[arg-type]

    # -- artifacts -------------------------------------------------------------------------

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        self._sync()
        return self.store.list_artifacts(run_id, path)

    def download_artifacts(
        self, run_id: str, path: str = "", destination: str | os.PathLike[str] = "."
    ) -> Path:
        """Download the artifact ``path`` — a file, or a folder with everything under it —
        into ``destination``, keeping its relative path; return the local file or folder."""
        self._sync()
        root = Path(destination)
        found = self.store.list_artifacts(run_id, path or None)
        single = len(found) == 1 and not found[0].is_dir and found[0].path == path
        if path and single:
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.store.read_artifact(run_id, path))
            return target
        if path and not found:
            # not a folder: a single file (or NotFound from the store)
            target = root / path
            data = self.store.read_artifact(run_id, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            return target
        for entry in found:
            if entry.is_dir:
                self.download_artifacts(run_id, entry.path, root)
            else:
                target = root / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self.store.read_artifact(run_id, entry.path))
        return root / path if path else root

    download_artifact = download_artifacts
