"""Where autologging writes: the fluent API's active run, or a run it has ended since.

Everything autologging needs of the fluent API beyond its public functions goes through here:
its store, the workspace behind it (None for a remote server), and its upload of bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mloop import fluent
from mloop.core.clock import now_ms
from mloop.core.ids import new_id
from mloop.security import local_actor
from mloop.tracking import (
    TERMINAL,
    CreateRun,
    LogBatch,
    MetricValue,
    Operation,
    RunInput,
    TrackingStore,
    UpdateRun,
)

if TYPE_CHECKING:
    from mloop.workspace import Workspace


def store() -> TrackingStore:
    return fluent._context().store


def workspace() -> Workspace | None:
    """The local workspace the fluent API logs to; None when it logs to a server."""
    return fluent._context().owner


def upload(path: str, data: bytes) -> None:
    """A file of the active run."""
    fluent._upload(path, data)


def log_metrics_to(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log to ``run_id`` whether it is still running or has ended.

    An ended run is reopened, written and ended again with its own status and end time, in one
    transaction: nobody sees it running, and its duration does not change."""
    values = [
        MetricValue(key=k, value=v, step=step, timestamp=now_ms())
        for k, v in metrics.items()
        if math.isfinite(v)
    ]
    if not values:
        return
    fluent.flush()
    target = store()
    batch = LogBatch(run_id=run_id, metrics=values)
    run = target.get_run(run_id)
    if run.status not in TERMINAL:
        target.apply([batch])
        return
    end = None if run.end_time is None else int(run.end_time.timestamp() * 1000)
    target.apply(
        [
            UpdateRun(run_id=run_id, status="RUNNING"),
            batch,
            UpdateRun(run_id=run_id, status=run.status, end_time=end),
        ]
    )


def log_inputs_to(run_id: str, inputs: Sequence[RunInput]) -> None:
    fluent.flush()  # the run must be stored before its inputs are
    store().log_inputs(run_id, inputs)


@dataclass
class Child:
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)


def log_children(parent: fluent.ActiveRun, children: Sequence[Child]) -> list[str]:
    """Finished child runs of ``parent``, all written in one transaction; their ids."""
    if not children:
        return []
    fluent.flush()  # the parent first
    now = now_ms()
    user = local_actor()
    ops: list[Operation] = []
    ids = []
    for child in children:
        run_id = new_id()
        ids.append(run_id)
        ops.append(
            CreateRun(
                run_id=run_id,
                experiment_id=parent.experiment_id,
                name=child.name,
                start_time=now,
                user=user,
                parent_run_id=parent.run_id,
                tags={fluent.PARENT_TAG: parent.run_id, **child.tags},
            )
        )
        metrics = [
            MetricValue(key=k, value=v, step=0, timestamp=now)
            for k, v in child.metrics.items()
            if math.isfinite(v)
        ]
        ops.append(LogBatch(run_id=run_id, metrics=metrics, params=child.params))
        ops.append(UpdateRun(run_id=run_id, status="FINISHED", end_time=now))
    store().apply(ops)
    return ids
