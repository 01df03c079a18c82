"""NodeSession: which readings are new, when acks go out, boots, duplicates, give-ups."""

from __future__ import annotations

from drivers.node import Ack, Hello, Readings, Record
from drivers.node.session import NodeSession


def batch(boot: int, first: int, count: int, dropped: int = 0) -> Readings:
    records = tuple(Record(first + i, 100 * i, "t", "Cel", i) for i in range(count))
    return Readings("node-1", boot, 5000, dropped, records)


def test_new_readings_are_handed_on_and_acked_only_when_stored() -> None:
    session = NodeSession()
    delivery = session.receive(batch(1, 1, 3))
    assert [r.seq for r in delivery.new] == [1, 2, 3]
    assert delivery.ack_now is None  # nothing is stored yet
    assert session.mark_stored(1, 3) == Ack(1, 3)
    assert session.mark_stored(1, 3) is None  # already acknowledged


def test_resend_while_in_flight_is_a_duplicate_without_ack() -> None:
    session = NodeSession()
    session.receive(batch(1, 1, 3))
    again = session.receive(batch(1, 1, 3))
    assert again.new == ()
    assert again.ack_now is None
    assert session.counters.duplicates == 3


def test_resend_of_stored_readings_is_acked_at_once() -> None:
    # The ack was lost on the line: the node resends, the gateway must not store twice.
    session = NodeSession()
    session.receive(batch(1, 1, 3))
    session.mark_stored(1, 3)
    again = session.receive(batch(1, 1, 4))
    assert [r.seq for r in again.new] == [4]
    assert session.counters.duplicates == 3
    only_old = session.receive(batch(1, 2, 2))
    assert only_old.new == ()
    assert only_old.ack_now == Ack(1, 3)


def test_new_boot_restarts_numbering_and_a_lower_boot_is_counted() -> None:
    session = NodeSession()
    session.receive(batch(5, 1, 2))
    session.mark_stored(5, 2)
    after_reboot = session.receive(batch(6, 1, 2))
    assert [r.seq for r in after_reboot.new] == [1, 2]
    assert session.mark_stored(5, 2) is None  # a late store report of the old boot
    wiped = session.receive(Hello("node-1", 1, "fw"))
    assert wiped.ack_now == Ack(1, 0)
    assert (session.counters.boots, session.counters.boot_regressions) == (2, 1)


def test_given_up_readings_are_accepted_again() -> None:
    session = NodeSession()
    session.receive(batch(1, 1, 3))
    session.give_up(1, 3)
    assert session.counters.given_up == 3
    assert [r.seq for r in session.receive(batch(1, 1, 3)).new] == [1, 2, 3]


def test_node_drops_are_counted_once_per_increase() -> None:
    session = NodeSession()
    session.receive(batch(1, 1, 1, dropped=4))
    session.receive(batch(1, 2, 1, dropped=4))
    session.receive(batch(1, 3, 1, dropped=6))
    assert session.counters.node_dropped == 6


def test_gateway_restart_accepts_the_nodes_resend() -> None:
    # A fresh session (gateway restarted) knows nothing: unacked readings are new.
    session = NodeSession()
    delivery = session.receive(batch(3, 57, 4))
    assert [r.seq for r in delivery.new] == [57, 58, 59, 60]
