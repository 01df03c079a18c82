"""LocalBus: ``has_subscribers`` tells exactly when ``publish`` would deliver nothing."""

from __future__ import annotations

from cloud.bus import LocalBus
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Delivered


def _item(device: str) -> Delivered:
    event = Event(1, device, bytes(16), 1, 1, ClockSource.NTP, (Reading("t", "Cel", 1.0),))
    return Delivered("gw-1", event)


def test_has_subscribers_follows_subscribe_and_close() -> None:
    bus = LocalBus()
    assert not bus.has_subscribers("acme")
    first = bus.subscribe("acme", ("gw/gw-1/#",))
    second = bus.subscribe("acme", ("gw/#",))
    assert bus.has_subscribers("acme")
    assert not bus.has_subscribers("other")
    first.close()
    assert bus.has_subscribers("acme")
    bus.publish("acme", [_item("dev-1")])
    assert second.receive.receive_nowait().event.device == "dev-1"
    second.close()
    assert not bus.has_subscribers("acme")
    assert bus.statistics().subscriptions == 0
