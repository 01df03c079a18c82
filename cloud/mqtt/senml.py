"""SenML (RFC 8428) payloads on MQTT: readings in (JSON or CBOR), events out (JSON).

Contract:

* :func:`parse_pack` takes any bytes and returns a :class:`Pack` or raises
  :class:`~cloud.mqtt.errors.PayloadError` with a reason that may be shown to the publisher;
  no other exception escapes it (tests fuzz this).
* The format is told by the first significant byte: ``[`` is SenML JSON (RFC 8428 §5), a CBOR
  array head (major type 4, 0x80-0x9f) is SenML CBOR (§6, integer labels). CBOR tags are
  refused, as on the link (docs/protocol.md).
* One message is one event: every record must resolve to the same time. Supported fields are
  ``bn bt bu bver n u t v vs vb vd``; anything else is refused rather than ignored (§4.4: a
  field the recipient does not understand ending in ``_`` must make it reject the pack, and
  the others are ones we cannot store faithfully).
* :func:`to_event` builds the core event and validates it with the link codec, so a reading
  from MQTT meets exactly the limits a gateway's does.
* :func:`event_json` renders a stored event as a SenML JSON pack for MQTT subscribers.

Pure functions: no I/O, no clock (the caller passes the receive time).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import cbor2

from cloud.mqtt.errors import PayloadError
from protocol import codec
from protocol.errors import ProtocolError
from protocol.events import ClockSource, Event, Reading, Value
from protocol.messages import Batch

#: RFC 8428 §4.5.3: times below 2**28 s are relative to "now", others are absolute.
RELATIVE_TIME_LIMIT_S = 2**28
#: RFC 8428 §6 integer labels for CBOR.
_CBOR_LABELS = {-1: "bver", -2: "bn", -3: "bt", -4: "bu", 0: "n", 1: "u", 2: "v", 3: "vs"}
_CBOR_LABELS |= {4: "vb", 6: "t", 8: "vd"}
_FIELDS = frozenset(_CBOR_LABELS.values())
_VALUE_FIELDS = ("v", "vs", "vb", "vd")
_MAX_RECORDS = 64


@dataclass(frozen=True, slots=True)
class Pack:
    """A parsed pack: its readings and its time (``None``: the publisher gave none).

    ``time_s`` is absolute seconds since the epoch when ``relative`` is false, else seconds
    relative to the moment the message was received.
    """

    readings: tuple[Reading, ...]
    time_s: float | None
    relative: bool


def parse_pack(payload: bytes) -> Pack:
    """Parse a SenML JSON or CBOR pack. Raises: PayloadError."""
    records = _records(payload)
    if not isinstance(records, list) or not records:
        raise PayloadError("a SenML pack is a non-empty array of records")
    if len(records) > _MAX_RECORDS:
        raise PayloadError(f"more than {_MAX_RECORDS} records in one message")
    base_name, base_unit, base_time = "", "", 0.0
    readings: list[Reading] = []
    times: set[float] = set()
    any_time = False
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise PayloadError(f"record {index} is not a map")
        record = _labels(record, index)
        if record.get("bver", 10) != 10:  # RFC 8428 §4.4: version 10 is this RFC
            raise PayloadError(f"record {index}: unsupported SenML version")
        base_name = _text(record.get("bn", base_name), index, "bn")
        base_unit = _text(record.get("bu", base_unit), index, "bu")
        base_time = _number(record.get("bt", base_time), index, "bt")
        any_time = any_time or "bt" in record or "t" in record
        times.add(base_time + _number(record.get("t", 0.0), index, "t"))
        readings.append(_reading(record, index, base_name, base_unit))
    if len(times) != 1:
        raise PayloadError("records at different times: publish one message per moment")
    (when,) = times
    if not any_time:
        return Pack(tuple(readings), None, relative=True)
    return Pack(tuple(readings), when, relative=when < RELATIVE_TIME_LIMIT_S)


def to_event(
    pack: Pack,
    *,
    seq: int,
    device: str,
    boot_id: bytes,
    mono_ns: int,
    received_ns: int,
    clock: ClockSource,
) -> Event:
    """The core event for ``pack``, checked by the link codec. Raises: PayloadError.

    A publisher-supplied absolute time is kept with ``ClockSource.NONE``: the core cannot
    know how that clock was set. Otherwise the receive time and the bridge's ``clock`` apply.
    """
    wall_ns, source = received_ns, clock
    if pack.time_s is not None:
        offset_ns = round(pack.time_s * 1e9)
        wall_ns = received_ns + offset_ns if pack.relative else offset_ns
        source = clock if pack.relative else ClockSource.NONE
    if not 0 <= wall_ns < 2**63:
        raise PayloadError("time out of range")
    event = Event(seq, device, boot_id, mono_ns, wall_ns, source, pack.readings)
    try:
        # Exactly the validation a gateway's batch gets in the core.
        codec.decode(codec.encode(Batch((event,))))
    except ProtocolError as exc:
        raise PayloadError(f"not a valid reading: {exc.reason}") from None
    return event


def event_json(gateway: str, event: Event) -> bytes:
    """A stored event as a SenML JSON pack: base name ``<gateway>/<device>/``, base time."""
    records: list[dict[str, Any]] = []
    for i, reading in enumerate(event.readings):
        record: dict[str, Any] = {"n": reading.name}
        if i == 0:
            record = {"bn": f"{gateway}/{event.device}/", "bt": event.wall_ns / 1e9, **record}
        if reading.unit:
            record["u"] = reading.unit
        record.update(_value_field(reading.value))
        records.append(record)
    return json.dumps(records, separators=(",", ":"), allow_nan=False).encode()


# --- internals ----------------------------------------------------------------------------


def _records(payload: bytes) -> object:
    head = payload.lstrip(b" \t\r\n")[:1]
    if head == b"[":
        try:
            return json.loads(
                payload.decode("utf-8"),
                parse_constant=_refuse_constant,
                object_pairs_hook=_unique_keys,
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise PayloadError(f"malformed SenML JSON: {_short(exc)}") from None
    if head and 0x80 <= head[0] <= 0x9F:
        try:
            return cbor2.loads(payload, tag_hook=_refuse_tag)
        except PayloadError:
            raise
        except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, EOFError) as exc:
            raise PayloadError(f"malformed SenML CBOR: {_short(exc)}") from None
    raise PayloadError("not SenML: expected a JSON array or a CBOR array")


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a record repeats a field")  # RFC 8428 §4.4 forbids it
    return result


def _refuse_tag(_decoder: object, tag: object) -> object:
    raise PayloadError("CBOR tags are not accepted in SenML")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def _labels(record: dict[Any, Any], index: int) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for key, value in record.items():
        name = _CBOR_LABELS.get(key) if isinstance(key, int) and type(key) is int else key
        if not isinstance(name, str) or name not in _FIELDS:
            raise PayloadError(f"record {index}: unsupported field {key!r}")
        if name in named:
            raise PayloadError(f"record {index}: field {name} given twice")
        named[name] = value
    return named


def _text(value: object, index: int, field: str) -> str:
    if not isinstance(value, str):
        raise PayloadError(f"record {index}: {field} must be a string")
    return value


def _number(value: object, index: int, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"record {index}: {field} must be a number")
    if not math.isfinite(value) or abs(value) > 2**62:
        raise PayloadError(f"record {index}: {field} out of range")
    return float(value)


def _reading(record: dict[str, Any], index: int, base_name: str, base_unit: str) -> Reading:
    name = base_name + _text(record.get("n", ""), index, "n")
    if not name:
        raise PayloadError(f"record {index}: no name (n or bn)")
    unit = _text(record.get("u", base_unit), index, "u")
    present = [f for f in _VALUE_FIELDS if f in record]
    if len(present) != 1:
        raise PayloadError(f"record {index}: needs exactly one of v, vs, vb, vd")
    return Reading(name, unit, _value(present[0], record[present[0]], index))


def _value(field: str, raw: object, index: int) -> Value:
    if field == "v":
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise PayloadError(f"record {index}: v must be a number")
        if isinstance(raw, float) and not math.isfinite(raw):
            raise PayloadError(f"record {index}: v must be finite")
        return raw
    if field == "vs":
        return _text(raw, index, "vs")
    if field == "vb":
        if not isinstance(raw, bool):
            raise PayloadError(f"record {index}: vb must be true or false")
        return raw
    if isinstance(raw, bytes):  # CBOR carries vd as a byte string (RFC 8428 §6)
        return raw
    text = _text(raw, index, "vd")
    try:
        # JSON carries vd as base64url without padding (RFC 8428 §5).
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise PayloadError(f"record {index}: vd must be base64url") from None


def _value_field(value: Value) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"vb": value}
    if isinstance(value, str):
        return {"vs": value}
    if isinstance(value, bytes):
        return {"vd": base64.urlsafe_b64encode(value).rstrip(b"=").decode()}
    return {"v": value}
