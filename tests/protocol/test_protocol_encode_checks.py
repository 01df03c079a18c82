"""``encode`` checks Batch, Ack and Deliver on their values instead of decoding its own output.

Differential tests: for events with fields just inside and just outside every limit, the
fast checks must refuse exactly what decoding the canonical bytes refuses (the reference is
the decoder itself, fed the bytes cbor2 produces for the same value).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec, limits
from protocol.errors import MessageTooBig, ProtocolError
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Ack, Batch, Deliver, Delivered, Message
from tests.protocol.protocol_support import event_runs, events

_BAD_FIELDS: dict[str, Any] = {
    "seq": st.sampled_from([-1, limits.MAX_UINT + 1, True, 1.0]),
    "device": st.sampled_from(["", "x" * (limits.MAX_TEXT_BYTES + 1), "é" * 129, b"dev", None]),
    "boot_id": st.sampled_from([b"", bytes(15), bytes(17), "0" * 16]),
    "mono_ns": st.sampled_from([-1, limits.MAX_UINT + 1, 1.5, False]),
    "wall_ns": st.sampled_from([-limits.MAX_UINT - 1, limits.MAX_UINT + 1, 2.0]),
    "clock": st.sampled_from([4, 255]),
    "readings": st.sampled_from([(), tuple([Reading("t", "", 1)] * 65)]),
}
_BAD_READINGS = st.sampled_from(
    [
        Reading("", "Cel", 1.0),
        Reading("t", "x" * (limits.MAX_TEXT_BYTES + 1), 1.0),
        Reading("t", "", math.nan),
        Reading("t", "", math.inf),
        Reading("t", "", limits.MAX_UINT + 1),
        Reading("t", "", -limits.MAX_UINT - 1),
        Reading("t", "", "s" * (limits.MAX_TEXT_BYTES + 1)),
        Reading("t", "", b"\0" * (limits.MAX_BLOB_BYTES + 1)),
        Reading("t", "", None),  # type: ignore[arg-type]
        Reading("t", "", [1]),  # type: ignore[arg-type]
    ]
)


def _reference(message: Message) -> type[ProtocolError] | None:
    """What decoding the canonical bytes of ``message`` says: None when it is accepted."""
    kind, *fields = codec._body(message)
    wire = [int(cast("int", kind)), *fields]
    try:
        data = cbor2.dumps(wire, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, UnicodeEncodeError):
        return ProtocolError
    try:
        codec.decode(data)
    except MessageTooBig:
        return MessageTooBig
    except ProtocolError:
        return ProtocolError
    return None


def _fast(message: Message) -> type[ProtocolError] | None:
    try:
        codec.encode(message)
    except MessageTooBig:
        return MessageTooBig
    except ProtocolError:
        return ProtocolError
    return None


@st.composite
def mutated_events(draw: st.DrawFn) -> Event:
    event: Event = draw(events())
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(_BAD_FIELDS)))
        return dataclasses.replace(event, **{field: draw(_BAD_FIELDS[field])})
    bad = draw(_BAD_READINGS)
    index = draw(st.integers(0, len(event.readings)))
    readings = (*event.readings[:index], bad, *event.readings[index:])
    return dataclasses.replace(event, readings=readings)


@settings(max_examples=80, deadline=None)
@given(mutated_events(), st.sampled_from(["batch", "deliver"]))
def test_fast_checks_refuse_what_decoding_refuses(event: Event, kind: str) -> None:
    message: Message = Batch((event,)) if kind == "batch" else Deliver((Delivered("g", event),))
    expected = _reference(message)
    assert expected is not None, "every mutation here is invalid on the wire"
    got = _fast(message)
    assert got is not None
    if expected is MessageTooBig:
        assert got is MessageTooBig


@settings(max_examples=40, deadline=None)
@given(event_runs(max_size=8))
def test_fast_checks_accept_what_decoding_accepts(run: tuple[Event, ...]) -> None:
    for message in (Batch(run), Deliver(tuple(Delivered("gw-1", e) for e in run))):
        assert _reference(message) is None
        assert codec.decode(codec.encode(message)) == message


def test_batch_sequence_must_increase_and_acks_are_unsigned() -> None:
    event = Event(5, "d", bytes(16), 1, 1, ClockSource.NTP, (Reading("t", "", 1),))
    for message in (Batch((event, event)), Ack(-1), Ack(limits.MAX_UINT + 1)):
        assert _reference(message) is not None
        assert _fast(message) is not None
