"""The bridge inbox: the (packet id, digest) note that makes QoS 1 redelivery exactly once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.mqtt.errors import MqttError, PayloadError
from cloud.mqtt.inbox import Inbox
from protocol.events import ClockSource, Event, Reading


def build(value: int) -> Callable[[int], Event]:
    return lambda seq: Event(
        seq, "d", bytes(16), 0, 0, ClockSource.NONE, (Reading("v", "", value),)
    )


def test_append_notes_the_message_and_survives_reopen(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "i.sqlite")
    assert inbox.append(build(1), 7, b"a").seq == 1
    assert inbox.seen(7, b"a")
    assert not inbox.seen(7, b"b")  # same packet id reused for another message
    assert not inbox.seen(8, b"a")
    inbox.close()
    again = Inbox(tmp_path / "i.sqlite")
    assert again.seen(7, b"a")
    assert again.append(build(2), 7, b"b").seq == 2
    assert not again.seen(7, b"a")
    assert [e.readings[0].value for e in again.read_after(0, 10)] == [1, 2]
    again.ack(1)
    assert again.resume_from() == 2


def test_refused_build_stores_nothing(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path / "i.sqlite")

    def refuse(seq: int) -> Event:
        raise PayloadError("bad")

    with pytest.raises(PayloadError):
        inbox.append(refuse, 1, b"x")
    assert not inbox.seen(1, b"x")
    assert inbox.append(build(1), 2, b"y").seq == 1  # no seq was used up


def test_second_bridge_cannot_open_the_same_inbox(tmp_path: Path) -> None:
    first = Inbox(tmp_path / "i.sqlite")
    with pytest.raises(MqttError):
        Inbox(tmp_path / "i.sqlite")
    first.close()
