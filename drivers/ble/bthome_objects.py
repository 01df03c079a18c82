"""The BTHome v2 object table: object id → name, size, signedness, scale, SenML unit.

Source: the BTHome v2 format specification, bthome.io/format ("Sensor data", "Binary
sensor data", "Events", "Device information"). Each row turns the little-endian integer
that follows the object id into a SenML record (RFC 8428 §12 units): the spec's value is
``raw * factor`` in the spec's unit, and ``scale`` already folds in the conversion to the
SenML unit (hPa → Pa, kWh → J, mm → m, L → m3, m3/h → m3/s, µS/cm → S/m).

Objects with a length prefix (text 0x53, raw 0x54) are marked ``size = 0``. An object id
not in this table cannot be skipped (its length is unknown), so the decoder refuses the
rest of the packet; adding a row here is how a newly specified object is supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One row of the table. ``kind``: ``"number"``, ``"binary"``, ``"event"``, ``"text"``
    (length-prefixed UTF-8), ``"raw"`` (length-prefixed bytes) or ``"info"`` (device
    information, not a reading)."""

    name: str
    size: int
    signed: bool = False
    scale: float = 1.0
    unit: str = ""
    kind: str = "number"


def _n(name: str, size: int, scale: float, unit: str, *, signed: bool = False) -> ObjectSpec:
    return ObjectSpec(name, size, signed, scale, unit)


def _b(name: str) -> ObjectSpec:
    return ObjectSpec(name, 1, kind="binary")


KWH_J: Final = 3.6e6

OBJECTS: Final[dict[int, ObjectSpec]] = {
    0x00: ObjectSpec("packet_id", 1, kind="info"),
    0x01: _n("battery", 1, 1, "%EL"),
    0x02: _n("temperature", 2, 0.01, "Cel", signed=True),
    0x03: _n("humidity", 2, 0.01, "%RH"),
    0x04: _n("pressure", 3, 1.0, "Pa"),  # 0.01 hPa = 1 Pa
    0x05: _n("illuminance", 3, 0.01, "lx"),
    0x06: _n("mass", 2, 0.01, "kg"),
    0x07: _n("mass", 2, 0.01 * 0.45359237, "kg"),  # lb → kg (international pound)
    0x08: _n("dewpoint", 2, 0.01, "Cel", signed=True),
    0x09: _n("count", 1, 1, "count"),
    0x0A: _n("energy", 3, 0.001 * KWH_J, "J"),
    0x0B: _n("power", 3, 0.01, "W"),
    0x0C: _n("voltage", 2, 0.001, "V"),
    0x0D: _n("pm25", 2, 1, "ug/m3"),
    0x0E: _n("pm10", 2, 1, "ug/m3"),
    0x0F: _b("generic"),
    0x10: _b("power_on"),
    0x11: _b("opening"),
    0x12: _n("co2", 2, 1, "ppm"),
    0x13: _n("tvoc", 2, 1, "ug/m3"),
    0x14: _n("moisture", 2, 0.01, "%"),
    0x15: _b("battery_low"),
    0x16: _b("battery_charging"),
    0x17: _b("carbon_monoxide"),
    0x18: _b("cold"),
    0x19: _b("connectivity"),
    0x1A: _b("door"),
    0x1B: _b("garage_door"),
    0x1C: _b("gas"),
    0x1D: _b("heat"),
    0x1E: _b("light"),
    0x1F: _b("lock"),
    0x20: _b("moisture_detected"),
    0x21: _b("motion"),
    0x22: _b("moving"),
    0x23: _b("occupancy"),
    0x24: _b("plug"),
    0x25: _b("presence"),
    0x26: _b("problem"),
    0x27: _b("running"),
    0x28: _b("safety"),
    0x29: _b("smoke"),
    0x2A: _b("sound"),
    0x2B: _b("tamper"),
    0x2C: _b("vibration"),
    0x2D: _b("window"),
    0x2E: _n("humidity", 1, 1, "%RH"),
    0x2F: _n("moisture", 1, 1, "%"),
    0x3A: ObjectSpec("button", 1, kind="event"),
    0x3C: ObjectSpec("dimmer", 2, kind="event"),
    0x3D: _n("count", 2, 1, "count"),
    0x3E: _n("count", 4, 1, "count"),
    0x3F: _n("rotation", 2, 0.1, "deg", signed=True),
    0x40: _n("distance", 2, 0.001, "m"),
    0x41: _n("distance", 2, 0.1, "m"),
    0x42: _n("duration", 3, 0.001, "s"),
    0x43: _n("current", 2, 0.001, "A"),
    0x44: _n("speed", 2, 0.01, "m/s"),
    0x45: _n("temperature", 2, 0.1, "Cel", signed=True),
    0x46: _n("uv_index", 1, 0.1, "/"),
    0x47: _n("volume", 2, 0.1 / 1000, "m3"),
    0x48: _n("volume", 2, 1e-6, "m3"),
    0x49: _n("flow_rate", 2, 0.001 / 3600, "m3/s"),
    0x4A: _n("voltage", 2, 0.1, "V"),
    0x4B: _n("gas", 3, 0.001, "m3"),
    0x4C: _n("gas", 4, 0.001, "m3"),
    0x4D: _n("energy", 4, 0.001 * KWH_J, "J"),
    0x4E: _n("volume", 4, 1e-6, "m3"),
    0x4F: _n("water", 4, 1e-6, "m3"),
    0x50: _n("timestamp", 4, 1, "s"),
    0x51: _n("acceleration", 2, 0.001, "m/s2"),
    0x52: _n("gyroscope", 2, 0.001, "deg/s"),
    0x53: ObjectSpec("text", 0, kind="text"),
    0x54: ObjectSpec("raw", 0, kind="raw"),
    0x55: _n("volume_storage", 4, 1e-6, "m3"),
    0x56: _n("conductivity", 2, 1e-4, "S/m"),
    0x57: _n("temperature", 1, 1, "Cel", signed=True),
    0x58: _n("temperature", 1, 0.35, "Cel", signed=True),
    0x59: _n("count", 1, 1, "count", signed=True),
    0x5A: _n("count", 2, 1, "count", signed=True),
    0x5B: _n("count", 4, 1, "count", signed=True),
    0x5C: _n("power", 4, 0.01, "W", signed=True),
    0x5D: _n("current", 2, 0.001, "A", signed=True),
    0xF0: ObjectSpec("device_type", 2, kind="info"),
    0xF1: ObjectSpec("firmware", 4, kind="info"),
    0xF2: ObjectSpec("firmware", 3, kind="info"),
}
