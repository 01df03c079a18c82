"""The asyncio side of the scanner: bleak calls, run on the bridge's asyncio thread.

:func:`start_scanner` starts a BlueZ scan on one adapter and converts every bleak report to
an :class:`~drivers.ble.advert.Advert` before handing it to Trio, so no bleak object crosses
the thread boundary. bleak and D-Bus failures become :class:`~drivers.errors.BleUnavailable`.
Only the scanner module imports this (so bleak loads only when a BLE driver runs).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from bleak import BleakScanner
from bleak.exc import BleakError

from drivers.ble.advert import Advert
from drivers.errors import BleUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from drivers.ble.bridge import AsyncioThread

# What bleak and dbus-fast raise when BlueZ or the adapter is missing or refuses a call.
_FAILURES = (BleakError, OSError, EOFError, ConnectionError)


def advert_from_bleak(device: BLEDevice, data: AdvertisementData) -> Advert:
    """Copy a bleak report into plain values (bleak's ``rssi`` is in dBm)."""
    return Advert(
        address=device.address.upper(),
        rssi=data.rssi,
        manufacturer_data=tuple(sorted(data.manufacturer_data.items())),
        service_data=tuple(sorted((k.lower(), v) for k, v in data.service_data.items())),
        service_uuids=tuple(sorted(u.lower() for u in data.service_uuids)),
        local_name=data.local_name,
    )


async def start_scanner(
    bridge: AsyncioThread, adapter: str, on_report: Callable[[Advert], None]
) -> BleakScanner:
    """Start scanning on ``adapter`` (``hci0``); each report reaches ``on_report`` in Trio.

    Raises:
        BleUnavailable: the adapter does not exist or BlueZ refused the scan.
    """

    def callback(device: BLEDevice, data: AdvertisementData) -> None:
        advert = advert_from_bleak(device, data)
        bridge.to_trio(lambda: on_report(advert))

    scanner = BleakScanner(callback, bluez={"adapter": adapter})
    try:
        await scanner.start()
    except _FAILURES as exc:
        raise BleUnavailable(f"cannot scan on {adapter}: {exc}") from exc
    return scanner


async def stop_scanner(scanner: object) -> None:
    """Stop a scan; failures are ignored (the adapter may be gone already)."""
    assert isinstance(scanner, BleakScanner)
    with contextlib.suppress(*_FAILURES):
        await scanner.stop()
