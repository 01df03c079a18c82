"""Soak benchmark: a real gateway process into a real core process for a long time at half
the maximum rate; is memory flat?

``python -m bench.soak --duration 1800`` (``just bench-soak``) builds a throw-away core home,
starts ``assetbook core run`` and a gateway process (``python -m bench.soak_process gateway
run``: ``assetbook gateway run`` with the bench-only ``bench-synthetic`` sensor kind, see
:mod:`bench.soak_process`) fed by ``--sensors`` synthetic sensors. Then:

1. **max** (``--max-duration`` s, skipped when ``--rate`` is given): the sensors offer as
   much as the gateway takes; the durable rate is the gateway's acknowledged events per
   second (its ``health.json``). The backlog is drained before the soak starts.
2. **soak** (``--duration`` s): the sensors offer half that rate (or ``--rate``).
3. The sensors stop, the outbox drains, both processes stop in order, and the core's store is
   checked: every seq the gateway's outbox issued must be stored exactly once.

Every ``--interval`` s it samples, for the core and the gateway: resident memory (VmRSS),
open file descriptors, threads, CPU seconds, the SQLite files' sizes (the WAL files
separately) and the gateway's outbox depth and acked count; plus the load average. A
progress line is printed every ``--progress`` s. At the end a least-squares slope of RSS (KiB
per minute) is fitted over the whole soak and over its second half (after warm-up), for
the whole RSS and for its anonymous part (RssAnon: heap and stacks, which page-cache reclaim
by other work on the machine does not shrink).

Raw figures go to ``bench/results/soak.json`` (appended: each run with all its samples),
and, if matplotlib is installed, a plot of RSS over time to ``docs/perf/soak.png``. It
measures; it asserts nothing about memory, but exits 1 if any event was lost or doubled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from bench.record import command_line
from bench.soak_process import KIND, TRACEMALLOC_ENV
from bench.ws_choice import machine_info, process_cpu_s
from cloud.home import CoreHome, init_home
from cloud.registry import Registry, issue_gateway_credentials
from gateway.config import write_config

RESULTS: Final = Path("bench/results/soak.json")
PLOT: Final = Path("docs/perf/soak.png")
REPO: Final = Path(__file__).resolve().parents[1]
TENANT: Final = "bench"
GATEWAY_ID: Final = "gw-soak"
#: Paths whose uncommitted changes would make the recorded commit not what ran.
CODE_PATHS: Final = ("assetbook", "bench", "cloud", "drivers", "gateway", "protocol")
START_TIMEOUT_S: Final = 60
DRAIN_TIMEOUT_S: Final = 600
POLL_S: Final = 0.25


@dataclass
class Soak:
    """The running system and what has been sampled from it."""

    root: Path
    home: CoreHome
    gateway_dir: Path
    rate_files: list[Path]
    core: trio.Process | None = None
    gateway: trio.Process | None = None
    started: float = field(default_factory=time.monotonic)
    phase: str = "start"
    phase_started: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def enter(self, phase: str) -> None:
        self.phase, self.phase_started = phase, time.monotonic()

    @property
    def health_file(self) -> Path:
        return self.gateway_dir / "data" / "health.json"

    def health(self) -> dict[str, Any]:
        """The gateway's last health report (written every 2 s), or {} before the first."""
        try:
            report: dict[str, Any] = json.loads(self.health_file.read_text())
        except (OSError, ValueError):
            return {}
        return report

    def offer(self, rate_per_s: float | None) -> None:
        """Tell every sensor what to offer: None pauses, 0 is as fast as taken."""
        if rate_per_s is None:
            text = "pause"
        elif rate_per_s == 0:
            text = "max"
        else:
            text = f"{rate_per_s / len(self.rate_files):.3f}"
        for path in self.rate_files:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text + "\n")
            tmp.replace(path)  # atomic: a sensor never reads half a number


# --- set-up ---------------------------------------------------------------------------------


def setup(root: Path, sensors: int) -> Soak:
    """A core home with one tenant and one gateway, and that gateway's config folder."""
    from tests.support import free_port

    home = init_home(root / "core", link_port=free_port(), rest_port=free_port())
    with Registry(home.db_path) as registry:
        registry.create_tenant(TENANT)
    credentials = issue_gateway_credentials(home, TENANT, GATEWAY_ID)
    gateway_dir = root / "gw"
    gateway_dir.mkdir()
    (gateway_dir / "ca.pem").write_bytes(credentials.ca_pem)
    rate_files = [gateway_dir / f"rate-{n}" for n in range(sensors)]
    soak = Soak(root, home, gateway_dir, rate_files)
    soak.offer(None)
    write_config(
        gateway_dir / "gateway.toml",
        gateway_id=GATEWAY_ID,
        tenant=TENANT,
        url=credentials.link_url,
        token=credentials.token,
        ca_file="ca.pem",
        data_dir="./data",
        log_level="warning",
        sensors=[
            {
                "kind": KIND,
                "name": f"synthetic-{n}",
                "device": f"synthetic-{n}",
                "rate_file": str(p),
            }
            for n, p in enumerate(rate_files)
        ],
    )
    return soak


async def _start(command: list[str], log: Path, ready: bytes, env: dict[str, str]) -> trio.Process:
    # Output goes to a file: a pipe nobody reads would fill up and stall the process.
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
        )
    with trio.fail_after(START_TIMEOUT_S):
        while ready not in await trio.Path(log).read_bytes():
            if process.returncode is not None:
                raise RuntimeError(f"{command[2]} exited before it was ready; see {log.name}")
            await trio.sleep(POLL_S)  # polling another process's output file
    return process


async def start(soak: Soak, tracemalloc: bool) -> None:
    """Start the core, then the gateway; return when the gateway has reported its health."""
    env = dict(os.environ)
    core_cmd = [sys.executable, "-m", "assetbook", "core", "run", "--home", str(soak.home.root)]
    if tracemalloc:
        env[TRACEMALLOC_ENV] = str(soak.root / "core-tracemalloc.txt")
        core_cmd[2] = "bench.soak_process"
    soak.core = await _start(core_cmd, soak.root / "core.log", b"core ready", env)
    if tracemalloc:
        env[TRACEMALLOC_ENV] = str(soak.root / "gateway-tracemalloc.txt")
    gateway_cmd = [sys.executable, "-m", "bench.soak_process", "gateway", "run", "--config"]
    gateway_cmd.append(str(soak.gateway_dir / "gateway.toml"))
    soak.gateway = await _start(gateway_cmd, soak.root / "gateway.log", b"gateway running", env)
    with trio.fail_after(START_TIMEOUT_S):
        while True:
            if soak.health().get("uplink", {}).get("state") == "online":
                break
            await trio.sleep(POLL_S)  # polling the health file, written every 2 s


async def stop(soak: Soak) -> dict[str, Any]:
    """Stop the gateway (it flushes and writes a last health report), then the core."""
    final: dict[str, Any] = {}
    for name, process in (("gateway", soak.gateway), ("core", soak.core)):
        if process is None or process.returncode is not None:
            continue
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(60) as scope:
            await process.wait()
        if scope.cancelled_caught:
            process.kill()
            await process.wait()
        if name == "gateway":
            final = soak.health()
    return final


# --- sampling -------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and its anonymous part (KiB), threads and open fds of ``pid`` (proc(5)).

    RssAnon is the heap and stacks; RssFile (mapped libraries and the SQLite shared-memory
    file) shrinks whenever the kernel reclaims page cache, which other work on the machine
    can cause, so a leak shows in RssAnon first."""
    fields = {
        "VmRSS": "rss_kib",
        "RssAnon": "rss_anon_kib",
        "RssFile": "rss_file_kib",
        "VmHWM": "peak_rss_kib",
        "Threads": "threads",
    }
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            found[fields[key]] = int(value.split()[0])
    found["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return found


def sqlite_sizes(folder: Path) -> dict[str, int]:
    """Sizes in bytes of every SQLite database, WAL and shared-memory file in ``folder``."""
    sizes: dict[str, int] = {}
    for path in sorted(folder.glob("*.sqlite*")):
        try:
            sizes[path.name] = path.stat().st_size
        except FileNotFoundError:  # a WAL removed by the last connection closing
            continue
    return sizes


def take_sample(soak: Soak) -> dict[str, Any]:
    sample: dict[str, Any] = {
        "t_s": round(time.monotonic() - soak.started, 2),
        "phase": soak.phase,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    for name, process in (("core", soak.core), ("gateway", soak.gateway)):
        if process is None or process.returncode is not None:
            continue
        try:
            sample[name] = proc_status(process.pid)
            sample[name]["cpu_s"] = round(process_cpu_s(process.pid), 2)
        except FileNotFoundError:  # it exited between the check and the read
            continue
    sample["core"]["files"] = sqlite_sizes(soak.home.db_dir)
    sample["gateway"]["files"] = sqlite_sizes(soak.gateway_dir / "data")
    health = soak.health()
    outbox = health.get("outbox", {})
    sample["outbox"] = {k: outbox.get(k) for k in ("depth", "appended", "acked")}
    sample["uplink_state"] = health.get("uplink", {}).get("state")
    return sample


async def sampler(soak: Soak, interval: float) -> None:
    while True:
        soak.samples.append(take_sample(soak))
        await trio.sleep(interval)


async def progress(soak: Soak, every: float) -> None:
    last_acked, last_t = None, 0.0
    while True:
        await trio.sleep(every)
        health, now = soak.health(), time.monotonic() - soak.started
        acked = health.get("outbox", {}).get("acked")
        rate = "" if last_acked is None else f"{(acked - last_acked) / (now - last_t):8,.0f} ev/s"
        last_acked, last_t = acked, now
        s = soak.samples[-1] if soak.samples else {}
        core, gw = s.get("core", {}), s.get("gateway", {})
        print(
            f"  [{soak.phase} {time.monotonic() - soak.phase_started:6.0f} s] {rate}"
            f" core {core.get('rss_kib', 0):>7} KiB"
            f" wal {core.get('files', {}).get('events.sqlite-wal', 0) // 1024:>6} KiB |"
            f" gateway {gw.get('rss_kib', 0):>7} KiB"
            f" wal {gw.get('files', {}).get('outbox.sqlite-wal', 0) // 1024:>6} KiB"
            f" depth {health.get('outbox', {}).get('depth')} | load {s.get('loadavg', ['?'])[0]}",
            file=sys.stderr,
        )


# --- phases ---------------------------------------------------------------------------------


async def wait_health_after(soak: Soak, mono_ns: int) -> dict[str, Any]:
    """The first health report written after the gateway's monotonic time ``mono_ns``."""
    while True:
        health = soak.health()
        if health.get("mono_ns", 0) > mono_ns:
            return health
        await trio.sleep(POLL_S)  # polling the health file, written every 2 s


async def measure(soak: Soak, rate: float, duration: float) -> float:
    """Offer ``rate`` (0: max) for ``duration`` s; the gateway's acked events per second."""
    first = await wait_health_after(soak, soak.health().get("mono_ns", 0))
    soak.offer(rate)
    await trio.sleep(duration)
    last = await wait_health_after(soak, first["mono_ns"])
    acked = last["outbox"]["acked"] - first["outbox"]["acked"]
    return float(acked / ((last["mono_ns"] - first["mono_ns"]) / 1e9))


async def drain(soak: Soak) -> None:
    """Pause the sensors and wait until the outbox is empty."""
    soak.offer(None)
    with trio.fail_after(DRAIN_TIMEOUT_S):
        health = await wait_health_after(soak, soak.health().get("mono_ns", 0))
        while health["outbox"]["depth"] > 0:
            health = await wait_health_after(soak, health["mono_ns"])


# --- results --------------------------------------------------------------------------------


def slope_kib_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, KiB) points, in KiB per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (y - mean_y) for t, y in points)
    return round(cov / var * 60, 2)


def memory_summary(samples: list[dict[str, Any]], process: str) -> dict[str, Any]:
    """RSS (all, and anonymous only) at the start and end of the soak phase and its slope,
    over the whole soak and over its second half."""
    mine = [s[process] for s in samples if process in s]
    if not mine:
        return {}
    summary: dict[str, Any] = {}
    for key, prefix in (("rss_kib", ""), ("rss_anon_kib", "anon_")):
        points = [(s["t_s"], s[process][key]) for s in samples if process in s]
        middle = (points[0][0] + points[-1][0]) / 2
        second_half = [p for p in points if p[0] >= middle]
        summary |= {
            f"{prefix}rss_start_kib": points[0][1],
            f"{prefix}rss_end_kib": points[-1][1],
            f"{prefix}rss_max_kib": max(y for _, y in points),
            f"{prefix}slope_kib_per_min": slope_kib_per_min(points),
            f"{prefix}slope_second_half_kib_per_min": slope_kib_per_min(second_half),
        }
    summary["fds_start_end"] = [mine[0]["fds"], mine[-1]["fds"]]
    summary["threads_start_end"] = [mine[0]["threads"], mine[-1]["threads"]]
    return summary


def wal_summary(samples: list[dict[str, Any]], process: str, wal: str) -> dict[str, int]:
    sizes = [s[process]["files"].get(wal, 0) for s in samples if process in s]
    return {"max_bytes": max(sizes, default=0), "end_bytes": sizes[-1] if sizes else 0}


def check_store(events_db: Path, issued: int, dropped: int) -> dict[str, int]:
    """Lost: a seq the outbox issued (and did not drop on purpose) that is not stored;
    doubled: a seq stored more than once; unexpected: a stored seq never issued."""
    select = "SELECT COUNT(*), COUNT(DISTINCT seq), COALESCE(MAX(seq), 0) FROM events"
    with sqlite3.connect(f"file:{events_db}?mode=ro", uri=True) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if "gateway" in columns:  # names stored in every row
            where = " WHERE tenant = ? AND gateway = ?"
        else:  # tenants and gateways interned in their own tables
            where = (
                " JOIN gateways g ON g.id = events.gateway_id JOIN tenants t ON t.id = g.tenant_id"
                " WHERE t.name = ? AND g.name = ?"
            )
        count, distinct, top = db.execute(select + where, (TENANT, GATEWAY_ID)).fetchone()
    return {
        "issued": issued,
        "stored": count,
        "lost": max(0, issued - dropped - distinct),
        "doubled": count - distinct,
        "unexpected": max(0, top - issued),
    }


def git_state() -> dict[str, Any]:
    """The commit the code ran from, and whether the code paths had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", *CODE_PATHS],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None}
    return {"commit": head, "uncommitted": sorted(line[3:] for line in status)}


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The whole benchmark in ``root``; returns the result (see the module docstring)."""
    soak = setup(root, args.sensors)
    max_rate: float | None = None
    try:
        await start(soak, args.tracemalloc)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sampler, soak, args.interval)
            nursery.start_soon(progress, soak, args.progress)
            if args.rate:
                rate = args.rate
            else:
                soak.enter("max")
                print(f"phase max: as fast as taken, {args.max_duration:g} s", file=sys.stderr)
                max_rate = await measure(soak, 0, args.max_duration)
                rate = max_rate / 2
                print(f"  max {max_rate:,.0f} events/s; draining the backlog", file=sys.stderr)
                await drain(soak)
            soak.enter("soak")
            soak_started = time.monotonic() - soak.started
            print(f"phase soak: {rate:,.0f} events/s for {args.duration:g} s", file=sys.stderr)
            achieved = await measure(soak, rate, args.duration)
            soak.enter("drain")
            await drain(soak)
            soak.samples.append(take_sample(soak))
            nursery.cancel_scope.cancel()
    finally:
        final = await stop(soak)
    outbox = final.get("outbox", {})
    store = check_store(
        soak.home.db_dir / "events.sqlite", outbox.get("next_seq", 1) - 1, outbox.get("dropped", 0)
    )
    in_soak = [s for s in soak.samples if s["phase"] == "soak" and s["t_s"] >= soak_started]
    return {
        "machine": machine_info(),
        "git": git_state(),
        "label": args.label,
        "command": command_line("bench.soak"),
        "sensors": args.sensors,
        "max_events_per_s": None if max_rate is None else round(max_rate),
        "offered_events_per_s": round(rate),
        "achieved_events_per_s": round(achieved),
        "duration_s": args.duration,
        "interval_s": args.interval,
        "loadavg_during_soak": _loadavg(in_soak),
        "core": memory_summary(in_soak, "core")
        | {"wal": wal_summary(in_soak, "core", "events.sqlite-wal")},
        "gateway": memory_summary(in_soak, "gateway")
        | {"wal": wal_summary(in_soak, "gateway", "outbox.sqlite-wal")},
        "outbox_depth_max": max((s["outbox"]["depth"] or 0 for s in in_soak), default=0),
        "store": store,
        "tracemalloc": _tracemalloc_reports(root) if args.tracemalloc else None,
        "samples": soak.samples,
    }


def _loadavg(samples: list[dict[str, Any]]) -> dict[str, float]:
    ones = [s["loadavg"][0] for s in samples]
    if not ones:
        return {}
    return {"min": min(ones), "mean": round(sum(ones) / len(ones), 2), "max": max(ones)}


def _tracemalloc_reports(root: Path) -> dict[str, str]:
    reports = {}
    for name in ("core", "gateway"):
        path = root / f"{name}-tracemalloc.txt"
        reports[name] = path.read_text() if path.exists() else "(not written)"
    return reports


def plot(result: dict[str, Any], path: Path) -> bool:
    """RSS of the core and the gateway over time, with the phases marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    samples = result["samples"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for process, colour in (("core", "tab:blue"), ("gateway", "tab:orange")):
        for key, style, what in (("rss_kib", "-", "RSS"), ("rss_anon_kib", "--", "anon")):
            points = [(s["t_s"] / 60, s[process][key] / 1024) for s in samples if process in s]
            prefix = "anon_" if key == "rss_anon_kib" else ""
            slope = result[process].get(f"{prefix}slope_second_half_kib_per_min")
            label = f"{process} {what} (2nd-half slope {slope} KiB/min)"
            ax.plot(*zip(*points, strict=True), style, color=colour, label=label)
    for sample in samples:
        if sample["phase"] == "soak":
            ax.axvline(sample["t_s"] / 60, color="grey", linestyle=":", linewidth=1)
            break
    ax.set_xlabel("minutes since start (dotted line: soak starts)")
    ax.set_ylabel("resident memory, MiB (dashed: anonymous)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"soak at {result['offered_events_per_s']:,} events/s")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Run a real gateway process into a real core process at half the maximum"
        " rate and sample their memory, fds, threads and SQLite file sizes.",
    )
    parser.add_argument("--duration", type=float, default=1800, help="soak seconds (1800)")
    parser.add_argument(
        "--rate", type=float, default=0, help="events/s to offer; 0 = half the measured max (0)"
    )
    parser.add_argument(
        "--max-duration", type=float, default=20, help="seconds of the max phase (20)"
    )
    parser.add_argument("--sensors", type=int, default=4, help="synthetic sensors (4)")
    parser.add_argument("--interval", type=float, default=5, help="seconds between samples (5)")
    parser.add_argument("--progress", type=float, default=10, help="seconds between lines (10)")
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="run both processes under tracemalloc and keep their top allocations (slow)",
    )
    parser.add_argument(
        "--label", default="", help="free text kept with the result, e.g. which code ran"
    )
    parser.add_argument("--no-record", action="store_true", help="do not write results or plot")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetbook-soak-") as tmp:
        result = trio.run(run, args, Path(tmp))
    summary = {k: v for k, v in result.items() if k not in ("samples", "machine")}
    print(json.dumps(summary, indent=2))
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        history = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        history.append(result)
        RESULTS.write_text(json.dumps(history, indent=2) + "\n")
        if plot(result, PLOT):
            print(f"plot: {PLOT}", file=sys.stderr)
    store = result["store"]
    return 0 if store["lost"] == 0 and store["doubled"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
