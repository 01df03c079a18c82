"""The asyncio side of the ``ble-gatt`` driver: bleak calls, run on the bridge's thread.

:func:`open_link` finds one device with a scan on the adapter, connects with
:class:`bleak.BleakClient` and subscribes to the characteristics it wants; every
notification is copied into a :class:`~drivers.ble.gatt_session.Notification` before it is
handed to Trio, so no bleak object crosses the thread boundary. A dropped link calls
``on_lost`` (in Trio). :func:`read_value` reads a subscribed characteristic once: the
driver's liveness probe for a link that has been quiet for ``stall_s``. bleak and D-Bus
failures become :class:`~drivers.ble.gatt_session.DeviceUnreachable` or
:class:`~drivers.errors.BleUnavailable`. Only :mod:`drivers.ble.gatt` imports this, and only
when it runs, so bleak loads only when a BLE driver runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakError

from drivers.ble.ess import BY_UUID
from drivers.ble.gatt_session import DeviceUnreachable, Notification
from drivers.errors import BleUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from drivers.ble.bridge import AsyncioThread
    from drivers.ble.gatt_config import GattDevice

# What bleak and dbus-fast raise when BlueZ, the adapter or the device fails a call.
_FAILURES = (BleakError, OSError, EOFError, ConnectionError, TimeoutError)


@dataclass(slots=True)
class Link:
    """A connected device (held by the Trio side as an opaque value)."""

    client: BleakClient
    subscribed: tuple[int, ...]
    #: The subscribed characteristics by 16-bit UUID, for :func:`read_value`.
    characteristics: dict[int, BleakGATTCharacteristic]


async def find_device(adapter: str, address: str, timeout_s: float) -> BLEDevice:
    """Scan ``adapter`` until ``address`` advertises.

    The callback is given to the scanner before it starts, so a report that arrives the
    moment discovery starts is not missed (``BleakScanner.find_device_by_address`` attaches
    its queue only after the start).

    Raises:
        DeviceUnreachable: not seen within ``timeout_s``.
        BleUnavailable: the scan could not start.
    """
    found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()

    def on_report(device: BLEDevice, _: AdvertisementData) -> None:
        if device.address.upper() == address and not found.done():
            found.set_result(device)

    scanner = BleakScanner(on_report, bluez={"adapter": adapter})
    try:
        await scanner.start()
    except _FAILURES as exc:
        raise BleUnavailable(f"cannot scan on {adapter}: {exc}") from exc
    try:
        async with asyncio.timeout(timeout_s):
            return await found
    except TimeoutError as exc:
        raise DeviceUnreachable(f"{address} not seen on {adapter} for {timeout_s:g} s") from exc
    finally:
        with contextlib.suppress(*_FAILURES):
            await scanner.stop()


async def open_link(
    bridge: AsyncioThread,
    adapter: str,
    device: GattDevice,
    timeout_s: float,
    on_value: Callable[[Notification], None],
    on_lost: Callable[[], None],
) -> Link:
    """Find, connect and subscribe; notifications reach ``on_value`` in Trio.

    Raises:
        DeviceUnreachable: not found, connection refused, or nothing to subscribe to.
        BleUnavailable: the adapter or BlueZ failed.
    """
    found = await find_device(adapter, device.address, timeout_s)
    client = BleakClient(
        found,
        disconnected_callback=lambda _: bridge.to_trio(on_lost),
        timeout=timeout_s,
        bluez={"adapter": adapter},
    )
    try:
        await client.connect()
        characteristics = await _subscribe(bridge, client, device, on_value)
    except BaseException as exc:
        with contextlib.suppress(*_FAILURES):
            await client.disconnect()
        if isinstance(exc, BleakDeviceNotFoundError | TimeoutError):
            raise DeviceUnreachable(f"cannot connect to {device.address}: {exc}") from exc
        if isinstance(exc, _FAILURES):
            raise BleUnavailable(f"connection to {device.address} failed: {exc}") from exc
        raise
    if not characteristics:
        with contextlib.suppress(*_FAILURES):
            await client.disconnect()
        raise DeviceUnreachable(f"{device.address} offers no wanted characteristic to notify")
    return Link(client, tuple(sorted(characteristics)), characteristics)


async def _subscribe(
    bridge: AsyncioThread,
    client: BleakClient,
    device: GattDevice,
    on_value: Callable[[Notification], None],
) -> dict[int, BleakGATTCharacteristic]:
    subscribed: dict[int, BleakGATTCharacteristic] = {}
    for service in client.services:
        for char in service.characteristics:
            short = BY_UUID.get(char.uuid.lower())
            if short is None or not device.wants(short) or "notify" not in char.properties:
                continue

            def callback(_: BleakGATTCharacteristic, data: bytearray, short: int = short) -> None:
                note = Notification(device.address, short, bytes(data))
                bridge.to_trio(lambda: on_value(note))

            await client.start_notify(char, callback)
            subscribed[short] = char
    return subscribed


async def read_value(link: object, address: str, turn: int) -> Notification:
    """Read the current value of subscribed characteristic number ``turn`` (modulo their
    count, so successive turns go round all of them).

    Raises:
        BleUnavailable: the read failed (the device, BlueZ or the adapter did not answer).
    """
    assert isinstance(link, Link)
    short = link.subscribed[turn % len(link.subscribed)]
    try:
        data = await link.client.read_gatt_char(link.characteristics[short])
    except _FAILURES as exc:
        raise BleUnavailable(f"reading {short:04x} from {address} failed: {exc}") from exc
    return Notification(address, short, bytes(data))


async def close_link(link: object) -> None:
    """Disconnect; failures are ignored (the device may be gone already)."""
    assert isinstance(link, Link)
    with contextlib.suppress(*_FAILURES):
        await link.client.disconnect()
