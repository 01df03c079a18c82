"""Outbox drain benchmark: a gateway that buffered through an outage catches up with the core.

``python -m bench.drain`` (``just bench-drain``) measures the recovery after an outage:

1. **fill**: with the core down, ``--events`` readings (two SenML records each, like the
   ingest benchmark's sensors) go into a gateway outbox through the real append path
   (:meth:`gateway.outbox.Outbox.append`: stamp, check and encode, SQLite with
   ``synchronous=FULL``), ``--append`` samples per transaction as the gateway's outbox writer
   takes them. This phase also gives the append path's CPU per event, no driver included.
2. **drain**: the core starts (``assetbook core run``, its own process) and the gateway's
   real uplink (:class:`gateway.uplink.Uplink` over TLS with the gateway's token) sends the
   backlog until the core has acknowledged the last event. Reported: events/s, this
   process's CPU per event (the uplink side) and the core's CPU per event.
3. **check**: from the core's store, every seq from 1 to ``--events`` must be stored exactly
   once (lost and doubled are counted).

A progress line per second shows both phases. Results go to ``bench/results/drain.json``
and a row is added to the table in ``docs/performance.md``. It measures; it asserts nothing
about speed.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import trio

from bench.ingest import _peak_rss_kib, _setup
from bench.record import command_line, record, row_head
from bench.ws_choice import machine_info, process_cpu_s
from drivers.base import Sample
from gateway.app import MAX_APPEND, Gateway
from gateway.clock import Stamper
from gateway.outbox import AsyncOutbox, Outbox
from gateway.uplink import Uplink
from protocol import limits
from protocol.events import Reading

RESULTS: Final = Path("bench/results/drain.json")
TABLE_MARKER: Final = "<!-- drain results: bench/drain.py appends rows above this line -->"
#: Devices the filled readings are spread over, as in bench.ingest.
SENSORS: Final = 4


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _samples(start: int, count: int) -> list[Sample]:
    out = []
    for n in range(start, start + count):
        temperature = Reading("temperature", "Cel", 20 + n % 100 / 10)
        out.append(Sample(f"sensor-{n % SENSORS}", (temperature, Reading("humidity", "%RH", 40.5))))
    return out


def fill(path: Path, events: int, per_append: int) -> dict[str, float]:
    """Append ``events`` readings to the outbox at ``path``; returns rate and CPU figures.

    The CPU figure is the append path's alone: making the samples is timed apart and left out.
    """
    print(f"fill: {events:,} readings, {per_append} per transaction", file=sys.stderr)
    with Outbox(path, Stamper.system(), max_events=max(events, 1)) as outbox:
        cpu, started, next_report = _cpu_s(), time.monotonic(), time.monotonic() + 1
        done = 0
        driver_cpu = 0.0
        while done < events:
            count = min(per_append, events - done)
            # What a driver spends making the samples is not the outbox's: timed apart.
            before = _cpu_s()
            batch = _samples(done, count)
            driver_cpu += _cpu_s() - before
            outbox.append(batch)
            done += count
            if time.monotonic() >= next_report:
                print(f"  {done:>10,} stored", file=sys.stderr)
                next_report += 1
        elapsed, cpu = time.monotonic() - started, _cpu_s() - cpu - driver_cpu
        stats = outbox.statistics()
    return {
        "fill_events_per_s": round(events / elapsed),
        "fill_cpu_us_per_event": round(cpu / events * 1e6, 2),
        "outbox_mib": round(stats.bytes_on_disk / 2**20, 1),
    }


async def drain(
    args: argparse.Namespace, core_home: Path, gateway_config: Path, outbox_path: Path
) -> dict[str, Any]:
    """Start the core and the uplink; time the backlog until the core acknowledged it all."""
    from gateway.config import load_config

    config = load_config(gateway_config)
    stamper = Stamper.system()
    settings = replace(
        Gateway(config, stamper)._uplink_settings(),
        batch_max_events=args.batch,
        batch_max_delay_s=0,
    )
    outbox = AsyncOutbox(
        await trio.to_thread.run_sync(lambda: Outbox(outbox_path, stamper, max_events=args.events))
    )
    core = await trio.lowlevel.open_process(
        [sys.executable, "-m", "assetbook", "core", "run", "--home", str(core_home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert core.stdout is not None
        buffer = b""
        with trio.fail_after(60):
            while b"core ready" not in buffer:
                buffer += await core.stdout.receive_some()
        print("drain: core up", file=sys.stderr)
        uplink = Uplink(settings, outbox)
        cpu, core_cpu = _cpu_s(), process_cpu_s(core.pid)
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uplink.run)
            await _progress(uplink, args.events)
            elapsed = time.monotonic() - started
            cpu, core_cpu = _cpu_s() - cpu, process_cpu_s(core.pid) - core_cpu
            nursery.cancel_scope.cancel()
        depth = await outbox.depth()
        core_peak_kib = _peak_rss_kib(core.pid)
    finally:
        await outbox.aclose()
        core.terminate()
        await core.wait()
    return {
        "drain_events_per_s": round(args.events / elapsed),
        "drain_s": round(elapsed, 2),
        "gateway_cpu_us_per_event": round(cpu / args.events * 1e6, 2),
        "core_cpu_us_per_event": round(core_cpu / args.events * 1e6, 2),
        "core_peak_rss_mib": round(core_peak_kib / 1024, 1),
        "batches": uplink.health.batches_sent,
        "left_in_outbox": depth,
    }


async def _progress(uplink: Uplink, last_seq: int) -> None:
    """Print the acknowledged rate once a second until ``last_seq`` is acknowledged."""
    previous, next_report = 0, trio.current_time() + 1
    while uplink.health.acked_seq < last_seq:
        with trio.move_on_at(next_report):
            await uplink._wait_for_ack()
            continue
        acked, health = uplink.health.acked_seq, uplink.health
        line = f"  {acked - previous:>8,} events/s acked, {acked:>10,} in total"
        if acked == previous:  # say why nothing moves
            line += f" (link {health.state}, last error: {health.last_error})"
        print(line, file=sys.stderr)
        previous, next_report = acked, next_report + 1


def check_store(events_db: Path, expected: int) -> dict[str, int]:
    """Every seq 1..expected stored exactly once: count what is missing and what is doubled."""
    with sqlite3.connect(f"file:{events_db}?mode=ro", uri=True) as db:
        stored, distinct, low, high = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM events"
        ).fetchone()
    in_range = distinct if (low, high) == (1, expected) else 0
    return {"stored": stored, "lost": expected - in_range, "doubled": stored - distinct}


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    core_home, gateway_config, events_db = _setup(root, 0, SENSORS)
    outbox_path = gateway_config.parent / "data" / "outbox.sqlite"
    outbox_path.parent.mkdir(mode=0o700)
    filled = await trio.to_thread.run_sync(fill, outbox_path, args.events, args.append)
    drained = await drain(args, core_home, gateway_config, outbox_path)
    checked = check_store(events_db, args.events)
    return {
        "machine": machine_info(),
        "command": command_line("bench.drain"),
        "events": args.events,
        "append_per_transaction": args.append,
        "batch_max_events": args.batch,
        **filled,
        **drained,
        **checked,
    }


def _write_results(result: dict[str, Any]) -> None:
    row = row_head(result) + (
        f"{result['fill_events_per_s']:,} | "
        f"{result['fill_cpu_us_per_event']} | {result['drain_events_per_s']:,} | "
        f"{result['gateway_cpu_us_per_event']} | {result['core_cpu_us_per_event']} | "
        f"{result['lost']} / {result['doubled']} |"
    )
    record(RESULTS, result, TABLE_MARKER, row)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drain",
        description="Measure how fast a gateway's outbox drains to the core after an outage.",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="readings buffered (1000000)")
    parser.add_argument(
        "--append", type=int, default=MAX_APPEND, help=f"samples per append ({MAX_APPEND})"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=limits.MAX_BATCH_EVENTS,
        help="the uplink's configured batch size, for its first batch; a backlog then goes "
        f"in batches up to the core's limit ({limits.MAX_BATCH_EVENTS})",
    )
    parser.add_argument("--no-record", action="store_true", help="do not write results or docs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetbook-drain-") as tmp:
        result = trio.run(run, args, Path(tmp))
    print(json.dumps(result, indent=2))
    if not args.no_record:
        _write_results(result)
    return 0 if result["lost"] == 0 and result["doubled"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
