"""How events map onto storage columns (sans-IO, shared by every SQL engine).

Readings are stored as one CBOR blob per event (RFC 8949), an array of ``[name, unit,
value]`` triples. CBOR rather than JSON because CBOR keeps the five SenML value kinds apart
natively (RFC 8949 §3.1: unsigned/negative integers and byte strings are their own major
types, ``true``/``false`` are simple values distinct from 1/0, floats are major type 7), so
``True`` stays ``True``, ``1`` stays ``int``, ``1.0`` stays ``float`` and ``bytes`` need no
base64 wrapper; integers beyond 64 bits round-trip as bignums (§3.4.3). It is also what the
link carries. Speed does not decide it: in ``bench/storage.py`` CBOR and JSON (with the tag
bytes need) insert within a few percent of each other, inside run-to-run noise.

:func:`check_event` refuses, with :class:`~.errors.InvalidEvent`, what a 64-bit integer
column or a UTF-8 text column cannot hold exactly, so that no engine error (OverflowError,
UnicodeEncodeError) can surface halfway through a batch.

This module does no I/O, reads no clock and draws no randomness.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Final

import cbor2

from cloud.storage.errors import InvalidEvent, InvalidQuery, StorageBroken
from protocol.events import ClockSource, Event, Reading, Value, trusted_reading
from protocol.preencoded import cbor_head
from protocol.wire import SENML_NAME, SENML_UNIT, SENML_VALUE, record_value

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from protocol.wire import WireRecord

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
_VALUE_TYPES: Final = frozenset({bool, int, float, str, bytes})


def encode_readings(readings: Iterable[Reading]) -> bytes:
    """The CBOR blob stored for an event's readings: exactly the bytes of
    ``cbor2.dumps([[name, unit, value], ...])``, built faster.

    This runs once per stored event on the storage writer. ``cbor2.dumps`` of the list costs
    about 3.5 µs for four readings (``bench/storage.py`` batches); here each ``[name, unit``
    prefix is encoded once and cached (a sensor sends the same names every time), and the
    common values are written directly in the form cbor2 chooses (RFC 8949 §3: the shortest
    head for an integer or a length, a 64-bit float for a finite float). Anything else (big
    integers, non-finite floats) goes through cbor2 itself.
    """
    items = readings if isinstance(readings, tuple | list) else tuple(readings)
    parts = [cbor_head(4, len(items))]
    prefixes = _PREFIXES
    for r in items:
        prefix = prefixes.get((r.name, r.unit))
        parts.append(_prefix(r.name, r.unit) if prefix is None else prefix)
        parts.append(_value(r.value))
    return b"".join(parts)


def encode_records(records: list[WireRecord]) -> bytes:
    """The blob :func:`encode_readings` gives for the readings of these SenML records.

    ``records`` are an event's records as :func:`protocol.codec.decode_wire` checked them
    (:mod:`protocol.wire`): each has exactly the name, unit (absent means ``""``) and value
    its ``Reading`` would have, so the bytes are the same, with no ``Reading`` built.
    """
    parts = [cbor_head(4, len(records))]
    prefixes = _PREFIXES
    for record in records:
        name = record[SENML_NAME]
        unit = record.get(SENML_UNIT, "")
        prefix = prefixes.get((name, unit))
        parts.append(_prefix(name, unit) if prefix is None else prefix)
        value = record.get(SENML_VALUE)  # a number, the common case; never None if present
        parts.append(_value(record_value(record) if value is None else value))
    return b"".join(parts)


def _prefix(name: str, unit: str) -> bytes:
    """``[name, unit`` of a stored triple, remembered: a sensor sends the same names."""
    if len(_PREFIXES) >= _MAX_PREFIXES:  # bounded: names come from the network
        _PREFIXES.clear()
    prefix = _PREFIXES[name, unit] = b"\x83" + cbor2.dumps(name) + cbor2.dumps(unit)
    return prefix


_PREFIXES: Final[dict[tuple[str, str], bytes]] = {}
_MAX_PREFIXES: Final = 4_096
_DOUBLE: Final = struct.Struct(">Bd").pack
_UINT64_LIMIT: Final = 2**64


def _value(value: Value) -> bytes:
    # Exact types (type() is, not isinstance): bool is an int subclass but encodes apart.
    if type(value) is float and math.isfinite(value):
        return _DOUBLE(0xFB, value)
    if type(value) is int and -_UINT64_LIMIT <= value < _UINT64_LIMIT:
        return cbor_head(0, value) if value >= 0 else cbor_head(1, -1 - value)
    if type(value) is bool:
        return b"\xf5" if value else b"\xf4"
    if type(value) is str:
        data = value.encode("utf-8")
        return cbor_head(3, len(data)) + data
    if type(value) is bytes:
        return cbor_head(2, len(value)) + value
    return cbor2.dumps(value)


def decode_readings(blob: bytes) -> tuple[Reading, ...]:
    """Inverse of :func:`encode_readings`.

    Raises:
        StorageBroken: the blob is not what :func:`encode_readings` writes (a damaged row).
    """
    try:
        items = cbor2.loads(blob)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise StorageBroken("stored readings are not valid CBOR") from exc
    if type(items) is not list:
        raise StorageBroken("stored readings are not a CBOR array")
    return tuple([_reading(item) for item in items])


def _reading(item: object) -> Reading:
    # Runs for every reading of every row a query returns: exact-type checks only.
    if type(item) is not list or len(item) != 3:
        raise StorageBroken("stored reading is not a [name, unit, value] triple")
    name, unit, value = item
    if type(name) is not str or type(unit) is not str or type(value) not in _VALUE_TYPES:
        raise StorageBroken("stored reading has a field of the wrong type")
    return trusted_reading(name, unit, value)


_CLOCKS: Final = {int(c): c for c in ClockSource}


def clock_source(code: int) -> ClockSource:
    """The :class:`ClockSource` for a stored code; :class:`StorageBroken` if unknown."""
    # A dict lookup: ClockSource(code) costs several times more, once per row of a page.
    found = _CLOCKS.get(code)
    if found is None:
        raise StorageBroken(f"stored clock source {code} is unknown")
    return found


def check_batch(tenant: str, gateway: str, events: Sequence[Event], received_ns: int) -> None:
    """Refuse a batch that the store could not hold exactly.

    Raises:
        InvalidEvent: the first event at fault (seq 0 stands for a bad batch-wide argument).
    """
    for label, text in (("tenant", tenant), ("gateway", gateway)):
        if not _is_utf8(text) or not text:
            raise InvalidEvent(0, f"{label} id is empty or not UTF-8")
    if not fits_int64(received_ns):
        raise InvalidEvent(0, "received_ns does not fit 64 bits")
    for event in events:
        check_event(event)


def check_event(event: Event) -> None:
    """Refuse an event whose fields do not fit their columns exactly."""
    # This runs for every stored event on the Trio thread, so the common case (ASCII text,
    # in-range numbers) is kept to a few C-level checks per field.
    seq = event.seq
    if not 0 <= seq <= INT64_MAX:
        raise InvalidEvent(seq, "seq is outside 0..2**63-1")
    if not (fits_int64(event.mono_ns) and fits_int64(event.wall_ns)):
        raise InvalidEvent(seq, "mono_ns or wall_ns does not fit 64 bits")
    if type(event.clock) is not ClockSource or type(event.boot_id) is not bytes:
        raise InvalidEvent(seq, "clock is not a ClockSource or boot_id is not bytes")
    if not _is_utf8(event.device):
        raise InvalidEvent(seq, "device id is not UTF-8")
    for reading in event.readings:
        value = reading.value
        kind = type(value)
        # Exact types only: a subclass (an IntEnum, a str subclass) would come back as its
        # base type, which is not an exact round trip.
        if kind not in _VALUE_TYPES:
            raise InvalidEvent(seq, f"reading value of type {kind.__name__}")
        if not (_is_utf8(reading.name) and _is_utf8(reading.unit)):
            raise InvalidEvent(seq, "reading name or unit is not UTF-8")
        if kind is str and not _is_utf8(value):
            raise InvalidEvent(seq, "reading string value is not UTF-8")


def check_query(tenant: str, texts: Iterable[str | None], times: Iterable[int | None]) -> None:
    """Refuse query filters that no stored value could match exactly.

    Raises:
        InvalidQuery: a text filter is not UTF-8 or a time bound does not fit 64 bits.
    """
    if not _is_utf8(tenant) or not all(t is None or _is_utf8(t) for t in texts):
        raise InvalidQuery("a text filter is not a UTF-8 string")
    if not all(t is None or (isinstance(t, int) and fits_int64(t)) for t in times):
        raise InvalidQuery("a time bound is not a 64-bit integer")


def fits_int64(number: int) -> bool:
    """Whether ``number`` fits a signed 64-bit column (SQLite INTEGER, PostgreSQL bigint)."""
    return INT64_MIN <= number <= INT64_MAX


def _is_utf8(text: object) -> bool:
    if type(text) is not str:
        return False
    if text.isascii():  # the common case, and much cheaper than encoding
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be stored as UTF-8 text
        return False
    return True
