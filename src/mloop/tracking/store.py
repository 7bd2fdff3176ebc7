"""The tracking interface: what the fluent API and the client need of a store.

:class:`~mloop.tracking.runs.TrackingService` (SQLite/PostgreSQL in this process) and
:class:`~mloop.tracking.remote.RemoteTrackingStore` (an mloop server over HTTP) both provide it,
so code written against the fluent API runs unchanged against either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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
    def apply(self, operations: Sequence[Operation]) -> None: ...
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
