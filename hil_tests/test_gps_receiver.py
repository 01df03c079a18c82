"""A real NMEA GPS receiver on a real serial port: the driver opens it and decodes fixes.

Run on the hardware with ``just hil --serial-port /dev/ttyUSB0``. The receiver needs a sky
view (or a fix already held) to produce position samples; without one this fails after a
minute with what the driver saw.
"""

from __future__ import annotations

import pytest
import trio

from drivers.base import Sample
from drivers.gps import NmeaGpsDriver

pytestmark = pytest.mark.hil


async def test_receiver_produces_decodable_fixes(
    serial_port: str, request: pytest.FixtureRequest
) -> None:
    driver = NmeaGpsDriver(
        "hil-gps", "gps-hil", serial_port, request.config.getoption("--baudrate")
    )
    send, receive = trio.open_memory_channel[Sample](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(60):
            sample = await receive.receive()
        nursery.cancel_scope.cancel()
    names = {r.name for r in sample.readings}
    assert {"lat", "lon"} <= names, driver.health
    assert driver.health.frames > 0
