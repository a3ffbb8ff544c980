"""orchestrator.aio.gather_limited: bounded concurrency, results in order."""

from __future__ import annotations

import asyncio

from orchestrator.aio import gather_limited


def test_gather_limited_bounds_concurrency_and_keeps_order() -> None:
    in_flight = peak = 0

    def thunk(i: int):  # type: ignore[no-untyped-def]
        async def run() -> int:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0)  # yield so others could start (not used to synchronise)
            in_flight -= 1
            return i * i
        return run

    results = asyncio.run(gather_limited(3, [thunk(i) for i in range(10)]))
    assert results == [i * i for i in range(10)]
    assert peak == 3
    assert asyncio.run(gather_limited(0, [thunk(2)])) == [4]  # a limit below 1 still runs
