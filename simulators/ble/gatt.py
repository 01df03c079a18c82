"""BLE GATT simulator: Environmental Sensing sensors that a central connects to and that notify.

``main(argv)`` (wired as ``assetbook sim ble-gatt``) starts a private ``dbus-daemon`` (or
uses ``--bus ADDRESS``), the mock BlueZ (:mod:`simulators.ble.mock`) with the central's
adapter ``hci0`` plus one adapter per sensor, and ``--count`` sensors
(:class:`~simulators.ble.gatt_peripheral.GattPeripheral`) at :func:`address_of` (0, 1, ...)
or the ``--addresses`` given. It prints ``DBUS_SYSTEM_BUS_ADDRESS=<address>`` and then
``ready``; a ``ble-gatt`` driver on ``hci0`` with that bus connects to them through bleak.
Every ``--period`` seconds each sensor notifies new values (the schedule is
:func:`simulators.ble.gatt_peripheral.values`).

Fault injection, one command per line on stdin with ``--commands`` (``N`` is the sensor's
position): ``hide N`` / ``show N`` (out of range and back: the link drops, the device
cannot be found; a repeat changes nothing), ``drop N`` (the link drops, the device stays
in range), ``corrupt N K`` (its next K rounds of values are one byte short),
``unknown N K`` (next K rounds say "value is not known" for temperature and humidity),
``stall`` (``hci0`` stops passing on notifications while the links stay up; reads still
work), ``freeze N`` / ``thaw N`` (the sensor stops answering while its link stays up: no
notifications, reads fail; and back). Each command is acknowledged with one line.

Programmatic entry points: :func:`run_gatt_peripheral` (asyncio, for a process that hosts
the mock itself) and :func:`serve_gatt_peripheral` (Trio, for a mock running elsewhere on
the bus named by ``DBUS_SYSTEM_BUS_ADDRESS``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from drivers.ble.bridge import AsyncioThread
from simulators.ble.gatt_peripheral import GattPeripheral

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from dbus_fast.aio import MessageBus

ADDRESS_PREFIX: Final = "C0:FF:EE:00:10:"


def address_of(index: int) -> str:
    """The default address of sensor ``index``: ``C0:FF:EE:00:10:01`` for 0, and so on."""
    return f"{ADDRESS_PREFIX}{index + 1:02X}"


async def run_gatt_peripheral(
    bus: MessageBus,
    address: str,
    adapter: int,
    *,
    index: int = 0,
    period_s: float = 1.0,
    on_ready: Callable[[GattPeripheral], None] | None = None,
) -> NoReturn:
    """Serve one sensor on mock adapter ``hci{adapter}`` (whose address is ``address``)
    until cancelled: register it, call ``on_ready(peripheral)``, notify every ``period_s``.

    ``index`` offsets its values (:func:`simulators.ble.gatt_peripheral.values`). The mock
    must already run on ``bus``'s daemon. The peripheral given to ``on_ready`` takes
    faults (``hide()``, ``show()``, ``corrupt_next``, ``unknown_next``).
    """
    peripheral = GattPeripheral(bus, address, adapter, index)
    await peripheral.show()
    if on_ready is not None:
        on_ready(peripheral)
    while True:
        await asyncio.sleep(period_s)
        await peripheral.step()


async def serve_gatt_peripheral(
    address: str,
    adapter: int,
    *,
    index: int = 0,
    period_s: float = 1.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Trio form of :func:`run_gatt_peripheral`: runs it on its own asyncio thread with its
    own D-Bus connection (the system bus of ``DBUS_SYSTEM_BUS_ADDRESS``, where the mock
    must run with adapter ``hci{adapter}`` at ``address``). ``started()`` once registered;
    runs until cancelled."""
    async with AsyncioThread("gatt-peripheral") as bridge, trio.open_nursery() as nursery:
        ready = trio.Event()

        async def serve() -> None:
            await bridge.run(
                lambda: _serve_on_own_bus(bridge, address, adapter, index, period_s, ready.set)
            )

        nursery.start_soon(serve)
        await ready.wait()
        task_status.started()


async def _serve_on_own_bus(
    bridge: AsyncioThread,
    address: str,
    adapter: int,
    index: int,
    period_s: float,
    ready: Callable[[], None],
) -> None:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        await run_gatt_peripheral(
            bus,
            address,
            adapter,
            index=index,
            period_s=period_s,
            on_ready=lambda _: bridge.to_trio(ready),
        )
    finally:
        bus.disconnect()


def main(argv: Sequence[str] | None = None) -> int:
    """``assetbook sim ble-gatt``: see the module docstring."""
    from simulators.ble.cli import gatt_main

    return gatt_main(argv)
