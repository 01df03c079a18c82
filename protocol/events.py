"""Events and readings: the unit of data that flows from sensors to storage.

A :class:`Reading` is one SenML record (RFC 8428): a name, a unit from the SenML units
registry, and one value. An :class:`Event` is a set of readings one device produced at one
moment, with everything the core needs to identify it exactly once (gateway id + ``seq``)
and to trust or correct its timestamp (``boot_id``, ``mono_ns``, ``wall_ns``, ``clock``).

This module only defines values; it does no validation beyond types (the codec validates
what arrives from the wire).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

#: The value of a reading: SenML ``v`` (number), ``vs`` (string), ``vb`` (boolean) or
#: ``vd`` (data).
Value = float | int | str | bool | bytes


class ClockSource(IntEnum):
    """Where an event's wall-clock time came from, so the core knows how far to trust it."""

    NONE = 0  # free-running system clock, never synchronised: wall time may be anything
    NTP = 1  # system clock disciplined by NTP
    GPS = 2  # time taken from a GPS fix
    RTC = 3  # a battery-backed real-time clock, set at some point in the past


@dataclass(frozen=True, slots=True)
class Reading:
    """One SenML record: ``name`` and ``unit`` follow RFC 8428 §12 (e.g. ``"Cel"``, ``"lat"``)."""

    name: str
    unit: str
    value: Value


@dataclass(frozen=True, slots=True)
class Event:
    """Readings from one device at one moment, identified by (gateway, ``seq``).

    Attributes:
        seq: per-gateway sequence number assigned by the gateway's outbox; strictly increasing
            over the gateway's whole life, never reused.
        device: the device id, unique within its gateway (e.g. ``"gps-1"``).
        boot_id: the gateway's kernel boot id (16 bytes); ``mono_ns`` is only comparable
            between events with the same boot id.
        mono_ns: the gateway's monotonic clock (CLOCK_BOOTTIME) when the event was taken.
        wall_ns: wall-clock time, nanoseconds since the Unix epoch, from ``clock``.
        clock: where ``wall_ns`` came from.
        readings: the SenML records.
    """

    seq: int
    device: str
    boot_id: bytes
    mono_ns: int
    wall_ns: int
    clock: ClockSource
    readings: tuple[Reading, ...]
