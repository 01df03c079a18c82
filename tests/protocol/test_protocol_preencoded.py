"""The pre-encoded batch path: events encoded once (``encode_event_fields``) and spliced into a
Batch (``encode_batch_of_encoded``) give exactly the bytes ``encode(Batch(...))`` gives, and
refuse exactly what it refuses."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec, limits, preencoded
from protocol.errors import DecodeError, MessageTooBig
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Batch
from protocol.session import UplinkSession
from tests.protocol.protocol_support import event_runs, events

BOOT = bytes(range(16))


def fields_of(event: Event) -> bytes:
    return preencoded.encode_event_fields(
        event.device, event.boot_id, event.mono_ns, event.wall_ns, event.clock, event.readings
    )


def pairs_of(batch: tuple[Event, ...]) -> list[tuple[int, bytes]]:
    return [(event.seq, fields_of(event)) for event in batch]


@settings(max_examples=300, deadline=None)
@given(event_runs(max_size=20))
def test_spliced_batch_is_byte_identical_to_the_encoder(batch: tuple[Event, ...]) -> None:
    data = preencoded.encode_batch_of_encoded(pairs_of(batch))
    assert data == codec.encode(Batch(batch))
    decoded = codec.decode(data)
    assert decoded == Batch(batch)


@settings(max_examples=200, deadline=None)
@given(events())
def test_encoded_event_decodes_back(event: Event) -> None:
    decoded = preencoded.decode_encoded_event(event.seq, fields_of(event))
    assert decoded == event
    assert [type(r.value) for r in decoded.readings] == [type(r.value) for r in event.readings]


@pytest.mark.parametrize(
    "seq",
    [0, 23, 24, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, limits.MAX_UINT],
    ids=lambda s: f"seq-{s}",
)
def test_every_head_width_of_a_seq_matches(seq: int) -> None:
    event = Event(seq, "d", BOOT, 5, -7, ClockSource.GPS, (Reading("n", "", 0.5),))
    assert preencoded.encode_batch_of_encoded([(seq, fields_of(event))]) == codec.encode(
        Batch((event,))
    )


def _event(**changes: object) -> Event:
    fields: dict[str, object] = {
        "seq": 1,
        "device": "dev",
        "boot_id": BOOT,
        "mono_ns": 1,
        "wall_ns": 2,
        "clock": ClockSource.NTP,
        "readings": (Reading("t", "Cel", 1.5),),
    }
    fields.update(changes)
    return Event(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (_event(readings=(Reading("t", "Cel", math.nan),)), DecodeError),
        (_event(readings=(Reading("", "Cel", 1.0),)), DecodeError),
        (_event(readings=()), DecodeError),
        (_event(device=""), DecodeError),
        (_event(boot_id=b"short"), DecodeError),
        (_event(mono_ns=-1), DecodeError),
        (_event(device="x" * (limits.MAX_TEXT_BYTES + 1)), MessageTooBig),
        (_event(readings=(Reading("b", "", b"x" * (limits.MAX_BLOB_BYTES + 1)),)), MessageTooBig),
    ],
    ids=["nan", "no-name", "no-readings", "no-device", "boot-id", "mono", "long", "blob"],
)
def test_fields_refuse_what_the_encoder_refuses(event: Event, error: type[Exception]) -> None:
    with pytest.raises(error):
        codec.encode(Batch((event,)))
    with pytest.raises(error):
        fields_of(event)


def test_batch_checks_count_order_and_size() -> None:
    body = fields_of(_event())
    with pytest.raises(DecodeError, match="non-empty"):
        preencoded.encode_batch_of_encoded([])
    with pytest.raises(DecodeError, match="must increase"):
        preencoded.encode_batch_of_encoded([(2, body), (2, body)])
    with pytest.raises(DecodeError, match="unsigned integer"):
        preencoded.encode_batch_of_encoded([(-1, body)])
    too_many = [(seq, body) for seq in range(1, limits.MAX_BATCH_EVENTS + 2)]
    with pytest.raises(MessageTooBig, match="events"):
        preencoded.encode_batch_of_encoded(too_many)
    big = fields_of(_event(readings=(Reading("b", "", b"x" * limits.MAX_BLOB_BYTES),)))
    with pytest.raises(MessageTooBig, match="bytes"):
        preencoded.encode_batch_of_encoded([(seq, big) for seq in range(1, 300)])


def test_corrupt_fields_are_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        preencoded.decode_encoded_event(1, b"\xff")
    with pytest.raises(DecodeError):
        preencoded.decode_encoded_event(1, fields_of(_event())[:-1])


@given(st.integers(min_value=1, max_value=40))
def test_session_sends_the_same_bytes_either_way(count: int) -> None:
    from protocol.messages import Flow, Welcome

    batch = tuple(_event(seq=seq) for seq in range(1, count + 1))
    welcome = codec.encode(Welcome(1, "s", 0, limits.MAX_MESSAGE_BYTES, 500, Flow(100, 0)))
    sessions = []
    for _ in range(2):
        session = UplinkSession("gw", "sw", BOOT)
        session.hello(1)
        session.receive(welcome)
        sessions.append(session)
    assert sessions[0].batch(batch) == sessions[1].batch_of_encoded(pairs_of(batch))
    assert (sessions[0].last_sent_seq, sessions[0].inflight_events) == (
        sessions[1].last_sent_seq,
        sessions[1].inflight_events,
    )
