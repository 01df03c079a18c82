"""The SQL the SQLite store runs, as plain synchronous functions on one connection.

Each function here is called on the thread that owns its connection (see
:mod:`cloud.storage.sqlite`); none of them starts a thread, awaits, or reads a clock.
``sqlite3.Error`` is allowed to propagate: the thread wrapper translates it into
:class:`~.errors.StorageBroken` at the package boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloud.storage.base import StoredEvent, StoreResult
from cloud.storage.codec import clock_source, decode_readings, encode_readings
from cloud.storage.errors import SchemaError
from protocol.events import Event

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Sequence

    from cloud.storage.cursor import CursorPosition

_INSERT = (
    "INSERT OR IGNORE INTO events (gateway, seq, tenant, device, wall_ns, mono_ns, boot_id,"
    " clock, received_ns, readings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_GATEWAY = (
    "INSERT INTO gateways (gateway, tenant, acked_seq) VALUES (?, ?, ?)"
    " ON CONFLICT (tenant, gateway) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq)"
)
_COLUMNS = "tenant, gateway, seq, device, boot_id, mono_ns, wall_ns, clock, readings, received_ns"
Row = tuple[str, str, int, str, bytes, int, int, int, bytes, int]


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """One caller's ``store_batch`` arguments, queued for the next group commit."""

    tenant: str
    gateway: str
    events: Sequence[Event]
    received_ns: int


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A query's tenant and filters (time bounds are half-open: since <= t < until)."""

    tenant: str
    device: str | None
    gateway: str | None
    since_ns: int | None
    until_ns: int | None


def load_cursor_key(conn: sqlite3.Connection) -> bytes:
    """The store's secret cursor key, created by the first migration."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'cursor_key'").fetchone()
    if row is None or not isinstance(row[0], bytes) or len(row[0]) < 16:
        raise SchemaError("meta.cursor_key is missing or too short")
    key: bytes = row[0]
    return key


def write_group(conn: sqlite3.Connection, batches: Sequence[BatchWrite]) -> list[StoreResult]:
    """Write every batch in ONE transaction (group commit); one outcome per batch.

    Any engine error rolls the whole group back and propagates: then no batch of the group
    is acknowledged.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_write_batch(conn, batch) for batch in batches]
        # With synchronous=FULL this COMMIT returns only after the WAL is fsync'ed.
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _write_batch(conn: sqlite3.Connection, batch: BatchWrite) -> StoreResult:
    acked = acked_seq(conn, batch.tenant, batch.gateway)
    if not batch.events:
        return StoreResult(stored=0, duplicates=0, acked_seq=acked)
    stored = conn.executemany(_INSERT, _event_rows(batch)).rowcount
    acked = max(acked, max(event.seq for event in batch.events))
    conn.execute(_UPSERT_GATEWAY, (batch.gateway, batch.tenant, acked))
    return StoreResult(stored=stored, duplicates=len(batch.events) - stored, acked_seq=acked)


def _event_rows(batch: BatchWrite) -> Iterator[tuple[object, ...]]:
    for e in batch.events:
        yield (
            batch.gateway,
            e.seq,
            batch.tenant,
            e.device,
            e.wall_ns,
            e.mono_ns,
            e.boot_id,
            int(e.clock),
            batch.received_ns,
            encode_readings(e.readings),
        )


def acked_seq(conn: sqlite3.Connection, tenant: str, gateway: str) -> int:
    """The gateway's high-water mark; 0 if it never stored anything."""
    row = conn.execute(
        "SELECT acked_seq FROM gateways WHERE tenant = ? AND gateway = ?", (tenant, gateway)
    ).fetchone()
    return 0 if row is None else int(row[0])


def count_events(conn: sqlite3.Connection, tenant: str) -> int:
    """How many events ``tenant`` has (a covering scan of the tenant's index range)."""
    row = conn.execute("SELECT count(*) FROM events WHERE tenant = ?", (tenant,)).fetchone()
    return int(row[0])


def select_page(
    conn: sqlite3.Connection, query: PageQuery, after: CursorPosition | None, limit: int
) -> list[StoredEvent]:
    """Up to ``limit`` events of ``query`` strictly after ``after``, in key order."""
    where, params = _where(query, after)
    sql = (
        f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)}"  # noqa: S608  # nosec B608 - no user text
        " ORDER BY wall_ns, gateway, seq LIMIT ?"
    )
    rows = conn.execute(sql, (*params, limit)).fetchall()
    return [_stored_event(row) for row in rows]


def _where(query: PageQuery, after: CursorPosition | None) -> tuple[list[str], list[object]]:
    # Only fixed SQL fragments are joined; every value is a bound parameter.
    where: list[str] = ["tenant = ?"]
    params: list[object] = [query.tenant]
    optional: list[tuple[str, object]] = [
        ("device = ?", query.device),
        ("gateway = ?", query.gateway),
        ("wall_ns < ?", query.until_ns),
    ]
    # A cursor is bound to its query, so its position already satisfies since_ns; leaving
    # the weaker bound out makes SQLite seek straight to the cursor instead of scanning from
    # since_ns on every page (checked with EXPLAIN QUERY PLAN).
    if after is None:
        optional.append(("wall_ns >= ?", query.since_ns))
    for clause, value in optional:
        if value is not None:
            where.append(clause)
            params.append(value)
    if after is not None:
        # Row-value comparison (SQLite >= 3.15) is a range on the index suffix.
        where.append("(wall_ns, gateway, seq) > (?, ?, ?)")
        params += [after.wall_ns, after.gateway, after.seq]
    return where, params


def _stored_event(row: Row) -> StoredEvent:
    tenant, gateway, seq, device, boot_id, mono_ns, wall_ns, clock, readings, received = row
    event = Event(
        seq=seq,
        device=device,
        boot_id=boot_id,
        mono_ns=mono_ns,
        wall_ns=wall_ns,
        clock=clock_source(clock),
        readings=decode_readings(readings),
    )
    return StoredEvent(tenant=tenant, gateway=gateway, event=event, received_ns=received)
