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


def trusted_reading(name: str, unit: str, value: Value) -> Reading:
    """The :class:`Reading` of fields the caller has already checked, built without ``__init__``.

    For hot paths that build many values from checked input (the link decoder, the store's
    row decoder). A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, which was about a third of decoding a batch and half of decoding
    a page of stored events (docs/performance.md); the slot descriptors set the same fields
    directly and give the same immutable value. It checks nothing: values that would not
    pass the checks of :mod:`protocol.codec` must never reach it.
    """
    reading = _new(Reading)
    _set_name(reading, name)
    _set_unit(reading, unit)
    _set_value(reading, value)
    return reading


def trusted_event(
    seq: int,
    device: str,
    boot_id: bytes,
    mono_ns: int,
    wall_ns: int,
    clock: ClockSource,
    readings: tuple[Reading, ...],
) -> Event:
    """The :class:`Event` of checked fields, built without ``__init__``.

    See :func:`trusted_reading`: it checks nothing.
    """
    event = _new(Event)
    _set_seq(event, seq)
    _set_device(event, device)
    _set_boot_id(event, boot_id)
    _set_mono_ns(event, mono_ns)
    _set_wall_ns(event, wall_ns)
    _set_clock(event, clock)
    _set_readings(event, readings)
    return event


_new = object.__new__
_set_name = Reading.__dict__["name"].__set__
_set_unit = Reading.__dict__["unit"].__set__
_set_value = Reading.__dict__["value"].__set__
_set_seq = Event.__dict__["seq"].__set__
_set_device = Event.__dict__["device"].__set__
_set_boot_id = Event.__dict__["boot_id"].__set__
_set_mono_ns = Event.__dict__["mono_ns"].__set__
_set_wall_ns = Event.__dict__["wall_ns"].__set__
_set_clock = Event.__dict__["clock"].__set__
_set_readings = Event.__dict__["readings"].__set__
