"""iBeacon advertisements: a sans-IO decoder and encoder.

Layout (Apple, "Proximity Beacon Specification" R1, "iBeacon advertising packet"): the
manufacturer-specific data of company 0x004C (Apple) is ``02 15`` (type, length 21), a
16-byte proximity UUID, a 2-byte major and a 2-byte minor (both big-endian) and a signed
measured power byte (RSSI at 1 m, dBm).

Readings: ``present`` (always true: an iBeacon only says "I am here"), ``major``,
``minor``, ``txpower`` (dBm at 1 m) and ``uuid`` (string). It does not estimate distance.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

from drivers.errors import DecodeError
from protocol.events import Reading

APPLE_COMPANY_ID: Final = 0x004C
_PREFIX: Final = b"\x02\x15"
LENGTH: Final = 23  # prefix 2 + UUID 16 + major 2 + minor 2 + power 1


@dataclass(frozen=True, slots=True)
class IBeacon:
    """One iBeacon frame."""

    proximity_uuid: uuid.UUID
    major: int
    minor: int
    measured_power: int

    def readings(self) -> tuple[Reading, ...]:
        """The frame as SenML records."""
        return (
            Reading("present", "", True),
            Reading("uuid", "", str(self.proximity_uuid)),
            Reading("major", "", self.major),
            Reading("minor", "", self.minor),
            Reading("txpower", "dBm", self.measured_power),
        )


def decode_ibeacon(data: bytes) -> IBeacon:
    """Decode Apple manufacturer data (after the company id).

    Raises:
        DecodeError: kinds ``not_ibeacon`` (another Apple frame), ``truncated``, ``too_long``.
    """
    if data[:2] != _PREFIX[: len(data)] or not data:
        raise DecodeError("not_ibeacon", "Apple data that is not an iBeacon frame", data)
    if len(data) < LENGTH:
        raise DecodeError("truncated", f"{len(data)} of {LENGTH} bytes", data)
    if len(data) > LENGTH:
        raise DecodeError("too_long", f"{len(data)} bytes, an iBeacon has {LENGTH}", data)
    return IBeacon(
        proximity_uuid=uuid.UUID(bytes=data[2:18]),
        major=int.from_bytes(data[18:20], "big"),
        minor=int.from_bytes(data[20:22], "big"),
        measured_power=int.from_bytes(data[22:23], "big", signed=True),
    )


def encode_ibeacon(beacon: IBeacon) -> bytes:
    """The manufacturer data (after company id 0x004C) that carries ``beacon``."""
    return (
        _PREFIX
        + beacon.proximity_uuid.bytes
        + beacon.major.to_bytes(2, "big")
        + beacon.minor.to_bytes(2, "big")
        + beacon.measured_power.to_bytes(1, "big", signed=True)
    )
