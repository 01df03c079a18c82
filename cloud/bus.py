"""The router: live delivery of stored events to subscribers whose token allows the topic.

:class:`Bus` is the interface the link server and other modules use; :class:`LocalBus` is the
embedded, in-process implementation. A bus joining several core instances (e.g. over NATS)
implements the same interface, so callers do not change.

Delivery is live and best effort by design: every event is already durably stored before it
is published here, so a subscriber that falls behind loses live copies (counted in its
``dropped`` counter and in :meth:`LocalBus.statistics`), never data, and never slows ingest.
Subscriptions and deliveries are keyed by tenant first: a pattern can never match another
tenant's events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import trio

from cloud.principal import event_topic, topic_matches

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from protocol.messages import Delivered

#: Live events a subscriber may have waiting before new ones are dropped for it.
DEFAULT_SUBSCRIBER_BUFFER = 10_000


@dataclass(eq=False)
class Subscription:
    """One subscriber's patterns and its queue of delivered events."""

    tenant: str
    patterns: tuple[str, ...]
    _send: trio.MemorySendChannel[Delivered]
    receive: trio.MemoryReceiveChannel[Delivered]
    dropped: int = 0
    _bus: LocalBus | None = field(default=None, repr=False)

    def matches(self, topic: str) -> bool:
        return any(topic_matches(p, topic) for p in self.patterns)

    def close(self) -> None:
        if self._bus is not None:
            self._bus.unsubscribe(self)
            self._bus = None
        self._send.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Bus(Protocol):
    """Publish stored events; subscribe to live ones."""

    def publish(self, tenant: str, items: Sequence[Delivered]) -> None:
        """Hand events to every matching subscriber of ``tenant``; never blocks."""

    def has_subscribers(self, tenant: str) -> bool:
        """Whether anything subscribes to ``tenant`` now: if not, publishing is a no-op,
        so a caller need not build the items (ingest does not, once per stored event)."""
        ...

    def subscribe(
        self, tenant: str, patterns: tuple[str, ...], buffer: int = DEFAULT_SUBSCRIBER_BUFFER
    ) -> Subscription:
        """Start delivering; the caller closes the subscription (a context manager)."""
        ...


@dataclass(slots=True)
class BusStatistics:
    subscriptions: int
    delivered: int
    dropped: int


class LocalBus:
    """The in-process bus of a single core instance."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, list[Subscription]] = {}
        self._delivered = 0
        self._dropped = 0

    def subscribe(
        self, tenant: str, patterns: tuple[str, ...], buffer: int = DEFAULT_SUBSCRIBER_BUFFER
    ) -> Subscription:
        send, receive = trio.open_memory_channel["Delivered"](buffer)
        subscription = Subscription(tenant, patterns, send, receive, _bus=self)
        self._by_tenant.setdefault(tenant, []).append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._by_tenant.get(subscription.tenant, [])
        if subscription in subscribers:
            subscribers.remove(subscription)
        if not subscribers:
            self._by_tenant.pop(subscription.tenant, None)

    def has_subscribers(self, tenant: str) -> bool:
        return tenant in self._by_tenant  # unsubscribe drops a tenant's empty list

    def publish(self, tenant: str, items: Sequence[Delivered]) -> None:
        subscribers = self._by_tenant.get(tenant)
        if not subscribers:
            return
        for item in items:
            topic = event_topic(item.gateway, item.event.device)
            for subscription in subscribers:
                if not subscription.matches(topic):
                    continue
                try:
                    subscription._send.send_nowait(item)
                    self._delivered += 1
                except trio.WouldBlock:
                    subscription.dropped += 1
                    self._dropped += 1
                except trio.ClosedResourceError:
                    pass

    def statistics(self) -> BusStatistics:
        count = sum(len(s) for s in self._by_tenant.values())
        return BusStatistics(count, self._delivered, self._dropped)
