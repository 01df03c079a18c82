"""Node protocol messages: CBOR payloads of the frames in :mod:`drivers.node.framing`.

Every payload is one CBOR array whose first element is the message type
(``docs/node-protocol.md`` §Messages has the CDDL)::

    hello    = [1, node-id: tstr, boot: uint, firmware: tstr]          node → gateway
    readings = [2, node-id, boot, now-ms: uint, dropped: uint, [+ record]]  node → gateway
    record   = [seq: uint, t-ms: uint, name: tstr, unit: tstr, value: int / float]
    ack      = [3, boot: uint, seq: uint]                               gateway → node

``seq`` numbers a node's readings within one boot, from 1, without gaps; an ack says every
reading of that boot up to ``seq`` is stored. ``t-ms`` and ``now-ms`` are the node's
uptime in milliseconds when the reading was taken and when the batch was sent, so the
gateway learns each reading's age without the node having a wall clock. ``dropped`` is
how many readings the node has discarded since boot because its queue was full.

:func:`decode_message` gives a message or a :class:`~drivers.errors.DecodeError` for any
bytes; :func:`encode_message` refuses values the wire cannot carry with
:class:`~drivers.errors.InvalidValue`. No I/O, no clock.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, NoReturn

import cbor2

from drivers.errors import DecodeError, InvalidValue
from drivers.node.framing import MAX_PAYLOAD

#: CBOR major-type-0 integers go up to 2**64 - 1; we keep counters within 32 bits, what
#: a small microcontroller handles natively (``docs/node-protocol.md`` §Limits).
MAX_U32: Final = 2**32 - 1
MAX_RECORDS: Final = 16
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}")
# RFC 8428 §12.1 units are short ASCII tokens such as "Cel", "%RH", "m/s"; "" = unitless.
_UNIT_RE: Final = re.compile(r"[!-~]{0,16}")
_MAX_DEPTH: Final = 4


class MessageType(IntEnum):
    """The first element of every message array."""

    HELLO = 1
    READINGS = 2
    ACK = 3


@dataclass(frozen=True, slots=True)
class Hello:
    """Sent by a node when it starts: who it is and how many times it has booted."""

    node_id: str
    boot: int
    firmware: str


@dataclass(frozen=True, slots=True)
class Record:
    """One reading: SenML name and unit (RFC 8428 §12), with the node's uptime stamp."""

    seq: int
    t_ms: int
    name: str
    unit: str
    value: int | float


@dataclass(frozen=True, slots=True)
class Readings:
    """A batch of readings from one node boot, oldest first."""

    node_id: str
    boot: int
    now_ms: int
    dropped: int
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """Cumulative acknowledgement: every reading of ``boot`` up to ``seq`` is stored."""

    boot: int
    seq: int


Message = Hello | Readings | Ack


def encode_message(message: Message) -> bytes:
    """CBOR payload for ``message`` (shortest-form encoding, RFC 8949 §4.2.1).

    Raises:
        InvalidValue: a field the wire cannot carry, or a payload over the frame limit.
    """
    try:
        data = cbor2.dumps(_body(message), canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, OverflowError) as exc:
        raise InvalidValue(f"cannot encode: {exc}") from None
    if len(data) > MAX_PAYLOAD:
        raise InvalidValue(f"message of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    # One set of rules, in the decoder: what it would refuse is never sent.
    try:
        decoded = decode_message(data)
    except DecodeError as error:
        raise InvalidValue(error.reason) from None
    if decoded != message:
        raise InvalidValue("a field does not survive encoding (e.g. a bool or NaN value)")
    return data


def _body(message: Message) -> list[object]:
    if isinstance(message, Hello):
        return [int(MessageType.HELLO), message.node_id, message.boot, message.firmware]
    if isinstance(message, Readings):
        records = [[r.seq, r.t_ms, r.name, r.unit, r.value] for r in message.records]
        head = [int(MessageType.READINGS), message.node_id, message.boot, message.now_ms]
        return [*head, message.dropped, records]
    return [int(MessageType.ACK), message.boot, message.seq]


def decode_message(payload: bytes) -> Message:
    """Parse one frame payload.

    Raises:
        DecodeError: ``cbor`` (not one well-formed CBOR item), ``type`` (unknown message
            type) or ``field`` (a field of the wrong type or out of range).
    """
    value = _loads(payload)
    if not isinstance(value, list) or not value or type(value[0]) is not int:
        _fail("field", "a message is an array starting with its type", payload)
    kind, fields = value[0], value[1:]
    if kind == MessageType.HELLO:
        return _hello(fields, payload)
    if kind == MessageType.READINGS:
        return _readings(fields, payload)
    if kind == MessageType.ACK:
        _arity(fields, 2, payload)
        return Ack(_u32(fields[0], "boot", payload), _u32(fields[1], "seq", payload))
    _fail("type", f"unknown message type {kind}", payload)


def _hello(fields: list[Any], raw: bytes) -> Hello:
    _arity(fields, 3, raw)
    node_id = _name(fields[0], "node-id", raw)
    firmware = fields[2]
    if not isinstance(firmware, str) or len(firmware) > 32:
        _fail("field", "firmware must be text of at most 32 characters", raw)
    return Hello(node_id, _u32(fields[1], "boot", raw), firmware)


def _readings(fields: list[Any], raw: bytes) -> Readings:
    _arity(fields, 5, raw)
    records = fields[4]
    if not isinstance(records, list) or not 0 < len(records) <= MAX_RECORDS:
        _fail("field", f"records must be an array of 1 to {MAX_RECORDS}", raw)
    parsed = tuple(_record(item, raw) for item in records)
    seqs = [r.seq for r in parsed]
    if any(b != a + 1 for a, b in itertools.pairwise(seqs)):
        _fail("field", "record seqs must be consecutive and increasing", raw)
    return Readings(
        node_id=_name(fields[0], "node-id", raw),
        boot=_u32(fields[1], "boot", raw),
        now_ms=_u32(fields[2], "now-ms", raw),
        dropped=_u32(fields[3], "dropped", raw),
        records=parsed,
    )


def _record(item: object, raw: bytes) -> Record:
    if not isinstance(item, list) or len(item) != 5:
        _fail("field", "a record is [seq, t-ms, name, unit, value]", raw)
    seq = _u32(item[0], "seq", raw)
    if seq == 0:
        _fail("field", "seq starts at 1", raw)
    name, unit, value = item[2], item[3], item[4]
    if not isinstance(unit, str) or not _UNIT_RE.fullmatch(unit):
        _fail("field", f"bad unit {unit!r}", raw)
    if type(value) not in (int, float) or not math.isfinite(value):
        _fail("field", "a value is a finite number", raw)
    if type(value) is int and not -(2**63) <= value < 2**63:
        _fail("field", "an integer value must fit in 64 bits", raw)
    return Record(seq, _u32(item[1], "t-ms", raw), _name(name, "name", raw), unit, value)


def _loads(payload: bytes) -> object:
    stream = io.BytesIO(payload)
    try:
        value = cbor2.CBORDecoder(
            stream, tag_hook=_refuse_tag, max_depth=_MAX_DEPTH, allow_indefinite=False
        ).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        # cbor2 raises a few plain errors on pathological input (huge lengths, bad floats).
        raise DecodeError("cbor", f"malformed CBOR: {type(exc).__name__}", payload) from None
    if stream.tell() != len(payload):
        _fail("cbor", "bytes after the message (RFC 8949 §5.1: extraneous data)", payload)
    return value


def _refuse_tag(decoder: object, tag: object) -> NoReturn:
    # Tags for types the nodes never send; refusing them keeps every decoded value plain.
    raise cbor2.CBORDecodeError("CBOR tags are not used by the node protocol")


def _arity(fields: list[Any], count: int, raw: bytes) -> None:
    if len(fields) != count:
        _fail("field", f"expected {count} fields after the type, got {len(fields)}", raw)


def _u32(value: object, what: str, raw: bytes) -> int:
    if type(value) is not int or not 0 <= value <= MAX_U32:
        _fail("field", f"{what} must be an unsigned 32-bit integer", raw)
    return value


def _name(value: object, what: str, raw: bytes) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        _fail("field", f"{what} must be 1-32 of A-Z a-z 0-9 _ . : - (not first)", raw)
    return value


def _fail(kind: str, reason: str, raw: bytes) -> NoReturn:
    raise DecodeError(kind, reason, raw)
