"""Time, always timezone-aware UTC; stored as integer Unix milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from mloop.core.errors import InvalidInput


def now() -> datetime:
    return datetime.now(UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidInput(f"timestamp {moment.isoformat()} has no timezone; use UTC")
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time (``2026-11-20T10:00:00Z``) or a relative one (``-15m``, ``2h``,
    ``1d`` meaning that long ago). Naive times are taken as UTC."""
    raw = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    body = raw.lstrip("-")
    if body and body[-1] in units and body[:-1].replace(".", "", 1).isdigit():
        seconds = float(body[:-1]) * units[body[-1]]
        return datetime.fromtimestamp(time.time() - seconds, tz=UTC)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(
            f"cannot read time {text!r}: use ISO-8601 (2026-11-20T10:00:00Z) "
            "or a duration ago (30m, 2h, 1d)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
