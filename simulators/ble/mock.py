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

GATT (``GattManager1.RegisterApplication`` on the peripheral's adapter, ``Device1.Connect``,
``GattService1`` / ``GattCharacteristic1`` objects and ``StartNotify`` on the central's side
all work in 1.0.2, with these quirks):

4. A connected device cannot be forgotten after each period as in quirk 2 (``RemoveDevice``
   disconnects it), so a GATT peripheral changes its advertisement's manufacturer data
   every period instead, which makes bluezoo report it again; see
   :mod:`simulators.ble.gatt_peripheral`.
5. On disconnect it leaves the remote GATT objects it exported under the device's path on
   the bus, still forwarding notifications, and keeps ``ServicesResolved`` true; the next
   ``Connect`` exports them again at the same paths, which sd-bus refuses
   (``sd_bus_add_object_vtable`` fails), so every reconnect without a ``RemoveDevice`` in
   between fails. :func:`patch_quirks` wraps ``Device.disconnect`` to remove them, stop
   their forwarding and clear ``ServicesResolved``, as BlueZ does for an unbonded device.
6. The central's ``StartNotify`` reaches the peripheral's only while the peripheral's
   ``Notifying`` reads false, and nothing resets it when a central goes away, so a
   peripheral that reported true would never be subscribed again after a reconnect. The
   simulated characteristics report false and emit every value change (bluezoo forwards
   changes only to subscribed centrals).
7. After forwarding each notification it calls the peripheral's ``Confirm`` (meant for
   indications only); the simulated characteristics accept it and do nothing.

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
    _patch_disconnect(bluezoo.device.Device)


def _patch_disconnect(device_class: Any) -> None:
    """Fix quirk 5 (see the module docstring); idempotent."""
    if getattr(device_class, "_assetbook_patched", False):
        return
    original = device_class.disconnect

    async def disconnect(self: Any, uuid: str | None = None) -> None:
        await original(self, uuid)
        mock = self.peer_adapter.mock
        for link in self.services.values():
            _stop_forwarding(link)
            if link in mock.manager_export_handles:
                mock.remove_object(link)
        self.services.clear()
        if self.services_resolved:
            await self.ServicesResolved.set_async(False)

    device_class.disconnect = disconnect
    device_class._assetbook_patched = True


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


def stop_notifications(mock: Any, adapter_id: int = 0) -> int:
    """Fault: the central's adapter stops passing on notifications while its links stay up
    (the GATT counterpart of :func:`stop_reporting`). A client that disconnects and
    connects again is subscribed afresh. Returns how many subscriptions were dropped."""
    return sum(
        _stop_forwarding(link)
        for device in mock.adapters[adapter_id].devices.values()
        for link in device.services.values()
    )


def _stop_forwarding(link: Any) -> bool:
    """Stop a GATT characteristic link forwarding its peripheral's value changes; returns
    whether it was forwarding. Its subscription is a pyventus subscriber once StartNotify
    ran, and bluezoo's empty ``Subscription`` wrapper before; both have ``unsubscribe``."""
    from bluezoo import events

    subscription = getattr(link, "client_props_changed_subscription", None)
    if subscription is None or isinstance(subscription, events.Subscription):
        return False
    subscription.unsubscribe()
    link.client_props_changed_subscription = events.Subscription()
    return True
