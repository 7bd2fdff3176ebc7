"""What the tracking store holds and returns, and the operations a batch can carry.

These are the nouns of the tracking interface, shared by the local store
(:class:`~mloop.tracking.runs.TrackingService`), the REST API and the remote client, so a run
looks the same whichever side of HTTP it was read on.
"""

from __future__ import annotations

import math
import numbers
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

RunStatus = Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
ViewType = Literal["active", "deleted", "all"]
TERMINAL: frozenset[str] = frozenset({"FINISHED", "FAILED", "KILLED"})
DEFAULT_EXPERIMENT = "Default"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow clients send "0" when no experiment is set

T = TypeVar("T")


def artifact_uri(experiment_id: str, run_id: str) -> str:
    """Where a run's artifacts live, in the form MLflow clients resolve through the server's
    artifact proxy (``/api/2.0/mlflow-artifacts/artifacts/<experiment>/<run>/artifacts``)."""
    return f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"


class Experiment(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    id: str
    name: str
    lifecycle_stage: str
    created_at: datetime
    updated_at: datetime | None = None
    tags: dict[str, str] = {}


class ArtifactInfo(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    path: str
    digest: str | None = None  # None for a folder in a listing
    size_bytes: int | None = None
    is_dir: bool = False


class RunInput(BaseModel):
    """A dataset a run read: an mloop dataset version, or one described by a client (MLflow's
    log_inputs), identified by name and digest."""

    name: str
    digest: str
    context: str = "training"
    source_type: str | None = None
    source: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    profile: str | None = None

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, serialize_by_alias=True, ser_json_inf_nan="strings"
    )


class Run(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    id: str
    experiment_id: str
    experiment: str
    name: str
    status: str
    start_time: datetime
    end_time: datetime | None
    user: str | None
    lifecycle_stage: str = "active"
    parent_run_id: str | None = None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[ArtifactInfo] = []
    inputs: list[RunInput] = []

    @property
    def duration_seconds(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


class MetricPoint(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    key: str
    value: float
    step: int
    timestamp: datetime


class Page(BaseModel, Generic[T]):
    """One page of results and the token of the next (None on the last page)."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    items: list[T]
    next_page_token: str | None = None


class Comparison(BaseModel):
    """Params and metrics of several runs side by side: one row per key, one column per run."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    runs: list[str]
    names: list[str]
    params: dict[str, list[str | None]]
    metrics: dict[str, list[float | None]]
    differing_params: list[str]


# -- the operations a batch carries ------------------------------------------------------------


def parse_metric_value(value: Any) -> float:
    """Numbers, and the strings MLflow's JSON uses for the values JSON lacks."""
    if isinstance(value, str):
        special = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf}
        key = value.strip().lower()
        if key in special:
            return special[key]
    # numbers.Real also admits NumPy's scalars (np.float32, np.int64, ...)
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise ValueError(f"a metric value is a number, not {type(value).__name__}")
    return float(value)


class MetricValue(BaseModel):
    """One value of one metric: ``timestamp`` in Unix milliseconds (None: when it is stored)."""

    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    key: str
    value: float
    step: int = 0
    timestamp: int | None = None

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: Any) -> float:
        return parse_metric_value(value)


class CreateRun(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    op: Literal["create_run"] = "create_run"
    run_id: str | None = None  # clients may choose the id (a UUIDv7), so creation can be batched
    experiment_id: str = DEFAULT_EXPERIMENT_ID
    name: str | None = None
    start_time: int | None = None
    user: str | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] = {}


class LogBatch(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    op: Literal["log"] = "log"
    run_id: str
    metrics: list[MetricValue] = []
    params: dict[str, str] = {}
    tags: dict[str, str] = {}

    @field_validator("params", "tags", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else str(v) for k, v in value.items()}
        return value


class UpdateRun(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="strings")

    op: Literal["update_run"] = "update_run"
    run_id: str
    status: RunStatus | None = None
    end_time: int | None = None
    name: str | None = None


Operation = Annotated[CreateRun | LogBatch | UpdateRun, Field(discriminator="op")]


class Operations(BaseModel):
    """A batch of operations applied in order, in one transaction: all or nothing.

    ``batch_id`` (any unique string, e.g. a UUID) makes a resend harmless: a batch whose id was
    applied already is acknowledged and not applied again — what a client does when it never
    heard the answer to the first send."""

    operations: list[Operation]
    batch_id: str | None = Field(default=None, max_length=64)
