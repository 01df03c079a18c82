"""Query latency against store size: one device's readings over a day, a page of 1,000.

``python -m bench.query_scale --events 250000 1000000`` fills a fresh SQLite event store per
size (the store's own schema and indexes, rows written with the store's own insert through
:func:`cloud.storage.sqlite_ops.write_group`), then times ``query_events`` through the real
store (reader thread, cursor signing, row decoding) for random (device, day) pairs, first
page and the page after it. It reports p50/p99 per size, and the B-tree depth of the index
the query uses, so the 100-million-event figure can be extrapolated: a keyset page costs one
index descent (depth grows with log(n)) plus reading 1,000 adjacent rows (independent of n).

Results go to ``bench/results/query_scale.json``; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import trio

from bench.ws_choice import machine_info, percentile
from cloud.storage import sqlite_ops as ops
from cloud.storage.sqlite import open_sqlite_store
from cloud.storage.sqlite_schema import connect_writer
from protocol.events import ClockSource, Event, Reading

RESULTS: Final = Path("bench/results/query_scale.json")
DAY_NS: Final = 86_400 * 10**9
START_NS: Final = 1_780_000_000 * 10**9


def fill(path: Path, events: int, devices: int, days: int, seed: int) -> None:
    """``events`` events from ``devices`` devices (one gateway each), spread over ``days``."""
    rng = random.Random(seed)
    # NORMAL: the fill is set-up, not the thing measured; durability does not matter here.
    conn = connect_writer(path, "NORMAL")
    per_device = events // devices
    step = days * DAY_NS // per_device
    readings = (Reading("temperature", "Cel", 21.5), Reading("humidity", "%RH", 40.5))
    chunk: list[ops.BatchWrite] = []
    for d in range(devices):
        base = START_NS + rng.randrange(step)
        batch = [
            Event(n + 1, f"dev-{d}", bytes(16), n, base + n * step, ClockSource.NTP, readings)
            for n in range(per_device)
        ]
        chunk.append(ops.BatchWrite("bench", f"gw-{d}", batch, START_NS))
        if sum(len(c.events) for c in chunk) >= 200_000:
            ops.write_group(conn, chunk)
            chunk = []
    if chunk:
        ops.write_group(conn, chunk)
    conn.close()


def index_depth(path: Path) -> int | None:
    """B-tree depth of events_by_device (from the dbstat virtual table when compiled in)."""
    with sqlite3.connect(path) as conn:
        try:
            row = conn.execute(
                "SELECT max(length(path) - length(replace(path, '/', ''))) FROM dbstat"
                " WHERE name = 'events_by_device'"
            ).fetchone()
        except sqlite3.OperationalError:
            return None
    return None if row[0] is None else int(row[0])


async def time_queries(
    path: Path, devices: int, days: int, queries: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    first: list[float] = []
    second: list[float] = []
    async with open_sqlite_store(path) as store:
        for _ in range(queries):
            device = f"dev-{rng.randrange(devices)}"
            since = START_NS + rng.randrange(days) * DAY_NS
            started = time.perf_counter()
            page = await store.query_events(
                "bench", device=device, since_ns=since, until_ns=since + DAY_NS, limit=1000
            )
            first.append((time.perf_counter() - started) * 1000)
            if page.next_cursor is not None:
                started = time.perf_counter()
                await store.query_events(
                    "bench",
                    device=device,
                    since_ns=since,
                    until_ns=since + DAY_NS,
                    limit=1000,
                    cursor=page.next_cursor,
                )
                second.append((time.perf_counter() - started) * 1000)
    return {
        "first_page_ms": {
            "p50": round(percentile(first, 0.5), 2),
            "p99": round(percentile(first, 0.99), 2),
        },
        "next_page_ms": {
            "p50": round(percentile(second, 0.5), 2),
            "p99": round(percentile(second, 0.99), 2),
        }
        if second
        else None,
        "rows_per_first_page": len(page.events),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.query_scale", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--devices", type=int, default=20, help="devices (20)")
    parser.add_argument("--days", type=int, default=5, help="days the events span (5)")
    parser.add_argument("--queries", type=int, default=200, help="queries per size (200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)
    runs = []
    for events in args.events:
        with tempfile.TemporaryDirectory(prefix="assetbook-query-") as tmp:
            path = Path(tmp) / "events.sqlite"
            started = time.perf_counter()
            fill(path, events, args.devices, args.days, args.seed)
            fill_s = time.perf_counter() - started
            timing = trio.run(time_queries, path, args.devices, args.days, args.queries, args.seed)
            runs.append(
                {
                    "events": events,
                    "events_per_device_day": events // args.devices // args.days,
                    "fill_s": round(fill_s, 1),
                    "bytes_per_event": round(path.stat().st_size / events, 1),
                    "index_depth": index_depth(path),
                    **timing,
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr)
    result = {
        "machine": machine_info(),
        "command": "python -m bench.query_scale " + " ".join(sys.argv[1:]),
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
