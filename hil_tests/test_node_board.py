"""A board running firmware/ on its UART: hello, readings and acks over real wires.

Flash the board with firmware/*.py (e.g. ``mpremote cp firmware/*.py :``), wire its UART
(ESP32 DevKit: GPIO17 TX, GPIO16 RX, GND) to a USB-serial adapter, then run
``just hil --node-port /dev/ttyUSB2``. The board must be sampling (it starts at boot).
"""

from __future__ import annotations

import pytest
import trio

from drivers.base import Sample
from drivers.node.driver import NodeSample, NodeSerialDriver

pytestmark = pytest.mark.hil


async def test_board_readings_arrive_and_are_acknowledged(
    node_port: str, request: pytest.FixtureRequest
) -> None:
    driver = NodeSerialDriver(
        "hil-node", node_port, None, request.config.getoption("--node-baudrate")
    )
    send, receive = trio.open_memory_channel[Sample](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        # The firmware sends its next batch (12 readings) only after an ack for the last one,
        # so a reading with seq above 24 proves the board received our acks.
        with trio.fail_after(120):
            async for sample in receive:
                assert isinstance(sample, NodeSample)
                assert sample.readings
                sample.mark_stored()  # as the gateway does after its outbox commit
                if sample.last_seq > 24:
                    break
        nursery.cancel_scope.cancel()
    assert driver.session.node_id is not None
    assert driver.health.frames >= 3
