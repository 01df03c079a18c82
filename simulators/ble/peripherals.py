"""Simulated BLE peripherals: objects implementing ``org.bluez.LEAdvertisement1`` over D-Bus.

Each :class:`Peripheral` owns one mock adapter (``hciN``), exports an advertisement object
with dbus-fast and registers it with ``LEAdvertisingManager1.RegisterAdvertisement`` — the
same calls a real BlueZ peripheral makes — so the mock reports it to the scanning adapter
and the gateway's real bleak code sees it. Payloads come from :mod:`drivers.ble` encoders
and follow a fixed schedule (see :func:`payloads`), so tests know what to expect.

Fault injection: :meth:`Peripheral.hide` / :meth:`Peripheral.show` (device gone and back),
:meth:`Peripheral.corrupt` (next advert has one byte flipped / is cut short).
It does not simulate radio: RSSI is whatever the mock reports (0).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Final

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from drivers.ble.advert import uuid16
from drivers.ble.bthome import BTHOME_UUID16, encode_bthome
from drivers.ble.eddystone import EDDYSTONE_UUID16, EddystoneTlm, EddystoneUid, encode_eddystone
from drivers.ble.ibeacon import APPLE_COMPANY_ID, IBeacon, encode_ibeacon
from drivers.ble.ruuvi import RUUVI_COMPANY_ID, Ruuvi5, encode_ruuvi5

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

KINDS: Final = ("bthome", "ruuvi", "beacon")
ADDRESSES: Final = {
    "bthome": "54:48:E6:8F:80:A5",
    "ruuvi": "CB:B8:33:4C:88:4F",
    "beacon": "C0:FF:EE:00:00:01",
}
BEACON_UUID: Final = uuid.UUID("e2c56db5-dffb-48d2-b060-d0f5a71096e0")
EDDYSTONE_NAMESPACE: Final = bytes.fromhex("00010203040506070809")
EDDYSTONE_INSTANCE: Final = bytes.fromhex("0a0b0c0d0e0f")

Manufacturer = dict[int, Variant]
Service = dict[str, Variant]


@dataclass(frozen=True, slots=True)
class Payload:
    manufacturer: dict[int, bytes]
    service: dict[str, bytes]


def payloads(kind: str, tick: int, key: bytes | None = None) -> Payload:
    """What peripheral ``kind`` advertises at ``tick`` (0, 1, 2...).

    bthome: temperature 21.5 + 0.25·(tick mod 4) °C, humidity 45 %, battery 90 %, packet id
    tick mod 256 (encrypted with ``key`` when given, counter = tick). ruuvi: temperature
    20 + 0.5·(tick mod 4) °C, humidity 50 %, pressure 100 000 Pa, sequence = tick. beacon:
    iBeacon (major 1, minor 2, -59 dBm) plus Eddystone UID on even ticks, TLM on odd ones.
    """
    if kind == "bthome":
        mac = bytes.fromhex(ADDRESSES["bthome"].replace(":", ""))
        objects = ((0x00, tick % 256), (0x01, 90), (0x02, 2150 + 25 * (tick % 4)), (0x03, 4500))
        data = encode_bthome(objects, key=key, mac=mac, counter=tick)
        return Payload({}, {uuid16(BTHOME_UUID16): data})
    if kind == "ruuvi":
        mac = bytes.fromhex(ADDRESSES["ruuvi"].replace(":", ""))
        frame = Ruuvi5(4000 + 100 * (tick % 4), 20000, 50000, (0, 0, 1000), 1400, 22, 0,
                       tick % 65535, mac)  # fmt: skip
        return Payload({RUUVI_COMPANY_ID: encode_ruuvi5(frame)}, {})
    beacon = encode_ibeacon(IBeacon(BEACON_UUID, 1, 2, -59))
    frame_e: EddystoneUid | EddystoneTlm = (
        EddystoneUid(-20, EDDYSTONE_NAMESPACE, EDDYSTONE_INSTANCE)
        if tick % 2 == 0
        else EddystoneTlm(3000, 22 * 256, tick, tick * 10)
    )
    return Payload(
        {APPLE_COMPANY_ID: beacon}, {uuid16(EDDYSTONE_UUID16): encode_eddystone(frame_e)}
    )


def corrupt(payload: Payload, tick: int) -> Payload:
    """Fault: flip the first byte of every payload (its format/type/version byte, so every
    format refuses it) on even ticks, or cut it in half on odd ticks."""

    def damage(data: bytes) -> bytes:
        if tick % 2:
            return data[: len(data) // 2]
        return bytes([data[0] ^ 0xFF]) + data[1:]

    return Payload(
        {k: damage(v) for k, v in payload.manufacturer.items()},
        {k: damage(v) for k, v in payload.service.items()},
    )


class Advertisement(ServiceInterface):
    """``org.bluez.LEAdvertisement1`` (BlueZ doc/org.bluez.LEAdvertisement.rst)."""

    def __init__(self, payload: Payload) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.payload = payload

    def update(self, payload: Payload) -> None:
        """Change the data; the mock copies it on PropertiesChanged."""
        self.payload = payload
        self.emit_properties_changed(
            {"ManufacturerData": self._manufacturer(), "ServiceData": self._service()}
        )

    def _manufacturer(self) -> Manufacturer:
        return {k: Variant("ay", v) for k, v in self.payload.manufacturer.items()}

    def _service(self) -> Service:
        return {k: Variant("ay", v) for k, v in self.payload.service.items()}

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> Annotated[str, DBusSignature("s")]:
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> Annotated[bool, DBusSignature("b")]:
        return True  # quirk 3 in simulators.ble.mock

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> Annotated[Manufacturer, DBusSignature("a{qv}")]:
        return self._manufacturer()

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> Annotated[Service, DBusSignature("a{sv}")]:
        return self._service()

    @dbus_method()
    def Release(self) -> Annotated[None, DBusSignature("")]:
        """Called by BlueZ when it drops the advertisement; nothing to free."""


class Peripheral:
    """One simulated device on mock adapter ``hci{index}``."""

    def __init__(self, bus: MessageBus, kind: str, index: int, key: bytes | None) -> None:
        self.kind = kind
        self.bus = bus
        self.adapter_path = f"/org/bluez/hci{index}"
        self.path = f"/org/assetbook/sim/{kind}"
        self.key = key
        self.tick = 0
        self.visible = False
        self.corrupt_next = 0
        self.advert = Advertisement(payloads(kind, 0, key))
        bus.export(self.path, self.advert)

    async def show(self) -> None:
        await self._manager("RegisterAdvertisement", "oa{sv}", [self.path, {}])
        self.visible = True

    async def hide(self) -> None:
        await self._manager("UnregisterAdvertisement", "o", [self.path])
        self.visible = False
        await forget(self.bus, ADDRESSES[self.kind])

    async def step(self) -> None:
        """Advance one advert period: new payload, and make the mock report it again."""
        self.tick += 1
        payload = payloads(self.kind, self.tick, self.key)
        if self.corrupt_next:
            self.corrupt_next -= 1
            payload = corrupt(payload, self.tick)
        self.advert.update(payload)
        if self.visible:
            await forget(self.bus, ADDRESSES[self.kind])  # quirk 2 in simulators.ble.mock

    async def _manager(self, method: str, signature: str, body: list[object]) -> None:
        await call(self.bus, self.adapter_path, "org.bluez.LEAdvertisingManager1", method,
                   signature, body)  # fmt: skip


async def forget(bus: MessageBus, address: str, scanner: str = "/org/bluez/hci0") -> None:
    """Ask the scanning adapter to forget ``address`` so the mock reports it afresh."""
    device = f"{scanner}/dev_{address.replace(':', '_')}"
    await call(bus, scanner, "org.bluez.Adapter1", "RemoveDevice", "o", [device], check=False)


async def call(
    bus: MessageBus,
    path: str,
    interface: str,
    method: str,
    signature: str,
    body: list[object],
    *,
    check: bool = True,
) -> None:
    """One method call to ``org.bluez``; raises RuntimeError on an error reply if ``check``."""
    from dbus_fast import Message, MessageType

    reply = await bus.call(
        Message(
            destination="org.bluez",
            path=path,
            interface=interface,
            member=method,
            signature=signature,
            body=body,
        )
    )
    if check and reply is not None and reply.message_type == MessageType.ERROR:
        raise RuntimeError(f"{interface}.{method}: {reply.error_name} {reply.body}")
