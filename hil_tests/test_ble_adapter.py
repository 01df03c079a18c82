"""HIL: scan with a real Bluetooth adapter and decode at least one supported advert.

Needs a BTHome, RuuviTag, iBeacon or Eddystone device in range of the adapter given with
``--ble-adapter hci0``; skipped without the option.
"""

from __future__ import annotations

import pytest
import trio

from drivers.base import Sample
from drivers.ble.scanner import make_driver

pytestmark = pytest.mark.hil


async def test_real_adapter_decodes_an_advert(ble_adapter: str) -> None:
    driver = make_driver({"kind": "ble-adverts", "name": "hil-ble", "adapter": ble_adapter})
    send, receive = trio.open_memory_channel[Sample](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(60):
            sample = await receive.receive()
        nursery.cancel_scope.cancel()
    assert sample.device.startswith("ble-")
    assert sample.readings
    assert driver.health.frames >= 1
