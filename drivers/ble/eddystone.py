"""Eddystone frames (UID, URL, TLM): a sans-IO decoder and encoder.

Layout (Google, "Eddystone protocol specification", github.com/google/eddystone): the
service data of UUID 0xFEAA starts with a frame type byte:

- ``0x00`` UID (``eddystone-uid/README.md``): TX power at 0 m (signed dBm), 10-byte
  namespace, 6-byte instance, 2 reserved bytes (which some beacons omit: accepted).
- ``0x10`` URL (``eddystone-url/README.md``): TX power, a scheme prefix byte (0-3) and the
  URL with expansion codes 0x00-0x0D for common suffixes; at most 17 URL bytes.
- ``0x20`` TLM, unencrypted version 0 (``eddystone-tlm/tlm-plain.md``): battery mV
  (0 = not supported), temperature as signed 8.8 fixed point (0x8000 = not supported),
  advertising PDU count, time since power-on in 0.1 s, all big-endian.

Encrypted TLM (version 1) and EID (0x30) frames are refused with kind ``unsupported``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from drivers.errors import DecodeError, InvalidValue
from protocol.events import Reading

EDDYSTONE_UUID16: Final = 0xFEAA
_SCHEMES: Final = ("http://www.", "https://www.", "http://", "https://")
_EXPANSIONS: Final = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)  # fmt: skip
_MAX_URL_BYTES: Final = 17


@dataclass(frozen=True, slots=True)
class EddystoneUid:
    tx_power: int
    namespace: bytes
    instance: bytes

    def readings(self) -> tuple[Reading, ...]:
        return (
            Reading("present", "", True),
            Reading("namespace", "", self.namespace.hex()),
            Reading("instance", "", self.instance.hex()),
            Reading("txpower", "dBm", self.tx_power),
        )


@dataclass(frozen=True, slots=True)
class EddystoneUrl:
    tx_power: int
    url: str

    def readings(self) -> tuple[Reading, ...]:
        return (
            Reading("present", "", True),
            Reading("url", "", self.url),
            Reading("txpower", "dBm", self.tx_power),
        )


@dataclass(frozen=True, slots=True)
class EddystoneTlm:
    battery_mv: int | None
    temperature: int | None  # 1/256 °C
    adv_count: int
    uptime_ds: int  # 0.1 s

    def readings(self) -> tuple[Reading, ...]:
        out: list[Reading] = []
        if self.battery_mv is not None:
            out.append(Reading("voltage", "V", self.battery_mv / 1000))
        if self.temperature is not None:
            out.append(Reading("temperature", "Cel", self.temperature / 256))
        out.append(Reading("adv_count", "count", self.adv_count))
        out.append(Reading("uptime", "s", self.uptime_ds / 10))
        return tuple(out)


Eddystone = EddystoneUid | EddystoneUrl | EddystoneTlm


def decode_eddystone(data: bytes) -> Eddystone:
    """Decode 0xFEAA service data.

    Raises:
        DecodeError: kinds ``truncated``, ``too_long``, ``unsupported`` (frame type or TLM
            version), ``url`` (bad scheme or a non-printable URL byte).
    """
    if not data:
        raise DecodeError("truncated", "empty Eddystone frame", data)
    frame = data[0]
    if frame == 0x00:
        return _uid(data)
    if frame == 0x10:
        return _url(data)
    if frame == 0x20:
        return _tlm(data)
    raise DecodeError("unsupported", f"Eddystone frame type 0x{frame:02x}", data)


def encode_eddystone(frame: Eddystone) -> bytes:
    """The 0xFEAA service data that carries ``frame`` (UID with its 2 reserved bytes)."""
    if isinstance(frame, EddystoneUid):
        return b"\x00" + _s8(frame.tx_power) + frame.namespace + frame.instance + b"\x00\x00"
    if isinstance(frame, EddystoneUrl):
        return b"\x10" + _s8(frame.tx_power) + _encode_url(frame.url)
    temp = 0x8000 if frame.temperature is None else frame.temperature & 0xFFFF
    return (
        b"\x20\x00"
        + (frame.battery_mv or 0).to_bytes(2, "big")
        + temp.to_bytes(2, "big")
        + frame.adv_count.to_bytes(4, "big")
        + frame.uptime_ds.to_bytes(4, "big")
    )


def _uid(data: bytes) -> EddystoneUid:
    _length(data, 18, 20)
    return EddystoneUid(_tx(data), bytes(data[2:12]), bytes(data[12:18]))


def _url(data: bytes) -> EddystoneUrl:
    _length(data, 3, 3 + _MAX_URL_BYTES)
    if data[2] >= len(_SCHEMES):
        raise DecodeError("url", f"URL scheme code 0x{data[2]:02x}", data)
    parts = [_SCHEMES[data[2]]]
    for byte in data[3:]:
        if byte < len(_EXPANSIONS):
            parts.append(_EXPANSIONS[byte])
        elif 0x21 <= byte <= 0x7E:  # the spec allows printable ASCII other than space
            parts.append(chr(byte))
        else:
            raise DecodeError("url", f"URL byte 0x{byte:02x}", data)
    return EddystoneUrl(_tx(data), "".join(parts))


def _tlm(data: bytes) -> EddystoneTlm:
    if len(data) >= 2 and data[1] != 0:
        raise DecodeError("unsupported", f"TLM version {data[1]} (encrypted)", data)
    _length(data, 14, 14)
    battery = int.from_bytes(data[2:4], "big")
    temp = int.from_bytes(data[4:6], "big", signed=True)
    return EddystoneTlm(
        battery_mv=battery or None,
        temperature=None if temp == -0x8000 else temp,
        adv_count=int.from_bytes(data[6:10], "big"),
        uptime_ds=int.from_bytes(data[10:14], "big"),
    )


def _length(data: bytes, low: int, high: int) -> None:
    if len(data) < low:
        raise DecodeError("truncated", f"{len(data)} bytes, at least {low} needed", data)
    if len(data) > high:
        raise DecodeError("too_long", f"{len(data)} bytes, at most {high} allowed", data)


def _tx(data: bytes) -> int:
    return int.from_bytes(data[1:2], "big", signed=True)


def _s8(value: int) -> bytes:
    return value.to_bytes(1, "big", signed=True)


def _encode_url(url: str) -> bytes:
    """Shortest-prefix-first greedy encoding; refuses what the format cannot carry."""
    for code, scheme in sorted(enumerate(_SCHEMES), key=lambda item: -len(item[1])):
        if url.startswith(scheme):
            out, rest = bytearray([code]), url[len(scheme) :]
            break
    else:
        raise InvalidValue(f"URL {url!r} has no Eddystone scheme")
    while rest:
        match = max(
            (i for i, text in enumerate(_EXPANSIONS) if rest.startswith(text)),
            key=lambda i: len(_EXPANSIONS[i]),
            default=None,
        )
        if match is not None:
            out.append(match)
            rest = rest[len(_EXPANSIONS[match]) :]
        else:
            out.append(ord(rest[0]))
            rest = rest[1:]
    if len(out) - 1 > _MAX_URL_BYTES:
        raise InvalidValue(f"URL {url!r} needs more than {_MAX_URL_BYTES} bytes")
    return bytes(out)
