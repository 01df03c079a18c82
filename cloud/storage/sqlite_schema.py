"""The SQLite schema, its migrations, and how connections are configured.

Schema (version 1)::

    schema_version(version)                       one row: the applied migration count
    meta(name PK, value)                          store-wide secrets (the cursor HMAC key)
    gateways((tenant, gateway) PK, acked_seq)     WITHOUT ROWID; one row per gateway
    events(gateway, seq, tenant, device, wall_ns, mono_ns, boot_id, clock,
           received_ns, readings)                 WITHOUT ROWID, PRIMARY KEY (gateway, seq)
    index events_by_device (tenant, device, wall_ns)
    index events_by_time   (tenant, wall_ns)

Why this shape:

* ``events`` is clustered on ``(gateway, seq)``: the primary key *is* the deduplication key,
  so ``INSERT OR IGNORE`` dedups with no extra index, and a gateway's inserts append at the
  right edge of its key range. WITHOUT ROWID (SQLite docs, "The WITHOUT ROWID
  Optimization") avoids a second B-tree for the rowid.
* In a WITHOUT ROWID table every secondary index entry ends with the primary key, so the two
  indexes really are ``(tenant, device, wall_ns, gateway, seq)`` and ``(tenant, wall_ns,
  gateway, seq)``: exactly the query order, so keyset pages are index range scans with no
  sort step, with or without a device filter. The two indexes cost about 40% of the raw
  insert rate (``python -m bench.storage``, "schema"); without them every tenant query is a
  full table scan, which no REST page can afford once the table is large.
* ``readings`` is a CBOR blob (see :mod:`cloud.storage.codec` for CBOR vs JSON).
* ``gateways.acked_seq`` is updated in the same transaction as the events, so the high-water
  mark a gateway is told can never be ahead of what is on disk.

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


#: Append-only: never edit an entry that has shipped, add a new one.
MIGRATIONS: Final[tuple[Migration, ...]] = (_create_v1,)


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

    The connection must be in autocommit mode (``isolation_level=None``). Each step runs in
    its own ``BEGIN IMMEDIATE`` transaction together with the version bump, so a crash
    leaves the schema at a whole version.

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
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so that reads never hold a
    # snapshot open between calls and writes are exactly one transaction per group.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn
