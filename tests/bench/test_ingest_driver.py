"""The ingest benchmark's synthetic sensor: paced in ticks, at the rate asked, and silent
once paused (run on Trio's autojump clock, so no real time passes)."""

from __future__ import annotations

import trio
import trio.testing

from bench.ingest import PACE_TICK_S, SyntheticDriver
from drivers.base import Sample


async def test_a_paced_sensor_sends_its_rate_in_ticks_and_stops_when_paused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rate, seconds = 1_000.0, 2.0
    send, receive = trio.open_memory_channel[Sample](100_000)
    driver = SyntheticDriver("sensor-0")
    wakeups: set[float] = set()
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        driver.resume(rate)
        started = trio.current_time()
        while trio.current_time() < started + seconds:
            await receive.receive()
            wakeups.add(trio.current_time())
        driver.pause()
        taken = driver.health.samples
        await trio.sleep(1)  # a paused sensor sends nothing, whatever was due
        assert driver.health.samples == taken
        nursery.cancel_scope.cancel()
    assert rate * seconds <= taken <= rate * seconds + 1
    # One wake per tick at most, not one per sample.
    assert len(wakeups) <= seconds / PACE_TICK_S + 1
