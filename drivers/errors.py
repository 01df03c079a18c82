"""Errors raised by the sensor drivers.

::

    DriverError
    ├── DecodeError (ValueError)      bytes from a device that are not a valid frame or message;
    │                                 carries the offending ``raw`` bytes, a short ``kind`` used
    │                                 as a health-counter key, and a human ``reason``
    ├── InvalidValue (ValueError)     a value outside what a message can carry (a latitude of
    │                                 91°, a negative satellite count), refused before encoding
    ├── ConfigError (ValueError)      a driver configuration table that is missing a key, has a
    │                                 key of the wrong type, or names an unknown option
    └── SerialBroken (OSError)        the serial device went away or failed (unplugged USB
                                      adapter, hung-up pty); ``__cause__`` holds the original
                                      pyserial or OS error

Codecs in this package never let a foreign exception escape on bad input: any byte string
gives a value or a :class:`DecodeError`. Only the I/O adapters translate foreign exceptions,
and only into :class:`SerialBroken`.
"""

from __future__ import annotations


class DriverError(Exception):
    """Root of every error a driver raises on purpose."""


class DecodeError(DriverError, ValueError):
    """Bytes from a device that do not form a valid frame or message.

    Attributes:
        raw: the offending bytes (a whole frame, or the part of it that was received).
        kind: a short stable token (``"checksum"``, ``"truncated"``, ...) used as the key of
            ``DriverHealth.errors_by_kind``.
        reason: a human explanation.
    """

    def __init__(self, kind: str, reason: str, raw: bytes) -> None:
        super().__init__(f"{kind}: {reason} (raw={raw[:120]!r})")
        self.kind = kind
        self.reason = reason
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        # Decoders return errors as values; equality lets tests compare whole outputs
        # (e.g. one feed() call versus byte-at-a-time feeding).
        if not isinstance(other, DecodeError):
            return NotImplemented
        return (self.kind, self.reason, self.raw) == (other.kind, other.reason, other.raw)

    def __hash__(self) -> int:
        return hash((self.kind, self.reason, self.raw))


class InvalidValue(DriverError, ValueError):
    """A value that a message cannot carry (out of range, wrong shape)."""


class ConfigError(DriverError, ValueError):
    """A driver configuration table that cannot be used.

    Attributes:
        key: the offending key (``None`` when the table as a whole is wrong).
    """

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


class SerialBroken(DriverError, OSError):
    """The serial device failed or disappeared; the original error is the ``__cause__``."""


#: The same class under a longer name, for callers outside ``drivers`` where "ConfigError"
#: alone would be ambiguous.
DriverConfigError = ConfigError


class BleUnavailable(DriverError, OSError):
    """The Bluetooth adapter or stack failed (no adapter, BlueZ gone, scan refused); the
    original bleak or D-Bus error is the ``__cause__``."""
