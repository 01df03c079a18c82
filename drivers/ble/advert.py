"""What a BLE scanner hands to the advert decoders: one advertisement, as plain values.

:class:`Advert` is what a BlueZ/bleak scan report carries (address, RSSI, manufacturer
data keyed by Bluetooth SIG company id, service data keyed by 128-bit UUID string, the
advertised service UUIDs, the local name). It is built by the I/O shell from whatever the
Bluetooth stack reports; the codecs only read it. :class:`Decoded` is what a codec returns.

This module does no I/O and no validation beyond types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from protocol.events import Reading

#: Bluetooth Base UUID (Core Specification v5.4, Vol 3, Part B, §2.5.1): a 16-bit UUID
#: ``xxxx`` stands for ``0000xxxx-0000-1000-8000-00805f9b34fb``.
BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """The 128-bit string form of a 16-bit SIG UUID, lower case, as BlueZ reports it."""
    return f"0000{short:04x}{BASE_UUID_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement (or merged advertisement + scan response) as the stack reports it.

    Attributes:
        address: the advertiser's address, ``AA:BB:CC:DD:EE:FF`` upper case.
        rssi: received signal strength in dBm, when the stack reports one.
        manufacturer_data: (company id, bytes after the company id) pairs.
        service_data: (128-bit service UUID, bytes after the UUID) pairs.
        service_uuids: advertised service UUIDs, 128-bit lower-case strings.
        local_name: the advertised (complete or shortened) local name.
    """

    address: str
    rssi: int | None = None
    manufacturer_data: tuple[tuple[int, bytes], ...] = ()
    service_data: tuple[tuple[str, bytes], ...] = ()
    service_uuids: tuple[str, ...] = ()
    local_name: str | None = None

    def manufacturer(self, company: int) -> bytes | None:
        """The manufacturer data of ``company``, if the advert carries any."""
        return next((data for cid, data in self.manufacturer_data if cid == company), None)

    def service(self, uuid: str) -> bytes | None:
        """The service data of ``uuid`` (128-bit string), if the advert carries any."""
        return next((data for key, data in self.service_data if key == uuid), None)


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded advert: which format, a stable device key and its readings.

    Attributes:
        fmt: the format name (``"bthome"``, ``"ruuvi5"``, ``"ibeacon"``, ``"eddystone-uid"``...).
        address: the advertiser address the reading belongs to.
        readings: SenML records (RFC 8428 names and units).
        dedup: a value that is equal for two reports of the same transmission (BTHome
            packet id, Ruuvi measurement sequence), or ``None`` when the format has none.
    """

    fmt: str
    address: str
    readings: tuple[Reading, ...]
    dedup: object = field(default=None)
