"""The mock BlueZ (PyPI ``bluezoo``) run inside the simulator process, with its quirks fixed.

bluezoo 1.0.2 quirks worked around here, and only here:

1. It declares ``org.bluez.Device1.ManufacturerData`` (and the advertisement's) with the
   D-Bus signature ``a{sv}``; BlueZ's API (doc/org.bluez.Device.rst) says ``a{qv}``, keyed
   by the 16-bit company id. bleak reads the ``a{sv}`` value and fails on
   ``GetManagedObjects``. :func:`patch_quirks` sets the declared signature to ``a{qv}`` on
   bluezoo's property descriptors before anything is exported.
2. A device it already reported is reported again only when a property changes, so a
   beacon whose data never changes is seen once. The peripherals therefore ask the
   scanning adapter to forget them (``Adapter1.RemoveDevice``) after each advert period,
   which makes bluezoo report them afresh on its next scan; see
   :mod:`simulators.ble.peripherals`.
3. An advertisement without ``Discoverable = true`` is not reported unless the whole
   adapter is discoverable: the peripherals set it.

Also: the mock reports RSSI 0 for every device, and only the first advertisement registered
on an adapter, so each simulated peripheral gets a mock adapter of its own.
"""

from __future__ import annotations

from typing import Any, Final

SCANNER_ADAPTER: Final = "hci0"


def patch_quirks() -> None:
    """Fix quirk 1 (see the module docstring); idempotent."""
    # bluezoo ships no type information.
    import bluezoo.device  # type: ignore[import-untyped]
    import bluezoo.interfaces.Device  # type: ignore[import-untyped]
    import bluezoo.interfaces.LEAdvertisement  # type: ignore[import-untyped]

    for cls in (
        bluezoo.device.Device,
        bluezoo.interfaces.Device.DeviceInterface,
        bluezoo.interfaces.LEAdvertisement.LEAdvertisementInterface,
    ):
        cls.__dict__["ManufacturerData"].property_signature = "a{qv}"


async def start_mock(addresses: list[str], scan_interval_s: int) -> Any:
    """Start the mock on the bus named by ``DBUS_SYSTEM_BUS_ADDRESS``; adapter *i* is
    ``hci<i>`` with ``addresses[i]``. Returns bluezoo's service object."""
    patch_quirks()
    from bluezoo import bluezoo as service

    await service.startup(
        bus="system", adapters=addresses, auto_enable=True, scan_interval=scan_interval_s
    )
    return service.startup.service


def stop_reporting(mock: Any, adapter_id: int = 0) -> bool:
    """Fault: the scanning adapter keeps "discovering" but reports nothing any more (its
    scan task is cancelled). A client that stops and restarts discovery gets a new task.
    Returns whether a scan was running."""
    adapter = mock.adapters[adapter_id]
    task = getattr(adapter, "discovering_task", None)
    if task is None or task.done():
        return False
    task.cancel()
    return True
