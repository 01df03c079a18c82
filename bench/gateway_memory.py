"""Gateway memory benchmark: a real gateway process with every kind of driver, online.

``python -m bench.gateway_memory`` (``just bench-memory``) builds a throw-away core home,
starts the core (``assetbook core run``), starts the shipped simulated site
(``simulators/scenarios/site.toml`` through :mod:`simulators.site`: NMEA GPS receivers and
Modbus RTU buses on ptys, MicroPython nodes under the real interpreter, BLE advertisers and
GATT sensors on a private D-Bus), writes the site's sensors into the gateway's config and
starts the gateway as its own process (``assetbook gateway run``). Kinds whose program is
missing are skipped, and the result says which.

Once every driver has produced a sample, it waits ``--settle`` seconds, then samples the
gateway's memory every half second for ``--measure`` seconds (proc(5)):

* **RSS** (``VmRSS``): resident now; the steady figure is the mean and the highest sample;
* **peak RSS** (``VmHWM``): the highest resident size over the process's life, start-up
  included;
* **USS** (``Private_Clean + Private_Dirty`` of ``smaps_rollup``): what only this process
  holds, i.e. what stopping it would free; **PSS** shares the shared pages out.

For scale it also measures the floor: a bare ``python -c`` that only sleeps, and one that
imports trio. ``--env NAME=VALUE`` runs the gateway with extra environment variables
(``MALLOC_ARENA_MAX=2``), to measure a setting before the systemd unit gets it.

Results go to ``bench/results/gateway_memory.json`` and a row is added to the table in
``docs/performance.md``. It measures; it asserts nothing about size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import tomllib
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from bench.ingest import _setup
from bench.record import command_line, record, row_head
from bench.ws_choice import machine_info
from simulators.scenario import default_scenario_text, load_scenario, parse_scenario
from simulators.site import RunningSite, plan_site, run_site, write_gateway_sensors

RESULTS: Final = Path("bench/results/gateway_memory.json")
TABLE_MARKER: Final = (
    "<!-- gateway memory results: bench/gateway_memory.py appends rows above this line -->"
)
SAMPLE_INTERVAL_S: Final = 0.5
#: How long every driver may take to produce its first sample.
DRIVERS_UP_TIMEOUT_S: Final = 90.0


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, USS and PSS of ``pid`` in KiB, and its thread count (proc(5))."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
        elif key == "Threads":
            out["threads"] = int(value)
    rollup: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = int(value.split()[0])
    out["USS"] = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
    out["PSS"] = rollup.get("Pss", 0)
    return out


async def floor_kib(code: str) -> dict[str, int]:
    """Memory of a Python process that runs ``code`` and then waits to be measured."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('up', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    with trio.fail_after(30):
        await process.stdout.receive_some()
    measured = memory_kib(process.pid)
    await process.stdin.aclose()
    await process.wait()
    return measured


async def _wait_for_line(stream: trio.abc.ReceiveStream, marker: bytes) -> None:
    buffer = b""
    while marker not in buffer:
        chunk = await stream.receive_some()
        if not chunk:
            raise RuntimeError(f"process ended before printing {marker!r}")
        buffer = buffer[-4096:] + chunk


async def _wait_drivers_up(health_path: Path, drivers: set[str]) -> dict[str, int]:
    """Poll health.json (the gateway rewrites it every 2 s) until every driver has a sample."""
    samples: dict[str, int] = {}
    with trio.fail_after(DRIVERS_UP_TIMEOUT_S):
        while True:
            await trio.sleep(1)
            try:
                report = json.loads(await trio.Path(health_path).read_text())
            except (OSError, ValueError):
                continue  # not written yet
            samples = {name: d["samples"] for name, d in report["drivers"].items()}
            if all(samples.get(name, 0) > 0 for name in drivers):
                return samples


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    core_home, gateway_config, _events_db = _setup(root, 0, 0)
    if args.scenario is None:
        scenario = parse_scenario(tomllib.loads(default_scenario_text()))
    else:
        scenario = load_scenario(args.scenario)
    plan = plan_site(scenario, root / "site")
    write_gateway_sensors(gateway_config, plan.sensors)
    drivers = {str(sensor["name"]) for sensor in plan.sensors}
    for reason in plan.skipped:
        print(reason, file=sys.stderr)
    extra_env = dict(item.split("=", 1) for item in args.env)
    core = await trio.lowlevel.open_process(
        [sys.executable, "-m", "assetbook", "core", "run", "--home", str(core_home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert core.stdout is not None
    try:
        with trio.fail_after(60):
            await _wait_for_line(core.stdout, b"core ready")
        async with trio.open_nursery() as nursery:
            say = partial(print, file=sys.stderr)
            site: RunningSite = await nursery.start(
                partial(run_site, plan, (root / "site").absolute(), say=say)
            )
            result = await _measure_gateway(args, gateway_config, site, drivers, extra_env)
            nursery.cancel_scope.cancel()
    finally:
        core.terminate()
        await core.wait()
    return {
        "machine": machine_info(),
        "command": command_line("bench.gateway_memory"),
        "env": extra_env,
        "skipped": list(plan.skipped),
        "floor_python_kib": await floor_kib("pass"),
        "floor_python_trio_kib": await floor_kib("import trio"),
        **result,
    }


async def _measure_gateway(
    args: argparse.Namespace,
    gateway_config: Path,
    site: RunningSite,
    drivers: set[str],
    extra_env: dict[str, str],
) -> dict[str, Any]:
    env = {**os.environ, **site.env, **extra_env}
    report_file = None
    if args.importtime is not None:
        # python -X importtime: one line per import on stderr, with its own and total time.
        env["PYTHONPROFILEIMPORTTIME"] = "1"
        report_file = args.importtime.open("wb")
    gateway = await trio.lowlevel.open_process(
        [sys.executable, "-m", "assetbook", "gateway", "run", "--config", str(gateway_config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if report_file is None else report_file,
    )
    try:
        print(f"gateway started; waiting for its drivers: {sorted(drivers)}", file=sys.stderr)
        health = gateway_config.parent / "data" / "health.json"
        await _wait_drivers_up(health, drivers)
        print(f"every driver up; settling {args.settle:g} s", file=sys.stderr)
        await trio.sleep(args.settle)
        rss: list[int] = []
        uss: list[int] = []
        last: dict[str, int] = {}
        end = trio.current_time() + args.measure
        while trio.current_time() < end:
            last = memory_kib(gateway.pid)
            rss.append(last["VmRSS"])
            uss.append(last["USS"])
            await trio.sleep(SAMPLE_INTERVAL_S)
        print(
            f"  RSS {last['VmRSS'] / 1024:.1f} MiB, USS {last['USS'] / 1024:.1f} MiB",
            file=sys.stderr,
        )
        report = json.loads(await trio.Path(health).read_text())
    finally:
        gateway.terminate()
        await gateway.wait()
        if report_file is not None:
            report_file.close()
    return {
        "drivers": {name: d["samples"] for name, d in report["drivers"].items()},
        "uplink_state": report["uplink"]["state"],
        "rss_mib_mean": round(statistics.fmean(rss) / 1024, 1),
        "rss_mib_max": round(max(rss) / 1024, 1),
        "peak_rss_mib": round(last["VmHWM"] / 1024, 1),
        "uss_mib_mean": round(statistics.fmean(uss) / 1024, 1),
        "pss_mib": round(last["PSS"] / 1024, 1),
        "threads": last["threads"],
    }


def _write_results(result: dict[str, Any]) -> None:
    floor = result["floor_python_kib"]["VmRSS"] / 1024
    row = row_head(result) + (
        f"{len(result['drivers'])} | "
        f"{result['rss_mib_mean']} / {result['rss_mib_max']} | {result['peak_rss_mib']} | "
        f"{result['uss_mib_mean']} | {result['threads']} | {floor:.1f} |"
    )
    record(RESULTS, result, TABLE_MARKER, row)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_memory",
        description="Measure a real gateway's memory with every kind of driver configured.",
    )
    parser.add_argument("--settle", type=float, default=10, help="seconds before measuring (10)")
    parser.add_argument("--measure", type=float, default=20, help="seconds of samples (20)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the gateway (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        help="site scenario TOML (default: the shipped simulators/scenarios/site.toml)",
    )
    parser.add_argument(
        "--importtime", type=Path, help="write the gateway's -X importtime report to this file"
    )
    parser.add_argument("--no-record", action="store_true", help="do not write results or docs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assetbook-memory-") as tmp:
        result = trio.run(run, args, Path(tmp))
    print(json.dumps(result, indent=2))
    if not args.no_record:
        _write_results(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
