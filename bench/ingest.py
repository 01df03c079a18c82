"""Ingest benchmark: one gateway streaming to one core, durable rate and latency.

``python -m bench.ingest`` (``just bench``) builds a throw-away core home, starts the core as
its own process (``assetbook core run``), and runs a real gateway in this process: a
synthetic driver produces samples as fast as the gateway takes them (or at ``--rate``), the
outbox commits them, and the uplink sends them over TLS with the gateway's token. It reports:

* **durable ingest rate**: events acknowledged by the core (so committed there) per second;
* **latency** p50/p99/p99.9 from an event's outbox append (its stamp) to the core's
  acknowledgement arriving back at the gateway: the whole at-least-once round trip;
* the core's CPU seconds and peak resident memory, and this process's CPU per event;
* lost and doubled events, counted from the core's store after the run (must be 0).

Results go to ``bench/results/ingest.json`` and a row is added to the table in
``docs/performance.md``. It measures; it asserts nothing about speed.
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
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from bench.record import command_line, record, row_head
from bench.stats import percentile
from bench.ws_choice import machine_info, process_cpu_s
from cloud.home import init_home
from cloud.registry import Registry, issue_gateway_credentials
from drivers.base import DriverHealth, Sample
from gateway.app import Gateway
from gateway.config import write_config
from protocol.events import Reading

if TYPE_CHECKING:
    from collections.abc import Sequence

RESULTS: Final = Path("bench/results/ingest.json")
TABLE_MARKER: Final = "<!-- ingest results: bench/ingest.py appends rows above this line -->"
#: Most often a paced synthetic sensor wakes to send the samples due, seconds.
PACE_TICK_S: Final = 0.002


@dataclass
class SyntheticDriver:
    """A sensor producing temperature/humidity samples at ``rate_per_s`` (0: as fast as they
    are taken); ``pause()``/``resume()`` switch it off and on between phases.

    At a set rate it wakes at most once per :data:`PACE_TICK_S` and sends every sample due
    by then, as a real driver hands over what one read of its device returned. A sleep per
    sample cost this process 30 to 50 µs of CPU per sample at 10,000 samples/s, more than
    the gateway under test spends on one, and it is the gateway's event loop that pays it.
    """

    name: str
    rate_per_s: float = 0.0
    health: DriverHealth = field(default_factory=DriverHealth)
    _running: trio.Event = field(default_factory=trio.Event)

    def resume(self, rate_per_s: float) -> None:
        self.rate_per_s = rate_per_s
        self._running.set()

    def pause(self) -> None:
        self._running = trio.Event()

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        n = 0
        while True:
            if not self._running.is_set():
                await self._running.wait()
            rate = self.rate_per_s
            if rate <= 0:
                n += 1
                await send.send(self._sample(n))
                self.health.samples += 1
                continue
            # Paced: sample k (from 0) is due k / rate seconds after the pacing starts.
            # pause() replaces _running; resume() may change the rate: either ends this pacing.
            running, started, sent = self._running, trio.current_time(), 0
            while self._running is running and self.rate_per_s == rate:
                due = int((trio.current_time() - started) * rate) + 1
                while sent < due and self._running is running:
                    n += 1
                    sample = self._sample(n)
                    try:
                        send.send_nowait(sample)
                    except trio.WouldBlock:
                        await send.send(sample)  # the gateway is behind: wait, as a driver would
                    sent += 1
                    self.health.samples += 1
                next_due = started + sent / rate
                await trio.sleep_until(max(next_due, trio.current_time() + PACE_TICK_S))

    def _sample(self, n: int) -> Sample:
        temperature = Reading("temperature", "Cel", 20 + n % 100 / 10)
        return Sample(self.name, (temperature, Reading("humidity", "%RH", 40.5)))


@dataclass
class Latencies:
    appended_ns: deque[tuple[int, int]] = field(default_factory=deque)  # (seq, stamp), in order
    latencies_ms: list[float] = field(default_factory=list)
    acked_total: int = 0
    appends: int = 0  # outbox transactions, for the mean events per append
    acked: trio.Event = field(default_factory=trio.Event)  # replaced after every ack


def _setup(root: Path, rate: float, sensors: int) -> tuple[Path, Path, Path]:
    from tests.support import free_port

    home = init_home(root / "core", link_port=free_port(), rest_port=free_port())
    with Registry(home.db_path) as registry:
        registry.create_tenant("bench")
    credentials = issue_gateway_credentials(home, "bench", "gw-bench")
    gateway_dir = root / "gw"
    gateway_dir.mkdir()
    (gateway_dir / "ca.pem").write_bytes(credentials.ca_pem)
    config = write_config(
        gateway_dir / "gateway.toml",
        gateway_id="gw-bench",
        tenant="bench",
        url=credentials.link_url,
        token=credentials.token,
        ca_file="ca.pem",
        data_dir="./data",
        log_level="warning",
    )
    del config, rate, sensors
    return home.root, gateway_dir / "gateway.toml", home.db_dir / "events.sqlite"


async def _run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from gateway.config import load_config

    home, gateway_config, events_db = _setup(root, args.rate, args.sensors)
    core = await trio.lowlevel.open_process(
        [sys.executable, "-m", "assetbook", "core", "run", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert core.stdout is not None
    buffer = b""
    with trio.fail_after(30):
        while b"core ready" not in buffer:
            buffer += await core.stdout.receive_some()
    config = load_config(gateway_config)
    gateway = Gateway(config)
    drivers = [SyntheticDriver(f"sensor-{i}") for i in range(args.sensors)]
    gateway.drivers = list(drivers)
    lat = Latencies()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run, stop)
        _instrument(gateway, lat)
        assert gateway.uplink is not None
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        core_cpu_before = process_cpu_s(core.pid)
        appends_before, batches_before = lat.appends, gateway.uplink.health.batches_sent
        print("phase 1: as fast as the gateway takes samples", file=sys.stderr)
        acked_before = lat.acked_total
        max_rate, elapsed = await _phase(drivers, args.rate, args.duration, lat)
        # CPU is divided by every event of the phase, the backlog acknowledged after the
        # window included: when the gateway outpaces the core, the window's acks alone would
        # be charged for work done on events still queued.
        acked_max = lat.acked_total - acked_before
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        appends = lat.appends - appends_before
        batches = gateway.uplink.health.batches_sent - batches_before
        core_cpu = process_cpu_s(core.pid) - core_cpu_before
        saturated = _percentiles(lat.latencies_ms)
        half = (args.rate or max_rate) / 2
        print(f"phase 2: latency at half that rate, {half:.0f} events/s", file=sys.stderr)
        half_rate, _ = await _phase(drivers, half, args.duration, lat)
        stop.set()
    core_peak_kib = _peak_rss_kib(core.pid)
    core.terminate()
    await core.wait()
    lost, doubled, stored = _check_store(events_db, gateway)
    gateway_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (
        cpu_before.ru_utime + cpu_before.ru_stime
    )
    return {
        "machine": machine_info(),
        "command": command_line("bench.ingest"),
        "duration_s": round(elapsed, 2),
        "sensors": args.sensors,
        "offered_rate": args.rate or "max",
        "durable_events_per_s": round(max_rate),
        "latency_ms": _percentiles(lat.latencies_ms),
        "latency_rate_events_per_s": round(half_rate),
        "latency_ms_saturated": saturated,
        "core_cpu_s_per_s": round(core_cpu / elapsed, 2),
        "core_peak_rss_mib": round(core_peak_kib / 1024, 1),
        "gateway_cpu_us_per_event": round(gateway_cpu / max(acked_max, 1) * 1e6, 1),
        "core_cpu_us_per_event": round(core_cpu / max(acked_max, 1) * 1e6, 1),
        "events_per_append": round(acked_max / max(appends, 1), 1),
        "events_per_batch": round(acked_max / max(batches, 1), 1),
        "stored": stored,
        "lost": lost,
        "doubled": doubled,
    }


def _instrument(gateway: Gateway, lat: Latencies) -> None:
    """Record each event's append time and the time its acknowledgement comes back."""
    outbox = gateway.outbox
    assert outbox is not None
    original_append, original_ack = outbox.append, outbox.ack

    async def append(samples: Sequence[Sample]) -> Any:
        # Taken as the append starts: the stamp, give or take the thread hop.
        started_ns = time.time_ns()
        stored = await original_append(samples)
        lat.appends += 1
        lat.appended_ns.extend((event.seq, started_ns) for event in stored)
        return stored

    async def ack(upto_seq: int) -> int:
        now = time.time_ns()
        pending = lat.appended_ns
        while pending and pending[0][0] <= upto_seq:
            lat.latencies_ms.append((now - pending.popleft()[1]) / 1e6)
            lat.acked_total += 1
        lat.acked.set()
        lat.acked = trio.Event()
        return await original_ack(upto_seq)

    outbox.append = append  # type: ignore[method-assign]
    outbox.ack = ack  # type: ignore[method-assign]


async def _phase(
    drivers: list[SyntheticDriver], rate: float, duration: float, lat: Latencies
) -> tuple[float, float]:
    """Offer ``rate`` events/s (0: max) for ``duration``; returns the durable rate measured.

    Starts from an empty pipeline and drains it afterwards, so phases do not overlap."""
    lat.latencies_ms.clear()
    for driver in drivers:
        driver.resume(rate / len(drivers) if rate else 0.0)
    started, acked_before = time.monotonic(), lat.acked_total
    await _progress(duration, lat)
    elapsed = time.monotonic() - started
    rate_measured = (lat.acked_total - acked_before) / elapsed
    for driver in drivers:
        driver.pause()
    with trio.fail_after(120):
        while lat.appended_ns:  # wait for the backlog to be acknowledged
            await lat.acked.wait()
    return rate_measured, elapsed


def _percentiles(samples: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(samples, 0.50), 2),
        "p99": round(percentile(samples, 0.99), 2),
        "p99.9": round(percentile(samples, 0.999), 2),
    }


async def _progress(duration: float, lat: Latencies) -> None:
    end = trio.current_time() + duration
    last = lat.acked_total
    while trio.current_time() < end:
        await trio.sleep(1)
        now = lat.acked_total
        print(f"  {now - last:>8} events/s durable, {now:>9} in total", file=sys.stderr)
        last = now


def _cpu_s(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _check_store(events_db: Path, gateway: Gateway) -> tuple[int, int, int]:
    """Lost = seqs issued by the outbox but neither stored nor still queued; doubled = any
    (gateway, seq) stored twice (the primary key forbids it; counted to prove it)."""
    with sqlite3.connect(f"file:{events_db}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = "events" if "events" in tables else tables[0]
        stored, distinct, top = db.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM {table}"
        ).fetchone()
    del gateway
    lost = (top or 0) - distinct
    return lost, stored - distinct, stored


def _write_results(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    row = row_head(result) + (
        f"{result['durable_events_per_s']:,} | "
        f"{lat['p50']} / {lat['p99']} / {lat['p99.9']} | {result['core_cpu_s_per_s']} | "
        f"{result['core_peak_rss_mib']} | {result['gateway_cpu_us_per_event']} | "
        f"{result['lost']} / {result['doubled']} |\n"
    )
    record(RESULTS, result, TABLE_MARKER, row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description="Measure durable ingest rate and latency for one gateway and one core.",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds to measure (10)")
    parser.add_argument(
        "--rate", type=float, default=0, help="offered events/s; 0 = as fast as possible"
    )
    parser.add_argument("--sensors", type=int, default=4, help="synthetic sensors (4)")
    parser.add_argument("--no-record", action="store_true", help="do not write results or docs")
    args = parser.parse_args(argv)
    print(
        f"ingest benchmark: {args.duration:g} s, offered rate {args.rate or 'max'}", file=sys.stderr
    )
    with tempfile.TemporaryDirectory(prefix="assetbook-bench-") as tmp:
        result = trio.run(_run, args, Path(tmp))
    print(json.dumps(result, indent=2))
    if not args.no_record:
        _write_results(result)
    return 0 if result["lost"] == 0 and result["doubled"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
