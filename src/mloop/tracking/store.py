"""The tracking interface: what the fluent API and the client need of a store.

:class:`~mloop.tracking.runs.TrackingService` (SQLite/PostgreSQL in this process) and
:class:`~mloop.tracking.remote.RemoteTrackingStore` (an mloop server over HTTP) both provide it,
so code written against the fluent API runs unchanged against either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mloop.core.errors import InvalidInput, NotFound
from mloop.core.ids import is_id
from mloop.tracking.records import (
    ArtifactInfo,
    Comparison,
    Experiment,
    MetricPoint,
    Operation,
    Page,
    Run,
    RunInput,
    RunStatus,
    ViewType,
)


@runtime_checkable
class TrackingStore(Protocol):
    # experiments
    def create_experiment(self, name: str, tags: Mapping[str, Any] | None = None) -> Experiment: ...
    def get_or_create_experiment(self, name: str = ...) -> Experiment: ...
    def get_experiment(self, experiment_id: str) -> Experiment: ...
    def get_experiment_by_name(self, name: str) -> Experiment: ...
    def search_experiments(
        self,
        *,
        view: ViewType | str = ...,
        filter_string: str | None = ...,
        order_by: Sequence[str] | None = ...,
        max_results: int | None = ...,
        page_token: str | None = ...,
    ) -> Page[Experiment]: ...
    def rename_experiment(self, experiment_id: str, new_name: str) -> Experiment: ...
    def delete_experiment(self, experiment_id: str) -> Experiment: ...
    def restore_experiment(self, experiment_id: str) -> Experiment: ...
    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None: ...

    # runs
    def apply(self, operations: Sequence[Operation], *, batch_id: str | None = ...) -> None: ...
    def get_run(self, run_id: str) -> Run: ...
    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus | None = ...,
        end_time: int | None = ...,
        name: str | None = ...,
    ) -> Run: ...
    def delete_run(self, run_id: str) -> Run: ...
    def restore_run(self, run_id: str) -> Run: ...
    def delete_tag(self, run_id: str, key: str) -> None: ...
    def search_runs(
        self,
        experiment_ids: Sequence[str] | None = ...,
        filter_string: str | None = ...,
        order_by: Sequence[str] | None = ...,
        max_results: int | None = ...,
        page_token: str | None = ...,
        *,
        view: ViewType | str = ...,
    ) -> Page[Run]: ...
    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]: ...
    def compare_runs(self, run_ids: Sequence[str]) -> Comparison: ...
    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None: ...

    # artifacts
    def log_artifact(
        self, run_id: str, local_path: str | Path, path: str | None = None
    ) -> ArtifactInfo: ...
    def log_artifact_bytes(self, run_id: str, path: str, data: bytes) -> ArtifactInfo: ...
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[ArtifactInfo]: ...
    def read_artifact(self, run_id: str, path: str) -> bytes: ...


def resolve_experiment(store: TrackingStore, name_or_id: str) -> Experiment:
    """An experiment by id (32 hex digits, or MLflow's "0"), else by name."""
    if name_or_id == "0" or is_id(name_or_id):
        try:
            return store.get_experiment(name_or_id)
        except NotFound:
            pass
    return store.get_experiment_by_name(name_or_id)


class RunList(list[Run]):
    """A page of runs: a list, plus the token of the next page and a pandas view."""

    next_page_token: str | None = None

    def to_pandas(self) -> Any:
        """One row per run: attributes, then ``params.*``, ``metrics.*`` and ``tags.*``."""
        import pandas as pd

        records = []
        for run in self:
            record: dict[str, Any] = {
                "run_id": run.id,
                "experiment_id": run.experiment_id,
                "run_name": run.name,
                "status": run.status,
                "start_time": run.start_time,
                "end_time": run.end_time,
                "user": run.user,
            }
            record.update({f"params.{k}": v for k, v in run.params.items()})
            record.update({f"metrics.{k}": v for k, v in run.metrics.items()})
            record.update({f"tags.{k}": v for k, v in run.tags.items()})
            records.append(record)
        return pd.DataFrame.from_records(records)


def search_run_list(
    store: TrackingStore,
    experiments: Sequence[str] | None = None,
    filter_string: str | None = None,
    order_by: Sequence[str] | None = None,
    max_results: int | None = 1000,
    page_token: str | None = None,
    view: ViewType | str = "active",
) -> RunList:
    """Runs of ``experiments`` (names or ids; None: all), as a :class:`RunList`."""
    if isinstance(experiments, str):
        raise InvalidInput("experiments is a list of names or ids")
    ids = None
    if experiments is not None:
        # an id goes as it is (the store says if it does not exist): no round trip per search
        ids = [e if e == "0" or is_id(e) else resolve_experiment(store, e).id for e in experiments]
    page = store.search_runs(ids, filter_string, order_by, max_results, page_token, view=view)
    result = RunList(page.items)
    result.next_page_token = page.next_page_token
    return result
