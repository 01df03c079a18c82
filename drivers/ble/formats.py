"""Which advert formats the scanner decodes, and how an advert is routed to them.

:data:`FORMATS` is a table of (name, where the payload sits, decoder). :func:`decode_advert`
tries every row whose payload is present and returns one :class:`~drivers.ble.advert.Decoded`
or :class:`~drivers.errors.DecodeError` per row; an advert carrying none of them gives an
empty list. Adding a format is one decoder module plus one row here (docs/drivers.md, "BLE").

Pure functions: no I/O, no state (duplicate suppression is the driver's job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.ble.advert import Advert, Decoded, uuid16
from drivers.ble.bthome import BTHOME_UUID16, decode_bthome
from drivers.ble.eddystone import EDDYSTONE_UUID16, decode_eddystone
from drivers.ble.ibeacon import APPLE_COMPANY_ID, decode_ibeacon
from drivers.ble.ruuvi import RUUVI_COMPANY_ID, decode_ruuvi5
from drivers.errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


@dataclass(frozen=True, slots=True)
class Format:
    """One supported format: ``company`` (manufacturer data) or ``service`` (service data
    UUID) says where its payload sits."""

    name: str
    decode: Callable[[Advert, bytes, Mapping[str, bytes]], Decoded]
    company: int | None = None
    service: str | None = None

    def payload(self, advert: Advert) -> bytes | None:
        if self.company is not None:
            return advert.manufacturer(self.company)
        assert self.service is not None
        return advert.service(self.service)


def _mac(address: str) -> bytes | None:
    try:
        mac = bytes.fromhex(address.replace(":", ""))
    except ValueError:
        return None
    return mac if len(mac) == 6 else None


def _bthome(advert: Advert, data: bytes, keys: Mapping[str, bytes]) -> Decoded:
    packet = decode_bthome(data, mac=_mac(advert.address), key=keys.get(advert.address))
    dedup = (packet.packet_id, packet.counter)
    return Decoded(
        "bthome", advert.address, packet.readings(), None if dedup == (None, None) else dedup
    )


def _ruuvi(advert: Advert, data: bytes, keys: Mapping[str, bytes]) -> Decoded:
    frame = decode_ruuvi5(data)
    return Decoded("ruuvi5", advert.address, frame.readings(), frame.sequence)


def _ibeacon(advert: Advert, data: bytes, keys: Mapping[str, bytes]) -> Decoded:
    return Decoded("ibeacon", advert.address, decode_ibeacon(data).readings())


def _eddystone(advert: Advert, data: bytes, keys: Mapping[str, bytes]) -> Decoded:
    frame = decode_eddystone(data)
    name = "eddystone-" + type(frame).__name__.removeprefix("Eddystone").lower()
    return Decoded(name, advert.address, frame.readings())


FORMATS: Final = (
    Format("bthome", _bthome, service=uuid16(BTHOME_UUID16)),
    Format("ruuvi5", _ruuvi, company=RUUVI_COMPANY_ID),
    Format("ibeacon", _ibeacon, company=APPLE_COMPANY_ID),
    Format("eddystone", _eddystone, service=uuid16(EDDYSTONE_UUID16)),
)


def decode_advert(advert: Advert, keys: Mapping[str, bytes]) -> list[Decoded | DecodeError]:
    """Every supported payload in ``advert``, decoded (``keys``: BTHome keys by address)."""
    out: list[Decoded | DecodeError] = []
    for fmt in FORMATS:
        data = fmt.payload(advert)
        if data is None:
            continue
        try:
            out.append(fmt.decode(advert, data, keys))
        except DecodeError as error:
            out.append(error)
    return out
