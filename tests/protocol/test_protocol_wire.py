"""``decode_wire`` against ``decode``: the same inputs accepted, the same refused, the same way.

Differential property tests. Every input (valid messages, random bytes, byte-mutated vectors
and batches whose CBOR value was changed at one to three random places) goes through both
decoders; both must accept it, with the wire form building exactly the ``Batch`` that
``decode`` gives, or both must refuse it with the same error type and message. The same holds
one level up, for :class:`CoreSession` with and without ``wire_events``.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec, limits
from protocol.errors import MessageTooBig, ProtocolError
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Ack, Batch, Message, MessageType, Result, Subscribe
from protocol.session import (
    BatchReceived,
    CoreSession,
    HelloReceived,
    UplinkSession,
    WireBatchReceived,
)
from protocol.wire import WireEvents
from tests.protocol.protocol_support import VALID, event_runs, messages
from tests.protocol.test_protocol_fuzz import _mutate


def _outcome(decode: Any, data: bytes) -> tuple[object, object]:
    """What a decoder made of ``data``: the message's canonical encoding (which tells 1 from
    1.0 from True, unlike ==), or the error's type and message."""
    try:
        message = decode(data)
    except ProtocolError as exc:
        return type(exc), str(exc)
    if isinstance(message, WireEvents):
        message = Batch(message.to_events())
    return "accepted", codec.encode(message)


def assert_same_outcome(data: bytes) -> tuple[object, object]:
    wire = _outcome(codec.decode_wire, data)
    assert wire == _outcome(codec.decode, data)
    return wire


@settings(max_examples=200, deadline=None)
@given(messages)
def test_valid_messages_decode_to_the_same_values(message: Message) -> None:
    data = codec.encode(message)
    assert assert_same_outcome(data) == ("accepted", data)
    decoded = codec.decode_wire(data)
    assert isinstance(decoded, WireEvents) == isinstance(message, Batch)


@settings(max_examples=100, deadline=None)
@given(event_runs(max_size=20))
def test_wire_events_describe_their_batch(events: tuple[Event, ...]) -> None:
    wire = codec.decode_wire(codec.encode(Batch(events)))
    assert isinstance(wire, WireEvents)
    assert len(wire) == len(list(wire)) == len(events)
    assert (wire.first_seq, wire.last_seq) == (events[0].seq, events[-1].seq)
    assert wire.devices() == {e.device for e in events}
    assert repr(wire.to_events()) == repr(events)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_are_refused_alike(data: bytes) -> None:
    assert_same_outcome(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.randoms(use_true_random=False))
def test_mutated_vectors_are_treated_alike(vector: Any, rng: random.Random) -> None:
    assert_same_outcome(_mutate(rng, vector.data))


@settings(max_examples=200, deadline=None)
@given(event_runs(max_size=8), st.randoms(use_true_random=False))
def test_mutated_batch_bytes_are_treated_alike(
    events: tuple[Event, ...], rng: random.Random
) -> None:
    assert_same_outcome(_mutate(rng, codec.encode(Batch(events))))


# --- structural mutation: one place of a valid batch's CBOR value changed -------------------

_RECORD = {0: "t", 1: "Cel", 2: 1.5}
hostile: st.SearchStrategy[object] = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.sampled_from([0, 1, -1, limits.MAX_UINT, limits.MAX_UINT + 1, -limits.MAX_UINT - 1]),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.sampled_from(["", "x" * (limits.MAX_TEXT_BYTES // 4 + 1), "é" * 129, "x" * 257]),
    st.binary(max_size=3),
    st.sampled_from([bytes(15), bytes(16), bytes(17), bytes(limits.MAX_BLOB_BYTES + 1)]),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(
        st.sampled_from([0, 1, 2, 3, 4, 8, 9, -1, "n", 0.0]), st.integers(), max_size=3
    ),
    st.sampled_from([[], [_RECORD] * limits.MAX_READINGS_PER_EVENT, [_RECORD] * 65]),
)
# Keys that equal a label but are not integers, or are labels of another kind of value.
hostile_keys = st.sampled_from([0, 1, 2, 3, 4, 8, 5, -1, 0.0, 1.0, False, True, "0", b"\x00"])


def _fresh(data: st.DataObject) -> object:
    # A copy: the sampled values are shared between examples and may be changed later.
    return copy.deepcopy(data.draw(hostile))


def _places(value: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    places = [path]
    if isinstance(value, list):
        for i, item in enumerate(value):
            places += _places(item, (*path, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            places += _places(item, (*path, key))
    return places


def _mutate_value(data: st.DataObject, root: list[Any]) -> None:
    path = data.draw(st.sampled_from(_places(root)[1:]))  # never the message array itself
    *parent_path, last = path
    parent: Any = root
    for step in parent_path:
        parent = parent[step]
    node = parent[last]
    how = data.draw(st.sampled_from(["replace", "grow", "shrink", "rekey"]))
    if how == "grow" and isinstance(node, list | dict):
        if isinstance(node, list):
            node.insert(data.draw(st.integers(0, len(node))), _fresh(data))
        else:
            node[data.draw(hostile_keys)] = _fresh(data)
    elif how == "shrink" and isinstance(node, list | dict) and node:
        if isinstance(node, list):
            del node[data.draw(st.integers(0, len(node) - 1))]
        else:
            del node[data.draw(st.sampled_from(list(node)))]
    elif how == "rekey" and isinstance(parent, dict):
        parent[data.draw(hostile_keys)] = parent.pop(last)
    else:
        parent[last] = _fresh(data)


@settings(max_examples=500, deadline=None)
@given(event_runs(max_size=4), st.data())
def test_batches_changed_anywhere_are_treated_alike(
    events: tuple[Event, ...], data: st.DataObject
) -> None:
    root: list[Any] = [int(MessageType.BATCH), [codec.event_to_wire(e) for e in events]]
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate_value(data, root)
    assert_same_outcome(cbor2.dumps(root))


def _event(seq: int) -> Event:
    return Event(seq, "th-1", bytes(16), 0, 0, ClockSource.NTP, (Reading("t", "Cel", 1.5),))


def test_a_batch_with_a_bad_event_and_a_bad_order_is_refused_for_the_event() -> None:
    # Every event is checked before the order, by both decoders.
    good = codec.event_to_wire(_event(5))
    too_many = [*good[:6], [_RECORD] * (limits.MAX_READINGS_PER_EVENT + 1)]
    data = cbor2.dumps([int(MessageType.BATCH), [good, good, too_many]])
    assert assert_same_outcome(data)[0] is MessageTooBig


def test_join_keeps_order_and_refuses_to_go_back() -> None:
    first, second = (codec.decode_wire(codec.encode(Batch((_event(s),)))) for s in (1, 2))
    assert isinstance(first, WireEvents)
    assert isinstance(second, WireEvents)
    assert WireEvents.join([first]) is first
    assert [e.seq for e in WireEvents.join([first, second]).to_events()] == [1, 2]
    with pytest.raises(ValueError, match="not increasing"):
        WireEvents.join([second, first])
    with pytest.raises(ValueError, match="no events"):
        WireEvents.join([])


# --- sessions ---------------------------------------------------------------------------------

PEER = "gw-0001"


def _batch(first: int, last: int) -> bytes:
    return codec.encode(Batch(tuple(_event(s) for s in range(first, last + 1))))


SESSION_MESSAGES: dict[str, bytes] = {
    "hello": UplinkSession(PEER, "test/1", bytes(16)).hello(1),
    "hello-other": UplinkSession("gw-other", "test/1", bytes(16)).hello(1),
    "batch-1-3": _batch(1, 3),
    "batch-2-4": _batch(2, 4),
    "batch-4-6": _batch(4, 6),
    "batch-9-12": _batch(9, 12),  # more than the session's max_batch_events
    "result": codec.encode(Result(1, True, {})),
    "subscribe": codec.encode(Subscribe(1, ("gw/#",))),
    "ack": codec.encode(Ack(1)),
    "junk": b"\xff",
}


def _session_outcome(core: CoreSession, data: bytes) -> object:
    try:
        received = core.receive(data)
    except ProtocolError as exc:
        return type(exc), exc.reason, exc.close_code
    if isinstance(received, WireBatchReceived):
        return BatchReceived(received.events.to_events())
    if isinstance(received, HelloReceived):
        core.welcome("s-1", 0)
    return received


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(sorted(SESSION_MESSAGES)), min_size=1, max_size=6))
def test_core_sessions_with_and_without_wire_events_agree(names: list[str]) -> None:
    plain = CoreSession(PEER, max_batch_events=3)
    wire = CoreSession(PEER, max_batch_events=3, wire_events=True)
    for name in names:
        data = SESSION_MESSAGES[name]
        assert _session_outcome(wire, data) == _session_outcome(plain, data)
        assert wire.last_received_seq == plain.last_received_seq


def test_a_wire_session_reports_batches_as_wire_events() -> None:
    core = CoreSession(PEER, wire_events=True)
    core.receive(SESSION_MESSAGES["hello"])
    core.welcome("s-1", 0)
    received = core.receive(SESSION_MESSAGES["batch-1-3"])
    assert isinstance(received, WireBatchReceived)
    assert (len(received.events), received.events.last_seq) == (3, 3)
