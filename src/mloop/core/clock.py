"""Time, always timezone-aware UTC; stored as integer Unix milliseconds."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from mloop.core.errors import InvalidInput

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"-?(\d+\.?\d*|\.\d+)([smhd])", re.ASCII)


def now() -> datetime:
    return datetime.now(UTC)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidInput(f"timestamp {moment.isoformat()} has no timezone; use UTC")
    return (moment - EPOCH) // _MS  # exact integer arithmetic; floats drift by a millisecond


def from_ms(ms: int) -> datetime:
    return EPOCH + ms * _MS


def parse_time(text: str) -> datetime:
    """Parse an ISO-8601 time (``2026-11-20T10:00:00Z``) or a relative one (``-15m``, ``2h``,
    ``1d`` meaning that long ago). Naive times are taken as UTC."""
    raw = text.strip()
    try:
        if duration := _DURATION.fullmatch(raw):
            return now() - timedelta(seconds=float(duration[1]) * _UNITS[duration[2]])
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:  # not a time, or outside years 1-9999
        raise InvalidInput(
            f"cannot read time {text!r}: use ISO-8601 (2026-11-20T10:00:00Z) "
            "or a duration ago (30m, 2h, 1d)"
        ) from exc
