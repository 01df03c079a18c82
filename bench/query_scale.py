"""Query latency against store size: one device's readings over a day, a page of 1,000.

``python -m bench.query_scale --events 1000000 10000000`` fills a fresh SQLite event store
per size, then times ``query_events`` through the real store (reader thread, cursor signing,
row decoding) for random (device, day) pairs, first page and the page after it. It reports
p50/p99 per size, cold and warm, and the B-tree depth of the events table, which a
device-day query descends once.

* **Fill.** The store's own schema (``connect_writer`` runs the real migrations) and its own
  id dictionaries (:class:`cloud.storage.sqlite_ops.Names`); the rows are the ones the store
  writes (:data:`cloud.storage.sqlite_ops.INSERT_EVENT`), generated in primary-key order.
  Because the fill is set-up and not what is measured, it takes the bulk-load shortcuts
  SQLite offers: ``journal_mode=OFF`` and ``synchronous=OFF`` during the fill only, the
  secondary indexes dropped and rebuilt afterwards from the schema's own DDL
  (:data:`cloud.storage.sqlite_schema.EVENT_INDEXES`), then WAL mode restored. The file
  that results is the one the store would have written event by event.
* **Shape.** ``--per-device-day`` events per device per day (default 10,000: one reading
  every 8.6 s) over ``--days`` days; the number of devices grows with the size (one gateway
  per device), so a device-day holds the same number of events at every size.
* **Fill once, measure apart.** ``--store FILE`` keeps the store: a later run with the same
  ``--store`` (and one ``--events`` size) measures it without filling it again, so the fill
  can run under ``nice`` and the measurement at normal priority.
* **Cold and warm.** Before the cold pass the file's pages are dropped from the OS page cache
  (``posix_fadvise(DONTNEED)``, which touches only this file) and the store is opened
  afresh; the warm pass then repeats the same queries with those pages cached.

Results go to ``bench/results/query_scale.json``; it asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import trio

from bench.record import command_line
from bench.stats import percentile
from bench.ws_choice import machine_info
from cloud.storage import sqlite_ops as ops
from cloud.storage.codec import encode_readings
from cloud.storage.sqlite import open_sqlite_store
from cloud.storage.sqlite_schema import EVENT_INDEXES, connect_writer
from protocol.events import ClockSource, Reading

RESULTS: Final = Path("bench/results/query_scale.json")
DAY_NS: Final = 86_400 * 10**9
START_NS: Final = 1_780_000_000 * 10**9
TENANT: Final = "bench"
#: Rows per bulk transaction during the fill.
FILL_CHUNK: Final = 500_000


def device_name(d: int) -> str:
    return f"dev-{d}"


def fill(path: Path, events: int, devices: int, days: int, seed: int) -> None:
    """``events`` events from ``devices`` devices (one gateway each), spread over ``days``."""
    rng = random.Random(seed)
    conn = connect_writer(path, "NORMAL")  # creates the schema through the real migrations
    # Bulk-load settings for the fill only (see the module docstring).
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB
    for name in EVENT_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    names = ops.Names()
    conn.execute("BEGIN")
    tenant_id = names.tenant(conn, TENANT)
    gateway_ids = [names.gateway(conn, tenant_id, f"gw-{d}") for d in range(devices)]
    device_ids = [names.device(conn, tenant_id, device_name(d)) for d in range(devices)]
    conn.execute("COMMIT")
    names.commit()
    # 64 distinct readings blobs of the store's own encoding (encoding 10^8 of them would
    # be most of the fill time and changes nothing a query does).
    blobs = [
        encode_readings(
            (Reading("temperature", "Cel", 15 + i / 4), Reading("humidity", "%RH", 40.5))
        )
        for i in range(64)
    ]
    per_device = events // devices
    step = days * DAY_NS // per_device
    boot = bytes(16)
    clock = int(ClockSource.NTP)
    rows: list[tuple[object, ...]] = []
    # Devices in id order and each device's events in time order: primary-key order, so
    # every insert appends at the right edge of the table's B-tree.
    for d in range(devices):
        base = START_NS + rng.randrange(step)
        dev, gw = device_ids[d], gateway_ids[d]
        for n in range(per_device):
            rows.append(
                (
                    tenant_id,
                    dev,
                    base + n * step,
                    gw,
                    n + 1,
                    n,
                    boot,
                    clock,
                    START_NS,
                    blobs[n & 63],
                )
            )
            if len(rows) >= FILL_CHUNK:
                _insert(conn, rows)
                rows = []
        conn.execute("UPDATE gateways SET acked_seq = ? WHERE id = ?", (per_device, gw))
    _insert(conn, rows)
    for ddl in EVENT_INDEXES.values():
        conn.execute(ddl)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()


def _insert(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    conn.execute("BEGIN")
    conn.executemany(ops.INSERT_EVENT, rows)
    conn.execute("COMMIT")


def table_depth(path: Path) -> int | None:
    """B-tree depth of the events table (from the dbstat virtual table when compiled in)."""
    with sqlite3.connect(path) as conn:
        try:
            row = conn.execute(
                "SELECT max(length(path) - length(replace(path, '/', ''))) FROM dbstat"
                " WHERE name = 'events'"
            ).fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row[0] is None else int(row[0])


def evict(path: Path) -> None:
    """Drop this file's pages from the OS page cache (Linux; a hint elsewhere)."""
    for file in (path, path.with_name(path.name + "-wal")):
        if file.exists() and hasattr(os, "posix_fadvise"):
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


async def time_queries(path: Path, plan: list[tuple[str, int]]) -> dict[str, Any]:
    """Cold pass then warm pass over the same (device, day) pairs."""
    evict(path)
    result: dict[str, Any] = {}
    async with open_sqlite_store(path) as store:
        for label in ("cold", "warm"):
            first: list[float] = []
            second: list[float] = []
            cpu: list[float] = []
            rows = 0
            for device, since in plan:
                started = time.perf_counter()
                cpu_started = time.process_time()
                page = await store.query_events(
                    TENANT, device=device, since_ns=since, until_ns=since + DAY_NS, limit=1000
                )
                first.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - cpu_started) * 1000)
                rows += len(page.events)
                if page.next_cursor is not None:
                    started = time.perf_counter()
                    await store.query_events(
                        TENANT,
                        device=device,
                        since_ns=since,
                        until_ns=since + DAY_NS,
                        limit=1000,
                        cursor=page.next_cursor,
                    )
                    second.append((time.perf_counter() - started) * 1000)
            result[label] = {
                "first_page_ms": _stats(first),
                "next_page_ms": _stats(second) if second else None,
                # CPU of this process per first page (all threads): the work itself, which
                # other processes on a shared machine cannot inflate the way they do wall time.
                "first_page_cpu_ms": _stats(cpu),
                "mean_rows_per_first_page": rows // len(plan),
            }
    return result


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(samples, 0.5), 2),
        "p99": round(percentile(samples, 0.99), 2),
        "max": round(max(samples), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.query_scale", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--per-device-day", type=int, default=10_000, help="(10,000)")
    parser.add_argument("--days", type=int, default=10, help="days the events span (10)")
    parser.add_argument("--queries", type=int, default=100, help="queries per size (100)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="where to put the stores (default: a temp dir)")
    parser.add_argument("--store", type=Path, help="keep the store here; reuse it if it exists")
    parser.add_argument("--fill-only", action="store_true", help="fill --store, measure nothing")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() before measuring: what a core that froze its start-up heap would see",
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    if args.store is not None and len(args.events) != 1:
        parser.error("--store takes exactly one --events size")
    if args.fill_only and args.store is None:
        parser.error("--fill-only needs --store")
    runs = []
    for events in args.events:
        devices = max(1, events // (args.per_device_day * args.days))
        with tempfile.TemporaryDirectory(prefix="assetbook-query-", dir=args.dir) as tmp:
            path = args.store or Path(tmp) / "events.sqlite"
            fill_s = None
            if not path.exists():
                started = time.perf_counter()
                fill(path, events, devices, args.days, args.seed)
                fill_s = round(time.perf_counter() - started, 1)
                print(f"filled {events:,} events in {fill_s} s", file=sys.stderr)
            if args.fill_only:
                return 0
            rng = random.Random(args.seed)
            plan = [
                (device_name(rng.randrange(devices)), START_NS + rng.randrange(args.days) * DAY_NS)
                for _ in range(args.queries)
            ]
            if args.gc_freeze:
                # Long-lived start-up objects leave the collector's view, so gen-2 passes
                # (triggered by the objects a page builds) no longer rescan them.
                gc.collect()
                gc.freeze()
            timing = trio.run(time_queries, path, plan)
            runs.append(
                {
                    "events": events,
                    "devices": devices,
                    "events_per_device_day": events // devices // args.days,
                    "fill_s": fill_s,
                    "file_bytes": path.stat().st_size,
                    "bytes_per_event": round(path.stat().st_size / events, 1),
                    "table_depth": table_depth(path),
                    "load_average_1min": round(os.getloadavg()[0], 1),
                    "gc_freeze": args.gc_freeze,
                    **timing,
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr)
    result = {
        "machine": machine_info(),
        "command": command_line("bench.query_scale"),
        "layout": "v2: events clustered by (tenant_id, device_id, wall_ns, gateway_id, seq)",
        "runs": runs,
    }
    print(json.dumps(result, indent=2))
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        history.append(result)
        RESULTS.write_text(json.dumps(history, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
