"""A simulated BLE GATT sensor: Environmental Sensing + Battery, served over the BlueZ D-Bus API.

:class:`GattPeripheral` owns one mock adapter (``hciN``). It exports a GATT application
with dbus-fast — an object manager at :attr:`GattPeripheral.app_path`, services
``GattService1`` 0x181A (Environmental Sensing: Temperature 0x2A6E, Humidity 0x2A6F,
Pressure 0x2A6D) and 0x180F (Battery: Battery Level 0x2A19), each characteristic with the
flags ``read`` and ``notify`` — and registers it with ``GattManager1.RegisterApplication``,
plus a connectable advertisement naming the ESS service with
``LEAdvertisingManager1.RegisterAdvertisement``: the calls a real BlueZ peripheral makes.
The mock then offers the services to a central that connects from ``hci0``, and every value
change the peripheral emits reaches a subscribed central as a notification.

Values follow :func:`values` (tests know what to expect) and are encoded with
:func:`drivers.ble.ess.encode_value`. Faults: :meth:`GattPeripheral.hide` /
:meth:`GattPeripheral.show` (out of range / back: the link drops and the device can no
longer be found), ``corrupt_next`` (the next N rounds of notifications are cut one byte
short), ``unknown_next`` (the next N rounds say "value is not known"),
:meth:`GattPeripheral.freeze` / :meth:`GattPeripheral.thaw` (it stops answering while its
link stays up: no notifications, every read fails; and back). It does not simulate radio,
pairing or write access. The bluezoo quirks it works around are in
:mod:`simulators.ble.mock`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Final

from dbus_fast import DBusError, Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from drivers.ble.advert import uuid16
from drivers.ble.ess import (
    BATTERY_LEVEL,
    BATTERY_SERVICE,
    ESS_SERVICE,
    HUMIDITY,
    PRESSURE,
    TEMPERATURE,
    encode_value,
)
from simulators.ble.peripherals import call, forget

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

#: Which characteristics live in which service, in the order they are exported.
#: Bluetooth SIG company identifier 0xFFFF: "for use in internal and interoperability tests".
TEST_COMPANY_ID: Final = 0xFFFF
LAYOUT: Final = (
    (ESS_SERVICE, (TEMPERATURE, HUMIDITY, PRESSURE)),
    (BATTERY_SERVICE, (BATTERY_LEVEL,)),
)


@dataclass(frozen=True, slots=True)
class Values:
    """What the sensor measures at one tick (``None``: "value is not known")."""

    temperature: float | None
    humidity: float | None
    pressure: float | None
    battery: int | None

    def encoded(self) -> dict[int, bytes]:
        """Each characteristic's value bytes, by 16-bit UUID."""
        return {
            TEMPERATURE: encode_value(TEMPERATURE, self.temperature),
            HUMIDITY: encode_value(HUMIDITY, self.humidity),
            PRESSURE: encode_value(PRESSURE, self.pressure),
            BATTERY_LEVEL: encode_value(BATTERY_LEVEL, self.battery),
        }


def values(tick: int, index: int = 0) -> Values:
    """What sensor number ``index`` (0, 1, ...) reports at ``tick`` (0, 1, 2...).

    temperature 21.50 + 0.25·(tick mod 4) + index °C, humidity 45.00 + (tick mod 4) %,
    pressure 101 325.0 + 10·(tick mod 4) Pa, battery 90 - index %.
    """
    step = tick % 4
    return Values(21.5 + 0.25 * step + index, 45.0 + step, 101325.0 + 10 * step, 90 - index)


class Characteristic(ServiceInterface):
    """``org.bluez.GattCharacteristic1`` (BlueZ doc/org.bluez.GattCharacteristic.rst)."""

    def __init__(self, uuid: int, service_path: str, value: bytes) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.uuid = uuid
        self.service_path = service_path
        self.value = value
        self.answering = True

    def notify(self, value: bytes) -> None:
        """A new value: BlueZ turns the PropertiesChanged into a notification."""
        self.value = value
        self.emit_properties_changed({"Value": value})

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> Annotated[str, DBusSignature("s")]:
        return uuid16(self.uuid)

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> Annotated[str, DBusSignature("o")]:
        return self.service_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> Annotated[list[str], DBusSignature("as")]:
        return ["read", "notify"]

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> Annotated[bytes, DBusSignature("ay")]:
        return self.value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> Annotated[bool, DBusSignature("b")]:
        # Always false: see quirk 5 in simulators.ble.mock.
        return False

    @dbus_method()
    def ReadValue(
        self, options: Annotated[dict[str, Variant], DBusSignature("a{sv}")]
    ) -> Annotated[bytes, DBusSignature("ay")]:
        if not self.answering:
            raise DBusError("org.bluez.Error.Failed", "the device does not answer")
        return self.value

    @dbus_method()
    def StartNotify(self) -> Annotated[None, DBusSignature("")]:
        """Nothing to start: every value change is emitted (quirk 5 in simulators.ble.mock)."""

    @dbus_method()
    def StopNotify(self) -> Annotated[None, DBusSignature("")]:
        """Nothing to stop (see :meth:`StartNotify`)."""

    @dbus_method()
    def Confirm(self) -> Annotated[None, DBusSignature("")]:
        """The mock confirms every value it forwards (quirk 6); nothing to do."""


class Service(ServiceInterface):
    """``org.bluez.GattService1`` (BlueZ doc/org.bluez.GattService.rst)."""

    def __init__(self, uuid: int) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> Annotated[str, DBusSignature("s")]:
        return uuid16(self.uuid)

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> Annotated[bool, DBusSignature("b")]:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def Includes(self) -> Annotated[list[str], DBusSignature("ao")]:
        return []


class Advertisement(ServiceInterface):
    """A connectable ``org.bluez.LEAdvertisement1`` naming the Environmental Sensing service.

    It also carries manufacturer data of company 0xFFFF (reserved for tests) holding a
    counter that :meth:`bump` changes every period: see quirk 4 in simulators.ble.mock.
    """

    def __init__(self, local_name: str) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.local_name = local_name
        self.counter = 0

    def bump(self) -> None:
        self.counter = (self.counter + 1) % 256
        self.emit_properties_changed({"ManufacturerData": self._manufacturer()})

    def _manufacturer(self) -> dict[int, Variant]:
        return {TEST_COMPANY_ID: Variant("ay", bytes([self.counter]))}

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> Annotated[dict[int, Variant], DBusSignature("a{qv}")]:
        return self._manufacturer()

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> Annotated[str, DBusSignature("s")]:
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> Annotated[bool, DBusSignature("b")]:
        return True  # quirk 3 in simulators.ble.mock

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> Annotated[str, DBusSignature("s")]:
        return self.local_name

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> Annotated[list[str], DBusSignature("as")]:
        return [uuid16(ESS_SERVICE)]

    @dbus_method()
    def Release(self) -> Annotated[None, DBusSignature("")]:
        """Called by BlueZ when it drops the advertisement; nothing to free."""


class GattPeripheral:
    """One simulated ESS sensor on mock adapter ``hci{adapter}`` with ``address``.

    Call :meth:`show` once the mock runs, then :meth:`step` once per notification period.
    """

    def __init__(self, bus: MessageBus, address: str, adapter: int, index: int = 0) -> None:
        self.bus = bus
        self.address = address
        self.index = index
        self.adapter_path = f"/org/bluez/hci{adapter}"
        self.app_path = f"/org/assetbook/sim/gatt{adapter}"
        self.tick = 0
        self.visible = False
        self.corrupt_next = 0
        self.unknown_next = 0
        self.frozen = False
        self.advert = Advertisement(f"ESS sensor {index}")
        bus.export(f"{self.app_path}/advert", self.advert)
        self.characteristics: dict[int, Characteristic] = {}
        encoded = values(0, index).encoded()
        for s, (service_uuid, chars) in enumerate(LAYOUT):
            service_path = f"{self.app_path}/service{s}"
            bus.export(service_path, Service(service_uuid))
            for c, uuid in enumerate(chars):
                char = Characteristic(uuid, service_path, encoded[uuid])
                bus.export(f"{service_path}/char{c}", char)
                self.characteristics[uuid] = char

    async def show(self) -> None:
        """Advertise and offer the GATT application (the device is in range); a no-op if
        it already is (the mock refuses a second registration, which would end the
        simulator's command loop)."""
        if self.visible:
            return
        await call(
            self.bus,
            self.adapter_path,
            "org.bluez.GattManager1",
            "RegisterApplication",
            "oa{sv}",
            [self.app_path, {}],
        )
        await call(
            self.bus,
            self.adapter_path,
            "org.bluez.LEAdvertisingManager1",
            "RegisterAdvertisement",
            "oa{sv}",
            [f"{self.app_path}/advert", {}],
        )
        self.visible = True

    async def hide(self) -> None:
        """Fault: the device goes out of range. Its link to ``hci0`` drops and ``hci0``
        forgets it, so a central can find it again only after :meth:`show`. A no-op if
        it is out of range already."""
        if not self.visible:
            return
        self.visible = False
        await call(
            self.bus,
            self.adapter_path,
            "org.bluez.LEAdvertisingManager1",
            "UnregisterAdvertisement",
            "o",
            [f"{self.app_path}/advert"],
        )
        await call(
            self.bus,
            self.adapter_path,
            "org.bluez.GattManager1",
            "UnregisterApplication",
            "o",
            [self.app_path],
        )
        await forget(self.bus, self.address)

    def freeze(self, frozen: bool = True) -> None:
        """Fault: the device stops answering (or, with ``False``, answers again) while its
        link stays up and it keeps advertising: no notifications, every read fails."""
        self.frozen = frozen
        for char in self.characteristics.values():
            char.answering = not frozen

    def thaw(self) -> None:
        """End :meth:`freeze`."""
        self.freeze(frozen=False)

    async def step(self) -> None:
        """Advance one period: new values, notified on every characteristic (unless
        frozen; the advertisement changes either way)."""
        self.tick += 1
        encoded = values(self.tick, self.index).encoded()
        if self.unknown_next:
            self.unknown_next -= 1
            now = values(self.tick, self.index)
            encoded = Values(None, None, now.pressure, now.battery).encoded()
        if self.corrupt_next:
            self.corrupt_next -= 1
            encoded = {uuid: data[:-1] for uuid, data in encoded.items()}
        if not self.frozen:
            for uuid, char in self.characteristics.items():
                char.notify(encoded[uuid])
        self.advert.bump()
