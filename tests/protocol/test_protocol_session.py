"""UplinkSession and CoreSession paired with no I/O: each side's output is fed to the other
(``docs/protocol.md`` §Sessions)."""

from __future__ import annotations

import pytest

from protocol import codec
from protocol.errors import ProtocolError, SequenceError
from protocol.events import ClockSource, Event, Reading
from protocol.messages import (
    Ack,
    Command,
    Deliver,
    Delivered,
    ErrorCode,
    Flow,
    Result,
    Subscribe,
    Subscribed,
)
from protocol.session import (
    Acked,
    BatchReceived,
    CoreSession,
    HelloReceived,
    IdentityError,
    PeerError,
    UplinkSession,
    Welcomed,
)

PEER = "gw-0001"
BOOT = bytes(range(16))


def ev(seq: int) -> Event:
    return Event(seq, "th-1", BOOT, seq * 1000, 1_700_000_000 * 10**9 + seq, ClockSource.NTP,
                 (Reading("temperature", "Cel", 20.0 + seq),))  # fmt: skip


def evs(first: int, last: int) -> tuple[Event, ...]:
    return tuple(ev(s) for s in range(first, last + 1))


def connect(
    acked_seq: int = 0, flow: Flow | None = None, resume_from: int = 1
) -> tuple[UplinkSession, CoreSession]:
    uplink = UplinkSession(PEER, "test/1", BOOT)
    core = CoreSession(PEER, flow=flow) if flow else CoreSession(PEER)
    received = core.receive(uplink.hello(resume_from))
    assert isinstance(received, HelloReceived)
    assert received.hello.peer_id == PEER
    assert received.hello.resume_from == resume_from
    assert uplink.receive(core.welcome("s-1", acked_seq)) == Welcomed(acked_seq, "s-1")
    assert uplink.is_open
    return uplink, core


def test_hello_welcome_opens_both_sides() -> None:
    uplink, _ = connect(acked_seq=41, resume_from=42)
    assert uplink.acked_seq == 41
    assert uplink.last_sent_seq == 41


def test_batches_and_cumulative_acks_release_the_window() -> None:
    uplink, core = connect(flow=Flow(max_inflight_events=10, max_events_per_s=0))
    assert core.receive(uplink.batch(evs(1, 3))) == BatchReceived(evs(1, 3))
    assert core.receive(uplink.batch(evs(4, 7))) == BatchReceived(evs(4, 7))
    assert uplink.inflight_events == 7
    assert uplink.send_window() == 3
    # An ack inside the second batch releases only the first, complete batch.
    assert uplink.receive(core.ack(5)) == Acked(5, 3)
    assert uplink.send_window() == 6
    assert uplink.receive(core.ack(7)) == Acked(7, 4)
    assert uplink.inflight_events == 0
    assert uplink.send_window() == 10


def test_flow_control_limits_the_window() -> None:
    uplink, core = connect(flow=Flow(max_inflight_events=4, max_events_per_s=0))
    with pytest.raises(ProtocolError):
        uplink.batch(evs(1, 5))
    uplink.batch(evs(1, 4))
    assert uplink.send_window() == 0
    assert uplink.receive(core.set_flow(Flow(6, 100))) == Flow(6, 100)
    assert uplink.send_window() == 2
    with pytest.raises(ProtocolError):
        uplink.batch(evs(5, 7))
    # A refused batch changes nothing: the same events may still go.
    assert uplink.last_sent_seq == 4
    uplink.batch(evs(5, 6))


def test_batch_before_welcome_is_refused_on_both_sides() -> None:
    uplink = UplinkSession(PEER, "test/1", BOOT)
    with pytest.raises(SequenceError):
        uplink.batch(evs(1, 1))
    core = CoreSession(PEER)
    other, _ = connect()
    data = other.batch(evs(1, 1))
    with pytest.raises(SequenceError) as caught:
        core.receive(data)
    assert caught.value.close_code == 1002
    core.receive(UplinkSession(PEER, "t", BOOT).hello(1))
    with pytest.raises(SequenceError):
        core.receive(data)  # hello seen, welcome not yet sent


def test_seq_going_backwards_is_a_sequence_error_1002() -> None:
    uplink, core = connect()
    core.receive(uplink.batch(evs(1, 5)))
    replay, _ = connect()
    with pytest.raises(SequenceError) as caught:
        core.receive(replay.batch(evs(3, 4)))
    assert caught.value.close_code == 1002
    with pytest.raises(SequenceError):
        uplink.batch(evs(5, 6))


def test_resend_after_reconnect_starts_above_welcome_acked_seq() -> None:
    uplink, core = connect()
    core.receive(uplink.batch(evs(1, 4)))
    uplink.receive(core.ack(2))  # then the link drops: 3 and 4 are unacknowledged
    again, core2 = connect(acked_seq=2, resume_from=3)
    with pytest.raises(SequenceError):
        again.batch(evs(2, 4))  # already stored, per the welcome
    assert core2.receive(again.batch(evs(3, 4))) == BatchReceived(evs(3, 4))
    assert again.receive(core2.ack(4)) == Acked(4, 2)


def test_core_accepts_a_resend_of_events_it_may_already_hold() -> None:
    # The ack of 1..3 was lost: a new session starts from the stored acked_seq (0 here when the
    # commit raced the reconnect) and the core deduplicates by seq, not the session.
    uplink, core = connect()
    core.receive(uplink.batch(evs(1, 3)))
    again, core2 = connect(acked_seq=0)
    assert core2.receive(again.batch(evs(1, 3))) == BatchReceived(evs(1, 3))


def test_ack_going_backwards_is_refused() -> None:
    uplink, core = connect()
    core.receive(uplink.batch(evs(1, 5)))
    assert uplink.receive(core.ack(4)) == Acked(4, 0)
    with pytest.raises(SequenceError):
        core.ack(3)  # the core will not build it
    with pytest.raises(SequenceError) as caught:
        uplink.receive(encode_ack(3))  # nor accept it from a broken core
    assert caught.value.close_code == 1002
    assert uplink.acked_seq == 4


def encode_ack(seq: int) -> bytes:
    return codec.encode(Ack(seq))


def test_ack_covering_unsent_seq_is_refused() -> None:
    uplink, core = connect()
    core.receive(uplink.batch(evs(1, 3)))
    with pytest.raises(SequenceError):
        uplink.receive(encode_ack(4))
    with pytest.raises(SequenceError):
        core.ack(4)


def test_identity_mismatch_is_policy_1008() -> None:
    impostor = UplinkSession("gw-9999", "t", BOOT)
    core = CoreSession(PEER)
    with pytest.raises(IdentityError) as caught:
        core.receive(impostor.hello(1))
    assert caught.value.close_code == 1008


def test_commands_and_results() -> None:
    uplink, core = connect()
    command = uplink.receive(core.command(7, "set_interval", {"seconds": 30}))
    assert command == Command(7, "set_interval", {"seconds": 30})
    assert isinstance(command, Command)
    result = core.receive(uplink.result(command.command_id, True, {"applied": True}))
    assert result == Result(7, True, {"applied": True})


def test_subscribe_subscribed_deliver() -> None:
    uplink, core = connect()
    request_id, data = uplink.subscribe(("events/+/th-1",))
    assert core.receive(data) == Subscribe(request_id, ("events/+/th-1",))
    granted = uplink.receive(core.subscribed(request_id, ("events/+/th-1",)))
    assert granted == Subscribed(request_id, ("events/+/th-1",))
    items = (Delivered("gw-0002", ev(9)),)
    assert uplink.receive(core.deliver(items)) == Deliver(items)
    refused = uplink.receive(core.error(ErrorCode.FORBIDDEN, "no", request_id))
    assert refused == PeerError(ErrorCode.FORBIDDEN, "no", request_id)
    next_id, _ = uplink.subscribe(("x",))
    assert next_id != request_id


def test_messages_out_of_turn() -> None:
    uplink, core = connect()
    with pytest.raises(SequenceError):
        core.receive(UplinkSession(PEER, "t", BOOT).hello(1))  # a second hello
    with pytest.raises(SequenceError):
        uplink.hello(1)  # hello twice on one session
    other = CoreSession(PEER)
    other.receive(UplinkSession(PEER, "t", BOOT).hello(1))
    with pytest.raises(SequenceError):
        uplink.receive(other.welcome("s-2", 0))  # a welcome after the welcome
    with pytest.raises(SequenceError):
        UplinkSession(PEER, "t", BOOT).receive(encode_ack(0))  # before hello
    with pytest.raises(SequenceError):
        CoreSession(PEER).ack(0)  # before the welcome
