"""Micro-benchmark of the event store: ``python -m bench.storage [--events N] [--dir PATH]``.

Prints three tables (it measures; it asserts nothing and is not a test):

* **store**: events/s through ``store_batch`` with 500-event batches, for 1 and 8 concurrent
  writers, with ``synchronous=FULL`` (the default: acknowledged means power-loss safe) and
  ``NORMAL`` (process-crash safe only), plus how many commits the group commit needed.
* **small**: the same with 1-event batches, where the commit (its fsync) is the cost, to
  show what group commit buys when many links each send a little.
* **schema**: raw single-thread insert rate of the events table with and without its two
  secondary indexes, and with readings as a CBOR blob vs JSON text, to justify the schema
  in ``cloud/storage/sqlite_schema.py``.
* **dispatch**: per-call overhead of running a job on a worker thread with
  ``trio.to_thread.run_sync`` + ``CapacityLimiter(1)`` vs a long-lived thread fed by a queue.

Numbers depend on the disk's fsync latency far more than on the CPU; run it on the target.
"""

from __future__ import annotations

import argparse
import base64
import json
import queue
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from cloud.storage import open_sqlite_store
from cloud.storage.codec import encode_readings
from cloud.storage.sqlite_schema import Synchronous, connect_writer
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
    path: Path, writers: int, events: int, sync: Synchronous, batch_events: int = BATCH_EVENTS
) -> str:
    batches_each = max(1, events // (writers * batch_events))
    prepared = [make_batch(1 + i * batch_events)[:batch_events] for i in range(batches_each)]
    async with open_sqlite_store(path, synchronous=sync) as store:

        async def writer(gateway: str) -> None:
            for batch in prepared:
                await store.store_batch("bench", gateway, batch, received_ns=0)

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(writers):
                nursery.start_soon(writer, f"gw-{i}")
        elapsed = time.perf_counter() - start
        stats = store.statistics()
    total = writers * batches_each * batch_events
    return (
        f"{sync:<6} writers={writers}  {total / elapsed:>10,.0f} events/s  "
        f"({stats.batches} batches in {stats.commits} commits, "
        f"{elapsed / stats.batches * 1e3 * writers:.2f} ms per store_batch)"
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
        conn.execute("DROP INDEX events_by_device")
        conn.execute("DROP INDEX events_by_time")
    batches = [make_batch(1 + i * BATCH_EVENTS) for i in range(20)]
    start = time.perf_counter()
    for batch in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            list(rows(batch, codec)),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(batches) * BATCH_EVENTS / elapsed


def rows(
    batch: list[Event], codec: Callable[[tuple[Reading, ...]], bytes]
) -> Iterator[tuple[object, ...]]:
    for e in batch:
        yield ("gw", e.seq, "bench", e.device, e.wall_ns, e.mono_ns, e.boot_id, 1, 0,
               codec(e.readings))  # fmt: skip


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
