"""Events encoded once, spliced into Batch messages (the gateway's send path).

A gateway encodes each event once, when its outbox stores it, and sends those stored bytes
as they are: a CBOR array is its head followed by its items' encodings (RFC 8949 §3.1), so
splicing canonical item encodings under a canonical head gives exactly the bytes
:func:`protocol.codec.encode` would give for the same Batch. The bytes stored per event leave
out the array head and the seq, so the outbox can renumber events without re-encoding them.

Contract: :func:`encode_event_fields` checks the fields with the decoder's rules (the checks
of :mod:`protocol.codec`, shared, not copied), so stored bytes are always bytes the core
accepts; :func:`encode_batch_of_encoded` checks only what splicing can break (count, seq
order, size); :func:`decode_encoded_event` rebuilds the value with the decoder's checks. No
I/O, no clock.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, TypeVar

import cbor2

from protocol import limits
from protocol.codec import (
    _CLOCKS,
    _check_reading,
    _loads,
    _uint,
    check_event_wire,
    event_from_wire,
)
from protocol.errors import DecodeError, MessageTooBig, ProtocolError
from protocol.events import ClockSource, Event, Reading
from protocol.messages import MessageType
from protocol.wire import SENML_BOOL, SENML_DATA, SENML_NAME, SENML_STRING, SENML_UNIT, SENML_VALUE

if TYPE_CHECKING:
    from collections.abc import Sequence

_EVENT_HEAD: Final = b"\x87"  # an event is a 7-element array
_BATCH_HEAD: Final = bytes([0x82, MessageType.BATCH])  # [3, events]
_SMALL_UINTS: Final = tuple(bytes((n,)) for n in range(24))


def cbor_head(major: int, value: int) -> bytes:
    """The shortest head of a data item of ``major`` type with argument ``value`` (§3)."""
    top = major << 5
    if value < 24:
        return bytes((top | value,))
    if value < 0x100:
        return bytes((top | 24, value))
    if value < 0x10000:
        return bytes((top | 25,)) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes((top | 26,)) + value.to_bytes(4, "big")
    return bytes((top | 27,)) + value.to_bytes(8, "big")


def encode_event_fields(
    device: str,
    boot_id: bytes,
    mono_ns: int,
    wall_ns: int,
    clock: ClockSource,
    readings: tuple[Reading, ...],
) -> bytes:
    """Encode one event's fields after ``seq`` for :func:`encode_batch_of_encoded`.

    The fields are checked with the decoder's rules first, as :func:`encode` checks a Batch,
    so stored bytes are always bytes the core accepts.

    Returns:
        The canonical encodings of device, boot_id, mono_ns, wall_ns, clock and readings,
        concatenated (no array head, no seq).

    Raises:
        MessageTooBig: a field is over a limit.
        DecodeError: a field holds a value the protocol does not allow.
    """
    if type(readings) is not tuple:
        raise DecodeError("event readings: expected a tuple")
    # A gateway has few devices and reading names: what was checked once is remembered
    # with its encoding, and only the fields that change per event are checked each time.
    head = _event_memo.get((device, boot_id))
    if (
        head is None
        or not (type(mono_ns) is int and 0 <= mono_ns <= limits.MAX_UINT)
        or not (type(wall_ns) is int and -limits.MAX_UINT <= wall_ns <= limits.MAX_UINT)
        or clock not in _CLOCKS
        or not 0 < len(readings) <= limits.MAX_READINGS_PER_EVENT
    ):
        check_event_wire(0, device, boot_id, mono_ns, wall_ns, int(clock), list(readings))
        head = _remember(
            _event_memo, (device, boot_id), _text_item(device) + _BOOT_ID_HEAD + boot_id
        )
    parts = [
        head,
        _uint_item(mono_ns),
        _uint_item(wall_ns) if wall_ns >= 0 else cbor_head(1, -1 - wall_ns),
        _SMALL_UINTS[clock],
        cbor_head(4, len(readings)),
    ]
    for reading in readings:
        if type(reading) is not Reading:
            _check_reading(reading)  # raises
        value = reading.value
        kind = type(value)
        record = _record_memo.get((reading.name, reading.unit, kind))
        if record is None:
            _check_reading(reading)
            record = _record_head(reading.name, reading.unit, kind)
        elif kind is float:
            if not math.isfinite(value):  # type: ignore[arg-type]
                raise DecodeError("reading value: expected a finite number")
        elif kind is not bool:
            _check_reading(reading)
        parts.append(record)
        # cbor2 gives the shortest float, like encode's canonical mode, and shortest ints.
        parts.append(cbor2.dumps(value, canonical=True))
    return b"".join(parts)


#: SenML value label by the value's exact type (bool before int: it is an int subclass).
_VALUE_LABEL: Final[dict[type, int]] = {bool: SENML_BOOL, str: SENML_STRING, bytes: SENML_DATA}
_BOOT_ID_HEAD: Final = bytes((0x40 | limits.BOOT_ID_BYTES,))
# Memos of checked, encoded parts: a gateway has a few devices and reading names, so they
# stay small; the bound only guards against a driver inventing names without end.
_MEMO_ENTRIES: Final = 4096
_text_memo: dict[str, bytes] = {}
_event_memo: dict[tuple[str, bytes], bytes] = {}
_record_memo: dict[tuple[str, str, type], bytes] = {}

_K = TypeVar("_K")


def _remember(memo: dict[_K, bytes], key: _K, value: bytes) -> bytes:
    if len(memo) >= _MEMO_ENTRIES:
        memo.clear()
    memo[key] = value
    return value


def _uint_item(value: int) -> bytes:
    # Times in nanoseconds are nearly always past 2**32: test the widest case first.
    if value > 0xFFFFFFFF:
        return b"\x1b" + value.to_bytes(8, "big")
    return cbor_head(0, value)


def _text_item(text: str) -> bytes:
    encoded = _text_memo.get(text)
    if encoded is None:
        encoded = _remember(_text_memo, text, cbor2.dumps(text))
    return encoded


def _record_head(name: str, unit: str, kind: type) -> bytes:
    """A SenML record up to its value: keys in canonical order 0 (name), 1 (unit), label."""
    label = _VALUE_LABEL.get(kind, SENML_VALUE)
    fields = [cbor_head(0, SENML_NAME), _text_item(name)]
    if unit:
        fields += [cbor_head(0, SENML_UNIT), _text_item(unit)]
    head = cbor_head(5, 3 if unit else 2) + b"".join(fields) + cbor_head(0, label)
    return _remember(_record_memo, (name, unit, kind), head)


def encode_batch_of_encoded(events: Sequence[tuple[int, bytes]]) -> bytes:
    """A Batch message from ``(seq, fields)`` pairs made by :func:`encode_event_fields`.

    Byte for byte what :func:`encode` gives for ``Batch`` of the same events; the fields
    were checked when they were encoded, so only the count, the order of seqs and the size
    are checked here.

    Raises:
        MessageTooBig: more than MAX_BATCH_EVENTS events, or over MAX_MESSAGE_BYTES.
        DecodeError: no events, or seqs that do not strictly increase.
    """
    count = len(events)
    if not count:
        raise DecodeError("batch events: expected a non-empty tuple")
    if count > limits.MAX_BATCH_EVENTS:
        raise MessageTooBig(f"batch events: more than {limits.MAX_BATCH_EVENTS} events")
    parts = [_BATCH_HEAD, cbor_head(4, count)]
    previous = -1
    for seq, fields in events:
        if type(seq) is not int or seq <= previous or seq > limits.MAX_UINT:
            _uint(seq, "event seq")
            raise DecodeError(
                f"batch events: sequence numbers must increase ({seq} after {previous})"
            )
        previous = seq
        parts.append(_EVENT_HEAD)
        parts.append(cbor_head(0, seq) if seq > 23 else _SMALL_UINTS[seq])
        parts.append(fields)
    data = b"".join(parts)
    if len(data) > limits.MAX_MESSAGE_BYTES:
        raise MessageTooBig(f"message of {len(data)} bytes is over {limits.MAX_MESSAGE_BYTES}")
    return data


def decode_encoded_event(seq: int, fields: bytes) -> Event:
    """Rebuild the event that ``(seq, fields)`` encodes, with the decoder's checks.

    Raises:
        DecodeError: ``fields`` is not what :func:`encode_event_fields` makes.
    """
    item = _loads(_EVENT_HEAD + cbor_head(0, _uint(seq, "event seq")) + fields)
    try:
        return event_from_wire(item)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise DecodeError("event: wrong number of fields") from None
