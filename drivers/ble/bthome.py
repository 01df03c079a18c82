"""BTHome v2 service data: a sans-IO, table-driven decoder and encoder, with encryption.

Layout (bthome.io/format): service data of UUID 0xFCD2 starts with a device information
byte — bit 0 encryption, bit 1 "MAC included" (6 bytes, reversed, follow), bit 2 trigger
based, bits 5-7 the version (2). Then objects follow: one id byte and a little-endian value
whose size and scale :mod:`drivers.ble.bthome_objects` gives.

Encryption (bthome.io/encryption): AES-128-CCM with a 4-byte MIC; the packet ends with a
4-byte counter and the MIC; the nonce is the MAC (6 bytes, as written), the UUID ``d2 fc``,
the device information byte and the counter bytes. Without the right key an encrypted
packet gives :class:`~drivers.errors.DecodeError` of kind ``no_key`` or ``decrypt``.

Repeated objects (two temperature sensors) are named ``temperature``, ``temperature_2``...
This module keeps no state: replay protection (a counter that must grow) belongs to the
caller, which knows the device.

``cryptography`` (about 7 MiB resident) is imported on the first encrypted packet that has a
key, not with this module: most sites have no encrypted devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from drivers.ble.bthome_objects import OBJECTS, ObjectSpec
from drivers.errors import DecodeError, InvalidValue
from protocol.events import Reading

BTHOME_UUID16: Final = 0xFCD2
_UUID_BYTES: Final = b"\xd2\xfc"  # 0xFCD2 little-endian, as in the nonce
_ENCRYPTED: Final = 0x01
_MAC_INCLUDED: Final = 0x02
_TRIGGER: Final = 0x04
_VERSION_SHIFT: Final = 5
_MIC_LEN: Final = 4
_COUNTER_LEN: Final = 4

#: A decoded object: its id and the raw value (int for numbers, binaries and events,
#: str for text, bytes for raw).
RawObject = tuple[int, int | str | bytes]


@dataclass(frozen=True, slots=True)
class BthomePacket:
    """One BTHome v2 packet, decrypted."""

    encrypted: bool
    trigger: bool
    mac: bytes | None  # natural order, when the packet carries it
    counter: int | None  # encryption counter
    objects: tuple[RawObject, ...]

    @property
    def packet_id(self) -> int | None:
        return next((int(v) for oid, v in self.objects if oid == 0x00), None)

    def readings(self) -> tuple[Reading, ...]:
        """The objects as SenML records (device information and packet id left out)."""
        out: list[Reading] = []
        seen: dict[str, int] = {}
        for oid, raw in self.objects:
            spec = OBJECTS[oid]
            if spec.kind == "info":
                continue
            seen[spec.name] = seen.get(spec.name, 0) + 1
            name = spec.name if seen[spec.name] == 1 else f"{spec.name}_{seen[spec.name]}"
            out.append(Reading(name, spec.unit, _value(spec, raw)))
        return tuple(out)


def decode_bthome(
    data: bytes, *, mac: bytes | None = None, key: bytes | None = None
) -> BthomePacket:
    """Decode 0xFCD2 service data; ``mac`` (6 bytes) and ``key`` (16) are for encryption.

    Raises:
        DecodeError: kinds ``truncated``, ``version``, ``no_key``, ``decrypt``,
            ``unknown_object``, ``text``.
    """
    if not data:
        raise DecodeError("truncated", "empty BTHome packet", data)
    info = data[0]
    if info >> _VERSION_SHIFT != 2:
        raise DecodeError("version", f"BTHome version {info >> _VERSION_SHIFT}, not 2", data)
    body = data[1:]
    carried_mac = None
    if info & _MAC_INCLUDED:
        if len(body) < 6:
            raise DecodeError("truncated", "MAC address cut short", data)
        carried_mac, body = bytes(reversed(body[:6])), body[6:]
    counter = None
    if info & _ENCRYPTED:
        body, counter = _decrypt(data, info, body, carried_mac or mac, key)
    return BthomePacket(
        encrypted=bool(info & _ENCRYPTED),
        trigger=bool(info & _TRIGGER),
        mac=carried_mac,
        counter=counter,
        objects=_objects(data, body),
    )


def encode_bthome(
    objects: tuple[RawObject, ...],
    *,
    key: bytes | None = None,
    mac: bytes | None = None,
    counter: int = 0,
    include_mac: bool = False,
    trigger: bool = False,
) -> bytes:
    """The 0xFCD2 service data for ``objects``; encrypted when ``key`` is given.

    Raises:
        InvalidValue: an unknown object id, a value out of its range, or ``key``/
            ``include_mac`` without a 6-byte ``mac``.
    """
    info = 2 << _VERSION_SHIFT | (_TRIGGER if trigger else 0)
    info |= (_ENCRYPTED if key else 0) | (_MAC_INCLUDED if include_mac else 0)
    body = b"".join(_encode_object(oid, value) for oid, value in objects)
    if (key or include_mac) and (mac is None or len(mac) != 6):
        raise InvalidValue("a 6-byte MAC is needed to encrypt or include it")
    head = bytes([info]) + (bytes(reversed(mac)) if include_mac and mac else b"")
    if key is None:
        return head + body
    assert mac is not None
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    count = counter.to_bytes(_COUNTER_LEN, "little")
    sealed = AESCCM(key, tag_length=_MIC_LEN).encrypt(_nonce(mac, info, count), body, None)
    return head + sealed[:-_MIC_LEN] + count + sealed[-_MIC_LEN:]


def _decrypt(
    data: bytes, info: int, body: bytes, mac: bytes | None, key: bytes | None
) -> tuple[bytes, int]:
    if len(body) < _COUNTER_LEN + _MIC_LEN:
        raise DecodeError("truncated", "encrypted packet without counter and MIC", data)
    if key is None or mac is None:
        raise DecodeError("no_key", "encrypted packet and no key (or MAC) for the device", data)
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    ciphertext, count = body[: -_COUNTER_LEN - _MIC_LEN], body[-8:-4]
    try:
        plain = AESCCM(key, tag_length=_MIC_LEN).decrypt(
            _nonce(mac, info, count), ciphertext + body[-_MIC_LEN:], None
        )
    except InvalidTag:
        raise DecodeError("decrypt", "MIC check failed (wrong key or corrupted)", data) from None
    return plain, int.from_bytes(count, "little")


def _nonce(mac: bytes, info: int, count: bytes) -> bytes:
    return mac + _UUID_BYTES + bytes([info]) + count


def _objects(data: bytes, body: bytes) -> tuple[RawObject, ...]:
    out: list[RawObject] = []
    at = 0
    while at < len(body):
        oid = body[at]
        spec = OBJECTS.get(oid)
        if spec is None:
            raise DecodeError("unknown_object", f"object id 0x{oid:02x} at {at}", data)
        at += 1
        size = spec.size
        if size == 0:  # length-prefixed text or raw
            if at >= len(body):
                raise DecodeError("truncated", f"length of object 0x{oid:02x} missing", data)
            size, at = body[at], at + 1
        if at + size > len(body):
            raise DecodeError("truncated", f"object 0x{oid:02x} needs {size} bytes", data)
        out.append((oid, _raw(data, spec, body[at : at + size])))
        at += size
    return tuple(out)


def _raw(data: bytes, spec: ObjectSpec, value: bytes) -> int | str | bytes:
    if spec.kind == "raw":
        return bytes(value)
    if spec.kind == "text":
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("text", "text object is not UTF-8", data) from None
    return int.from_bytes(value, "little", signed=spec.signed)


def _value(spec: ObjectSpec, raw: int | str | bytes) -> int | float | str | bytes | bool:
    if not isinstance(raw, int):
        return raw
    if spec.kind == "binary":
        return raw != 0
    if spec.scale == 1:
        return raw
    # 12 significant digits hide binary-float noise (2506 * 0.01 = 25.060000000000002).
    return float(f"{raw * spec.scale:.12g}")


def _encode_object(oid: int, value: int | str | bytes) -> bytes:
    spec = OBJECTS.get(oid)
    if spec is None:
        raise InvalidValue(f"unknown BTHome object id 0x{oid:02x}")
    if spec.size == 0:
        payload = value.encode() if isinstance(value, str) else value
        if not isinstance(payload, bytes) or len(payload) > 255:
            raise InvalidValue(f"object 0x{oid:02x} needs text or bytes up to 255 long")
        return bytes([oid, len(payload)]) + payload
    if not isinstance(value, int):
        raise InvalidValue(f"object 0x{oid:02x} needs an integer")
    try:
        return bytes([oid]) + value.to_bytes(spec.size, "little", signed=spec.signed)
    except OverflowError:
        raise InvalidValue(f"{value} does not fit object 0x{oid:02x}") from None
