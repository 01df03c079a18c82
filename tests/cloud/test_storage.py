"""The SQLite event store against the EventStore contract (cloud.storage.base)."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
import trio
import trio.testing

from cloud.storage import (
    EventStore,
    InvalidCursor,
    InvalidEvent,
    InvalidQuery,
    SchemaError,
    SqliteEventStore,
    StorageClosed,
    StoredEvent,
    open_sqlite_store,
)
from cloud.storage.sqlite_schema import MIGRATIONS, migrate, schema_version
from protocol.events import ClockSource, Event, Reading, Value

BOOT = bytes(range(16))


def make_event(seq: int, *, device: str = "dev-1", wall_ns: int | None = None) -> Event:
    return Event(
        seq=seq,
        device=device,
        boot_id=BOOT,
        mono_ns=seq * 7,
        wall_ns=1_000 * seq if wall_ns is None else wall_ns,
        clock=ClockSource.NTP,
        readings=(Reading("temperature", "Cel", 20.0 + seq),),
    )


def strict(value: Value) -> tuple[str, str]:
    """A key that tells True from 1 from 1.0 and -0.0 from 0.0 (== does not)."""
    return type(value).__name__, repr(value)


def strict_event(event: Event) -> tuple[object, ...]:
    readings = tuple((r.name, r.unit, strict(r.value)) for r in event.readings)
    fields = (event.seq, event.device, event.boot_id, event.mono_ns, event.wall_ns)
    return (*fields, type(event.clock).__name__, int(event.clock), readings)


async def all_events(
    store: EventStore, tenant: str, limit: int = 1000, **filters: str | int
) -> list[StoredEvent]:
    """Follow next_cursor to the end, collecting every page's events."""
    found: list[StoredEvent] = []
    cursor: str | None = None
    while True:
        page = await store.query_events(tenant, limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        found += page.events
        if page.next_cursor is None:
            return found
        assert len(page.events) == limit  # only a full page may promise another
        cursor = page.next_cursor


def order_key(stored: StoredEvent) -> tuple[int, str, int]:
    return stored.event.wall_ns, stored.gateway, stored.event.seq


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteEventStore]:
    async with open_sqlite_store(tmp_path / "events.db") as opened:
        yield opened


# --- round trip -------------------------------------------------------------------------

EXACT_VALUES: list[Value] = [
    True,
    False,
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    2**200,  # beyond 64 bits: must still come back as this exact int
    1.0,
    -0.0,
    0.1,
    math.inf,
    -math.inf,
    5e-324,
    "",
    "héllo ☃ \x00 end",
    b"",
    b"\x00\xff\x01",
]


async def test_round_trip_keeps_every_value_and_its_type(store: SqliteEventStore) -> None:
    readings = tuple(Reading(f"r{i}", "unit", v) for i, v in enumerate(EXACT_VALUES))
    nan = Reading("nan", "", math.nan)
    event = Event(7, "gps-1", BOOT, 123, -5, ClockSource.GPS, (*readings, nan))

    result = await store.store_batch("acme", "gw-1", [event], received_ns=999)

    assert (result.stored, result.duplicates, result.acked_seq) == (1, 0, 7)
    page = await store.query_events("acme")
    assert page.next_cursor is None
    [stored] = page.events
    assert (stored.tenant, stored.gateway, stored.received_ns) == ("acme", "gw-1", 999)
    assert stored.event.clock is ClockSource.GPS
    *back, back_nan = stored.event.readings
    assert [strict_event(Event(7, "gps-1", BOOT, 123, -5, ClockSource.GPS, tuple(back)))] == [
        strict_event(Event(7, "gps-1", BOOT, 123, -5, ClockSource.GPS, readings))
    ]
    assert isinstance(back_nan.value, float) and math.isnan(back_nan.value)


async def test_empty_batch_stores_nothing_and_reports_current_mark(store: SqliteEventStore) -> None:
    result = await store.store_batch("acme", "gw-1", [], received_ns=1)
    assert (result.stored, result.duplicates, result.acked_seq) == (0, 0, 0)
    await store.store_batch("acme", "gw-1", [make_event(4)], received_ns=1)
    result = await store.store_batch("acme", "gw-1", [], received_ns=1)
    assert result.acked_seq == 4


# --- deduplication and acked_seq --------------------------------------------------------


async def test_same_batch_twice_is_counted_as_duplicates_and_not_doubled(
    store: SqliteEventStore,
) -> None:
    batch = [make_event(seq) for seq in range(1, 11)]
    first = await store.store_batch("acme", "gw-1", batch, received_ns=100)
    # Same (gateway, seq) keys, different content and arrival: must not touch the stored copy.
    altered = [
        Event(e.seq, "other", BOOT, 0, 0, ClockSource.NONE, (Reading("x", "", "changed"),))
        for e in batch
    ]
    second = await store.store_batch("acme", "gw-1", altered, received_ns=200)

    assert (first.stored, first.duplicates) == (10, 0)
    assert (second.stored, second.duplicates) == (0, 10)
    assert await store.count_events("acme") == 10
    stored = await all_events(store, "acme")
    assert [strict_event(s.event) for s in stored] == [strict_event(e) for e in batch]
    assert {s.received_ns for s in stored} == {100}
    stats = store.statistics()
    assert (stats.events_stored, stats.duplicates) == (10, 10)


async def test_seq_repeated_within_a_batch_is_stored_once(store: SqliteEventStore) -> None:
    result = await store.store_batch(
        "acme", "gw-1", [make_event(1), make_event(2), make_event(1)], received_ns=1
    )
    assert (result.stored, result.duplicates) == (2, 1)
    assert await store.count_events("acme") == 2


async def test_dedup_is_per_gateway(store: SqliteEventStore) -> None:
    await store.store_batch("acme", "gw-1", [make_event(1)], received_ns=1)
    result = await store.store_batch("acme", "gw-2", [make_event(1)], received_ns=1)
    assert (result.stored, result.duplicates) == (1, 0)


async def test_acked_seq_is_the_highest_seq_ever_stored(store: SqliteEventStore) -> None:
    assert await store.acked_seq("acme", "gw-1") == 0
    first = await store.store_batch("acme", "gw-1", [make_event(s) for s in (3, 1, 5)], 1)
    assert first.acked_seq == 5
    # A late resend of lower seqs must not move the mark backwards.
    late = await store.store_batch("acme", "gw-1", [make_event(2)], received_ns=2)
    assert late.acked_seq == 5
    assert await store.acked_seq("acme", "gw-1") == 5
    assert await store.acked_seq("acme", "gw-2") == 0
    assert (await store.store_batch("acme", "gw-2", [make_event(9)], 3)).acked_seq == 9
    assert await store.acked_seq("acme", "gw-1") == 5


# --- tenant confinement -----------------------------------------------------------------


async def test_queries_never_return_another_tenants_events(store: SqliteEventStore) -> None:
    await store.store_batch("acme", "gw-a", [make_event(s) for s in range(1, 6)], 1)
    await store.store_batch("globex", "gw-g", [make_event(s) for s in range(1, 4)], 1)

    acme = await all_events(store, "acme", limit=2)
    globex = await all_events(store, "globex")
    assert {(s.tenant, s.gateway) for s in acme} == {("acme", "gw-a")}
    assert {(s.tenant, s.gateway) for s in globex} == {("globex", "gw-g")}
    assert (len(acme), len(globex)) == (5, 3)
    assert await store.count_events("acme") == 5
    assert await store.count_events("globex") == 3
    assert await store.count_events("nobody") == 0
    # Naming the other tenant's gateway as a filter still yields nothing.
    assert (await store.query_events("acme", gateway="gw-g")).events == ()


async def test_the_same_gateway_id_in_two_tenants_is_two_gateways(
    store: SqliteEventStore,
) -> None:
    # Gateway ids are unique within a tenant only: (tenant, gateway, seq) is the identity.
    await store.store_batch("acme", "gw-1", [make_event(1), make_event(2)], received_ns=1)
    result = await store.store_batch("globex", "gw-1", [make_event(1)], received_ns=1)
    assert (result.stored, result.duplicates, result.acked_seq) == (1, 0, 1)
    assert await store.count_events("globex") == 1
    assert await store.acked_seq("acme", "gw-1") == 2
    assert await store.acked_seq("globex", "gw-1") == 1


async def test_cursor_of_one_tenant_is_refused_for_another(store: SqliteEventStore) -> None:
    await store.store_batch("acme", "gw-a", [make_event(s) for s in range(1, 6)], 1)
    page = await store.query_events("acme", limit=2)
    assert page.next_cursor is not None
    with pytest.raises(InvalidCursor):
        await store.query_events("globex", limit=2, cursor=page.next_cursor)
    with pytest.raises(InvalidCursor):  # same tenant, different filter: a different query
        await store.query_events("acme", device="dev-1", limit=2, cursor=page.next_cursor)


# --- paging and filters -----------------------------------------------------------------


def fleet_events() -> dict[str, list[Event]]:
    """Three gateways, four devices, many equal wall times (ties broken by gateway, seq)."""
    return {
        gw: [
            make_event(seq, device=f"dev-{seq % 4}", wall_ns=(seq * 7 + g) % 50)
            for seq in range(1, 201)
        ]
        for g, gw in enumerate(("gw-b", "gw-a", "gw-c"))
    }


async def store_fleet(store: EventStore) -> list[tuple[int, str, int]]:
    keys = []
    for gw, events in fleet_events().items():
        await store.store_batch("acme", gw, events, received_ns=1)
        keys += [(e.wall_ns, gw, e.seq) for e in events]
    return sorted(keys)


@pytest.mark.parametrize("limit", [1, 37, 600, 1000])
async def test_paging_returns_every_event_once_in_order(
    store: SqliteEventStore, limit: int
) -> None:
    expected = await store_fleet(store)
    found = await all_events(store, "acme", limit=limit)
    assert [order_key(s) for s in found] == expected


async def test_paging_with_device_filter(store: SqliteEventStore) -> None:
    expected = [k for k in await store_fleet(store) if k[2] % 4 == 2]
    found = await all_events(store, "acme", limit=13, device="dev-2")
    assert [order_key(s) for s in found] == expected
    assert {s.event.device for s in found} == {"dev-2"}


async def test_paging_with_gateway_filter(store: SqliteEventStore) -> None:
    expected = [k for k in await store_fleet(store) if k[1] == "gw-c"]
    found = await all_events(store, "acme", limit=9, gateway="gw-c")
    assert [order_key(s) for s in found] == expected


async def test_time_range_is_half_open(store: SqliteEventStore) -> None:
    keys = await store_fleet(store)
    expected = [k for k in keys if 10 <= k[0] < 20]
    found = await all_events(store, "acme", limit=11, since_ns=10, until_ns=20)
    assert [order_key(s) for s in found] == expected
    assert found[0].event.wall_ns == 10 and found[-1].event.wall_ns == 19
    only_since = await all_events(store, "acme", since_ns=45)
    assert [order_key(s) for s in only_since] == [k for k in keys if k[0] >= 45]
    only_until = await all_events(store, "acme", until_ns=3)
    assert [order_key(s) for s in only_until] == [k for k in keys if k[0] < 3]


async def test_events_added_between_pages_do_not_repeat_earlier_ones(
    store: SqliteEventStore,
) -> None:
    await store.store_batch("acme", "gw-1", [make_event(s) for s in range(1, 11)], 1)
    first = await store.query_events("acme", limit=5)
    # One lands before the cursor (already "read" territory), one after it.
    await store.store_batch(
        "acme", "gw-2", [make_event(1, wall_ns=0), make_event(2, wall_ns=10**9)], 2
    )
    rest = await all_events_from(store, first.next_cursor)
    seen = [order_key(s) for s in (*first.events, *rest)]
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert ("gw-2", 2) in {(k[1], k[2]) for k in seen}


async def all_events_from(store: EventStore, cursor: str | None) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    while cursor is not None:
        page = await store.query_events("acme", limit=5, cursor=cursor)
        found += page.events
        cursor = page.next_cursor
    return found


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not a cursor",
        "AAAA",
        "!!!!",
        "é",
        "A" * 5000,
        "AQAAAAAAAAPqAAAAAAAAAAJnMTTzrlr9FtEoesJZcUZg7S8",  # well-formed, wrong key
    ],
    ids=["empty", "spaces", "short", "alphabet", "non-ascii", "huge", "foreign-key"],
)
async def test_malformed_cursor_raises_invalid_cursor(store: SqliteEventStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        await store.query_events("acme", cursor=cursor)


async def test_every_single_character_change_to_a_cursor_is_detected(
    store: SqliteEventStore,
) -> None:
    await store.store_batch("acme", "gw-1", [make_event(s) for s in range(1, 4)], 1)
    cursor = (await store.query_events("acme", limit=1)).next_cursor
    assert cursor is not None
    for i, char in enumerate(cursor):
        tampered = cursor[:i] + ("B" if char != "B" else "C") + cursor[i + 1 :]
        with pytest.raises(InvalidCursor):
            await store.query_events("acme", limit=1, cursor=tampered)


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_limit_out_of_range_is_refused(store: SqliteEventStore, limit: int) -> None:
    with pytest.raises(InvalidQuery):
        await store.query_events("acme", limit=limit)


async def test_time_bound_beyond_64_bits_is_refused(store: SqliteEventStore) -> None:
    with pytest.raises(InvalidQuery):
        await store.query_events("acme", since_ns=2**64)


# --- invalid input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        make_event(-1),
        make_event(2**63),
        make_event(1, wall_ns=2**63),
        make_event(1, device="bad \udc80 surrogate"),
        Event(1, "d", BOOT, 0, 0, ClockSource.NTP, (Reading("x", "", [1]),)),  # type: ignore[arg-type]
    ],
    ids=["negative-seq", "huge-seq", "huge-wall", "surrogate", "list-value"],
)
async def test_unstorable_event_is_refused_and_nothing_of_its_batch_stored(
    store: SqliteEventStore, event: Event
) -> None:
    with pytest.raises(InvalidEvent):
        await store.store_batch("acme", "gw-1", [make_event(1), event], received_ns=1)
    assert await store.count_events("acme") == 0
    assert await store.acked_seq("acme", "gw-1") == 0


# --- group commit and concurrency -------------------------------------------------------


async def test_concurrent_batches_share_commits(store: SqliteEventStore) -> None:
    callers = 40
    results: dict[int, tuple[int, int]] = {}

    async def send(i: int) -> None:
        batch = [make_event(seq) for seq in range(1, 51)]
        result = await store.store_batch("acme", f"gw-{i}", batch, received_ns=i)
        results[i] = (result.stored, result.acked_seq)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(callers):
                nursery.start_soon(send, i)

    assert results == dict.fromkeys(range(callers), (50, 50))
    assert await store.count_events("acme") == callers * 50
    stats = store.statistics()
    assert stats.batches == callers
    assert stats.commits < callers
    assert stats.largest_group > 1
    assert stats.queued == 0


async def test_queries_do_not_wait_behind_a_running_commit(store: SqliteEventStore) -> None:
    await store.store_batch("acme", "gw-1", [make_event(1)], received_ns=1)
    release = threading.Event()
    entered = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def hold_writer(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the write lock, as a long commit would hold it
        token.run_sync_soon(entered.set)
        release.wait(10)
        conn.execute("ROLLBACK")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store._writer.run, hold_writer)
            await entered.wait()
            assert await store.count_events("acme") == 1
            assert len((await store.query_events("acme")).events) == 1
            release.set()


async def test_cancelled_queued_caller_stores_nothing(store: SqliteEventStore) -> None:
    release = threading.Event()
    entered = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def hold_writer(conn: sqlite3.Connection) -> None:
        token.run_sync_soon(entered.set)
        release.wait(10)

    async def queued_caller(scope: trio.CancelScope) -> None:
        with scope:
            await store.store_batch("acme", "gw-queued", [make_event(1)], received_ns=1)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store._writer.run, hold_writer)
            await entered.wait()
            # gw-lead becomes the leader: its commit is handed to the (busy) writer.
            nursery.start_soon(store.store_batch, "acme", "gw-lead", [make_event(1)], 1)
            await trio.testing.wait_all_tasks_blocked()
            scope = trio.CancelScope()
            nursery.start_soon(queued_caller, scope)
            await trio.testing.wait_all_tasks_blocked()
            assert store.statistics().queued == 1
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert store.statistics().queued == 0
            release.set()
    assert await store.acked_seq("acme", "gw-lead") == 1
    assert await store.acked_seq("acme", "gw-queued") == 0
    assert await store.count_events("acme") == 1


# --- lifecycle and schema ---------------------------------------------------------------


async def test_data_and_cursors_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with open_sqlite_store(path) as store:
        await store.store_batch("acme", "gw-1", [make_event(s) for s in range(1, 21)], 5)
        cursor = (await store.query_events("acme", limit=10)).next_cursor
    async with open_sqlite_store(path) as store:
        assert await store.count_events("acme") == 20
        assert await store.acked_seq("acme", "gw-1") == 20
        page = await store.query_events("acme", limit=10, cursor=cursor)
        assert [s.event.seq for s in page.events] == list(range(11, 21))
        again = await store.store_batch("acme", "gw-1", [make_event(20)], 6)
        assert again.duplicates == 1


async def test_closed_store_refuses_calls_and_close_is_idempotent(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "events.db") as store:
        pass
    await store.aclose()
    with pytest.raises(StorageClosed):
        await store.store_batch("acme", "gw-1", [make_event(1)], 1)
    with pytest.raises(StorageClosed):
        await store.query_events("acme")
    with pytest.raises(StorageClosed):
        await store.acked_seq("acme", "gw-1")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    async with open_sqlite_store(path):
        pass
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) + 1,))
    conn.close()
    with pytest.raises(SchemaError):
        async with open_sqlite_store(path):
            pass


def test_migration_hook_applies_each_step_once(tmp_path: Path) -> None:
    applied: list[int] = []

    def add_column(conn: sqlite3.Connection) -> None:
        applied.append(1)
        conn.execute("ALTER TABLE events ADD COLUMN note TEXT")

    conn = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    steps = [*MIGRATIONS, add_column]
    assert migrate(conn, MIGRATIONS) == 0
    assert migrate(conn, steps) == len(MIGRATIONS)
    assert migrate(conn, steps) == len(steps)
    assert applied == [1]
    assert schema_version(conn) == len(steps)
    columns: Iterable[tuple[object, ...]] = conn.execute("PRAGMA table_info(events)")
    assert "note" in {row[1] for row in columns}
    conn.close()


def test_failed_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    conn = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    migrate(conn, MIGRATIONS)
    with pytest.raises(RuntimeError):
        migrate(conn, [*MIGRATIONS, broken])
    assert schema_version(conn) == len(MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables
    conn.close()


async def test_store_runs_in_wal_mode_with_full_sync(store: SqliteEventStore) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )

    assert await store._writer.run(pragmas) == ("wal", 2)  # 2 = FULL (SQLite docs)
