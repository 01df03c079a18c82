"""How the uplink cuts stored events into batches: a batch over the core's message size limit
is halved until it fits, rather than failing the link at every reconnect."""

from __future__ import annotations

import pytest

from gateway.outbox import StoredEvent, encode_stored_body
from gateway.uplink import _fitting_batch
from protocol import codec, limits
from protocol.errors import MessageTooBig
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Flow, Welcome
from protocol.session import UplinkSession

BOOT = bytes(range(16))


def open_session(max_message_bytes: int = limits.MAX_MESSAGE_BYTES) -> UplinkSession:
    session = UplinkSession("gw-1", "test", BOOT)
    session.hello(1)
    welcome = Welcome(1, "s", 0, max_message_bytes, limits.MAX_BATCH_EVENTS, Flow(10_000, 0))
    session.receive(codec.encode(welcome))
    return session


def stored(count: int, blob_bytes: int) -> list[StoredEvent]:
    readings = (Reading("raw", "", b"x" * blob_bytes),)
    return [
        StoredEvent(
            seq, encode_stored_body(Event(seq, "d", BOOT, seq, seq, ClockSource.NTP, readings))
        )
        for seq in range(1, count + 1)
    ]


def test_a_batch_that_fits_goes_whole() -> None:
    session = open_session()
    events = stored(50, 100)
    data, sent = _fitting_batch(session, events)
    assert sent == 50
    assert session.last_sent_seq == 50
    decoded = codec.decode(data)
    assert [e.seq for e in decoded.events] == list(range(1, 51))  # type: ignore[union-attr]


def test_an_oversized_batch_is_halved_until_it_fits() -> None:
    # 1,000 events of 4 KiB are about 4 MiB: over the 1 MiB message limit.
    session = open_session()
    data, sent = _fitting_batch(session, stored(1000, limits.MAX_BLOB_BYTES))
    assert sent == 250  # 1000 -> 500 -> 250 (250 x 4 KiB is just under 1 MiB)
    assert len(data) <= limits.MAX_MESSAGE_BYTES
    assert session.last_sent_seq == 250
    assert session.inflight_events == 250


def test_a_single_event_over_the_limit_is_an_error() -> None:
    session = open_session(max_message_bytes=1_000)
    with pytest.raises(MessageTooBig):
        _fitting_batch(session, stored(3, 2_000))
    assert session.last_sent_seq == 0
