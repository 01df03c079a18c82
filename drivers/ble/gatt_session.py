"""The sans-IO parts of the ``ble-gatt`` driver: its errors, the reconnect backoff and the
turning of one notification into a sample.

Errors (all :class:`~drivers.errors.DriverError`; the I/O shell raises them, with the bleak
or D-Bus error as ``__cause__``)::

    BleUnavailable (OSError)        drivers.errors: the adapter or BlueZ failed
    ├── DeviceUnreachable            the device was not found by a scan, refused the
    │                                connection, or offers nothing to subscribe to
    └── LinkLost                     a connected device dropped the link (out of range,
                                     switched off)
    LinkStalled                      connected, but no notification for ``stall_s`` and
                                     the read that probed the link failed

This module reads no clock and no randomness: :func:`full_jitter` takes its random draw
as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.base import Sample
from drivers.ble.ess import decode_value
from drivers.errors import BleUnavailable, DriverError


class DeviceUnreachable(BleUnavailable):
    """Not found within the connect timeout, connection refused, or nothing to subscribe."""


class LinkLost(BleUnavailable):
    """The device dropped an established connection."""


class LinkStalled(DriverError):
    """Connected, but no notification arrived for ``stall_s`` seconds and a read failed."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One value a device sent: its address, the 16-bit characteristic UUID, the bytes."""

    address: str
    characteristic: int
    value: bytes


def full_jitter(attempt: int, base_s: float, cap_s: float, draw: float) -> float:
    """Delay before reconnect attempt ``attempt`` (0, 1, ...): "full jitter" backoff.

    A uniform draw in [0, min(cap, base·2^attempt)), as in AWS Architecture Blog,
    "Exponential Backoff And Jitter" (2015): spreads many devices that dropped together
    over the whole window instead of retrying in lockstep.

    Args:
        draw: a number in [0, 1) from the caller's random source.
    """
    window = cap_s if attempt >= 63 else min(cap_s, base_s * 2**attempt)
    return window * draw


def sample_from(device_id: str, note: Notification) -> Sample | None:
    """The sample one notification gives, or ``None`` for "value is not known".

    Raises:
        DecodeError: the value is short, long, prohibited, or of an unknown characteristic.
    """
    readings = decode_value(note.characteristic, note.value)
    return Sample(device_id, readings) if readings else None
