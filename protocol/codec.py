"""CBOR encoding and strict decoding of link messages (``docs/protocol.md``).

Contract: :func:`decode` turns any ``bytes`` into a :mod:`protocol.messages` value or raises
:class:`~protocol.errors.DecodeError` / :class:`~protocol.errors.MessageTooBig`; any other
exception is a bug. It accepts only the CBOR major types the CDDL allows and **no tags at
all**: cbor2 would otherwise turn tags into datetimes, bignums, sets, shared references (which
can build cycles) and more, so every tag number is mapped to a decoder that refuses it.
:func:`decode_wire` accepts and refuses exactly the same, but leaves a Batch's events in their
checked wire form (:class:`~protocol.wire.WireEvents`) for a receiver that stores them as
they are; both share every check.

:func:`encode` builds the canonical array form and refuses to build a message the decoder
would refuse (limits included), so a peer never sends what the other side must reject. The
hot messages (``Batch``, ``Ack``, ``Deliver``) are checked on their values with the
decoder's rules before encoding; the others are checked by decoding the encoded bytes.
:mod:`protocol.preencoded` builds the same Batch bytes from events encoded once, when a
gateway's outbox stores them.

Needs cbor2 6 or later (``semantic_decoders`` and ``max_depth`` are 6.x decoder options).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

import cbor2

from protocol import limits
from protocol.errors import DecodeError, MessageTooBig, ProtocolError
from protocol.events import ClockSource, Event, Reading, Value
from protocol.messages import (
    Ack,
    Batch,
    Command,
    Deliver,
    Delivered,
    Error,
    ErrorCode,
    Flow,
    Hello,
    Message,
    MessageType,
    Result,
    Scalar,
    Subscribe,
    Subscribed,
    Welcome,
)
from protocol.wire import (
    SENML_BOOL,
    SENML_DATA,
    SENML_NAME,
    SENML_STRING,
    SENML_UNIT,
    SENML_VALUE,
    WireEvent,
    WireEvents,
    WireRecord,
    event_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_VALUE_LABELS: Final = frozenset({SENML_VALUE, SENML_STRING, SENML_BOOL, SENML_DATA})

#: Deepest nesting a valid message has (deliver → items → item → event → readings → record).
_MAX_DEPTH: Final = 8


def _refuse_tag(decoder: object, tag: object = None) -> NoReturn:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed")


# Map keys: SenML's CBOR form uses integer labels, so cbor2's strict_hashable_types (text and
# byte keys only) cannot be on. Integer keys are bounded to 64 bits by CBOR itself, which
# leaves no room for crafted hash collisions; array keys are refused after decoding and a
# whole message is capped at MAX_MESSAGE_BYTES.


class _RefuseEveryTag(Mapping[int, "Callable[..., Any]"]):
    """A semantic_decoders mapping that answers every tag number with :func:`_refuse_tag`.

    cbor2 only consults tag_hook for tags it has no built-in decoder for; the built-in ones are
    overridden through semantic_decoders, which its decoder reads with ``mapping[tag]`` alone.
    Answering every key covers all tag numbers (0 to 2**64 - 1) with no table: a dict of every
    16-bit tag number held 4.7 MiB in every process that imported this module.
    """

    def __getitem__(self, tag: int) -> Callable[..., Any]:
        return _refuse_tag

    # cbor2 only indexes it; listing no keys keeps a stray iteration from walking 2**64 tags.
    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __contains__(self, tag: object) -> bool:
        return True


_NO_SEMANTIC_TAGS: Final = _RefuseEveryTag()


def _loads(data: bytes) -> object:
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            stream,
            tag_hook=_refuse_tag,
            semantic_decoders=_NO_SEMANTIC_TAGS,
            max_depth=_MAX_DEPTH,
            # docs/protocol.md §Encoding: definite lengths only, one encoding per message.
            allow_indefinite=False,
            allow_duplicate_keys=False,
        ).decode()
    except cbor2.CBORDecodeError as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # cbor2 raises a few plain errors on pathological input (e.g. huge lengths).
        raise DecodeError(f"malformed CBOR: {type(exc).__name__}") from None
    # cbor2 stops after the first data item and ignores what follows; a WebSocket message is
    # exactly one item (RFC 8949 §5.1 calls anything after it "extraneous data").
    if stream.tell() != len(data):
        raise DecodeError(f"{len(data) - stream.tell()} bytes after the message")
    return value


# --- field checks ---------------------------------------------------------------------------


def _fail(what: str, value: object) -> NoReturn:
    raise DecodeError(f"{what}: expected {_describe(value)} to be valid")


def _describe(value: object) -> str:
    return type(value).__name__


def _array(value: object, what: str, length: int | None = None) -> list[Any]:
    if type(value) is not list:
        raise DecodeError(f"{what}: expected an array, got {_describe(value)}")
    if length is not None and len(value) != length:
        raise DecodeError(f"{what}: expected {length} elements, got {len(value)}")
    return value


def _uint(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= limits.MAX_UINT:
        raise DecodeError(f"{what}: expected an unsigned integer below 2**63")
    return value


def _int(value: object, what: str) -> int:
    if type(value) is not int or not -limits.MAX_UINT <= value <= limits.MAX_UINT:
        raise DecodeError(f"{what}: expected an integer within ±(2**63-1)")
    return value


def _text(value: object, what: str, *, empty: bool = False) -> str:
    if type(value) is not str:
        raise DecodeError(f"{what}: expected a text string, got {_describe(value)}")
    if not value and not empty:
        raise DecodeError(f"{what}: must not be empty")
    if len(value) > limits.MAX_TEXT_BYTES or len(value.encode()) > limits.MAX_TEXT_BYTES:
        raise MessageTooBig(f"{what}: longer than {limits.MAX_TEXT_BYTES} bytes")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise DecodeError(f"{what}: expected a boolean, got {_describe(value)}")
    return value


def _boot_id(value: object) -> bytes:
    if type(value) is not bytes or len(value) != limits.BOOT_ID_BYTES:
        raise DecodeError(f"boot_id: expected {limits.BOOT_ID_BYTES} bytes")
    return value


def _scalar_map(value: object, what: str) -> dict[str, Scalar]:
    if type(value) is not dict:
        raise DecodeError(f"{what}: expected a map, got {_describe(value)}")
    if len(value) > limits.MAX_READINGS_PER_EVENT:
        raise MessageTooBig(f"{what}: more than {limits.MAX_READINGS_PER_EVENT} entries")
    out: dict[str, Scalar] = {}
    for key, item in value.items():
        _text(key, f"{what} key")
        if item is None or type(item) in (bool, int, float):
            if type(item) is int:
                _int(item, f"{what}[{key}]")
            out[key] = item
        elif type(item) is str:
            out[key] = _text(item, f"{what}[{key}]", empty=True)
        elif type(item) is bytes:
            if len(item) > limits.MAX_BLOB_BYTES:
                raise MessageTooBig(f"{what}[{key}]: longer than {limits.MAX_BLOB_BYTES} bytes")
            out[key] = item
        else:
            raise DecodeError(f"{what}[{key}]: {_describe(item)} is not a simple value")
    return out


# --- readings and events --------------------------------------------------------------------


def _check_records(records: list[Any]) -> None:
    """Check an event's SenML records exactly as decoding does, building nothing."""
    # Hot path: nearly every record is {name, unit, number}. This accepts exactly what the
    # general check below accepts for that shape (integer labels, non-empty short texts, a
    # finite float or an integer within ±(2**63-1)) without building the key set, and
    # leaves every other record, and every error, to it.
    for record in records:
        if type(record) is dict and len(record) == 3 and record.keys() == _NAME_UNIT_VALUE:
            first, second, third = record  # the keys: 0.0 or False would also match label 0
            name = record[SENML_NAME]
            unit = record[SENML_UNIT]
            value = record[SENML_VALUE]
            kind = type(value)
            if (
                type(first) is int
                and type(second) is int
                and type(third) is int
                and type(name) is str
                and type(unit) is str
                and 0 < len(name) <= _SHORT_TEXT
                and 0 < len(unit) <= _SHORT_TEXT
                and (
                    (kind is float and _isfinite(value))
                    or (kind is int and -limits.MAX_UINT <= value <= limits.MAX_UINT)
                )
            ):
                continue
        _check_record(record)


_NAME_UNIT_VALUE: Final = frozenset({SENML_NAME, SENML_UNIT, SENML_VALUE})
#: Code points that fit MAX_TEXT_BYTES whatever they are (4 bytes each at most in UTF-8).
_SHORT_TEXT: Final = limits.MAX_TEXT_BYTES // 4
_isfinite: Final = math.isfinite


def _check_record(record: object) -> WireRecord:
    """Check one SenML record on the general path; return it as it is."""
    if type(record) is not dict:
        raise DecodeError(f"reading: expected a SenML record map, got {_describe(record)}")
    shape = _RECORD_SHAPES.get(frozenset(record.keys()) if len(record) <= 3 else None)
    if shape is None:
        _refuse_record(record)
    for key in record:
        if type(key) is not int:
            _refuse_record(record)
    label, has_unit = shape
    name = record[SENML_NAME]
    if not _short_text(name):
        _text(name, "reading name")
    if has_unit and not _short_text(record[SENML_UNIT]):
        # An absent unit means "no unit"; an empty one would be a second encoding of it.
        _text(record[SENML_UNIT], "reading unit")
    value = record[label]
    if not (label == SENML_VALUE and type(value) is float and math.isfinite(value)):
        _reading_value(label, value)
    return record


def _record_shapes() -> dict[frozenset[int] | None, tuple[int, bool]]:
    shapes: dict[frozenset[int] | None, tuple[int, bool]] = {}
    for label in _VALUE_LABELS:
        shapes[frozenset({SENML_NAME, label})] = (label, False)
        shapes[frozenset({SENML_NAME, SENML_UNIT, label})] = (label, True)
    return shapes


#: The valid key sets of a reading record: a name, an optional unit and exactly one value.
#: Only integers are labels: 0.0 and True hash and compare equal to 0 and 1, so a record
#: keyed by them matches a shape here; the exact key-type check after the lookup refuses it.
_RECORD_SHAPES: Final = _record_shapes()


def _refuse_record(record: dict[Any, Any]) -> NoReturn:
    keys = record.keys()
    if any(type(key) is not int for key in keys):
        raise DecodeError("reading: SenML labels are integers (RFC 8428 §6)")
    if (
        SENML_NAME not in record
        and len(keys & _VALUE_LABELS) == 1
        and keys <= (_VALUE_LABELS | {SENML_UNIT})
    ):
        raise DecodeError("reading: missing name (SenML label 0)")
    raise DecodeError("reading: needs a name, an optional unit and exactly one value")


def _reading_value(label: int, value: object) -> Value:
    if label == SENML_VALUE:
        if type(value) is int:
            return _int(value, "reading value")
        if type(value) is float and math.isfinite(value):
            return value
        raise DecodeError("reading value: expected a finite number")
    if label == SENML_STRING:
        return _text(value, "reading string value", empty=True)
    if label == SENML_BOOL:
        return _bool(value, "reading boolean value")
    if type(value) is not bytes:
        raise DecodeError("reading data value: expected a byte string")
    if len(value) > limits.MAX_BLOB_BYTES:
        raise MessageTooBig(f"reading data value: longer than {limits.MAX_BLOB_BYTES} bytes")
    return value


def _reading_to_wire(reading: Reading) -> dict[int, object]:
    value = reading.value
    if type(value) is bool:
        label = SENML_BOOL
    elif type(value) is str:
        label = SENML_STRING
    elif type(value) is bytes:
        label = SENML_DATA
    else:
        label = SENML_VALUE
    record: dict[int, object] = {SENML_NAME: reading.name, label: value}
    if reading.unit:
        record[SENML_UNIT] = reading.unit
    return record


def event_from_wire(item: object) -> Event:
    """Decode one event array (``docs/protocol.md`` §event)."""
    return event_of(_checked_event(item))


def _checked_event(item: object) -> WireEvent:
    """Check one event array as ``docs/protocol.md`` §event requires; return it as it is."""
    fields = item if type(item) is list and len(item) == 7 else _array(item, "event", 7)
    seq, device, boot_id, mono_ns, wall_ns, clock, records = fields
    # Hot path: the checks of check_event_wire inlined for the common case (a function call
    # per event cost a tenth of decoding a batch); any doubt goes through it for the error.
    if not (
        type(seq) is int
        and 0 <= seq <= limits.MAX_UINT
        and type(device) is str
        and 0 < len(device) <= _SHORT_TEXT
        and type(boot_id) is bytes
        and len(boot_id) == limits.BOOT_ID_BYTES
        and type(mono_ns) is int
        and 0 <= mono_ns <= limits.MAX_UINT
        and type(wall_ns) is int
        and -limits.MAX_UINT <= wall_ns <= limits.MAX_UINT
        and type(clock) is int
        and clock in _CLOCKS
        and type(records) is list
        and 0 < len(records) <= limits.MAX_READINGS_PER_EVENT
    ):
        check_event_wire(seq, device, boot_id, mono_ns, wall_ns, clock, records)
    _check_records(records)
    return fields


_CLOCKS: Final = {int(c): c for c in ClockSource}


def _short_text(value: object) -> bool:
    """A non-empty text within MAX_TEXT_BYTES (the ASCII case without encoding it)."""
    if type(value) is not str or not value:
        return False
    if len(value) <= limits.MAX_TEXT_BYTES // 4:  # 4 bytes per code point at most (UTF-8)
        return True
    return len(value) <= limits.MAX_TEXT_BYTES and len(value.encode()) <= limits.MAX_TEXT_BYTES


def check_event_wire(
    seq: object,
    device: object,
    boot_id: object,
    mono_ns: object,
    wall_ns: object,
    clock: object,
    records: object,
) -> None:
    """Validate one event's wire fields exactly as decoding does; raise our errors only.

    The common case is a handful of exact-type and range comparisons; on any doubt the
    field's own checker runs to give the precise error.
    """
    if not (type(seq) is int and 0 <= seq <= limits.MAX_UINT):
        _uint(seq, "event seq")
    if not _short_text(device):
        _text(device, "event device")
    if not (type(boot_id) is bytes and len(boot_id) == limits.BOOT_ID_BYTES):
        _boot_id(boot_id)
    if not (type(mono_ns) is int and 0 <= mono_ns <= limits.MAX_UINT):
        _uint(mono_ns, "event mono_ns")
    if not (type(wall_ns) is int and -limits.MAX_UINT <= wall_ns <= limits.MAX_UINT):
        _int(wall_ns, "event wall_ns")
    if type(clock) is not int or clock not in _CLOCKS:
        _uint(clock, "event clock")
        raise DecodeError(f"event clock: unknown clock source {clock}")
    readings = _array(records, "event readings")
    if not readings:
        raise DecodeError("event readings: an event has at least one reading")
    if len(readings) > limits.MAX_READINGS_PER_EVENT:
        raise MessageTooBig(f"event: more than {limits.MAX_READINGS_PER_EVENT} readings")


def event_to_wire(event: Event) -> list[object]:
    """The array form of one event."""
    return [
        event.seq,
        event.device,
        event.boot_id,
        event.mono_ns,
        event.wall_ns,
        int(event.clock),
        [_reading_to_wire(r) for r in event.readings],
    ]


def _events_from_wire(value: object, what: str) -> tuple[Event, ...]:
    return tuple([event_of(item) for item in _checked_events(value, what)])


def _checked_events(value: object, what: str) -> list[WireEvent]:
    """Check a batch's event arrays, then their order; return them as they are."""
    items = _array(value, what)
    if not items:
        raise DecodeError(f"{what}: must not be empty")
    if len(items) > limits.MAX_BATCH_EVENTS:
        raise MessageTooBig(f"{what}: more than {limits.MAX_BATCH_EVENTS} events")
    for item in items:
        _checked_event(item)
    # Every event is checked before the order, so a batch with both faults is refused for
    # the fault in its events, whichever comes first.
    before = -1  # below every seq (they are unsigned)
    for item in items:
        after = item[0]
        if after <= before:
            raise DecodeError(f"{what}: sequence numbers must increase ({after} after {before})")
        before = after
    return items


# --- messages -------------------------------------------------------------------------------


def _flow_from_wire(value: object) -> Flow:
    inflight, rate = _array(value, "flow", 2)
    return Flow(_uint(inflight, "flow max_inflight_events"), _uint(rate, "flow max_events_per_s"))


def _decode_body(kind: int, body: list[Any]) -> Message:
    if kind == MessageType.HELLO:
        version, peer, software, boot_id, resume = _array(body, "hello", 5)
        return Hello(
            _uint(version, "hello version"),
            _text(peer, "hello peer_id"),
            _text(software, "hello software", empty=True),
            _boot_id(boot_id),
            _uint(resume, "hello resume_from"),
        )
    if kind == MessageType.WELCOME:
        version, session, acked, max_bytes, max_events, flow = _array(body, "welcome", 6)
        return Welcome(
            _uint(version, "welcome version"),
            _text(session, "welcome session_id"),
            _uint(acked, "welcome acked_seq"),
            _uint(max_bytes, "welcome max_message_bytes"),
            _uint(max_events, "welcome max_batch_events"),
            _flow_from_wire(flow),
        )
    if kind == MessageType.BATCH:
        (events,) = _array(body, "batch", 1)
        return Batch(_events_from_wire(events, "batch events"))
    if kind == MessageType.ACK:
        (acked,) = _array(body, "ack", 1)
        return Ack(_uint(acked, "ack acked_seq"))
    if kind == MessageType.COMMAND:
        command_id, name, args = _array(body, "command", 3)
        return Command(
            _uint(command_id, "command id"), _text(name, "command name"), _scalar_map(args, "args")
        )
    if kind == MessageType.RESULT:
        command_id, ok, detail = _array(body, "result", 3)
        return Result(
            _uint(command_id, "result id"), _bool(ok, "result ok"), _scalar_map(detail, "detail")
        )
    if kind == MessageType.FLOW:
        return _flow_from_wire(body)
    if kind in (MessageType.SUBSCRIBE, MessageType.SUBSCRIBED):
        request_id, patterns = _array(body, "subscribe", 2)
        items = _array(patterns, "subscribe patterns")
        if not items:
            raise DecodeError("subscribe patterns: at least one pattern")
        if len(items) > limits.MAX_TOPICS:
            raise MessageTooBig(f"subscribe patterns: more than {limits.MAX_TOPICS} patterns")
        checked = tuple(_text(p, "topic pattern") for p in items)
        cls = Subscribe if kind == MessageType.SUBSCRIBE else Subscribed
        return cls(_uint(request_id, "subscribe request_id"), checked)
    if kind == MessageType.DELIVER:
        (items,) = _array(body, "deliver", 1)
        entries = _array(items, "deliver items")
        if not entries:
            raise DecodeError("deliver items: at least one event")
        if len(entries) > limits.MAX_BATCH_EVENTS:
            raise MessageTooBig(f"deliver items: more than {limits.MAX_BATCH_EVENTS} events")
        delivered = []
        for entry in entries:
            gateway, event = _array(entry, "delivered", 2)
            delivered.append(Delivered(_text(gateway, "delivered gateway"), event_from_wire(event)))
        return Deliver(tuple(delivered))
    if kind == MessageType.ERROR:
        code, reason, request_id = _array(body, "error", 3)
        try:
            error_code = ErrorCode(_uint(code, "error code"))
        except ValueError:
            raise DecodeError(f"error: unknown error code {code}") from None
        return Error(error_code, _text(reason, "error reason", empty=True), _uint(request_id, "id"))
    raise DecodeError(f"unknown message type {kind}")


def decode(data: bytes) -> Message:
    """Decode one WebSocket message.

    Raises:
        MessageTooBig: ``data`` or a part of it is over a limit in :mod:`protocol.limits`.
        DecodeError: anything else that is not a valid message.
    """
    kind, body = _message_array(data)
    try:
        return _decode_body(kind, body)
    except (TypeError, ValueError) as exc:
        _refuse_body(kind, exc)


def decode_wire(data: bytes) -> Message | WireEvents:
    """Decode one WebSocket message, leaving a Batch's events in their checked wire form.

    Accepts and refuses exactly what :func:`decode` does, with the same errors. A ``Batch``
    comes back as :class:`~protocol.wire.WireEvents` holding its event arrays, which pass
    every check :func:`decode` applies but are not built into ``Event`` values: the core
    stores most batches without ever needing them. Every other message is as :func:`decode`
    returns it.

    Raises:
        MessageTooBig: ``data`` or a part of it is over a limit in :mod:`protocol.limits`.
        DecodeError: anything else that is not a valid message.
    """
    kind, body = _message_array(data)
    try:
        if kind == MessageType.BATCH:
            (events,) = _array(body, "batch", 1)
            return WireEvents(tuple(_checked_events(events, "batch events")))
        return _decode_body(kind, body)
    except (TypeError, ValueError) as exc:
        _refuse_body(kind, exc)


def _message_array(data: bytes) -> tuple[int, list[Any]]:
    """A message's type and the rest of its array, checked for size and shape only."""
    if len(data) > limits.MAX_MESSAGE_BYTES:
        raise MessageTooBig(f"message of {len(data)} bytes is over {limits.MAX_MESSAGE_BYTES}")
    value = _loads(data)
    if type(value) is not list or not value:
        raise DecodeError("a message is a non-empty CBOR array")
    kind = value[0]
    if type(kind) is not int:
        raise DecodeError("message type: expected an unsigned integer")
    return kind, value[1:]


def _refuse_body(kind: int, exc: TypeError | ValueError) -> NoReturn:
    if isinstance(exc, ProtocolError):
        raise exc  # MessageTooBig included: it must not be reported as malformed
    # Tuple unpacking of a wrong-length array lands here.
    raise DecodeError(f"message type {kind}: wrong number of fields") from None


def _body(message: Message) -> list[object]:
    match message:
        case Hello(version, peer, software, boot_id, resume):
            return [MessageType.HELLO, version, peer, software, boot_id, resume]
        case Welcome(version, session, acked, max_bytes, max_events, flow):
            flow_wire = [flow.max_inflight_events, flow.max_events_per_s]
            return [MessageType.WELCOME, version, session, acked, max_bytes, max_events, flow_wire]
        case Batch(events):
            return [MessageType.BATCH, [event_to_wire(e) for e in events]]
        case Ack(acked):
            return [MessageType.ACK, acked]
        case Command(command_id, name, args):
            return [MessageType.COMMAND, command_id, name, args]
        case Result(command_id, ok, detail):
            return [MessageType.RESULT, command_id, ok, detail]
        case Flow(inflight, rate):
            return [MessageType.FLOW, inflight, rate]
        case Subscribe(request_id, patterns):
            return [MessageType.SUBSCRIBE, request_id, list(patterns)]
        case Subscribed(request_id, patterns):
            return [MessageType.SUBSCRIBED, request_id, list(patterns)]
        case Deliver(items):
            wire = [[d.gateway, event_to_wire(d.event)] for d in items]
            return [MessageType.DELIVER, wire]
        case Error(code, reason, request_id):
            return [MessageType.ERROR, int(code), reason, request_id]
    raise TypeError(f"not a protocol message: {message!r}")  # pragma: no cover


def encode(message: Message) -> bytes:
    """Encode ``message``; the result always decodes back to an equal value.

    Raises:
        MessageTooBig: the message would exceed a limit.
        DecodeError: the message holds a value the protocol does not allow.
    """
    try:
        # The hot messages are checked on their values, field by field with the decoder's
        # own rules, which costs a fraction of decoding the output again (docs/performance.md).
        checked = _check_outgoing(message)
        wire = [int(x) if isinstance(x, MessageType) else x for x in _body(message)]
        # canonical: sorted map keys and shortest floats (RFC 8949 §4.2), so equal messages
        # always encode to equal bytes.
        data = cbor2.dumps(wire, canonical=True)
    except (cbor2.CBOREncodeError, UnicodeEncodeError) as exc:
        raise DecodeError(f"cannot encode: {exc}") from None
    if len(data) > limits.MAX_MESSAGE_BYTES:
        raise MessageTooBig(f"message of {len(data)} bytes is over {limits.MAX_MESSAGE_BYTES}")
    if not checked:
        # Rare messages: validating our own output guarantees encode and decode agree.
        decode(data)
    return data


def _check_outgoing(message: Message) -> bool:
    """Check a Batch, Ack or Deliver as the decoder would; False for other messages."""
    match message:
        case Batch(events):
            _check_count(events, "batch events")
            previous = -1
            for event in events:
                _check_event(event)
                if event.seq <= previous:
                    raise DecodeError(
                        f"batch events: sequence numbers must increase ({event.seq} after "
                        f"{previous})"
                    )
                previous = event.seq
            return True
        case Ack(acked):
            _uint(acked, "ack acked_seq")
            return True
        case Deliver(items):
            _check_count(items, "deliver items")
            for item in items:
                if not _short_text(item.gateway):
                    _text(item.gateway, "delivered gateway")
                _check_event(item.event)
            return True
    return False


def _check_count(items: tuple[object, ...], what: str) -> None:
    if type(items) is not tuple or not items:
        raise DecodeError(f"{what}: expected a non-empty tuple")
    if len(items) > limits.MAX_BATCH_EVENTS:
        raise MessageTooBig(f"{what}: more than {limits.MAX_BATCH_EVENTS} events")


def _check_event(event: Event) -> None:
    readings = event.readings
    if type(readings) is not tuple:
        raise DecodeError("event readings: expected a tuple")
    check_event_wire(
        event.seq,
        event.device,
        event.boot_id,
        event.mono_ns,
        event.wall_ns,
        int(event.clock),
        list(readings),
    )
    for reading in readings:
        _check_reading(reading)


def _check_reading(reading: Reading) -> None:
    """The rules of :func:`_check_records`, applied to the value before encoding."""
    if type(reading) is not Reading:
        raise DecodeError(f"reading: expected a Reading, got {_describe(reading)}")
    name, unit, value = reading.name, reading.unit, reading.value
    if not _short_text(name):
        _text(name, "reading name")
    if type(unit) is not str:
        raise DecodeError("reading unit: expected a text string")
    if unit and not _short_text(unit):
        _text(unit, "reading unit")
    if type(value) is float:
        if not math.isfinite(value):
            raise DecodeError("reading value: expected a finite number")
    elif type(value) is int:
        _int(value, "reading value")
    elif type(value) is str:
        _text(value, "reading string value", empty=True)
    elif type(value) is bytes:
        if len(value) > limits.MAX_BLOB_BYTES:
            raise MessageTooBig(f"reading data value: longer than {limits.MAX_BLOB_BYTES} bytes")
    elif type(value) is not bool:
        raise DecodeError(f"reading value: {_describe(value)} is not a SenML value")
