"""Micro-benchmark of the event store: ``python -m bench.storage [--events N] [--dir PATH]``.

Prints these tables (it measures; it asserts nothing and is not a test):

* **store**: events/s through ``store_batch`` with 500-event batches, for 1 and 8 concurrent
  writers, with ``synchronous=FULL`` (the default: acknowledged means power-loss safe) and
  ``NORMAL`` (process-crash safe only), plus how many commits the group commit needed and
  the process CPU per event; and once with ``validated=True`` (what the link does).
* **small**: the same with 1-event batches, where the commit (its fsync) is the cost, to
  show what group commit buys when many links each send a little.
* **schema**: raw single-thread insert rate of the events table (the store's own rows, with
  integer ids) with and without its two secondary indexes, and with readings as a CBOR blob
  vs JSON text, to justify the schema in ``cloud/storage/sqlite_schema.py``.
* **layouts**: the same insert, rows built beforehand, into schema version 1 (the first
  release: text keys, clustered by identity) and version 2 (the current one), with the CPU
  per event, which a shared machine distorts less than the rate.
* **readings blob**: ``cbor2.dumps`` of the readings vs the store's own encoder (same bytes).
* **dispatch**: per-call overhead of running a job on a worker thread with
  ``trio.to_thread.run_sync`` + ``CapacityLimiter(1)`` vs a long-lived thread fed by a queue.

Numbers depend on the disk's fsync latency far more than on the CPU; run it on the target.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import queue
import sqlite3
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import cbor2
import trio

from cloud.storage import open_sqlite_store
from cloud.storage import sqlite_ops as ops
from cloud.storage.codec import encode_readings
from cloud.storage.sqlite_schema import (
    EVENT_INDEXES,
    MIGRATIONS,
    Synchronous,
    connect_writer,
    migrate,
)
from protocol.events import ClockSource, Event, Reading, Value

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

BATCH_EVENTS: Final = 500
DISPATCH_CALLS: Final = 5_000
SMALL_CALLS: Final = 800
SYNC_MODES: Final[tuple[Synchronous, ...]] = ("FULL", "NORMAL")


def make_batch(first_seq: int) -> list[Event]:
    """A batch shaped like a real sensor's: a float, an int, a bool and a short string."""
    return [
        Event(
            seq=seq,
            device=f"dev-{seq % 16}",
            boot_id=bytes(16),
            mono_ns=seq * 1_000_000,
            wall_ns=1_700_000_000_000_000_000 + seq * 1_000_000,
            clock=ClockSource.NTP,
            readings=(
                Reading("temperature", "Cel", 21.5 + seq % 10),
                Reading("rssi", "dBW", -60 - seq % 20),
                Reading("moving", "", seq % 2 == 0),
                Reading("fw", "", "1.4.2"),
            ),
        )
        for seq in range(first_seq, first_seq + BATCH_EVENTS)
    ]


# --- store ------------------------------------------------------------------------------


async def store_rate(
    path: Path,
    writers: int,
    events: int,
    sync: Synchronous,
    batch_events: int = BATCH_EVENTS,
    *,
    validated: bool = False,
) -> str:
    batches_each = max(1, events // (writers * batch_events))
    prepared = [make_batch(1 + i * batch_events)[:batch_events] for i in range(batches_each)]
    async with open_sqlite_store(path, synchronous=sync) as store:

        async def writer(gateway: str) -> None:
            for batch in prepared:
                await store.store_batch("bench", gateway, batch, received_ns=0, validated=validated)

        start = time.perf_counter()
        cpu_start = time.process_time()
        async with trio.open_nursery() as nursery:
            for i in range(writers):
                nursery.start_soon(writer, f"gw-{i}")
        elapsed = time.perf_counter() - start
        # Process CPU (all threads) per event: on a shared machine the rate follows the
        # other workloads, the CPU cost much less so.
        cpu_us = (time.process_time() - cpu_start) / (writers * batches_each * batch_events) * 1e6
        stats = store.statistics()
    total = writers * batches_each * batch_events
    label = " validated" if validated else ""
    return (
        f"{sync:<6} writers={writers}{label}  {total / elapsed:>10,.0f} events/s  "
        f"({stats.batches} batches in {stats.commits} commits, "
        f"{elapsed / stats.batches * 1e3 * writers:.2f} ms per store_batch, "
        f"{cpu_us:.1f} µs CPU per event)"
    )


# --- schema -----------------------------------------------------------------------------


def json_readings(readings: tuple[Reading, ...]) -> bytes:
    """JSON needs a tag for bytes (and would for any other non-JSON type) to round-trip."""

    def encode(value: Value) -> object:
        if isinstance(value, bytes):
            return {"b64": base64.b64encode(value).decode()}
        return value

    return json.dumps([[r.name, r.unit, encode(r.value)] for r in readings]).encode()


def schema_rate(
    path: Path, *, indexes: bool, codec: Callable[[tuple[Reading, ...]], bytes]
) -> float:
    conn = connect_writer(path, "FULL")
    if not indexes:
        for name in EVENT_INDEXES:
            conn.execute(f"DROP INDEX {name}")
    names = ops.Names()
    conn.execute("BEGIN IMMEDIATE")
    tenant_id = names.tenant(conn, "bench")
    gateway_id = names.gateway(conn, tenant_id, "gw")
    devices = {f"dev-{i}": names.device(conn, tenant_id, f"dev-{i}") for i in range(16)}
    conn.execute("COMMIT")
    batches = [make_batch(1 + i * BATCH_EVENTS) for i in range(20)]
    start = time.perf_counter()
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(ops.INSERT_EVENT, list(rows(batch, codec, tenant_id, gateway_id, devices)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(batches) * BATCH_EVENTS / elapsed


def layout_rate(path: Path, layout: str) -> tuple[float, float]:
    """Insert rate and CPU per event of schema version 1 (text keys, clustered by identity,
    the first release) or 2 (the current one), the rows built before the clock starts."""
    conn = connect_writer(path, "FULL") if layout == "v2" else _connect_v1(path)
    batches = [make_batch(1 + i * BATCH_EVENTS) for i in range(20)]
    if layout == "v2":
        names = ops.Names()
        conn.execute("BEGIN IMMEDIATE")
        tenant_id = names.tenant(conn, "bench")
        gateway_id = names.gateway(conn, tenant_id, "gw")
        devices = {f"dev-{i}": names.device(conn, tenant_id, f"dev-{i}") for i in range(16)}
        conn.execute("COMMIT")
        sql = ops.INSERT_EVENT
        prepared = [list(rows(b, encode_readings, tenant_id, gateway_id, devices)) for b in batches]
    else:
        sql = "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        prepared = [
            [("gw", e.seq, "bench", e.device, e.wall_ns, e.mono_ns, e.boot_id, 1, 0,
              encode_readings(e.readings)) for e in b]
            for b in batches
        ]  # fmt: skip
    start = time.perf_counter()
    cpu_start = time.process_time()
    for batch_rows in prepared:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, batch_rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    conn.close()
    events = len(batches) * BATCH_EVENTS
    return events / elapsed, cpu / events * 1e6


def _connect_v1(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    migrate(conn, MIGRATIONS[:1])  # the first release's schema, exactly
    return conn


def cbor2_readings(readings: tuple[Reading, ...]) -> bytes:
    """How the store encoded readings before its own encoder (the same bytes)."""
    return cbor2.dumps([[r.name, r.unit, r.value] for r in readings])


def encode_us(encode: Callable[[tuple[Reading, ...]], bytes]) -> float:
    events = [e for i in range(10) for e in make_batch(1 + i * BATCH_EVENTS)]
    best = math.inf
    for _ in range(5):  # the best of 5: the cost itself, not the neighbours' bursts
        start = time.perf_counter()
        for e in events:
            encode(e.readings)
        best = min(best, time.perf_counter() - start)
    return best / len(events) * 1e6


def rows(
    batch: list[Event],
    codec: Callable[[tuple[Reading, ...]], bytes],
    tenant_id: int,
    gateway_id: int,
    devices: dict[str, int],
) -> Iterator[tuple[object, ...]]:
    """Rows in ``INSERT_EVENT`` order, as the store builds them."""
    for e in batch:
        yield (tenant_id, devices[e.device], e.wall_ns, gateway_id, e.seq, e.mono_ns,
               e.boot_id, 1, 0, codec(e.readings))  # fmt: skip


# --- dispatch ---------------------------------------------------------------------------


async def dispatch_to_thread() -> float:
    limiter = trio.CapacityLimiter(1)
    start = time.perf_counter()
    for _ in range(DISPATCH_CALLS):
        await trio.to_thread.run_sync(int, limiter=limiter)
    return (time.perf_counter() - start) / DISPATCH_CALLS * 1e6


async def dispatch_dedicated() -> float:
    jobs: queue.SimpleQueue[trio.Event | None] = queue.SimpleQueue()
    token = trio.lowlevel.current_trio_token()

    def loop() -> None:
        while (done := jobs.get()) is not None:
            token.run_sync_soon(done.set)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    start = time.perf_counter()
    for _ in range(DISPATCH_CALLS):
        done = trio.Event()
        jobs.put(done)
        await done.wait()
    elapsed = time.perf_counter() - start
    jobs.put(None)
    return elapsed / DISPATCH_CALLS * 1e6


# --- main -------------------------------------------------------------------------------


async def run(directory: Path, events: int) -> None:
    print(f"store_batch, {BATCH_EVENTS}-event batches, ~{events:,} events per run")
    for sync in SYNC_MODES:
        for writers in (1, 8):
            path = directory / f"store-{sync}-{writers}.db"
            print("  " + await store_rate(path, writers, events, sync))
    # What skipping the store's own check is worth when the codec already validated.
    path = directory / "store-validated.db"
    print("  " + await store_rate(path, 8, events, "FULL", validated=True))
    print(f"store_batch, 1-event batches (commit-bound), {SMALL_CALLS} calls per run")
    for sync in SYNC_MODES:
        for writers in (1, 8):
            path = directory / f"small-{sync}-{writers}.db"
            print("  " + await store_rate(path, writers, SMALL_CALLS, sync, batch_events=1))
    print("schema variants (one thread, 20 x 500-event transactions, synchronous=FULL)")
    codecs: dict[str, Callable[[tuple[Reading, ...]], bytes]] = {
        "cbor": encode_readings,
        "json": json_readings,
    }
    for name, codec in codecs.items():
        for indexes in (True, False):
            path = directory / f"schema-{name}-{indexes}.db"
            rate = await trio.to_thread.run_sync(
                partial(schema_rate, path, indexes=indexes, codec=codec)
            )
            label = "with indexes" if indexes else "no indexes"
            print(f"  {name:<5} {label:<13} {rate:>10,.0f} events/s")
    print("layouts (one thread, 20 x 500-event transactions, synchronous=FULL, rows prebuilt)")
    for layout in ("v1", "v2"):
        path = directory / f"layout-{layout}.db"
        rate, cpu_us = await trio.to_thread.run_sync(partial(layout_rate, path, layout))
        print(f"  {layout}  {rate:>10,.0f} events/s  {cpu_us:5.1f} µs CPU per event")
    print("readings blob, 4 readings per event")
    for name, encode in (("cbor2.dumps", cbor2_readings), ("encode_readings", encode_readings)):
        print(f"  {name:<16} {encode_us(encode):5.2f} µs per event")
    print(f"thread dispatch ({DISPATCH_CALLS:,} no-op calls)")
    print(
        f"  trio.to_thread.run_sync + CapacityLimiter(1)  {await dispatch_to_thread():6.1f} us/call"
    )
    print(
        f"  dedicated thread + queue                      {await dispatch_dedicated():6.1f} us/call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=40_000, help="events per store run")
    parser.add_argument("--dir", type=Path, help="where to put the databases (default: a temp dir)")
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        trio.run(run, args.dir, args.events)
        return
    with tempfile.TemporaryDirectory() as directory:
        trio.run(run, Path(directory), args.events)


if __name__ == "__main__":
    main()
