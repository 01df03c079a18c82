"""RuuviTag data format 5 ("RAWv2"): a sans-IO decoder and encoder.

Layout (Ruuvi, "Data format 5 protocol specification (RAWv2)", docs.ruuvi.com): the
manufacturer-specific data of company 0x0499 (Ruuvi Innovations) is 24 bytes, big-endian:

====== ====== ================================================================
offset  size  field (invalid/not-available value)
====== ====== ================================================================
0       1     format, 5
1       2     temperature, signed, 0.005 °C (0x8000)
3       2     humidity, 0.0025 % (0xFFFF)
5       2     pressure, 1 Pa, offset -50000 Pa (0xFFFF)
7       6     acceleration x, y, z, signed, mG (0x8000 each)
13      2     power info: 11 bits battery voltage, +1600 mV (2047); 5 bits TX power,
              2 dBm steps, -40 dBm offset (31)
15      1     movement counter (255)
16      2     measurement sequence number (65535)
18      6     MAC address
====== ====== ================================================================

Fields holding their "not available" value produce no reading. Acceleration is converted
from g to SenML ``m/s2`` with standard gravity (9.80665 m/s², CGPM 1901).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from drivers.errors import DecodeError
from protocol.events import Reading

RUUVI_COMPANY_ID: Final = 0x0499
FORMAT: Final = 5
LENGTH: Final = 24
STANDARD_GRAVITY: Final = 9.80665
_NA_SIGNED: Final = -0x8000
_NA_U16: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class Ruuvi5:
    """One RAWv2 frame, raw integer fields as transmitted (``None`` = not available)."""

    temperature: int | None  # 0.005 °C
    humidity: int | None  # 0.0025 %
    pressure: int | None  # Pa - 50000
    acceleration: tuple[int | None, int | None, int | None]  # mG
    voltage: int | None  # mV - 1600
    tx_power: int | None  # (dBm + 40) / 2
    movement: int | None
    sequence: int | None
    mac: bytes

    def readings(self) -> tuple[Reading, ...]:
        """The frame as SenML records (absent fields give no record)."""
        out: list[Reading] = []
        if self.temperature is not None:
            out.append(Reading("temperature", "Cel", round(self.temperature * 0.005, 3)))
        if self.humidity is not None:
            out.append(Reading("humidity", "%RH", round(self.humidity * 0.0025, 4)))
        if self.pressure is not None:
            out.append(Reading("pressure", "Pa", self.pressure + 50000))
        for axis, value in zip("xyz", self.acceleration, strict=True):
            if value is not None:
                out.append(Reading(f"accel_{axis}", "m/s2", value / 1000 * STANDARD_GRAVITY))
        if self.voltage is not None:
            out.append(Reading("voltage", "V", (self.voltage + 1600) / 1000))
        if self.tx_power is not None:
            out.append(Reading("txpower", "dBm", self.tx_power * 2 - 40))
        if self.movement is not None:
            out.append(Reading("movements", "count", self.movement))
        return tuple(out)


def decode_ruuvi5(data: bytes) -> Ruuvi5:
    """Decode Ruuvi manufacturer data (after the company id).

    Raises:
        DecodeError: kinds ``format`` (not format 5), ``truncated``, ``too_long``.
    """
    if not data or data[0] != FORMAT:
        raise DecodeError("format", "not Ruuvi data format 5", data)
    if len(data) < LENGTH:
        raise DecodeError("truncated", f"{len(data)} of {LENGTH} bytes", data)
    if len(data) > LENGTH:
        raise DecodeError("too_long", f"{len(data)} bytes, format 5 has {LENGTH}", data)
    power = int.from_bytes(data[13:15], "big")
    return Ruuvi5(
        temperature=_na(_s16(data, 1), _NA_SIGNED),
        humidity=_na(_u16(data, 3), _NA_U16),
        pressure=_na(_u16(data, 5), _NA_U16),
        acceleration=(
            _na(_s16(data, 7), _NA_SIGNED),
            _na(_s16(data, 9), _NA_SIGNED),
            _na(_s16(data, 11), _NA_SIGNED),
        ),
        voltage=_na(power >> 5, 2047),
        tx_power=_na(power & 0x1F, 31),
        movement=_na(data[15], 255),
        sequence=_na(_u16(data, 16), _NA_U16),
        mac=bytes(data[18:24]),
    )


def encode_ruuvi5(frame: Ruuvi5) -> bytes:
    """The manufacturer data (after company id 0x0499) that carries ``frame``."""
    ax, ay, az = frame.acceleration
    power = (_or(frame.voltage, 2047) << 5) | _or(frame.tx_power, 31)
    return (
        bytes([FORMAT])
        + _or(frame.temperature, _NA_SIGNED).to_bytes(2, "big", signed=True)
        + _or(frame.humidity, _NA_U16).to_bytes(2, "big")
        + _or(frame.pressure, _NA_U16).to_bytes(2, "big")
        + b"".join(_or(a, _NA_SIGNED).to_bytes(2, "big", signed=True) for a in (ax, ay, az))
        + power.to_bytes(2, "big")
        + bytes([_or(frame.movement, 255)])
        + _or(frame.sequence, _NA_U16).to_bytes(2, "big")
        + frame.mac
    )


def _s16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big", signed=True)


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _na(value: int, not_available: int) -> int | None:
    return None if value == not_available else value


def _or(value: int | None, not_available: int) -> int:
    return not_available if value is None else value
