"""Environmental Sensing and Battery characteristic values: a sans-IO decoder and encoder.

What a ``ble-gatt`` driver receives in a notification or read is one characteristic value:
little-endian, fixed size, scaled by a power of ten. The table :data:`CHARACTERISTICS` holds
each one as the Bluetooth SIG's *GATT Specification Supplement* (GSS) defines it, under the
characteristic's name:

====== =============== ======= ============ =================== ===================
UUID   GSS name        type    resolution   allowed range       "value is not known"
====== =============== ======= ============ =================== ===================
0x2A6E Temperature     sint16  0.01 °C      -273.15 … 327.67    0x8000
0x2A6F Humidity        uint16  0.01 %       0.00 … 100.00       0xFFFF
0x2A6D Pressure        uint32  0.1 Pa       whole range         (none)
0x2A19 Battery Level   uint8   1 %          0 … 100             (none)
====== =============== ======= ============ =================== ===================

The GSS says every other value is prohibited, so a value outside the range is refused
(kind ``range``) rather than passed on. A "value is not known" gives no reading (an empty
tuple), as the advert decoders do for their "not available" values. Readings are SenML
(RFC 8428 §12): ``temperature`` Cel, ``humidity`` %RH, ``pressure`` Pa, ``battery`` %EL.

Any byte string gives readings or :class:`~drivers.errors.DecodeError` with kind
``truncated``, ``too_long``, ``range`` or ``unknown_characteristic``; nothing else escapes.
The module does no I/O and knows nothing of connections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from drivers.ble.advert import uuid16
from drivers.errors import DecodeError, InvalidValue
from protocol.events import Reading

ESS_SERVICE: Final = 0x181A  # Environmental Sensing Service
BATTERY_SERVICE: Final = 0x180F
TEMPERATURE: Final = 0x2A6E
HUMIDITY: Final = 0x2A6F
PRESSURE: Final = 0x2A6D
BATTERY_LEVEL: Final = 0x2A19


@dataclass(frozen=True, slots=True)
class CharSpec:
    """How one characteristic's value is laid out (GSS: type, M·10^d, range, special)."""

    name: str  # SenML name
    unit: str  # SenML unit (RFC 8428 §12)
    size: int  # bytes
    signed: bool
    exponent: int  # value = raw · 10**exponent
    minimum: int  # allowed raw range, inclusive
    maximum: int
    unknown: int | None  # raw value meaning "value is not known"


CHARACTERISTICS: Final[dict[int, CharSpec]] = {
    TEMPERATURE: CharSpec("temperature", "Cel", 2, True, -2, -27315, 32767, -0x8000),
    HUMIDITY: CharSpec("humidity", "%RH", 2, False, -2, 0, 10000, 0xFFFF),
    PRESSURE: CharSpec("pressure", "Pa", 4, False, -1, 0, 0xFFFFFFFF, None),
    BATTERY_LEVEL: CharSpec("battery", "%EL", 1, False, 0, 0, 100, None),
}

#: The 128-bit UUID strings BlueZ reports, mapped to the 16-bit ids of the table.
BY_UUID: Final[dict[str, int]] = {uuid16(short): short for short in CHARACTERISTICS}


def decode_value(characteristic: int, data: bytes) -> tuple[Reading, ...]:
    """Decode one value of ``characteristic`` (16-bit UUID) into SenML readings.

    Returns:
        One reading, or none when the device says "value is not known".

    Raises:
        DecodeError: kinds ``unknown_characteristic``, ``truncated``, ``too_long``, ``range``.
    """
    spec = CHARACTERISTICS.get(characteristic)
    if spec is None:
        raise DecodeError("unknown_characteristic", f"0x{characteristic:04X} is not decoded", data)
    if len(data) < spec.size:
        raise DecodeError("truncated", f"{spec.name} needs {spec.size} bytes", data)
    if len(data) > spec.size:
        raise DecodeError("too_long", f"{spec.name} is {spec.size} bytes", data)
    raw = int.from_bytes(data, "little", signed=spec.signed)
    if raw == spec.unknown:
        return ()
    if not spec.minimum <= raw <= spec.maximum:
        raise DecodeError("range", f"{spec.name} raw value {raw} is prohibited", data)
    return (Reading(spec.name, spec.unit, _scale(raw, spec.exponent)),)


def encode_value(characteristic: int, value: float | None) -> bytes:
    """The bytes a device sends for ``value`` (``None``: "value is not known").

    Raises:
        InvalidValue: unknown characteristic, no "not known" value, or out of range.
    """
    spec = CHARACTERISTICS.get(characteristic)
    if spec is None:
        raise InvalidValue(f"0x{characteristic:04X} is not an encodable characteristic")
    if value is None:
        if spec.unknown is None:
            raise InvalidValue(f"{spec.name} has no 'value is not known' encoding")
        raw = spec.unknown
    else:
        raw = round(value * 10**-spec.exponent)
        if not spec.minimum <= raw <= spec.maximum:
            raise InvalidValue(f"{spec.name} {value} is outside its allowed range")
    return raw.to_bytes(spec.size, "little", signed=spec.signed)


def _scale(raw: int, exponent: int) -> int | float:
    # round() keeps 2150 · 0.01 at 21.5 instead of 21.500000000000004.
    return raw if exponent == 0 else round(raw * 10**exponent, -exponent)
