"""The SQL the SQLite store runs, as plain synchronous functions on one connection.

Each function here is called on the thread that owns its connection (see
:mod:`cloud.storage.sqlite`); none of them starts a thread, awaits, or reads a clock.
``sqlite3.Error`` is allowed to propagate: the thread wrapper translates it into
:class:`~.errors.StorageBroken` at the package boundary.

Rows carry small integer ids for tenants, gateways and devices (see
:mod:`cloud.storage.sqlite_schema`); :class:`Names` maps names to ids and caches them in
memory, one instance per connection. Ids are never reused, so a cached id stays right for
the life of the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cloud.storage.base import StoredEvent, StoreResult
from cloud.storage.codec import clock_source, decode_readings, encode_readings, encode_records
from cloud.storage.errors import SchemaError
from protocol.events import Event, trusted_event
from protocol.wire import WireEvents

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from cloud.storage.cursor import CursorPosition

#: Column order of an ``events`` row, as :func:`event_rows` and :func:`wire_rows` build it.
INSERT_EVENT = (
    "INSERT OR IGNORE INTO events (tenant_id, device_id, wall_ns, gateway_id, seq, mono_ns,"
    " boot_id, clock, received_ns, readings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RAISE_ACKED = "UPDATE gateways SET acked_seq = max(acked_seq, ?) WHERE id = ?"
# CROSS JOIN: SQLite keeps ``events`` as the outer loop (SQLite docs, "The SQLite Query
# Optimizer Overview" §7.1), so the key range of the WHERE clause drives the query.
_FROM = "FROM events e CROSS JOIN gateways g ON g.id = e.gateway_id"
_FROM_WITH_DEVICE = _FROM + " CROSS JOIN devices d ON d.id = e.device_id"
_COLUMNS = "e.wall_ns, g.name, e.seq, e.boot_id, e.mono_ns, e.clock, e.readings, e.received_ns"


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """One caller's ``store_batch`` or ``store_wire_batch`` arguments, queued for the next
    group commit."""

    tenant: str
    gateway: str
    events: Sequence[Event] | WireEvents
    received_ns: int


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A query's tenant and filters (time bounds are half-open: since <= t < until)."""

    tenant: str
    device: str | None
    gateway: str | None
    since_ns: int | None
    until_ns: int | None


@dataclass(slots=True)
class Names:
    """One connection's name -> id dictionaries, cached in memory.

    On the writer, ids made inside a transaction are only kept once it commits
    (:meth:`commit`); :meth:`rollback` forgets them, because the rows that define them are
    gone. On a reader, a name not found is not cached: it may be stored a moment later.
    """

    tenants: dict[str, int] = field(default_factory=dict)
    gateways: dict[tuple[int, str], int] = field(default_factory=dict)
    devices: dict[tuple[int, str], int] = field(default_factory=dict)
    _made: list[tuple[dict[str, int] | dict[tuple[int, str], int], object]] = field(
        default_factory=list
    )

    def commit(self) -> None:
        self._made.clear()

    def rollback(self) -> None:
        for cache, key in self._made:
            cache.pop(key, None)  # type: ignore[call-overload]  # key type matches its cache
        self._made.clear()

    def find_tenant(self, conn: sqlite3.Connection, name: str) -> int | None:
        found = self.tenants.get(name)
        if found is None:
            row = conn.execute("SELECT id FROM tenants WHERE name = ?", (name,)).fetchone()
            if row is not None:
                found = self.tenants[name] = int(row[0])
        return found

    def find_gateway(self, conn: sqlite3.Connection, tenant_id: int, name: str) -> int | None:
        return self._find(conn, "gateways", self.gateways, tenant_id, name)

    def find_device(self, conn: sqlite3.Connection, tenant_id: int, name: str) -> int | None:
        return self._find(conn, "devices", self.devices, tenant_id, name)

    def tenant(self, conn: sqlite3.Connection, name: str) -> int:
        """The tenant's id, made in the current transaction if it is new."""
        found = self.find_tenant(conn, name)
        if found is None:
            cursor = conn.execute("INSERT INTO tenants (name) VALUES (?)", (name,))
            found = self.tenants[name] = _lastrowid(cursor)
            self._made.append((self.tenants, name))
        return found

    def gateway(self, conn: sqlite3.Connection, tenant_id: int, name: str) -> int:
        """The gateway's id, made (with acked_seq 0) in the current transaction if new."""
        found = self.find_gateway(conn, tenant_id, name)
        if found is None:
            cursor = conn.execute(
                "INSERT INTO gateways (tenant_id, name, acked_seq) VALUES (?, ?, 0)",
                (tenant_id, name),
            )
            found = self.gateways[tenant_id, name] = _lastrowid(cursor)
            self._made.append((self.gateways, (tenant_id, name)))
        return found

    def device(self, conn: sqlite3.Connection, tenant_id: int, name: str) -> int:
        """The device's id, made in the current transaction if it is new."""
        found = self.find_device(conn, tenant_id, name)
        if found is None:
            cursor = conn.execute(
                "INSERT INTO devices (tenant_id, name) VALUES (?, ?)", (tenant_id, name)
            )
            found = self.devices[tenant_id, name] = _lastrowid(cursor)
            self._made.append((self.devices, (tenant_id, name)))
        return found

    @staticmethod
    def _find(
        conn: sqlite3.Connection,
        table: str,
        cache: dict[tuple[int, str], int],
        tenant_id: int,
        name: str,
    ) -> int | None:
        found = cache.get((tenant_id, name))
        if found is None:
            row = conn.execute(
                f"SELECT id FROM {table} WHERE tenant_id = ? AND name = ?",  # noqa: S608  # nosec B608 - fixed table names
                (tenant_id, name),
            ).fetchone()
            if row is not None:
                found = cache[tenant_id, name] = int(row[0])
        return found


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    if rowid is None:  # pragma: no cover - an INSERT into a rowid table always sets it
        raise SchemaError("insert did not report a rowid")
    return rowid


def load_cursor_key(conn: sqlite3.Connection) -> bytes:
    """The store's secret cursor key, created by the first migration."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'cursor_key'").fetchone()
    if row is None or not isinstance(row[0], bytes) or len(row[0]) < 16:
        raise SchemaError("meta.cursor_key is missing or too short")
    key: bytes = row[0]
    return key


def write_group(
    conn: sqlite3.Connection, names: Names, batches: Sequence[BatchWrite]
) -> list[StoreResult]:
    """Write every batch in ONE transaction (group commit); one outcome per batch.

    Any engine error rolls the whole group back and propagates: then no batch of the group
    is acknowledged.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_write_batch(conn, names, batch) for batch in batches]
        # With synchronous=FULL this COMMIT returns only after the WAL is fsync'ed.
        conn.execute("COMMIT")
    except BaseException:
        names.rollback()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    names.commit()
    return outcomes


def _write_batch(conn: sqlite3.Connection, names: Names, batch: BatchWrite) -> StoreResult:
    if not batch.events:
        acked = acked_seq(conn, names, batch.tenant, batch.gateway)
        return StoreResult(stored=0, duplicates=0, acked_seq=acked)
    tenant_id = names.tenant(conn, batch.tenant)
    gateway_id = names.gateway(conn, tenant_id, batch.gateway)
    events = batch.events
    if isinstance(events, WireEvents):
        rows = wire_rows(conn, names, tenant_id, gateway_id, events, batch.received_ns)
        top = events.last_seq  # a WireEvents' seqs increase
    else:
        rows = event_rows(conn, names, tenant_id, gateway_id, events, batch.received_ns)
        top = max([event.seq for event in events])
    stored = conn.executemany(INSERT_EVENT, rows).rowcount
    conn.execute(_RAISE_ACKED, (top, gateway_id))
    row = conn.execute("SELECT acked_seq FROM gateways WHERE id = ?", (gateway_id,)).fetchone()
    return StoreResult(stored=stored, duplicates=len(batch.events) - stored, acked_seq=row[0])


def event_rows(
    conn: sqlite3.Connection,
    names: Names,
    tenant_id: int,
    gateway_id: int,
    events: Sequence[Event],
    received: int,
) -> list[tuple[object, ...]]:
    """The ``events`` rows of ``events``, in :data:`INSERT_EVENT`'s column order."""
    devices = names.devices
    rows: list[tuple[object, ...]] = []
    for e in events:
        device_id = devices.get((tenant_id, e.device))
        if device_id is None:
            device_id = names.device(conn, tenant_id, e.device)
        rows.append(
            (tenant_id, device_id, e.wall_ns, gateway_id, e.seq, e.mono_ns, e.boot_id,
             int(e.clock), received, encode_readings(e.readings))
        )  # fmt: skip
    return rows


def wire_rows(
    conn: sqlite3.Connection,
    names: Names,
    tenant_id: int,
    gateway_id: int,
    events: WireEvents,
    received: int,
) -> list[tuple[object, ...]]:
    """The rows :func:`event_rows` gives for the same events, from their wire form."""
    devices = names.devices
    rows: list[tuple[object, ...]] = []
    # The clock is the wire's integer code, which is what int(ClockSource) stores.
    for seq, device, boot_id, mono_ns, wall_ns, clock, records in events.items:
        device_id = devices.get((tenant_id, device))
        if device_id is None:
            device_id = names.device(conn, tenant_id, device)
        rows.append(
            (tenant_id, device_id, wall_ns, gateway_id, seq, mono_ns, boot_id, clock, received,
             encode_records(records))
        )  # fmt: skip
    return rows


def acked_seq(conn: sqlite3.Connection, names: Names, tenant: str, gateway: str) -> int:
    """The gateway's high-water mark; 0 if it never stored anything."""
    tenant_id = names.find_tenant(conn, tenant)
    gateway_id = None if tenant_id is None else names.find_gateway(conn, tenant_id, gateway)
    if gateway_id is None:
        return 0
    row = conn.execute("SELECT acked_seq FROM gateways WHERE id = ?", (gateway_id,)).fetchone()
    return 0 if row is None else int(row[0])


def count_events(conn: sqlite3.Connection, names: Names, tenant: str) -> int:
    """How many events ``tenant`` has (a covering scan of its events_by_time range)."""
    tenant_id = names.find_tenant(conn, tenant)
    if tenant_id is None:
        return 0
    row = conn.execute("SELECT count(*) FROM events WHERE tenant_id = ?", (tenant_id,)).fetchone()
    return int(row[0])


def select_page(
    conn: sqlite3.Connection,
    names: Names,
    query: PageQuery,
    after: CursorPosition | None,
    limit: int,
) -> list[StoredEvent]:
    """Up to ``limit`` events of ``query`` strictly after ``after``, in key order."""
    tenant_id = names.find_tenant(conn, query.tenant)
    if tenant_id is None:
        return []
    where = ["e.tenant_id = ?"]
    params: list[object] = [tenant_id]
    for column, name, find in (
        ("e.device_id", query.device, names.find_device),
        ("e.gateway_id", query.gateway, names.find_gateway),
    ):
        if name is not None:
            found = find(conn, tenant_id, name)
            if found is None:
                return []
            where.append(f"{column} = ?")
            params.append(found)
    _time_bounds(query, after, where, params)
    # The device name is known when it is a filter; otherwise it comes from the dictionary.
    if query.device is None:
        columns, source = _COLUMNS + ", d.name", _FROM_WITH_DEVICE
    else:
        columns, source = _COLUMNS, _FROM
    sql = (
        f"SELECT {columns} {source} WHERE {' AND '.join(where)}"  # nosec B608 - no user text
        # The clustered key orders by wall_ns already; SQLite sorts only rows with equal
        # wall_ns by gateway name ("USE TEMP B-TREE FOR RIGHT PART OF ORDER BY").
        " ORDER BY e.wall_ns, g.name, e.seq LIMIT ?"
    )
    return _stored_events(
        conn.execute(sql, (*params, limit)).fetchall(), query.tenant, query.device
    )


def _time_bounds(
    query: PageQuery, after: CursorPosition | None, where: list[str], params: list[object]
) -> None:
    # Only fixed SQL fragments are added; every value is a bound parameter.
    if query.until_ns is not None:
        where.append("e.wall_ns < ?")
        params.append(query.until_ns)
    if after is None:
        if query.since_ns is not None:
            where.append("e.wall_ns >= ?")
            params.append(query.since_ns)
        return
    # A cursor is bound to its query, so its position already satisfies since_ns. The plain
    # ``e.wall_ns >= ?`` is what SQLite seeks to in the key; the rest breaks wall_ns ties.
    where.append("e.wall_ns >= ? AND (e.wall_ns > ? OR (g.name, e.seq) > (?, ?))")
    params += [after.wall_ns, after.wall_ns, after.gateway, after.seq]


def _stored_events(rows: list[Any], tenant: str, device: str | None) -> list[StoredEvent]:
    # Rows are SELECTed in _COLUMNS order, plus the device name when it is not a filter.
    # Built without __init__ (protocol.events.trusted_event; the row's own fields are checked
    # by clock_source and decode_readings): with __init__, building the values was the
    # largest part of a 1,000-row page.
    out: list[StoredEvent] = []
    for row in rows:
        wall_ns, gateway, seq, boot_id, mono_ns, clock, readings, received = row[:8]
        event = trusted_event(
            seq,
            device if device is not None else row[8],
            boot_id,
            mono_ns,
            wall_ns,
            clock_source(clock),
            decode_readings(readings),
        )
        stored = _new(StoredEvent)
        _set_tenant(stored, tenant)
        _set_gateway(stored, gateway)
        _set_event(stored, event)
        _set_received(stored, received)
        out.append(stored)
    return out


_new = object.__new__
_set_tenant = StoredEvent.__dict__["tenant"].__set__
_set_gateway = StoredEvent.__dict__["gateway"].__set__
_set_event = StoredEvent.__dict__["event"].__set__
_set_received = StoredEvent.__dict__["received_ns"].__set__
