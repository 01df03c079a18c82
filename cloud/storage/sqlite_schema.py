"""The SQLite schema, its migrations, and how connections are configured.

Schema (version 2)::

    schema_version(version)                       one row: the applied migration count
    meta(name PK, value)                          store-wide secrets (the cursor HMAC key)
    tenants(id PK, name UNIQUE)                   dictionary: tenant name -> small integer
    gateways(id PK, tenant_id, name, acked_seq)   dictionary + high-water mark;
                                                  UNIQUE (tenant_id, name)
    devices(id PK, tenant_id, name)               dictionary; UNIQUE (tenant_id, name)
    events(tenant_id, device_id, wall_ns, gateway_id, seq, mono_ns, boot_id, clock,
           received_ns, readings)                 WITHOUT ROWID, PRIMARY KEY
                                                  (tenant_id, device_id, wall_ns, gateway_id, seq)
    unique index events_identity (gateway_id, seq)     the deduplication key
    index events_by_time (tenant_id, wall_ns)          tenant-wide and gateway queries

Why this shape:

* ``events`` is clustered on ``(tenant_id, device_id, wall_ns, ...)``: one device's readings
  over a time range are ONE contiguous key range of the table itself, so the query the REST
  API serves most (a device-day, a page at a time) reads a few adjacent leaf pages, with no
  index-to-table hop per row. WITHOUT ROWID (SQLite docs, "The WITHOUT ROWID Optimization")
  makes the primary key the table's own B-tree.
* Deduplication is the UNIQUE index ``(gateway_id, seq)``: ``INSERT OR IGNORE`` skips a row
  that conflicts with it. A gateway id implies its tenant, so this is the old
  ``(tenant, gateway, seq)`` identity. The index's entries end with the rest of the primary
  key, about 20 bytes each.
* Tenant, gateway and device names are stored once, in dictionary tables, and rows carry
  small integers (1-2 bytes in SQLite's varint record format) instead of repeating the text
  in the row and in every index entry. Ids are never reused or renumbered.
* ``events_by_time`` serves queries without a device filter; its entries end with
  ``(device_id, gateway_id, seq)``, the rest of the primary key, from which SQLite finds the
  row.
* ``readings`` is a CBOR blob (see :mod:`cloud.storage.codec` for CBOR vs JSON).
* ``gateways.acked_seq`` is updated in the same transaction as the events, so the high-water
  mark a gateway is told can never be ahead of what is on disk.

Version 1 (the first release) clustered events on ``(tenant, gateway, seq)`` with text keys
and two text indexes; :func:`_integer_ids_v2` rewrites such a store in place the first time
this code opens it (one transaction: it needs free disk space of about the store's size for
the new table and the WAL, and takes about as long as the store's own fill rate allows).

Migrations: :data:`MIGRATIONS` is an append-only list; entry ``i`` takes the schema from
version ``i`` to ``i + 1`` and runs inside the transaction that records the new version. A
database newer than the code raises :class:`~.errors.SchemaError` rather than being
touched.

Durability: WAL with ``synchronous=FULL``. In WAL mode ``NORMAL`` syncs the WAL only at
checkpoints, so a transaction that has committed can still be lost on power loss (SQLite
docs, "PRAGMA synchronous"); ``FULL`` syncs the WAL at every commit, which is what
"acknowledged means durable" needs. Group commit (in :mod:`cloud.storage.sqlite`) spreads
that one fsync over every batch waiting at the time, which is what keeps ``FULL`` fast.

This module runs synchronously on the connection it is given; it starts no thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Literal

from cloud.storage.errors import SchemaError

if TYPE_CHECKING:
    from pathlib import Path

Synchronous = Literal["FULL", "NORMAL"]
Migration = Callable[[sqlite3.Connection], None]

#: How long a connection waits for a lock before failing (ms). Only checkpoints and schema
#: creation take locks that a WAL reader can meet.
BUSY_TIMEOUT_MS: Final = 10_000


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    # The cursor key comes from SQLite's own CSPRNG, so cursors stay valid across restarts.
    conn.execute("INSERT INTO meta VALUES ('cursor_key', randomblob(32))")
    conn.execute(
        "CREATE TABLE gateways (tenant TEXT NOT NULL, gateway TEXT NOT NULL,"
        " acked_seq INTEGER NOT NULL, PRIMARY KEY (tenant, gateway)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE events ("
        " gateway TEXT NOT NULL, seq INTEGER NOT NULL, tenant TEXT NOT NULL,"
        " device TEXT NOT NULL, wall_ns INTEGER NOT NULL, mono_ns INTEGER NOT NULL,"
        " boot_id BLOB NOT NULL, clock INTEGER NOT NULL, received_ns INTEGER NOT NULL,"
        " readings BLOB NOT NULL, PRIMARY KEY (tenant, gateway, seq)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX events_by_device ON events (tenant, device, wall_ns)")
    conn.execute("CREATE INDEX events_by_time ON events (tenant, wall_ns)")


#: The version-2 events table (also what the bulk fill of ``bench/query_scale.py`` uses).
EVENTS_TABLE: Final = (
    "CREATE TABLE {name} ("
    " tenant_id INTEGER NOT NULL, device_id INTEGER NOT NULL, wall_ns INTEGER NOT NULL,"
    " gateway_id INTEGER NOT NULL, seq INTEGER NOT NULL, mono_ns INTEGER NOT NULL,"
    " boot_id BLOB NOT NULL, clock INTEGER NOT NULL, received_ns INTEGER NOT NULL,"
    " readings BLOB NOT NULL,"
    " PRIMARY KEY (tenant_id, device_id, wall_ns, gateway_id, seq)) WITHOUT ROWID"
)
#: The events table's secondary indexes, by name. Created after a bulk copy (a sorted
#: build is much faster than maintaining them row by row).
EVENT_INDEXES: Final = {
    "events_identity": "CREATE UNIQUE INDEX events_identity ON events (gateway_id, seq)",
    "events_by_time": "CREATE INDEX events_by_time ON events (tenant_id, wall_ns)",
}


def _integer_ids_v2(conn: sqlite3.Connection) -> None:
    """Version 1 -> 2: dictionary tables and events clustered by (tenant, device, time)."""
    conn.execute("CREATE TABLE tenants (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    conn.execute(
        "CREATE TABLE gateway_ids (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,"
        " name TEXT NOT NULL, acked_seq INTEGER NOT NULL, UNIQUE (tenant_id, name))"
    )
    conn.execute(
        "CREATE TABLE devices (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,"
        " name TEXT NOT NULL, UNIQUE (tenant_id, name))"
    )
    # Every gateway with events has a gateways row: version 1 wrote both in one transaction.
    conn.execute("INSERT INTO tenants (name) SELECT DISTINCT tenant FROM gateways ORDER BY 1")
    conn.execute(
        "INSERT INTO gateway_ids (tenant_id, name, acked_seq)"
        " SELECT t.id, g.gateway, g.acked_seq FROM gateways g JOIN tenants t ON t.name = g.tenant"
        " ORDER BY 1, 2"
    )
    # Reads the (tenant, device, wall_ns) index only, not the table.
    conn.execute(
        "INSERT INTO devices (tenant_id, name)"
        " SELECT DISTINCT t.id, e.device FROM events e JOIN tenants t ON t.name = e.tenant"
        " ORDER BY 1, 2"
    )
    conn.execute(EVENTS_TABLE.format(name="events_v2"))
    # Inserted in primary-key order, so every row appends at the right edge of the B-tree.
    conn.execute(
        "INSERT INTO events_v2 SELECT t.id, d.id, e.wall_ns, g.id, e.seq, e.mono_ns, e.boot_id,"
        " e.clock, e.received_ns, e.readings FROM events e"
        " JOIN tenants t ON t.name = e.tenant"
        " JOIN gateway_ids g ON g.tenant_id = t.id AND g.name = e.gateway"
        " JOIN devices d ON d.tenant_id = t.id AND d.name = e.device"
        " ORDER BY 1, 2, 3, 4, 5"
    )
    copied = conn.execute("SELECT count(*) FROM events_v2").fetchone()[0]
    original = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    if copied != original:
        # Only possible if a version-1 row had no gateways row; refuse rather than drop it.
        raise SchemaError(f"migration to version 2 copied {copied} of {original} events")
    conn.execute("DROP TABLE events")  # drops its two indexes with it
    conn.execute("DROP TABLE gateways")
    conn.execute("ALTER TABLE events_v2 RENAME TO events")
    conn.execute("ALTER TABLE gateway_ids RENAME TO gateways")
    for ddl in EVENT_INDEXES.values():
        conn.execute(ddl)


#: Append-only: never edit an entry that has shipped, add a new one.
MIGRATIONS: Final[tuple[Migration, ...]] = (_create_v1, _integer_ids_v2)


def schema_version(conn: sqlite3.Connection) -> int:
    """The applied migration count; 0 for an empty database."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    rows = conn.execute("SELECT version FROM schema_version").fetchall()
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise SchemaError("schema_version table must hold exactly one integer")
    version: int = rows[0][0]
    return version


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to ``len(migrations)``; return the version it was at.

    The connection must be in autocommit mode (``isolation_level=None``). All pending steps
    and their version bumps run in one ``BEGIN IMMEDIATE`` transaction, so a crash or a
    failing step leaves the schema at the version it started from.

    Raises:
        SchemaError: the database is newer than ``migrations`` knows.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = schema_version(conn)
        if start > len(migrations):
            raise SchemaError(
                f"database schema {start} is newer than this code's {len(migrations)}"
            )
        if start == 0:
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.execute("INSERT INTO schema_version VALUES (0)")
        for version in range(start, len(migrations)):
            migrations[version](conn)
            conn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return start


def connect_writer(path: Path, synchronous: Synchronous = "FULL") -> sqlite3.Connection:
    """Open the single writing connection, switch to WAL, and migrate the schema."""
    conn = _connect(path)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        conn.close()
        raise SchemaError(f"cannot switch {path} to WAL (journal_mode={mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    migrate(conn)
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """Open a read-only connection; WAL lets it read while the writer commits."""
    conn = _connect(path)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _connect(path: Path) -> sqlite3.Connection:
    bind_bytes_directly()
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so that reads never hold a
    # snapshot open between calls and writes are exactly one transaction per group.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def bind_bytes_directly() -> None:
    """Let ``sqlite3`` bind ``bytes`` parameters without its failing adapter search.

    CPython's ``sqlite3`` binds int, float and str directly but looks every ``bytes`` value
    up as an adapter: with none registered, that search raises and clears an
    ``AttributeError`` on each value. Every events row binds two (``boot_id`` and
    ``readings``): that search was 0.6-0.9 µs of the 6-7 µs per event of writing the fleet
    benchmark's batches (:func:`~cloud.storage.sqlite_ops.write_group`), and 1.9 of the
    core's 18.7 µs per event in ``bench.throughput``. An adapter that returns the value
    itself is found at the first lookup and binds exactly the same BLOB. The adapter
    registry is process-wide; nothing else in the project registers one for ``bytes``.
    Idempotent.
    """
    sqlite3.register_adapter(bytes, bytes.__bytes__)
