"""Hypothesis round-trips: every message within the limits survives encode → decode unchanged,
and re-encoding the decoded value gives the same bytes (``docs/protocol.md`` §Encoding)."""

from __future__ import annotations

from hypothesis import given, settings

from protocol import codec
from protocol.events import Event
from protocol.messages import Batch, Message
from tests.protocol.protocol_support import event_runs, messages


@settings(max_examples=300, deadline=None)
@given(messages)
def test_message_round_trip(message: Message) -> None:
    data = codec.encode(message)
    decoded = codec.decode(data)
    assert decoded == message
    assert type(decoded) is type(message)
    assert codec.encode(decoded) == data


@settings(max_examples=100, deadline=None)
@given(event_runs(max_size=20))
def test_batch_round_trip_keeps_value_types(events: tuple[Event, ...]) -> None:
    batch = Batch(events)
    decoded = codec.decode(codec.encode(batch))
    assert isinstance(decoded, Batch)
    for sent, got in zip(batch.events, decoded.events, strict=True):
        # 1 == 1.0 == True in Python: equality alone would hide a changed value kind.
        assert [type(r.value) for r in got.readings] == [type(r.value) for r in sent.readings]
