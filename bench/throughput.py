"""Throughput benchmark: a simulated fleet against one core, side by side with Mosquitto and
with the ingredients' own limit (``just bench``).

``python -m bench.throughput`` builds a throw-away core home, issues one real token per
gateway (:func:`cloud.registry.issue_gateway_credentials`), starts ``assetbook core run``,
and starts ``--processes`` fleet processes (:mod:`simulators.fleet`) that run ``--gateways``
gateways with ``--sensors`` sensors each over TLS. Then, in the same run:

1. **max**: the fleet offers as much as the core acknowledges, for ``--duration`` s;
2. **half**: the fleet offers half the rate measured in (1) (latency at half the maximum);
3. the store is checked: every seq each gateway generated must be stored exactly once;
4. **mosquitto**: the same batch payloads through a private Mosquitto (QoS 1, one
   subscriber, :mod:`bench.mqtt_reference`), for ``--duration`` s;
5. **ingredients**: cbor2 decoding plus SQLite insertion (the store's schema, indexes and
   ``synchronous=FULL``) of the same batches in one process, no networking.

A progress line is printed every second. Results go to ``bench/results/throughput.json``
(appended), a row in ``docs/performance.md`` and, if matplotlib is installed, a PNG of rate
and latency over time in ``docs/perf/``. ``--profile DIR`` also records py-spy flame graphs
(native frames included) of the core and of one fleet process over the max phase's window,
as ``DIR/core-max.svg`` and ``DIR/fleet-max.svg``; the profiler costs CPU of its own, so a
profiled run's rates are not the ones to quote. It measures; it asserts nothing about speed,
but exits 1 if any event was lost or doubled.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import cbor2
import trio

from bench import record as bench_record
from bench.ws_choice import machine_info, process_cpu_s
from cloud.home import CoreHome, init_home, load_config
from cloud.registry import Registry, issue_gateway_credentials
from cloud.storage import sqlite_ops as ops
from cloud.storage.sqlite_schema import connect_writer
from cloud.tokens import TokenIssuer
from protocol import codec
from protocol.messages import Batch
from simulators.fleet import FleetPlan, LatencyHistogram, SimGateway

RESULTS: Final = Path("bench/results/throughput.json")
PLOTS: Final = Path("docs/perf")
TABLE_MARKER: Final = (
    "<!-- throughput results: bench/throughput.py appends rows above this line -->"
)
TENANT: Final = "bench"
REPO: Final = Path(__file__).resolve().parents[1]


@dataclass
class PhaseResult:
    """What one load phase measured, aggregated over the fleet processes."""

    duration_s: float
    acked: int = 0
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    timeline: list[dict[str, float]] = field(default_factory=list)
    gateways: dict[str, list[int]] = field(default_factory=dict)
    fleet_cpu_s: float = 0.0
    fleet_peak_rss_kib: list[int] = field(default_factory=list)
    core_cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.acked / self.duration_s

    def summary(self) -> dict[str, Any]:
        h = self.histogram
        return {
            "durable_events_per_s": round(self.rate),
            "latency_ms": {
                "p50": h.percentile_ms(0.5),
                "p99": h.percentile_ms(0.99),
                "p99.9": h.percentile_ms(0.999),
            },
            "core_cpu_s_per_s": round(self.core_cpu_s / self.duration_s, 2),
            # CPU per event does not depend on how much of the machine others are using.
            "core_cpu_us_per_event": round(self.core_cpu_s / max(self.acked, 1) * 1e6, 1),
            "fleet_cpu_us_per_event": round(self.fleet_cpu_s / max(self.acked, 1) * 1e6, 1),
            "fleet_peak_rss_mib": [round(k / 1024, 1) for k in self.fleet_peak_rss_kib],
            "errors": self.errors,
        }


# --- set-up ---------------------------------------------------------------------------------


def _issue(home: CoreHome, gateways: int) -> list[tuple[str, str]]:
    with Registry(home.db_path) as registry:
        registry.create_tenant(TENANT)
        issuer = TokenIssuer(home)
        return [
            (
                gid,
                issue_gateway_credentials(
                    home, TENANT, gid, registry=registry, issuer=issuer
                ).token,
            )
            for gid in (f"gw-{n:05d}" for n in range(gateways))
        ]


async def _start_core(home: CoreHome, log: Path) -> trio.Process:
    # Output goes to a file: a pipe nobody reads would fill up and stall the core.
    with log.open("wb") as out:
        core = await trio.lowlevel.open_process(
            [sys.executable, "-m", "assetbook", "core", "run", "--home", str(home.root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    with trio.fail_after(60):
        while b"core ready" not in await trio.Path(log).read_bytes():
            if core.returncode is not None:
                raise RuntimeError("the core exited before it was ready; see its log")
            await trio.sleep(0.05)  # polling another process's output file
    return core


# --- a load phase ---------------------------------------------------------------------------


async def run_phase(
    plan: FleetPlan,
    processes: int,
    core_pid: int,
    workdir: Path,
    label: str,
    profile: Path | None = None,
) -> PhaseResult:
    """Run the fleet for one phase; aggregate ticks, print progress, collect the totals.

    With ``profile``, py-spy records the core and fleet part 0 over the measured window.
    """
    plan_file = workdir / f"plan-{label}.json"
    plan.write(plan_file)
    result = PhaseResult(duration_s=plan.duration_s)
    per_second: dict[int, list[float]] = {}
    offering = {"parts": 0, "cpu_start": 0.0}
    window = trio.Event()
    fleet_pids: dict[int, int] = {}

    async def part(index: int) -> None:
        proc = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "simulators.fleet",
                str(plan_file),
                "--part",
                str(index),
                "--of",
                str(processes),
            ],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        fleet_pids[index] = proc.pid
        assert proc.stdout is not None
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                _absorb(json.loads(line), result, per_second, offering, window, processes, core_pid)
        await proc.wait()
        if proc.returncode:
            result.errors.append(f"fleet part {index} exited {proc.returncode}")
        if not window.is_set():
            # A part that ends before measuring would otherwise leave the phase waiting.
            result.errors.append(f"fleet part {index} ended before the measured window")
            window.set()

    async with trio.open_nursery() as nursery:
        for index in range(processes):
            nursery.start_soon(part, index)
        nursery.start_soon(_progress, label, per_second, window, plan.duration_s)
        await window.wait()
        if profile is not None:
            seconds = max(1, int(plan.duration_s))
            for name, pid in (("core", core_pid), ("fleet", fleet_pids[0])):
                output = profile / f"{name}-{label}.svg"
                nursery.start_soon(_profile, pid, seconds, output, result.errors)
        # Core CPU over the measured window only (the fleet sleeps duration_s in it).
        if not result.errors:
            await trio.sleep(plan.duration_s)
        result.core_cpu_s = process_cpu_s(core_pid) - offering["cpu_start"]
    result.timeline = [
        {"t": t, "events_per_s": v[0], "p99_ms": v[1]} for t, v in sorted(per_second.items())
    ]
    return result


async def _profile(pid: int, seconds: int, output: Path, errors: list[str]) -> None:
    """Record ``seconds`` of ``pid`` with py-spy (100 Hz, native frames) as a flame graph."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100"]
    command += ["--native", "--format", "flamegraph", "--output", str(output)]
    try:
        done = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    except FileNotFoundError:
        errors.append("--profile needs py-spy: pip install -e '.[dev]'")
        return
    if done.returncode:
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        errors.append(f"py-spy exited {done.returncode} profiling {output.name}: {why[0]}")
    else:
        print(f"  profile: {output}", file=sys.stderr)


def _absorb(
    record: dict[str, Any],
    result: PhaseResult,
    per_second: dict[int, list[float]],
    offering: dict[str, float],
    window: trio.Event,
    processes: int,
    core_pid: int,
) -> None:
    kind = record["kind"]
    if kind == "measuring":
        offering["parts"] += 1
        if offering["parts"] == processes:
            offering["cpu_start"] = process_cpu_s(core_pid)
            window.set()
    elif kind == "tick" and record["measuring"] and window.is_set():
        result.acked += record["acked"]
        hist = LatencyHistogram.from_json(record["latency"])
        result.histogram.merge(hist)
        # By the part's own count of its ticks, not by their time stamps: a tick woken late
        # would otherwise land in the next second's slot and leave a hole in the timeline.
        slot = per_second.setdefault(record["second"], [0.0, 0.0])
        slot[0] += record["acked"]
        slot[1] = max(slot[1], hist.percentile_ms(0.99))
    elif kind == "done":
        result.gateways.update(record["gateways"])
        result.fleet_cpu_s += record["cpu_s"]
        result.fleet_peak_rss_kib.append(record["peak_rss_kib"])
    elif kind == "error":
        result.errors.append(record["error"])


async def _progress(
    label: str, per_second: dict[int, list[float]], window: trio.Event, duration: float
) -> None:
    await window.wait()
    for second in range(1, int(duration) + 1):
        await trio.sleep(1)
        events = per_second.get(second, [0.0, 0.0])
        bar = "#" * min(40, int(events[0] / 10_000))
        print(
            f"  [{label}] {second:>3}/{int(duration)} s {events[0]:>9,.0f} events/s "
            f"p99 {events[1]:>7.1f} ms {bar}",
            file=sys.stderr,
        )


# --- checks ---------------------------------------------------------------------------------


def check_store(events_db: Path, gateways: dict[str, list[int]]) -> dict[str, float]:
    """Lost: a seq a gateway generated that is not stored (or an acked seq not stored);
    doubled: a (gateway, seq) stored more than once. Both must be 0."""
    with sqlite3.connect(events_db) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if "gateway" in columns:  # names stored in every row (store schema 1)
            select = (
                "SELECT gateway, COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM events"
                " WHERE tenant = ? GROUP BY gateway"
            )
        else:  # tenants and gateways in their own tables (store schema 2)
            select = (
                "SELECT g.name, COUNT(*), COUNT(DISTINCT e.seq), MAX(e.seq) FROM events e"
                " JOIN gateways g ON g.id = e.gateway_id JOIN tenants t ON t.id = e.tenant_id"
                " WHERE t.name = ? GROUP BY g.name"
            )
        rows = db.execute(select, (TENANT,)).fetchall()
    stored = {gateway: (count, distinct, top) for gateway, count, distinct, top in rows}
    lost = doubled = extra = total = 0
    for gateway, (generated, acked) in gateways.items():
        count, distinct, top = stored.get(gateway, (0, 0, 0))
        total += count
        doubled += count - distinct
        # Seqs are 1..generated with no gaps, so distinct == generated means all are there.
        lost += max(0, generated - distinct) + max(0, acked - top)
        extra += max(0, top - generated)
    size = events_db.stat().st_size
    result: dict[str, float] = {
        "stored": total,
        "lost": lost,
        "doubled": doubled,
        "unexpected": extra,
        "bytes_on_disk_per_event": round(size / max(total, 1), 1),
    }
    return result


# --- side by side: Mosquitto and the ingredients --------------------------------------------


def sample_batches(count: int, size: int, sensors: int) -> list[bytes]:
    """Encoded batches exactly as a fleet gateway sends them."""
    plan = FleetPlan(url="", ca_file="", gateways=[], sensors=sensors)
    gateway = SimGateway("gw-sample", "", plan, stats=None)  # type: ignore[arg-type]
    return [
        codec.encode(Batch(tuple(gateway._make(size, time.time_ns(), time.monotonic_ns()))))
        for _ in range(count)
    ]


def ingredients(batches: list[bytes], rounds: int, workdir: Path) -> dict[str, Any]:
    """cbor2 decoding + SQLite insertion (same schema, FULL sync), one commit per 8 batches."""
    path = workdir / "ingredients.sqlite"
    conn = connect_writer(path, "FULL")
    # The store's own rows: integer ids from its name dictionaries, its INSERT statement.
    names = ops.Names()
    events = 0
    started = time.perf_counter()
    cpu = time.process_time()
    for r in range(rounds):
        conn.execute("BEGIN IMMEDIATE")
        for i, data in enumerate(batches):
            message = cbor2.loads(data)
            tenant_id = names.tenant(conn, TENANT)
            gateway_id = names.gateway(conn, tenant_id, f"gw-{r}-{i}")
            now = time.time_ns()
            conn.executemany(
                ops.INSERT_EVENT,
                [
                    (
                        tenant_id,
                        names.device(conn, tenant_id, e[1]),
                        e[4],
                        gateway_id,
                        e[0],
                        e[3],
                        e[2],
                        e[5],
                        now,
                        cbor2.dumps(e[6]),
                    )
                    for e in message[1]
                ],
            )
            events += len(message[1])
            if i % 8 == 7:
                conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    cpu_us = (time.process_time() - cpu) / events * 1e6
    return {
        "events_per_s": round(events / elapsed),
        "cpu_us_per_event": round(cpu_us, 1),
        # What one core would do if nothing else ran: the ingredients' CPU-bound limit.
        "one_core_events_per_s": round(1e6 / cpu_us),
        "events": events,
    }


async def mosquitto(
    home: CoreHome,
    batches: list[bytes],
    duration: float,
    workdir: Path,
    events_per_batch: int,
    idle_s: int = 3,
) -> dict[str, Any]:
    """The same batches through a private Mosquitto; rate and latency at one subscriber."""
    program = shutil.which("mosquitto")
    passwd = shutil.which("mosquitto_passwd")
    if program is None or passwd is None:
        return {"skipped": "mosquitto is not installed"}
    from tests.support import free_port

    port = free_port()
    password = secrets.token_urlsafe(18)
    pwfile = workdir / "mosquitto.passwd"
    for user in ("publisher", "subscriber"):
        # -b takes the password as an argument: a throw-away password for a local broker.
        await trio.run_process(
            [passwd, "-b", *(["-c"] if user == "publisher" else []), str(pwfile), user, password],
        )
    folder = workdir / "batches"
    folder.mkdir(exist_ok=True)
    for n, data in enumerate(batches):
        (folder / f"{n:04d}.cbor").write_bytes(data)
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {home.ca_cert}\ncertfile {home.server_cert}\nkeyfile {home.server_key}\n"
        f"password_file {pwfile}\nallow_anonymous false\npersistence false\n"
        "max_queued_messages 100000\nmax_inflight_messages 100\nlog_type error\n"
        # Started as root, Mosquitto switches to this user; stay able to read the key.
        f"user {getpass.getuser()}\n"
    )
    broker = await trio.lowlevel.open_process(
        [program, "-c", str(config)], stderr=subprocess.DEVNULL
    )
    try:
        with trio.fail_after(10):
            while True:
                if _accepts(port):
                    break
                await trio.sleep(0.02)  # polling another process's socket
        return await _mqtt_run(
            port,
            str(home.ca_cert),
            password,
            folder,
            duration,
            broker.pid,
            events_per_batch,
            idle_s,
        )
    finally:
        broker.terminate()
        await broker.wait()


async def _mqtt_run(
    port: int,
    ca: str,
    password: str,
    folder: Path,
    duration: float,
    broker_pid: int,
    events_per_batch: int,
    idle_s: int,
) -> dict[str, Any]:
    common = [
        sys.executable,
        "-m",
        "bench.mqtt_reference",
        "--port",
        str(port),
        "--ca",
        ca,
        "--events-per-batch",
        str(events_per_batch),
        "--idle-s",
        str(idle_s),
    ]
    histogram = LatencyHistogram()
    received = {"events": 0}
    ready = trio.Event()
    timeline: list[dict[str, float]] = []

    async def subscriber() -> None:
        proc = await trio.lowlevel.open_process(
            [*common, "subscribe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        await proc.stdin.send_all(password.encode() + b"\n")
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                record = json.loads(line)
                if record["kind"] == "subscribed":
                    ready.set()
                elif record["kind"] == "tick" and record["acked"]:
                    hist = LatencyHistogram.from_json(record["latency"])
                    histogram.merge(hist)
                    received["events"] += record["acked"]
                    timeline.append(
                        {
                            "t": record["t"],
                            "events_per_s": record["acked"],
                            "p99_ms": hist.percentile_ms(0.99),
                        }
                    )
        await proc.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        await ready.wait()
        cpu_before = process_cpu_s(broker_pid)
        publisher = await trio.lowlevel.open_process(
            [*common, "publish", "--batches", str(folder), "--duration", str(duration)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd=REPO,
        )
        assert publisher.stdin is not None
        await publisher.stdin.send_all(password.encode() + b"\n")
        await publisher.wait()
        broker_cpu = process_cpu_s(broker_pid) - cpu_before
    return {
        "events_per_s": round(received["events"] / duration),
        "latency_ms": {
            "p50": histogram.percentile_ms(0.5),
            "p99": histogram.percentile_ms(0.99),
            "p99.9": histogram.percentile_ms(0.999),
        },
        "broker_cpu_s_per_s": round(broker_cpu / duration, 2),
        "broker_cpu_us_per_event": round(broker_cpu / max(received["events"], 1) * 1e6, 2),
        "timeline": timeline,
    }


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- the whole run --------------------------------------------------------------------------


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from tests.support import free_port

    home = init_home(root / "core", link_port=free_port(), rest_port=free_port())
    issue_started = time.monotonic()
    credentials = _issue(home, args.gateways)
    issue_s = time.monotonic() - issue_started
    url = load_config(home).link_url
    core = await _start_core(home, root / "core.log")
    rss_idle = _rss_kib(core.pid)
    try:
        plan = FleetPlan(
            url=url,
            ca_file=str(home.ca_cert),
            gateways=credentials,
            sensors=args.sensors,
            rate_per_gateway=args.rate / args.gateways if args.rate else 0.0,
            batch_max_events=args.batch,
            max_inflight_events=args.inflight,
            warmup_s=args.warmup,
            duration_s=args.duration,
        )
        print(
            f"max: {args.gateways} gateways x {args.sensors} sensors, "
            f"{args.processes} fleet processes",
            file=sys.stderr,
        )
        peak = await run_phase(plan, args.processes, core.pid, root, "max", args.profile)
        rss_links = _rss_kib(core.pid)
        half_rate = (args.rate or peak.rate) / 2
        half: PhaseResult | None = None
        if not args.skip_half:
            print(f"half: {half_rate:,.0f} events/s offered", file=sys.stderr)
            half_plan = FleetPlan(
                **{**_fields(plan), "rate_per_gateway": half_rate / args.gateways}
            )
            half = await run_phase(half_plan, args.processes, core.pid, root, "half")
        core_peak_kib = _peak_rss_kib(core.pid)
    finally:
        core.terminate()
        await core.wait()
    gateways = (half or peak).gateways or peak.gateways
    store = check_store(home.db_dir / "events.sqlite", gateways)
    result: dict[str, Any] = {
        "machine": machine_info(),
        "command": bench_record.command_line("bench.throughput"),
        "gateways": args.gateways,
        "sensors": args.sensors,
        "processes": args.processes,
        "batch_max_events": args.batch,
        "duration_s": args.duration,
        # Other processes' load: the figures are only comparable at similar load averages.
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "token_issue_s": round(issue_s, 1),
        "max": peak.summary(),
        "half": half.summary() if half else None,
        "half_offered_events_per_s": round(half_rate),
        "core_peak_rss_mib": round(core_peak_kib / 1024, 1),
        "core_rss_per_link_kib": round((rss_links - rss_idle) / args.gateways, 1),
        "store": store,
        "store_gateways": gateways,
        "timeline": {"max": peak.timeline, "half": half.timeline if half else []},
    }
    if not args.skip_reference:
        batches = sample_batches(16, args.batch, args.sensors)
        print("mosquitto: the same batches, QoS 1, one subscriber", file=sys.stderr)
        result["mosquitto"] = await mosquitto(home, batches, args.duration, root, args.batch)
        print("ingredients: cbor2 decode + SQLite insert, no networking", file=sys.stderr)
        result["ingredients"] = ingredients(batches, max(1, int(args.duration)), root)
    return result


def _fields(plan: FleetPlan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in plan.__slots__}


def _rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS:")


def _peak_rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmHWM:")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


# --- reporting ------------------------------------------------------------------------------


def _n(value: object) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "-"


def _row(result: dict[str, Any]) -> str:
    """One line of the results table in docs/performance.md (columns in TABLE_HEADER)."""
    m, peak, half = result["machine"], result["max"], result["half"] or {}
    lat = half.get("latency_ms", {"p50": "-", "p99": "-", "p99.9": "-"})
    mq = result.get("mosquitto", {})
    ing = result.get("ingredients", {})
    rate = peak["durable_events_per_s"]
    vs_mq = f"{rate / mq['events_per_s']:.2f}x" if mq.get("events_per_s") else "-"
    vs_ing = f"{rate / ing['events_per_s']:.2f}x" if ing.get("events_per_s") else "-"
    store = result["store"]
    cells = [
        m["date"][:10],
        f"{m['nproc']} x {m['cpu_model']}, load {result['loadavg_1_5_15'][0]}",
        f"`{result['command']}`",
        f"{result['gateways']} x {result['sensors']}",
        _n(rate),
        f"{_n(mq.get('events_per_s'))} ({vs_mq})",
        f"{_n(ing.get('events_per_s'))} ({vs_ing})",
        f"{lat['p50']} / {lat['p99']} / {lat['p99.9']}"
        f" at {_n(result['half_offered_events_per_s'])}/s",
        f"{peak['core_cpu_us_per_event']} / {ing.get('cpu_us_per_event', '-')}",
        str(result["core_peak_rss_mib"]),
        str(result["core_rss_per_link_kib"]),
        str(peak["fleet_cpu_us_per_event"]),
        str(max(peak["fleet_peak_rss_mib"] or [0])),
        str(store["bytes_on_disk_per_event"]),
        f"{store['lost']} / {store['doubled']}",
    ]
    return "| " + " | ".join(cells) + " |"


def _plot(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    series = [("core, max", result["timeline"]["max"]), ("core, half", result["timeline"]["half"])]
    series.append(("mosquitto", result.get("mosquitto", {}).get("timeline", [])))
    for label, points in series:
        if points:
            top.plot([p["t"] for p in points], [p["events_per_s"] for p in points], label=label)
            # A second without acks has no latency; plotting it as 0 would hide a stall.
            acked = [p for p in points if p["events_per_s"] > 0]
            bottom.plot([p["t"] for p in acked], [p["p99_ms"] for p in acked], ".-", label=label)
    # Log scales: the core's and Mosquitto's rates differ by orders of magnitude.
    top.set_yscale("symlog", linthresh=100)
    bottom.set_yscale("log")
    top.set_ylabel("events/s (acked or delivered)")
    bottom.set_ylabel("p99 latency per second, ms")
    bottom.set_xlabel("seconds into the phase")
    top.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def record(result: dict[str, Any]) -> None:
    _plot(result, PLOTS / "throughput.png")
    bench_record.record(RESULTS, result, TABLE_MARKER, _row(result))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description="Fleet → core throughput and latency, side by side with Mosquitto and "
        "with cbor2 + SQLite alone.",
    )
    parser.add_argument("--gateways", type=int, default=8, help="simulated gateways (8)")
    parser.add_argument("--sensors", type=int, default=4, help="sensors per gateway (4)")
    parser.add_argument("--processes", type=int, default=1, help="fleet processes (1)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per phase (10)")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first (2)")
    parser.add_argument("--rate", type=float, default=0, help="offered events/s; 0 = max")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (500)")
    parser.add_argument("--inflight", type=int, default=2000, help="unacked events per link")
    parser.add_argument("--skip-half", action="store_true", help="no half-rate phase")
    parser.add_argument("--skip-reference", action="store_true", help="no Mosquitto/ingredients")
    parser.add_argument("--no-record", action="store_true", help="do not write results or docs")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy flame graphs of the core and one fleet process over the max phase, "
        "as DIR/core-max.svg and DIR/fleet-max.svg (the profiler's CPU lowers the rates)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetbook-throughput-") as tmp:
        result = trio.run(run, args, Path(tmp))
    summary = {k: v for k, v in result.items() if k not in ("timeline", "store_gateways")}
    if "mosquitto" in summary:
        summary["mosquitto"] = {k: v for k, v in summary["mosquitto"].items() if k != "timeline"}
    print(json.dumps(summary, indent=2))
    if not args.no_record:
        record(result)
    store = result["store"]
    return 0 if store["lost"] == 0 and store["doubled"] == 0 and not result["max"]["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
