"""MicroBatcher: concurrent requests share model calls; the size and wait limits hold; one bad
request fails alone; a request that waited past its timeout is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from mloop.core.errors import SchemaMismatch, Unavailable
from mloop.serving import MicroBatcher


class Model:
    """Doubles numbers; refuses negative ones. Records every call's inputs."""

    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []
        self.seen_at: list[float] = []

    def run(self, batch: Sequence[list[int]]) -> list[list[int]]:
        self.calls.append(list(batch))
        self.seen_at.append(time.monotonic())
        if any(x < 0 for values in batch for x in values):
            raise SchemaMismatch("negative")
        return [[2 * x for x in values] for values in batch]


def _submit(batcher: MicroBatcher[list[int], list[int]], values: list[int]) -> asyncio.Future:
    return batcher.submit(values, len(values), timeout=10)


def test_a_lone_request_runs_at_once_and_concurrent_ones_share_a_call() -> None:
    model = Model()

    async def scenario() -> None:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(model.run, max_batch_size=64)
        assert await _submit(batcher, [1]) == [2]
        assert len(model.calls) == 1
        answers = await asyncio.gather(*(_submit(batcher, [i]) for i in range(10)))
        assert answers == [[2 * i] for i in range(10)]
        assert len(model.calls) == 2  # the ten arrived together: one call
        assert model.calls[1] == [[i] for i in range(10)]

    asyncio.run(scenario())


def test_no_call_sees_more_rows_than_the_limit_except_one_large_request() -> None:
    model = Model()
    observed: list[tuple[int, int]] = []

    async def scenario() -> None:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(
            model.run, max_batch_size=5, observe=lambda rows, n, _s: observed.append((rows, n))
        )
        sizes = [2, 2, 2, 1, 7, 3, 1]
        answers = await asyncio.gather(*(_submit(batcher, list(range(size))) for size in sizes))
        assert answers == [[2 * x for x in range(size)] for size in sizes]

    asyncio.run(scenario())
    rows_per_call = [sum(len(v) for v in call) for call in model.calls]
    assert all(
        rows <= 5 for rows, call in zip(rows_per_call, model.calls, strict=True) if len(call) > 1
    )
    assert 7 in rows_per_call  # the request over the limit ran, alone
    assert sum(rows_per_call) == 18
    assert [rows for rows, _ in observed] == rows_per_call  # metrics see every call
    # order is kept: requests are taken first come, first served
    flat = [v for call in model.calls for v in call]
    assert [len(v) for v in flat] == [2, 2, 2, 1, 7, 3, 1]


def test_max_wait_gathers_requests_that_arrive_later_and_is_honoured() -> None:
    model = Model()

    async def scenario() -> float:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(
            model.run, max_batch_size=100, max_wait=0.05
        )
        started = time.monotonic()
        first = _submit(batcher, [1])
        await asyncio.sleep(0.01)
        second = _submit(batcher, [2])
        assert await asyncio.gather(first, second) == [[2], [4]]
        return started

    started = asyncio.run(scenario())
    assert model.calls == [[[1], [2]]]  # the second joined the first one's batch
    waited = model.seen_at[0] - started
    assert waited >= 0.045  # it did wait for company ...
    assert waited < 1.0  # ... and was not forgotten


def test_a_full_batch_does_not_wait_for_max_wait() -> None:
    model = Model()

    async def scenario() -> float:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(
            model.run, max_batch_size=3, max_wait=30.0
        )
        started = time.monotonic()
        await asyncio.gather(*(_submit(batcher, [i]) for i in range(3)))
        return started

    started = asyncio.run(scenario())
    assert len(model.calls) == 1
    assert model.seen_at[0] - started < 10  # far less than the 30 s wait


def test_one_bad_request_fails_alone() -> None:
    model = Model()

    async def scenario() -> list[object]:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(model.run)
        return await asyncio.gather(
            _submit(batcher, [1]),
            _submit(batcher, [-1]),
            _submit(batcher, [3]),
            return_exceptions=True,
        )

    good, bad, other = asyncio.run(scenario())
    assert good == [2]
    assert other == [6]
    assert isinstance(bad, SchemaMismatch)
    assert len(model.calls) == 4  # the batch, then each request alone


def test_a_request_past_its_timeout_is_refused_not_run() -> None:
    model = Model()

    async def scenario() -> object:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(
            model.run, max_batch_size=10, max_wait=0.05
        )
        late = batcher.submit([1], 1, timeout=0.0)
        return (await asyncio.gather(late, return_exceptions=True))[0]

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, Unavailable)
    assert "timed out" in outcome.message
    assert model.calls == []


def test_a_cancelled_request_is_skipped() -> None:
    model = Model()

    async def scenario() -> list[int]:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(model.run, max_wait=0.02)
        gone = _submit(batcher, [5])
        kept = _submit(batcher, [6])
        gone.cancel()
        return await kept

    assert asyncio.run(scenario()) == [12]
    assert model.calls == [[[6]]]


@pytest.mark.parametrize("size", [1, 4, 9])
def test_queue_counters_return_to_zero(size: int) -> None:
    model = Model()

    async def scenario() -> tuple[int, int, int, int]:
        batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(model.run, max_batch_size=4)
        futures = [_submit(batcher, [i]) for i in range(size)]
        during = (batcher.queued_requests, batcher.queued_rows)
        await asyncio.gather(*futures)
        return (*during, batcher.queued_requests, batcher.queued_rows)

    assert asyncio.run(scenario()) == (size, size, 0, 0)


def test_run_alone_predicts_on_the_callers_stack_and_is_observed() -> None:
    model = Model()
    observed: list[tuple[int, int]] = []
    batcher: MicroBatcher[list[int], list[int]] = MicroBatcher(
        model.run, observe=lambda rows, n, _s: observed.append((rows, n))
    )
    assert batcher.idle
    assert batcher.run_alone([4, 5], 2) == [8, 10]  # no event loop needed
    assert observed == [(2, 1)]
    with pytest.raises(SchemaMismatch):
        batcher.run_alone([-1], 1)

    async def scenario() -> bool:
        future = _submit(batcher, [1])
        busy = batcher.idle
        await future
        return busy

    assert asyncio.run(scenario()) is False  # queued work: not idle
    assert batcher.idle
