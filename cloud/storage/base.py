"""The event-store interface the core's callers program against.

The link server calls :meth:`EventStore.store_wire_batch` (:meth:`EventStore.store_batch` takes
``Event`` values) and acknowledges a gateway's events only after it returns; the REST API
calls :meth:`EventStore.query_events` and :meth:`EventStore.count_events`. The SQLite store
(``cloud.storage.sqlite``) implements this protocol; a PostgreSQL store can implement it
unchanged, because nothing here names an engine: cursors are opaque strings, times are
integer nanoseconds, and the ordering key ``(wall_ns, gateway, seq)`` is a plain composite
index in any SQL engine.

Contract shared by every implementation:

* **Durable before acknowledged.** ``store_batch`` and ``store_wire_batch`` return only after
  the batch is committed durably (it survives a crash of the process *and* a power loss). If
  they raise, nothing is acknowledged and the sender must resend.
* **Effectively once.** Events are deduplicated by ``(gateway, seq)``: an event already stored
  is counted as a duplicate and its stored copy is never changed.
* **Tenant confinement.** Every query names a tenant and returns only that tenant's events.
* **Keyset pagination.** Results are ordered by ``(wall_ns, gateway, seq)``; a page's
  ``next_cursor`` resumes strictly after its last event, so concurrent inserts never make a
  page repeat or skip an event that was already visible. Cursors are tamper-checked and bound
  to the query that produced them; anything else raises :class:`~.errors.InvalidCursor`.
* Time filters are half-open: ``since_ns <= wall_ns < until_ns``.

This module defines types only; it does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from protocol.events import Event
    from protocol.wire import WireEvents

#: Default and largest page size of :meth:`EventStore.query_events`.
DEFAULT_PAGE_EVENTS: Final = 100
MAX_PAGE_EVENTS: Final = 1_000


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: who sent it and when the core received it.

    Attributes:
        tenant: the tenant the event belongs to.
        gateway: the gateway that sent it.
        event: the event exactly as it was stored.
        received_ns: the core's wall clock when the batch holding it arrived.
    """

    tenant: str
    gateway: str
    event: Event
    received_ns: int


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What :meth:`EventStore.store_batch` did.

    Attributes:
        stored: events newly stored by this call.
        duplicates: events of the batch that were already stored (or repeated in the batch).
        acked_seq: the highest seq ever stored for the gateway, after this batch (0 if none).
    """

    stored: int
    duplicates: int
    acked_seq: int


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of a query.

    Attributes:
        events: the page's events in ``(wall_ns, gateway, seq)`` order.
        next_cursor: pass it back to get the next page; ``None`` when there is none.
    """

    events: tuple[StoredEvent, ...]
    next_cursor: str | None


class EventStore(Protocol):
    """Durable, deduplicating, tenant-confined event storage (see the module docstring)."""

    async def store_batch(
        self,
        tenant: str,
        gateway: str,
        events: Sequence[Event],
        received_ns: int,
        *,
        validated: bool = False,
    ) -> StoreResult:
        """Store a batch durably, skipping events already stored.

        Args:
            tenant: the tenant of the authenticated gateway.
            gateway: the gateway id.
            events: the batch, in any order; a seq repeated within it counts as a duplicate.
            received_ns: the core's wall-clock time of arrival.
            validated: the caller guarantees that every event passed
                :mod:`protocol.codec` decoding (which bounds every integer to 64 bits and
                yields only exact ``str``/``bytes``/``bool``/``int``/``float`` values), so the
                store skips its own check. Leave it ``False`` for events built any other way.

        Returns:
            Counts and the gateway's new ``acked_seq``.

        Raises:
            InvalidEvent: an event cannot be stored exactly (nothing of the batch is stored).
            StorageClosed: the store is closed.
            StorageBroken: the engine failed; nothing is acknowledged.
        """
        ...

    async def store_wire_batch(
        self, tenant: str, gateway: str, events: WireEvents, received_ns: int
    ) -> StoreResult:
        """As :meth:`store_batch`, for events the link decoder checked and left in wire form.

        ``events`` come only from :func:`protocol.codec.decode_wire`, which applies every
        check that ``validated=True`` vouches for, so the store checks nothing again. The
        rows stored are exactly those :meth:`store_batch` stores for the same events as
        ``Event`` values.

        Raises:
            StorageClosed: the store is closed.
            StorageBroken: the engine failed; nothing is acknowledged.
        """
        ...

    async def acked_seq(self, tenant: str, gateway: str) -> int:
        """The highest seq stored for ``gateway``; 0 when nothing is stored yet."""
        ...

    async def query_events(
        self,
        tenant: str,
        *,
        device: str | None = None,
        gateway: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = DEFAULT_PAGE_EVENTS,
        cursor: str | None = None,
    ) -> EventPage:
        """One page of ``tenant``'s events, ordered by ``(wall_ns, gateway, seq)``.

        Raises:
            InvalidCursor: ``cursor`` is malformed, tampered with or from another query.
            InvalidQuery: ``limit`` is outside ``1..MAX_PAGE_EVENTS``.
            StorageClosed: the store is closed.
            StorageBroken: the engine failed.
        """
        ...

    async def count_events(self, tenant: str) -> int:
        """How many events ``tenant`` has stored."""
        ...

    async def aclose(self) -> None:
        """Finish in-flight commits, then release the engine; idempotent."""
        ...
