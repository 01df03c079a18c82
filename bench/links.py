"""Links benchmark: how many authenticated gateway links one core holds, and at what cost.

``python -m bench.links --links 10000 --processes 4`` builds a throw-away core home, issues
one real link token per gateway, starts ``assetbook core run`` and then:

1. **warm-up**: a few links connect, send a batch, get it acknowledged and close, so the
   core's imports, caches and store are warm; then the core's memory is read as the
   **baseline** (RSS, and USS/PSS from ``/proc/<pid>/smaps_rollup``);
2. **ramp**: ``--processes`` fleet processes (:mod:`simulators.fleet`, hold mode) open
   ``--links`` links: TLS verified against the home's CA, the gateway's bearer token in the
   ``Authorization`` header, ``Hello``/``Welcome``; each process runs at most
   ``--handshakes`` handshakes at once and starts at most ``--rate``/``--processes`` per
   second;
3. **hold**: once every link is up, all of them stay connected for ``--hold`` seconds with
   the core's keepalive running (a ping every 30 s per link) and a trickle of events (each
   link one ``--trickle-events`` batch every ``--trickle`` seconds). Links answer the
   core's ``status`` commands as a gateway does (the fleet agent asks every new link, then
   about every 5 minutes), unless ``--no-answer``. The core's memory is read when the ramp ends and
   when the hold ends, its CPU over the hold;
4. **check**: every link sends a ping and waits for its pong and for the acks of every
   event it sent; a link counts as held only if it was open at the end, answered, and had
   every event acknowledged.

Per-link cost is (core memory at the end of the hold - baseline) ÷ links open at the end.
A progress line is printed every second. Results go to ``bench/results/links.json``
(appended) and a row in ``docs/performance.md``. It measures; it asserts nothing about
speed, but exits 1 when a link was not held.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from bench import record as bench_record
from bench.throughput import REPO, _issue, _rss_kib, _start_core
from bench.ws_choice import machine_info, process_cpu_s
from cloud.home import init_home, load_config
from simulators.fleet import HOLD_FINAL_ACK_S, MAX_HANDSHAKES, FleetPlan, LatencyHistogram

RESULTS: Final = Path("bench/results/links.json")
TABLE_MARKER: Final = "<!-- links results: bench/links.py appends rows above this line -->"
WARMUP_LINKS: Final = 8
FLEET: Final = (sys.executable, "-m", "simulators.fleet")


@dataclass
class HoldResult:
    """What one hold phase measured, aggregated over the fleet processes."""

    links: int
    connected_s: float = 0.0  # from the first fleet process start to the last link up
    first_up_s: float = 0.0  # from the first fleet process start to the first link up
    per_second: list[int] = field(default_factory=list)  # links up, sampled each second
    parts: list[dict[str, Any]] = field(default_factory=list)  # each process's "held"
    core_at_connected: dict[str, int] = field(default_factory=dict)
    core_at_end: dict[str, int] = field(default_factory=dict)
    core_cpu_hold_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(p[key]) for p in self.parts)

    def counted(self, key: str) -> dict[str, int]:
        merged: dict[str, int] = {}
        for part in self.parts:
            for name, count in part[key].items():
                merged[name] = merged.get(name, 0) + count
        return merged

    def handshake(self) -> LatencyHistogram:
        merged = LatencyHistogram()
        for part in self.parts:
            merged.merge(LatencyHistogram.from_json(part["handshake"]))
        return merged


def core_memory_kib(pid: int) -> dict[str, int]:
    """RSS, PSS and USS (private clean + dirty) of ``pid`` in KiB (proc(5) smaps_rollup)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            fields[name] = int(parts[0])
    return {
        "rss": _rss_kib(pid),
        "pss": fields.get("Pss", 0),
        "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    }


async def hold_phase(
    plan: FleetPlan, processes: int, core_pid: int, hold_s: float, workdir: Path, label: str
) -> HoldResult:
    """Ramp up every link of ``plan``, hold them ``hold_s`` seconds, then check them."""
    plan_file = workdir / f"plan-{label}.json"
    plan.write(plan_file)
    result = HoldResult(links=len(plan.gateways))
    latest: dict[int, dict[str, Any]] = {}
    connected: set[int] = set()
    all_up = trio.Event()
    finished = trio.Event()
    ended: set[int] = set()
    stdins: list[trio.abc.SendStream] = []

    async def part(index: int) -> None:
        proc = await trio.lowlevel.open_process(
            [*FLEET, str(plan_file), "--part", str(index), "--of", str(processes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        assert proc.stdout is not None
        assert proc.stdin is not None
        stdins.append(proc.stdin)
        buffer = b""
        async for chunk in proc.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                record = json.loads(line)
                if record["kind"] == "progress":
                    latest[index] = record
                elif record["kind"] == "connected":
                    connected.add(index)
                    if len(connected) == processes:
                        all_up.set()
                elif record["kind"] == "held":
                    result.parts.append(record)
                elif record["kind"] == "error":
                    result.errors.append(record["error"])
        await proc.wait()
        if proc.returncode:
            result.errors.append(f"fleet part {index} exited {proc.returncode}")
        all_up.set()  # a part that died must not leave the phase waiting
        ended.add(index)
        if len(ended) == processes:
            finished.set()

    def up() -> tuple[int, int, int]:
        return (
            sum(r["connected"] for r in latest.values()),
            sum(r["closed"] for r in latest.values()),
            sum(r["failed"] for r in latest.values()),
        )

    async def progress(stage: trio.Event) -> None:
        started = time.monotonic()
        last = 0
        while True:
            await trio.sleep(1)
            links, closed, failed = up()
            if not stage.is_set():
                result.per_second.append(links)
                if links and not result.first_up_s:
                    result.first_up_s = time.monotonic() - started
            mem = core_memory_kib(core_pid)
            print(
                f"  [{label}] {time.monotonic() - started:>6.0f} s  links {links:>6,}/"
                f"{result.links:,}  +{links - last:>4}/s  closed {closed}  failed {failed}"
                f"  core RSS {mem['rss'] / 1024:,.1f} MiB",
                file=sys.stderr,
            )
            last = links

    async with trio.open_nursery() as nursery:
        started = time.monotonic()
        for index in range(processes):
            nursery.start_soon(part, index)
        nursery.start_soon(progress, all_up)
        await all_up.wait()
        result.connected_s = time.monotonic() - started
        result.core_at_connected = core_memory_kib(core_pid)
        cpu = process_cpu_s(core_pid)
        if not result.errors:
            await trio.sleep(hold_s)
        result.core_cpu_hold_s = process_cpu_s(core_pid) - cpu
        result.core_at_end = core_memory_kib(core_pid)
        for stdin in stdins:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stdin.send_all(b"release\n")
        with trio.fail_after(HOLD_FINAL_ACK_S + 60):
            await finished.wait()
        nursery.cancel_scope.cancel()
    return result


def _summary(phase: HoldResult, baseline: dict[str, int], hold_s: float) -> dict[str, Any]:
    held = phase.total("held")
    handshake = phase.handshake()
    # Every link open at the end costs memory, whether or not its last ack came in time.
    open_links = held + phase.total("unacked")
    per_link = {
        key: round((phase.core_at_end[key] - baseline[key]) / max(open_links, 1), 1)
        for key in baseline
    }
    rates = [b - a for a, b in zip([0, *phase.per_second], phase.per_second, strict=False)]
    return {
        "links": phase.links,
        "held": held,
        "unacked": phase.total("unacked"),
        "closed_early": phase.counted("closed"),
        "failed": phase.counted("failed"),
        "events_sent": phase.total("events_sent"),
        "events_acked": phase.total("events_acked"),
        "ramp_s": round(phase.connected_s, 1),
        # Over the ramp, from the first link up (the fleet's start-up is not handshaking).
        "handshakes_per_s": round(
            phase.links / max(phase.connected_s - phase.first_up_s + 1, 1e-9), 1
        ),
        "handshakes_per_s_peak": max(rates, default=0),
        "handshake_ms": {
            "p50": handshake.percentile_ms(0.5),
            "p99": handshake.percentile_ms(0.99),
            "max": handshake.percentile_ms(1.0),
        },
        "core_kib": {
            "baseline": baseline,
            "connected": phase.core_at_connected,
            "end": phase.core_at_end,
            "per_link": per_link,
        },
        "core_cpu_s_per_s_holding": round(phase.core_cpu_hold_s / max(hold_s, 1e-9), 3),
        "fleet_peak_rss_mib": [round(p["peak_rss_kib"] / 1024, 1) for p in phase.parts],
        "fleet_cpu_s": round(sum(p["cpu_s"] for p in phase.parts), 1),
        "errors": phase.errors,
    }


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from tests.support import free_port

    home = init_home(root / "core", link_port=free_port(), rest_port=free_port())
    issue_started = time.monotonic()
    credentials = _issue(home, args.links + WARMUP_LINKS)
    issue_s = time.monotonic() - issue_started
    print(f"issued {len(credentials):,} link tokens in {issue_s:.1f} s", file=sys.stderr)
    url = load_config(home).link_url
    core = await _start_core(home, root / "core.log")
    common = {
        "url": url,
        "ca_file": str(home.ca_cert),
        "sensors": 1,
        "mode": "hold",
        "handshakes": args.handshakes,
        "trickle_s": args.trickle,
        "trickle_events": args.trickle_events,
        "answer_commands": not args.no_answer,
    }
    try:
        warm = FleetPlan(gateways=credentials[:WARMUP_LINKS], **common)
        await hold_phase(warm, 1, core.pid, 0, root, "warm-up")
        await trio.sleep(2)  # the warm-up links' close handshakes and handler exits
        baseline = core_memory_kib(core.pid)
        print(f"baseline core RSS {baseline['rss'] / 1024:.1f} MiB", file=sys.stderr)
        plan = FleetPlan(
            gateways=credentials[WARMUP_LINKS:],
            handshake_rate=args.rate / args.processes if args.rate else 0.0,
            **common,
        )
        phase = await hold_phase(plan, args.processes, core.pid, args.hold, root, "links")
    finally:
        core.terminate()
        await core.wait()
    return {
        "machine": machine_info(),
        "command": bench_record.command_line("bench.links"),
        "processes": args.processes,
        "handshakes_at_once_per_process": args.handshakes,
        "hold_s": args.hold,
        "trickle": {"every_s": args.trickle, "events": args.trickle_events},
        "answer_commands": not args.no_answer,
        "token_issue_s": round(issue_s, 1),
        **_summary(phase, baseline, args.hold),
    }


# --- reporting ------------------------------------------------------------------------------


def _row(result: dict[str, Any]) -> str:
    m = result["machine"]
    per_link = result["core_kib"]["per_link"]
    hs = result["handshake_ms"]
    cells = [
        m["date"][:10],
        f"{m['nproc']} x {m['cpu_model']}",
        f"`{result['command']}`",
        f"{result['held']:,} / {result['links']:,}",
        f"{per_link['rss']} / {per_link['uss']}",
        f"{result['core_kib']['baseline']['rss'] / 1024:.1f}",
        f"{result['core_kib']['end']['rss'] / 1024:.1f}",
        f"{result['handshakes_per_s']} ({result['handshakes_per_s_peak']})",
        f"{hs['p50']} / {hs['p99']}",
        str(result["core_cpu_s_per_s_holding"]),
        f"{result['events_acked']:,} / {result['events_sent']:,}",
        str(max(result["fleet_peak_rss_mib"] or [0])),
    ]
    return "| " + " | ".join(cells) + " |"


def record(result: dict[str, Any]) -> None:
    bench_record.record(RESULTS, result, TABLE_MARKER, _row(result))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.links",
        description="How many authenticated gateway links one core holds, and their memory "
        "and CPU cost.",
    )
    parser.add_argument("--links", type=int, default=1000, help="links to hold (1000)")
    parser.add_argument("--processes", type=int, default=2, help="fleet processes (2)")
    parser.add_argument(
        "--handshakes",
        type=int,
        default=MAX_HANDSHAKES,
        help=f"handshakes at once per fleet process ({MAX_HANDSHAKES})",
    )
    parser.add_argument(
        "--rate", type=float, default=0, help="handshakes started per second in all; 0 = unpaced"
    )
    parser.add_argument("--hold", type=float, default=60, help="seconds every link is held (60)")
    parser.add_argument(
        "--trickle", type=float, default=60, help="seconds between a link's batches (60)"
    )
    parser.add_argument("--trickle-events", type=int, default=2, help="events per batch (2)")
    parser.add_argument(
        "--no-answer",
        action="store_true",
        help="links do not answer the core's status commands (the link layer without the "
        "fleet agent's per-link reconciliation)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not write results or docs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetbook-links-") as tmp:
        result = trio.run(run, args, Path(tmp))
    print(json.dumps(result, indent=2))
    if not args.no_record:
        record(result)
    return 0 if result["held"] == args.links and not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
