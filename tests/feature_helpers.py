"""A stream-fed feature view the feature-store tests share: driver events on a local log,
the first three already ingested into ``driver_events``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import polars as pl

from mloop.features import Entity, FeatureView
from mloop.workspace import Workspace

STREAM = "log://driver-events"

Events = Callable[[range, float], list[dict[str, object]]]


def live_view(ws: Workspace, driver: Entity) -> tuple[Events, FeatureView]:
    """Events maker (``id``, ``driver_id`` = id % 3, ``ts_ms`` a minute ago + id, ``rate`` =
    rate + id) and the view ``live`` over them (not applied); events 0-2 are ingested."""
    base = int(datetime.now(UTC).timestamp() * 1000)

    def events(ids: range, rate: float) -> list[dict[str, object]]:
        return [
            {"id": i, "driver_id": i % 3, "ts_ms": base - 60_000 + i, "rate": rate + i} for i in ids
        ]

    ws.streams.produce(STREAM, events(range(3), 0.0))
    ws.streams.consume("driver_events", STREAM, max_events=3, max_wait=0.2)
    view = FeatureView(
        "live",
        entities=[driver],
        source="driver_events",
        stream=STREAM,
        timestamp_column="ts",
        features=["rate"],
        transform={"ts": pl.from_epoch("ts_ms", time_unit="ms")},
        ttl="1d",
    )
    return events, view
