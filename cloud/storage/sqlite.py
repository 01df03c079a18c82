"""The embedded-default event store: SQLite in WAL mode behind a thin Trio shell.

Use :func:`open_sqlite_store`; the store implements :class:`~.base.EventStore`.

Threads. A ``sqlite3`` connection must stay on one thread, and Trio must never block on
disk. Each connection therefore lives on its own long-lived thread fed by a queue: one
*writer* thread (the only connection that writes) and one *reader* thread (queries). In WAL
mode a reader works on the last committed snapshot and never waits for the writer (SQLite
docs, "Write-Ahead Logging" §2.2), so queries are never stuck behind commits. A dedicated
thread measured about twice as fast per call as ``trio.to_thread.run_sync`` with a
``CapacityLimiter(1)`` (``python -m bench.storage``, "dispatch"), and guarantees that the
connection never changes threads.

Group commit. ``store_batch`` queues its batch. If no commit is running, the caller becomes
the *leader*: it takes every queued batch (up to :data:`MAX_GROUP_EVENTS` events), writes
them in one transaction on the writer thread, and hands each caller its own result. Batches
that arrive meanwhile wait for that commit to end and are merged into the next transaction.
Under load every fsync therefore acknowledges many links at once, which is what makes
``synchronous=FULL`` affordable (see :mod:`cloud.storage.sqlite_schema` for why FULL).

Cancellation. A leader's commit is shielded: once a transaction is handed to the writer it
runs to the end and every caller in it gets its outcome, even if the leader is cancelled. A
caller cancelled while still queued is removed from the queue and nothing of its batch is
written. A caller cancelled while its batch is being committed gets no result; the batch
may be on disk, and the sender's resend is deduplicated.

This module does not retry a failed commit (the sender resends) and does not enforce
retention or disk quotas.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import trio

from cloud.storage import sqlite_ops as ops
from cloud.storage.base import DEFAULT_PAGE_EVENTS, MAX_PAGE_EVENTS, EventPage, StoreResult
from cloud.storage.codec import check_batch, check_query
from cloud.storage.cursor import CursorPosition, decode_cursor, encode_cursor, query_scope
from cloud.storage.errors import (
    InvalidQuery,
    StorageBroken,
    StorageClosed,
    StorageError,
)
from cloud.storage.sqlite_schema import Synchronous, connect_reader, connect_writer

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable, Sequence

    from protocol.events import Event
    from protocol.wire import WireEvents

T = TypeVar("T")

#: Most events merged into one transaction, so one commit's latency stays bounded. At
#: 50,000 a CPU-starved core could hold every waiting link's ack behind one transaction for
#: seconds (docs/performance.md, "Throughput"); at 8,000 events the fsync of a commit (a few
#: ms on the development VM) still costs about 1 µs per event.
MAX_GROUP_EVENTS: Final = 8_000


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """Counters for introspection and tests.

    Attributes:
        commits: write transactions committed.
        batches: ``store_batch`` calls those transactions acknowledged.
        events_stored: events newly stored.
        duplicates: events skipped as already stored.
        largest_group: most batches merged into one transaction.
        queued: batches waiting for the next commit right now.
    """

    commits: int
    batches: int
    events_stored: int
    duplicates: int
    largest_group: int
    queued: int


class _Outcome(Generic[T]):
    """A value or an exception carried from a worker thread back to Trio."""

    __slots__ = ("_error", "_value")

    def __init__(self, value: T | None = None, error: BaseException | None = None) -> None:
        self._value = value
        self._error = error

    def unwrap(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set whenever _error is None


class _ConnectionThread:
    """One long-lived thread owning one sqlite3 connection; jobs arrive on a queue."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # Daemon: a store its owner forgot to close must not keep the interpreter alive.
        # Durability does not depend on this thread outliving anyone: a batch is only
        # acknowledged after its COMMIT returned.
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @classmethod
    async def open(cls, name: str, connect: Callable[[], sqlite3.Connection]) -> _ConnectionThread:
        worker = cls(name)
        try:
            await worker._call(partial(worker._connect, connect))
        except BaseException:
            worker._jobs.put(None)
            raise
        return worker

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the thread; sqlite3 errors become StorageBroken."""
        if self._closed:
            raise StorageClosed("the store is closed")
        return await self._call(lambda: fn(self._require_conn()))

    async def stop(self) -> None:
        """Close the connection after every queued job, then end the thread."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            await self._call(self._disconnect)
        self._jobs.put(None)

    async def _call(self, fn: Callable[[], T]) -> T:
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()
        box: list[_Outcome[T]] = []

        def job() -> None:  # runs on the worker thread
            box.append(_capture(fn))
            # If the caller's Trio run has ended, nobody is waiting for the result.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        self._jobs.put(job)
        await done.wait()
        return box[0].unwrap()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def _connect(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._conn = connect()

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _require_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageClosed("the connection is closed")
        return self._conn


def _capture(fn: Callable[[], T]) -> _Outcome[T]:
    try:
        return _Outcome(value=fn())
    except sqlite3.Error as exc:
        # The one place engine errors are translated (house style: map at the boundary).
        broken = StorageBroken(f"sqlite: {exc}")
        broken.__cause__ = exc
        return _Outcome(error=broken)
    except BaseException as exc:
        return _Outcome(error=exc)


@dataclass(slots=True)
class _Request:
    """A queued ``store_batch`` call (mutable: its outcome is filled in by the leader)."""

    batch: ops.BatchWrite
    outcome: StoreResult | StorageError | None = None
    taken: bool = False


@dataclass(slots=True)
class _Counters:
    commits: int = 0
    batches: int = 0
    events_stored: int = 0
    duplicates: int = 0
    largest_group: int = 0


class SqliteEventStore:
    """An :class:`~.base.EventStore` on one SQLite file. Create with :func:`open_sqlite_store`."""

    def __init__(self, writer: _ConnectionThread, reader: _ConnectionThread, key: bytes) -> None:
        self._writer = writer
        self._reader = reader
        # Each used only on its connection's thread (one job at a time, so no lock).
        self._writer_names = ops.Names()
        self._reader_names = ops.Names()
        self._key = key
        self._pending: deque[_Request] = deque()
        self._committing: trio.Event | None = None
        self._closed = False
        self._counters = _Counters()

    @classmethod
    async def open(cls, path: Path, synchronous: Synchronous = "FULL") -> SqliteEventStore:
        """Open (creating and migrating if needed) the store at ``path``."""
        writer = await _ConnectionThread.open(
            "storage-writer", partial(connect_writer, path, synchronous)
        )
        try:
            key = await writer.run(ops.load_cursor_key)
            reader = await _ConnectionThread.open("storage-reader", partial(connect_reader, path))
        except BaseException:
            await writer.stop()
            raise
        return cls(writer, reader, key)

    async def store_batch(
        self,
        tenant: str,
        gateway: str,
        events: Sequence[Event],
        received_ns: int,
        *,
        validated: bool = False,
    ) -> StoreResult:
        """See :meth:`~.base.EventStore.store_batch`."""
        self._check_open()
        if not validated:
            check_batch(tenant, gateway, events, received_ns)
        return await self._store(ops.BatchWrite(tenant, gateway, tuple(events), received_ns))

    async def store_wire_batch(
        self, tenant: str, gateway: str, events: WireEvents, received_ns: int
    ) -> StoreResult:
        """See :meth:`~.base.EventStore.store_wire_batch`."""
        self._check_open()
        return await self._store(ops.BatchWrite(tenant, gateway, events, received_ns))

    async def _store(self, batch: ops.BatchWrite) -> StoreResult:
        """Queue ``batch`` for the next group commit and wait for its outcome."""
        request = _Request(batch)
        self._pending.append(request)
        try:
            while request.outcome is None:
                if self._committing is None:
                    await self._lead_commit()
                else:
                    await self._committing.wait()
        except BaseException:
            if not request.taken:
                self._pending.remove(request)
            raise
        if isinstance(request.outcome, StorageError):
            raise request.outcome
        return request.outcome

    async def acked_seq(self, tenant: str, gateway: str) -> int:
        """See :meth:`~.base.EventStore.acked_seq`."""
        self._check_open()
        check_query(tenant, [gateway], [])
        return await self._reader.run(
            partial(ops.acked_seq, names=self._reader_names, tenant=tenant, gateway=gateway)
        )

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
        """See :meth:`~.base.EventStore.query_events`."""
        self._check_open()
        if not 1 <= limit <= MAX_PAGE_EVENTS:
            raise InvalidQuery(f"limit must be within 1..{MAX_PAGE_EVENTS}")
        check_query(tenant, [device, gateway], [since_ns, until_ns])
        query = ops.PageQuery(tenant, device, gateway, since_ns, until_ns)
        scope = query_scope(tenant, device, gateway, since_ns, until_ns)
        after = None if cursor is None else decode_cursor(self._key, scope, cursor)
        # One extra row tells whether another page exists without a second query.
        rows = await self._reader.run(
            partial(
                ops.select_page, names=self._reader_names, query=query, after=after, limit=limit + 1
            )
        )
        if len(rows) <= limit:
            return EventPage(events=tuple(rows), next_cursor=None)
        last = rows[limit - 1]
        position = CursorPosition(last.event.wall_ns, last.gateway, last.event.seq)
        return EventPage(tuple(rows[:limit]), encode_cursor(self._key, scope, position))

    async def count_events(self, tenant: str) -> int:
        """See :meth:`~.base.EventStore.count_events`."""
        self._check_open()
        check_query(tenant, [], [])
        return await self._reader.run(
            partial(ops.count_events, names=self._reader_names, tenant=tenant)
        )

    def statistics(self) -> StoreStatistics:
        """Commit and batch counters since the store was opened."""
        c = self._counters
        return StoreStatistics(
            commits=c.commits,
            batches=c.batches,
            events_stored=c.events_stored,
            duplicates=c.duplicates,
            largest_group=c.largest_group,
            queued=len(self._pending),
        )

    async def aclose(self) -> None:
        """Commit what is queued, then close both connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            while self._pending or self._committing is not None:
                if self._committing is not None:
                    await self._committing.wait()
                else:
                    await self._lead_commit()
            await self._writer.stop()
            await self._reader.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosed("the store is closed")

    def _take_group(self) -> list[_Request]:
        group: list[_Request] = []
        events = 0
        while self._pending and (not group or events < MAX_GROUP_EVENTS):
            request = self._pending.popleft()
            request.taken = True
            events += len(request.batch.events)
            group.append(request)
        return group

    async def _lead_commit(self) -> None:
        done = trio.Event()
        self._committing = done
        # When a commit ends, its callers wake together and the first to send again would
        # lead a group of one. Yielding once lets every task that is already runnable queue
        # its batch first, so groups stay as large as the number of busy links.
        await trio.lowlevel.cancel_shielded_checkpoint()
        group = self._take_group()
        try:
            # Shielded: once handed to the writer, the transaction's outcome must reach every
            # caller in it, whatever happens to the leader.
            with trio.CancelScope(shield=True):
                outcomes = await self._writer.run(
                    partial(
                        ops.write_group,
                        names=self._writer_names,
                        batches=[r.batch for r in group],
                    )
                )
            self._deliver(group, outcomes)
        except BaseException as exc:
            for request in group:
                if request.outcome is None:
                    request.outcome = _broken(exc)
            if not isinstance(exc, StorageError):
                raise
        finally:
            self._committing = None
            done.set()

    def _deliver(self, group: list[_Request], outcomes: list[StoreResult]) -> None:
        c = self._counters
        c.commits += 1
        c.largest_group = max(c.largest_group, len(group))
        for request, outcome in zip(group, outcomes, strict=True):
            request.outcome = outcome
            if isinstance(outcome, StoreResult):
                c.batches += 1
                c.events_stored += outcome.stored
                c.duplicates += outcome.duplicates


def _broken(exc: BaseException) -> StorageError:
    # Each caller gets its own exception object: one instance raised in many tasks would
    # have its traceback rewritten by each of them.
    error = StorageBroken(f"group commit failed: {exc}")
    error.__cause__ = exc
    return error


@asynccontextmanager
async def open_sqlite_store(
    path: str | os.PathLike[str], *, synchronous: Synchronous = "FULL"
) -> AsyncIterator[SqliteEventStore]:
    """Open the SQLite event store at ``path``, creating and migrating it as needed.

    Args:
        path: the database file; its ``-wal`` and ``-shm`` companions live beside it.
        synchronous: ``"FULL"`` (default) makes every acknowledged batch survive power
            loss. ``"NORMAL"`` is faster but may lose the last acknowledged commits on power
            loss (not on a process crash); it exists for benchmarks and throwaway stores.

    Raises:
        SchemaError: the file's schema is newer than this code, or WAL is unavailable.
        StorageBroken: the file cannot be opened.
    """
    store = await SqliteEventStore.open(Path(path), synchronous)
    try:
        yield store
    finally:
        await store.aclose()
