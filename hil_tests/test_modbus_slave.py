"""A real Modbus RTU slave on a real RS-485 adapter: the driver polls one register.

Run on the hardware with ``just hil --modbus-port /dev/ttyUSB1 --modbus-slave 1
--modbus-register 3:0`` (function 3 or 4, address of a register the slave answers).
"""

from __future__ import annotations

import pytest
import trio

from drivers.base import Sample
from drivers.modbus.driver import make_driver

pytestmark = pytest.mark.hil


async def test_slave_answers_and_is_decoded(
    modbus_port: str, request: pytest.FixtureRequest
) -> None:
    function, address = (int(x) for x in request.config.getoption("--modbus-register").split(":"))
    driver = make_driver(
        {
            "kind": "modbus-rtu",
            "name": "hil-modbus",
            "port": modbus_port,
            "baudrate": request.config.getoption("--modbus-baudrate"),
            "parity": request.config.getoption("--modbus-parity"),
            "devices": [
                {
                    "device": "hil-slave",
                    "slave": request.config.getoption("--modbus-slave"),
                    "poll_s": 0.5,
                    "timeout_ms": 500,
                    "registers": [
                        {"name": "r", "unit": "", "function": function, "address": address}
                    ],
                }
            ],
        }
    )
    send, receive = trio.open_memory_channel[Sample](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(30):
            samples = [await receive.receive() for _ in range(3)]
        nursery.cancel_scope.cancel()
    for sample in samples:
        (reading,) = sample.readings
        assert isinstance(reading.value, int)
        assert 0 <= reading.value <= 0xFFFF
    assert driver.statistics()["devices"]["hil-slave"]["replies"] >= 3
