"""Register maps: which registers a Modbus device has, and how their words become readings.

A :class:`RegisterPoint` is one value in a device's map: read ``function`` (3 = holding
registers, 4 = input registers; Modbus Application Protocol V1.1b3 §6.3 and §6.4) from
``address``, as ``dtype`` with ``word_order``, times ``scale``, reported as the SenML
``name`` and ``unit`` (RFC 8428 §12.1).

Data types: ``int16``, ``uint16`` (one register), ``int32``, ``uint32``, ``float32``
(two registers, IEEE 754 binary32). The protocol defines only 16-bit registers, big-endian
within a register (§4.2); devices disagree on the order of the two words of a 32-bit value,
so ``word_order`` is ``"big"`` (high word first, often written ABCD) or ``"little"`` (low
word first, CDAB).

Pure functions and a config parser; no I/O.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.errors import ConfigError, DecodeError, InvalidValue

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Registers per data type.
WIDTH: Final = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
_FORMAT: Final = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}
FUNCTIONS: Final = (3, 4)
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True, slots=True)
class RegisterPoint:
    """One value in a device's register map (see the module docstring)."""

    name: str
    unit: str
    function: int
    address: int
    dtype: str = "uint16"
    word_order: str = "big"
    scale: float = 1.0

    @property
    def count(self) -> int:
        """Registers this point occupies."""
        return WIDTH[self.dtype]


def decode_point(point: RegisterPoint, words: Sequence[int]) -> int | float:
    """The reading for ``point`` from its registers.

    Integers with scale 1 stay integers; anything scaled or float32 is a float.

    Raises:
        DecodeError: ``length`` (wrong number of words), ``value`` (a float that is NaN or
            infinite, which no SenML value can carry).
    """
    if len(words) != point.count or any(not 0 <= w <= 0xFFFF for w in words):
        raise DecodeError("length", f"{point.name} needs {point.count} 16-bit words", b"")
    ordered = list(words) if point.word_order == "big" else list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    (value,) = struct.unpack(_FORMAT[point.dtype], raw)
    if point.dtype == "float32" and not math.isfinite(value):
        raise DecodeError("value", f"{point.name} is {value}", raw)
    if point.scale == 1 and point.dtype != "float32":
        return int(value)
    return float(value) * point.scale


def encode_point(point: RegisterPoint, value: int | float) -> list[int]:
    """The registers a device holds for ``value`` (inverse of :func:`decode_point`).

    Used by the simulator and by round-trip tests.

    Raises:
        InvalidValue: ``value / scale`` does not fit ``dtype``.
    """
    raw_value: int | float = value / point.scale if point.scale != 1 else value
    if point.dtype != "float32":
        raw_value = round(raw_value)
    try:
        raw = struct.pack(_FORMAT[point.dtype], raw_value)
    except (struct.error, OverflowError) as exc:
        raise InvalidValue(f"{value} does not fit {point.dtype}: {exc}") from None
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return words if point.word_order == "big" else list(reversed(words))


def parse_point(table: Mapping[str, object], where: str) -> RegisterPoint:
    """A :class:`RegisterPoint` from a config table such as ``{name = "voltage", unit = "V",
    function = 4, address = 0, type = "float32", word_order = "big", scale = 1.0}``.

    Raises:
        ConfigError: a missing, unknown or invalid key (``key`` names it with ``where``).
    """
    known = {"name", "unit", "function", "address", "type", "word_order", "scale"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(key=f"{where}.{unknown[0]}", reason="unknown key")
    name, unit = table.get("name"), table.get("unit", "")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigError(key=f"{where}.name", reason="1-64 of A-Z a-z 0-9 _ . : -")
    if not isinstance(unit, str) or len(unit) > 16:
        raise ConfigError(key=f"{where}.unit", reason="a SenML unit such as 'V' or 'Cel'")
    function = _int(table, "function", where, 3)
    if function not in FUNCTIONS:
        raise ConfigError(key=f"{where}.function", reason="3 (holding) or 4 (input registers)")
    address = _int(table, "address", where, None)
    dtype = table.get("type", "uint16")
    if dtype not in WIDTH:
        raise ConfigError(key=f"{where}.type", reason=f"one of {', '.join(WIDTH)}")
    order = table.get("word_order", "big")
    if order not in ("big", "little"):
        raise ConfigError(key=f"{where}.word_order", reason="'big' or 'little'")
    scale = table.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale:
        raise ConfigError(key=f"{where}.scale", reason="a non-zero number")
    if not 0 <= address <= 0xFFFF - WIDTH[str(dtype)] + 1:
        raise ConfigError(key=f"{where}.address", reason="0-65535 (the whole value)")
    return RegisterPoint(name, unit, function, address, str(dtype), str(order), float(scale))


def _int(table: Mapping[str, object], key: str, where: str, default: int | None) -> int:
    value = table.get(key, default)
    # bool is an int subclass; `address = true` is a typo.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key=f"{where}.{key}", reason=f"must be an integer, got {value!r}")
    return value
