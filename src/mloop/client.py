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

from mloop.tracking import (
    ArtifactInfo,
    Comparison,
    Experiment,
    MetricPoint,
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
        if store is not None:
            self.store = store
        elif uri is None:
            from mloop import fluent

            self.store = fluent._context().store
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

    def get_run(self, run_id: str) -> Run:
        return self.store.get_run(run_id)

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
        return search_run_list(
            self.store, experiments, filter_string, order_by, max_results, page_token, view
        )

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        return self.store.metric_history(run_id, key)

    def compare_runs(self, run_ids: Sequence[str]) -> Comparison:
        return self.store.compare_runs(run_ids)

    def delete_run(self, run_id: str) -> Run:
        return self.store.delete_run(run_id)

    def restore_run(self, run_id: str) -> Run:
        return self.store.restore_run(run_id)

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> Run:
        return self.store.update_run(run_id, status=status)  # type: ignore[arg-type]

    # -- artifacts -------------------------------------------------------------------------

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]:
        return self.store.list_artifacts(run_id, path)

    def download_artifact(
        self, run_id: str, path: str, destination: str | os.PathLike[str] = "."
    ) -> Path:
        """Write the artifact ``path`` to a file in ``destination``; return the file."""
        data = self.store.read_artifact(run_id, path)
        target = Path(destination) / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target
