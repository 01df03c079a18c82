"""HIL: connect to a real Environmental Sensing sensor and receive notified readings.

Needs a BLE peripheral offering the Environmental Sensing service (0x181A) with at least one
notifying characteristic that ``drivers.ble.ess`` decodes (temperature, humidity, pressure)
or the Battery service, given with ``--ble-gatt-address``; the adapter is ``--ble-adapter``
(default ``hci0``). Skipped without the address.
"""

from __future__ import annotations

import pytest
import trio

from drivers.base import Sample
from drivers.ble.gatt import make_driver
from drivers.ble.scan_config import ScanConfig

pytestmark = pytest.mark.hil


async def test_real_sensor_notifies_decodable_readings(
    request: pytest.FixtureRequest, ble_gatt_address: str
) -> None:
    adapter = request.config.getoption("--ble-adapter") or "hci0"
    driver = make_driver(
        {
            "kind": "ble-gatt",
            "name": "hil-gatt",
            "adapter": adapter,
            "devices": [{"address": ble_gatt_address}],
            "connect_timeout_s": 30,
        }
    )
    send, receive = trio.open_memory_channel[Sample](100)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run, send)
        with trio.fail_after(120):
            first = await receive.receive()
            second = await receive.receive()
        nursery.cancel_scope.cancel()
    assert first.device == second.device == ScanConfig.device_id(ble_gatt_address)
    units = {r.name: r.unit for s in (first, second) for r in s.readings}
    assert units, "a notification gave no reading"
    assert set(units.values()) <= {"Cel", "%RH", "Pa", "%EL"}
    assert driver.health.bad_frames == 0
