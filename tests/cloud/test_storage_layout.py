"""The version-2 layout: migration of a version-1 store in place, ids, and the query plan."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from cloud.storage import SchemaError, StoredEvent, open_sqlite_store
from cloud.storage import sqlite_ops as ops
from cloud.storage.cursor import CursorPosition, encode_cursor, query_scope
from cloud.storage.sqlite_schema import MIGRATIONS, connect_reader, schema_version
from protocol import codec
from protocol.events import ClockSource, Event, Reading, Value
from protocol.messages import Batch

# The version-1 schema exactly as the first release created it (kept here, not imported,
# so that the test keeps describing what is on operators' disks whatever the code becomes).
V1_DDL = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (1)",
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "INSERT INTO meta VALUES ('cursor_key', randomblob(32))",
    "CREATE TABLE gateways (tenant TEXT NOT NULL, gateway TEXT NOT NULL,"
    " acked_seq INTEGER NOT NULL, PRIMARY KEY (tenant, gateway)) WITHOUT ROWID",
    "CREATE TABLE events ("
    " gateway TEXT NOT NULL, seq INTEGER NOT NULL, tenant TEXT NOT NULL,"
    " device TEXT NOT NULL, wall_ns INTEGER NOT NULL, mono_ns INTEGER NOT NULL,"
    " boot_id BLOB NOT NULL, clock INTEGER NOT NULL, received_ns INTEGER NOT NULL,"
    " readings BLOB NOT NULL, PRIMARY KEY (tenant, gateway, seq)) WITHOUT ROWID",
    "CREATE INDEX events_by_device ON events (tenant, device, wall_ns)",
    "CREATE INDEX events_by_time ON events (tenant, wall_ns)",
)
# cbor2.dumps([["temperature", "Cel", <value>]]) for the values below, as version 1 wrote.
V1_READINGS: dict[Value, bytes] = {
    21.5: bytes.fromhex("81836b74656d70657261747572656343656cfb4035800000000000"),
    -3: bytes.fromhex("81836b74656d70657261747572656343656c22"),
}


def v1_rows() -> list[tuple[object, ...]]:
    """Two tenants sharing a gateway id, several devices, equal wall times across gateways."""
    rows: list[tuple[object, ...]] = []
    for tenant, gateway, devices in (
        ("acme", "gw-b", ("dev-1", "dev-2")),
        ("acme", "gw-a", ("dev-1",)),
        ("umbrella", "gw-b", ("dev-9",)),
    ):
        for seq in range(1, 31):
            value = 21.5 if seq % 2 else -3
            device = devices[seq % len(devices)]
            boot = bytes([seq]) * 16
            rows.append((gateway, seq, tenant, device, (seq // 3) * 1_000, seq * 7, boot,
                         seq % 4, 555, V1_READINGS[value]))  # fmt: skip
    return rows


def make_v1_store(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for sql in V1_DDL:
        conn.execute(sql)
    rows = v1_rows()
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.executemany(
        "INSERT INTO gateways VALUES (?, ?, ?)",
        [("acme", "gw-b", 30), ("acme", "gw-a", 41), ("umbrella", "gw-b", 30)],
    )
    conn.close()
    return rows


def as_v1_row(s: StoredEvent) -> tuple[object, ...]:
    e = s.event
    (reading,) = e.readings
    assert (reading.name, reading.unit) == ("temperature", "Cel")
    blob = V1_READINGS[reading.value]
    return (s.gateway, e.seq, s.tenant, e.device, e.wall_ns, e.mono_ns, e.boot_id,
            int(e.clock), s.received_ns, blob)  # fmt: skip


async def all_pages(path: Path, tenant: str, **filters: str) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    cursor: str | None = None
    async with open_sqlite_store(path) as store:
        while True:
            page = await store.query_events(tenant, limit=7, cursor=cursor, **filters)  # type: ignore[arg-type]
            found += page.events
            if (cursor := page.next_cursor) is None:
                return found


def test_fixture_readings_are_what_version_1_wrote() -> None:
    from cloud.storage.codec import encode_readings

    for value, blob in V1_READINGS.items():
        assert encode_readings([Reading("temperature", "Cel", value)]) == blob


async def test_version_1_store_is_migrated_in_place_with_every_event(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    rows = make_v1_store(path)
    for tenant in ("acme", "umbrella"):
        found = await all_pages(path, tenant)
        expected = sorted((r for r in rows if r[2] == tenant), key=lambda r: (r[4], r[0], r[1]))
        assert [as_v1_row(s) for s in found] == expected
    dev_1 = await all_pages(path, "acme", device="dev-1")
    assert [as_v1_row(s) for s in dev_1] == sorted(
        (r for r in rows if r[2] == "acme" and r[3] == "dev-1"), key=lambda r: (r[4], r[0], r[1])
    )
    conn = sqlite3.connect(path)
    assert schema_version(conn) == len(MIGRATIONS) == 2
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    assert {"tenant", "gateway", "device"}.isdisjoint(columns)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "events_by_device" not in indexes and "events_identity" in indexes
    conn.close()


async def test_migrated_store_keeps_marks_dedup_and_earlier_cursors(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    make_v1_store(path)
    conn = sqlite3.connect(path)
    key = conn.execute("SELECT value FROM meta WHERE name = 'cursor_key'").fetchone()[0]
    conn.close()
    # A cursor a client got from the version-1 store, after acme's event (wall 3000, gw-a, 9).
    scope = query_scope("acme", None, None, None, None)
    old_cursor = encode_cursor(key, scope, CursorPosition(3_000, "gw-a", 9))
    async with open_sqlite_store(path) as store:
        assert await store.acked_seq("acme", "gw-a") == 41
        assert await store.acked_seq("umbrella", "gw-b") == 30
        page = await store.query_events("acme", limit=1000, cursor=old_cursor)
        assert [(s.event.wall_ns, s.gateway, s.event.seq) for s in page.events][:3] == [
            (3_000, "gw-a", 10),
            (3_000, "gw-a", 11),
            (3_000, "gw-b", 9),  # equal wall times: by gateway name, then seq
        ]
        resent = Event(5, "dev-2", bytes(16), 0, 99, ClockSource.NTP, (Reading("x", "", 1),))
        result = await store.store_batch("acme", "gw-b", [resent], 1)
        assert (result.stored, result.duplicates, result.acked_seq) == (0, 1, 30)
        fresh = await store.store_batch("umbrella", "gw-b", [replace(resent, seq=31)], 1)
        assert (fresh.stored, fresh.acked_seq) == (1, 31)
        assert await store.count_events("acme") == 60


async def test_version_1_event_without_gateway_row_stops_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    make_v1_store(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM gateways WHERE tenant = 'umbrella'")
    conn.close()
    with pytest.raises(SchemaError, match="copied 60 of 90"):
        async with open_sqlite_store(path):
            pass
    conn = sqlite3.connect(path)
    assert schema_version(conn) == 1  # rolled back whole: the old store is untouched
    assert conn.execute("SELECT count(*) FROM events WHERE tenant = 'umbrella'").fetchone()[0] == 30
    conn.close()


def sample_events(first: int, count: int, device: str = "dev-1") -> list[Event]:
    return [
        Event(seq, device, bytes(16), seq, seq * 10, ClockSource.GPS, (Reading("t", "Cel", seq),))
        for seq in range(first, first + count)
    ]


async def test_ids_of_a_rolled_back_group_are_not_reused(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "events.sqlite") as store:
        # A caller that breaks the validated= promise: the engine refuses the 65-bit
        # wall_ns after the new tenant, gateway and device rows were made in the transaction.
        bad = replace(sample_events(1, 1, device="dev-new")[0], wall_ns=2**64)
        with pytest.raises(OverflowError):
            await store.store_batch("new-tenant", "gw-new", [bad], 1, validated=True)
        good = sample_events(1, 3, device="dev-new")
        result = await store.store_batch("new-tenant", "gw-new", good, 1)
        assert (result.stored, result.acked_seq) == (3, 3)
        page = await store.query_events("new-tenant", device="dev-new", gateway="gw-new")
        assert [s.event for s in page.events] == good
        assert await store.count_events("new-tenant") == 3


async def test_codec_validated_batch_is_stored_exactly(tmp_path: Path) -> None:
    events = sample_events(1, 50)
    decoded = codec.decode(codec.encode(Batch(tuple(events))))
    assert isinstance(decoded, Batch)
    async with open_sqlite_store(tmp_path / "events.sqlite") as store:
        result = await store.store_batch("acme", "gw-1", decoded.events, 7, validated=True)
        assert (result.stored, result.duplicates) == (50, 0)
        page = await store.query_events("acme", device="dev-1", limit=100)
    assert [s.event for s in page.events] == events
    assert {(s.tenant, s.gateway, s.received_ns) for s in page.events} == {("acme", "gw-1", 7)}


async def test_unknown_names_give_empty_results_not_errors(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "events.sqlite") as store:
        await store.store_batch("acme", "gw-1", sample_events(1, 3), 1)
        for filters in ({"device": "nope"}, {"gateway": "nope"}):
            page = await store.query_events("acme", **filters)  # type: ignore[arg-type]
            assert page.events == () and page.next_cursor is None
        assert (await store.query_events("nobody")).events == ()
        assert await store.count_events("nobody") == 0
        assert await store.acked_seq("nobody", "gw-1") == 0


async def test_device_time_query_is_one_primary_key_range(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    async with open_sqlite_store(path) as store:
        await store.store_batch("acme", "gw-1", sample_events(1, 20), 1)
    conn = connect_reader(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)  # the SQL the store really runs, values bound
    after = CursorPosition(50, "gw-1", 5)
    query = ops.PageQuery("acme", "dev-1", None, 0, 150)
    page = ops.select_page(conn, ops.Names(), query, after, 5)
    assert [s.event.seq for s in page] == [6, 7, 8, 9, 10]
    (select,) = [sql for sql in statements if sql.startswith("SELECT e.")]
    plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + select))
    conn.close()
    # The clustered key itself answers the range; only rows with equal wall_ns are sorted.
    assert (
        "SEARCH e USING PRIMARY KEY (tenant_id=? AND device_id=? AND wall_ns>? AND wall_ns<?)"
        in plan
    )
    assert "RIGHT PART OF ORDER BY" in plan


async def test_bytes_are_bound_as_the_same_blob_through_the_identity_adapter(
    tmp_path: Path,
) -> None:
    events = sample_events(1, 3)
    async with open_sqlite_store(tmp_path / "events.sqlite") as store:
        await store.store_batch("acme", "gw-1", events, 1)
        page = await store.query_events("acme", device="dev-1")
    assert [s.event for s in page.events] == events
    # Opening a store registered the adapter: it hands sqlite3 the very same object.
    adapter = sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)]
    value = b"\x00\xff\x80 boot"
    assert adapter(value) is value
    with sqlite3.connect(tmp_path / "events.sqlite") as conn:
        kinds = conn.execute(
            "SELECT DISTINCT typeof(boot_id), typeof(readings) FROM events"
        ).fetchall()
        bound = conn.execute("SELECT ?, typeof(?)", (value, value)).fetchone()
    conn.close()
    assert kinds == [("blob", "blob")]
    assert bound == (value, "blob")
