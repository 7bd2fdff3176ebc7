"""clock: timezone-aware UTC everywhere, integer milliseconds in storage, a forgiving parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mloop.core.clock import from_ms, now, now_ms, parse_time, to_ms
from mloop.core.errors import InvalidInput


def test_now_is_timezone_aware_utc() -> None:
    moment = now()
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)


def test_now_ms_agrees_with_now() -> None:
    before = to_ms(now())
    ms = now_ms()
    after = to_ms(now())
    assert isinstance(ms, int)
    assert before <= ms <= after


def test_to_ms_refuses_a_naive_datetime() -> None:
    with pytest.raises(InvalidInput, match="no timezone"):
        to_ms(datetime(2026, 11, 20, 10, 0))


def test_to_ms_of_known_instants() -> None:
    assert to_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert to_ms(datetime(2026, 11, 20, 10, 0, tzinfo=UTC)) == 1_795_168_800_000
    # another zone, same instant
    plus2 = timezone(timedelta(hours=2))
    assert to_ms(datetime(2026, 11, 20, 12, 0, tzinfo=plus2)) == 1_795_168_800_000
    # sub-millisecond parts are floored, before and after the epoch alike
    assert to_ms(datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC)) % 1000 == 999
    assert to_ms(datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)) == -1


def test_from_ms_is_utc() -> None:
    assert from_ms(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert from_ms(1_795_168_800_123).utcoffset() == timedelta(0)
    assert from_ms(1_795_168_800_123).microsecond == 123_000


@given(st.integers(min_value=-(10**12), max_value=2**42))
def test_ms_round_trips_exactly(ms: int) -> None:
    assert to_ms(from_ms(ms)) == ms


@given(st.datetimes(min_value=datetime(1900, 1, 1), timezones=st.just(UTC)))
def test_to_ms_is_the_floor_of_the_instant(moment: datetime) -> None:
    ms = to_ms(moment)
    assert from_ms(ms) <= moment < from_ms(ms + 1)


# -- parse_time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T10:00:00Z",
        "2026-11-20T10:00:00+00:00",
        "2026-11-20T12:00:00+02:00",
        "2026-11-20T05:00:00-05:00",
        "2026-11-20T10:00:00",  # naive: taken as UTC
        "  2026-11-20T10:00:00Z ",
    ],
)
def test_parse_time_reads_iso_8601_as_utc(text: str) -> None:
    parsed = parse_time(text)
    assert parsed == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert parsed.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30m", timedelta(minutes=30)),
        ("-30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("45s", timedelta(seconds=45)),
        ("1.5h", timedelta(minutes=90)),
        ("0m", timedelta(0)),
    ],
)
def test_parse_time_reads_a_duration_as_that_long_ago(text: str, ago: timedelta) -> None:
    before = now()
    parsed = parse_time(text)
    after = now()
    assert parsed.tzinfo == UTC
    assert before - ago <= parsed <= after - ago


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "10x",
        "m",
        "-",
        "--5m",
        "5 m",
        "2026-13-01T00:00:00Z",
        "1e400h",
        "²m",  # a digit to str.isdigit, not to float()
        "٣m",  # Arabic-Indic three: not an ASCII duration
        "99999999999999d",  # before year 1
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "1" * 400 + "h",  # float infinity
    ],
)
def test_parse_time_refuses_garbage_with_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="cannot read time"):
        parse_time(text)


_durations = st.builds(
    lambda sign, number, unit: f"{sign}{number}{unit}",
    st.sampled_from(["", "-", "--", "+"]),
    st.one_of(
        st.integers(min_value=0, max_value=10**20).map(str),
        st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
        st.text(alphabet="0123456789.eE²٣", max_size=8),
    ),
    st.sampled_from(["s", "m", "h", "d", "w", ""]),
)


@given(st.one_of(st.text(max_size=40), _durations))
def test_parse_time_returns_utc_or_raises_invalid_input(text: str) -> None:
    try:
        parsed = parse_time(text)
    except InvalidInput:
        return
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == timedelta(0)
