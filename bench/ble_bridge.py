"""Measure the two ways of running bleak (asyncio) under the Trio gateway, with the real bleak.

``python -m bench.ble_bridge`` compares:

* ``thread``: the gateway's bridge (:class:`drivers.ble.bridge.AsyncioThread`, an asyncio loop on
  a private thread) driving the gateway's own scanner calls (:mod:`drivers.ble.bleak_io`);
* ``trio-asyncio``: bleak on a ``trio_asyncio.open_loop()`` loop in the Trio thread, its report
  callback sending straight into the Trio channel (``trio-asyncio`` from PyPI, dev extra).

Each run starts a simulator process (a private ``dbus-daemon``, the mock BlueZ ``bluezoo`` with one
scanning adapter plus one adapter per advertiser, and N advertisers whose manufacturer data
changes in turn, ``N / period`` changes per second) and a scanner process for one variant, so
CPU time and RSS are the scanner's alone. Each change carries the advertiser, a sequence number
and the CLOCK_MONOTONIC time of the change (company id 0xFFFF, the SIG's id for tests), so the
scanner measures per advert delivered to the Trio consumer:

* latency from the simulator's change (``e2e``; includes the mock's scan period, the same for both
  variants) and from bleak's callback (``hop``; the bridge alone), p50 and p99;
* adverts/s delivered, the share of changes delivered, CPU time per advert, RSS, threads;
* failure modes: the asyncio loop policy seen, warnings and asyncio/bleak log errors, exceptions
  per phase, the time to stop a scan and leave the loop, and a scan restart after a stall (the
  mock stops reporting; the scanner notices the silence, stops and starts a fresh scan, as the
  driver's watchdog does).

A third, cheap check runs without D-Bus for each variant in its own process: cancelling the Trio
caller of an asyncio coroutine, exception propagation, and what happens to an asyncio task a
library leaves behind when the loop is closed.

Runs are interleaved across variants. Raw figures go to ``bench/results/ble_bridge.json``, a
Markdown table (min-max over runs) to stdout, progress to stderr. Linux only (``/proc``, D-Bus).
It asserts nothing about speed. Importing ``trio_asyncio`` patches asyncio's policy functions for
the whole process, which is one reason every measurement runs in a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import trio

from bench.stats import percentile
from drivers.ble.bridge import AsyncioThread

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
    from types import ModuleType

    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from drivers.ble.advert import Advert

SCHEMA: Final = "assetbook.bench.ble_bridge/1"
VARIANTS: Final = ("thread", "trio-asyncio")
REPO_ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT: Final = REPO_ROOT / "bench" / "results" / "ble_bridge.json"
ADAPTER: Final = "hci0"
SCANNER_ADDRESS: Final = "00:AB:00:00:00:00"
TEST_COMPANY_ID: Final = 0xFFFF  # Bluetooth SIG assigned numbers: "for testing"
STAMP: Final = struct.Struct("!HIQ")  # advertiser, sequence number, CLOCK_MONOTONIC ns
QUEUE: Final = 256  # the driver's report queue (drivers.ble.scanner.QUEUE)
START_TIMEOUT_S: Final = 20.0
TRIO_ASYNCIO_HINT: Final = (
    "the trio-asyncio variant needs the package trio-asyncio "
    "(pip install 'trio-asyncio>=0.16,<0.17'; it is in the dev extra)"
)


Runner: TypeAlias = "Callable[[Callable[[], Coroutine[Any, Any, None]]], Coroutine[Any, Any, None]]"


class BenchError(Exception):
    """The benchmark could not run (a child failed, a package is missing)."""


@dataclass(frozen=True, slots=True)
class Settings:
    advertisers: int
    period_s: float
    scan_interval_s: float
    duration_s: float
    warmup_s: float
    runs: int
    stall_s: float
    stall_check: bool
    variants: tuple[str, ...]
    output: Path


# --------------------------------------------------------------------------- pure helpers


def stamp_payload(advertiser: int, seq: int, now_ns: int) -> bytes:
    """The manufacturer data an advertiser sends for change ``seq``."""
    return STAMP.pack(advertiser, seq % 2**32, now_ns)


def read_stamp(advert: Advert) -> tuple[int, int, int] | None:
    """``(advertiser, seq, change_ns)`` from a benchmark advert, or None for any other."""
    for company, data in advert.manufacturer_data:
        if company == TEST_COMPANY_ID and len(data) == STAMP.size:
            advertiser, seq, change_ns = STAMP.unpack(data)
            return advertiser, seq, change_ns
    return None


def advertiser_address(index: int) -> str:
    return f"00:BE:0C:00:{index >> 8:02X}:{index & 0xFF:02X}"


def proc_status_kb(field_name: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise BenchError(f"/proc/self/status has no {field_name}")


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- simulator process


def simulator_main(settings: Settings) -> int:
    """Private bus + mock BlueZ + advertisers; prints ``bus ADDRESS`` then ``ready``."""
    from simulators.ble.bus import start_private_bus

    with (
        tempfile.TemporaryDirectory(prefix="ble-bridge-") as tmp,
        start_private_bus(Path(tmp)) as bus,
    ):
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        print(f"bus {bus.address}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_simulate(settings))
    return 0


async def _simulate(settings: Settings) -> None:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    from simulators.ble.mock import patch_quirks, stop_reporting
    from simulators.ble.peripherals import Advertisement, Payload, call

    patch_quirks()
    from bluezoo import bluezoo as service  # type: ignore[import-untyped]

    count = settings.advertisers
    addresses = [SCANNER_ADDRESS, *(advertiser_address(i) for i in range(count))]
    # bluezoo documents an integer scan interval but only sleeps for it; a short one keeps
    # the mock's share of the latency small next to the bridge's.
    await service.startup(
        bus="system", adapters=addresses, auto_enable=True, scan_interval=settings.scan_interval_s
    )
    mock = service.startup.service
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()

    def payload(index: int, seq: int) -> Payload:
        return Payload({TEST_COMPANY_ID: stamp_payload(index, seq, time.monotonic_ns())}, {})

    adverts = []
    for index in range(count):
        advert = Advertisement(payload(index, 0))
        path = f"/org/assetbook/bench/adv{index}"
        bus.export(path, advert)
        await call(bus, f"/org/bluez/hci{index + 1}", "org.bluez.LEAdvertisingManager1",
                   "RegisterAdvertisement", "oa{sv}", [path, {}])  # fmt: skip
        adverts.append(advert)
    print("ready", flush=True)

    async def change_forever() -> None:
        # One advertiser at a time, evenly spread: N / period changes per second, no bursts.
        loop = asyncio.get_running_loop()
        step = settings.period_s / count
        seq, index, due = 0, 0, loop.time()
        while True:
            due += step
            await asyncio.sleep(max(0.0, due - loop.time()))
            if index == 0:
                seq += 1
            adverts[index].update(payload(index, seq))
            index = (index + 1) % count

    changer = asyncio.create_task(change_forever())
    commands = _stdin_queue()
    while (line := await commands.get()) is not None:
        if line.strip() == "stall":
            print(f"stalled {stop_reporting(mock)}", flush=True)
    changer.cancel()


def _stdin_queue() -> asyncio.Queue[str | None]:
    """Lines of stdin as they arrive, then None when it closes (the parent is done)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="bench-sim-stdin", daemon=True).start()
    return queue


# --------------------------------------------------------------------------- scanner process


class StampingBridge(AsyncioThread):
    """The gateway's bridge, noting when each report left bleak's callback (asyncio thread)."""

    stamp_ns = 0

    def to_trio(self, fn: Callable[[], object]) -> None:
        stamp = time.monotonic_ns()

        def deliver() -> None:  # on the Trio thread, just before the driver's callback
            self.stamp_ns = stamp
            fn()

        super().to_trio(deliver)


@asynccontextmanager
async def thread_scan(on_report: Callable[[int, Advert], None]) -> AsyncIterator[None]:
    """A scan as the driver runs one (drivers.ble.scanner), without the decoding."""
    from drivers.ble.bleak_io import start_scanner, stop_scanner

    async with StampingBridge("bench-bleak") as bridge:

        def report(advert: Advert) -> None:
            on_report(bridge.stamp_ns, advert)

        scanner = await bridge.run(lambda: start_scanner(bridge, ADAPTER, report))
        try:
            yield
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await bridge.run(lambda: stop_scanner(scanner))


def import_trio_asyncio() -> ModuleType:
    """trio_asyncio, imported only for its variant (the import patches asyncio globally)."""
    try:
        import trio_asyncio  # type: ignore[import-untyped]
    except ImportError as exc:
        raise BenchError(TRIO_ASYNCIO_HINT) from exc
    module: ModuleType = trio_asyncio
    return module


@asynccontextmanager
async def trio_asyncio_scan(on_report: Callable[[int, Advert], None]) -> AsyncIterator[None]:
    """The same scan on a trio-asyncio loop in the Trio thread: no thread hop at all."""
    trio_asyncio = import_trio_asyncio()
    from bleak import BleakScanner

    from drivers.ble.bleak_io import advert_from_bleak

    def callback(device: BLEDevice, data: AdvertisementData) -> None:
        advert = advert_from_bleak(device, data)
        on_report(time.monotonic_ns(), advert)

    async with trio_asyncio.open_loop():
        scanner = BleakScanner(callback, bluez={"adapter": ADAPTER})
        await trio_asyncio.aio_as_trio(scanner.start)()
        try:
            yield
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await trio_asyncio.aio_as_trio(scanner.stop)()


SCANS: Final = {"thread": thread_scan, "trio-asyncio": trio_asyncio_scan}


@dataclass(slots=True)
class Window:
    """What the Trio consumer saw during the measured window."""

    adverts: int = 0
    e2e_ms: list[float] = field(default_factory=list)
    to_bleak_ms: list[float] = field(default_factory=list)
    hop_ms: list[float] = field(default_factory=list)
    seen: dict[int, set[int]] = field(default_factory=dict)
    duplicates: int = 0

    def add(self, now_ns: int, stamp_ns: int, advert: Advert) -> None:
        stamp = read_stamp(advert)
        if stamp is None:
            return
        advertiser, seq, change_ns = stamp
        self.adverts += 1
        self.e2e_ms.append((now_ns - change_ns) / 1e6)
        self.to_bleak_ms.append((stamp_ns - change_ns) / 1e6)
        self.hop_ms.append((now_ns - stamp_ns) / 1e6)
        seqs = self.seen.setdefault(advertiser, set())
        if seq in seqs:
            self.duplicates += 1
        seqs.add(seq)

    def summary(self, seconds: float, cpu: float) -> dict[str, float]:
        if not self.adverts:
            raise BenchError("no advert reached the Trio consumer in the measured window")
        changes = sum(max(s) - min(s) + 1 for s in self.seen.values())
        unique = sum(len(s) for s in self.seen.values())
        return {
            "adverts": self.adverts,
            "seconds": round(seconds, 3),
            "adverts_per_s": round(self.adverts / seconds, 1),
            "changes_delivered": round(unique / changes, 3),
            "duplicates": self.duplicates,
            "e2e_p50_ms": round(percentile(self.e2e_ms, 0.50), 3),
            "e2e_p99_ms": round(percentile(self.e2e_ms, 0.99), 3),
            "to_bleak_p50_ms": round(percentile(self.to_bleak_ms, 0.50), 3),
            "to_bleak_p99_ms": round(percentile(self.to_bleak_ms, 0.99), 3),
            "hop_p50_ms": round(percentile(self.hop_ms, 0.50), 3),
            "hop_p99_ms": round(percentile(self.hop_ms, 0.99), 3),
            "cpu_us_per_advert": round(cpu / self.adverts * 1e6, 1),
            "cpu_share": round(cpu / seconds, 3),
        }


class Collector:
    """The Trio side: a bounded channel fed by the report callback, as in the driver."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[tuple[int, "Advert"]](QUEUE)
        self.overflow = 0

    def on_report(self, stamp_ns: int, advert: Advert) -> None:
        try:
            self.send.send_nowait((stamp_ns, advert))
        except trio.WouldBlock:
            self.overflow += 1

    async def first(self, timeout_s: float, changed_after_ns: int) -> None:
        """Wait for an advert whose data changed after ``changed_after_ns`` (not one BlueZ
        still had from before, which bleak reports at once when a scan starts)."""
        with trio.fail_after(timeout_s):
            while True:
                _, advert = await self.receive.receive()
                stamp = read_stamp(advert)
                if stamp is not None and stamp[2] > changed_after_ns:
                    return

    async def consume(self, seconds: float, window: Window | None = None) -> None:
        with trio.move_on_after(seconds):
            while True:
                stamp_ns, advert = await self.receive.receive()
                if window is not None:
                    window.add(time.monotonic_ns(), stamp_ns, advert)

    async def quiet(self, seconds: float) -> None:
        """Return once no advert has arrived for ``seconds`` (the driver's stall watchdog)."""
        while True:
            with trio.move_on_after(seconds) as scope:
                await self.receive.receive()
            if scope.cancelled_caught:
                return

    def drain(self) -> None:
        with contextlib.suppress(trio.WouldBlock):
            while True:
                self.receive.receive_nowait()


class LogRecorder(logging.Handler):
    """Warnings and errors logged by asyncio, bleak, dbus-fast and trio-asyncio."""

    LOGGERS: Final = ("asyncio", "bleak", "dbus_fast", "trio_asyncio")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}"[:300])


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def scanner_main(variant: str, settings: Settings) -> dict[str, Any]:
    """Measure one variant against the simulator on ``DBUS_SYSTEM_BUS_ADDRESS``."""
    result: dict[str, Any] = {"variant": variant, "failures": []}
    logs = LogRecorder()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            await _measure(SCANS[variant], Collector(), settings, result)
        except Exception as exc:  # recorded: a failure mode is a result here
            result["failures"].append(
                f"{result.get('phase', 'start')}: {type(exc).__name__}: {exc}"
            )
        import gc

        gc.collect()  # so a task destroyed while pending is reported now, not after we report
    result["warnings"] = sorted({f"{w.category.__name__}: {w.message}"[:300] for w in caught})
    result["log_errors"] = logs.messages
    result["bleak_unchanged"] = (
        not result["failures"]
        and not result["log_errors"]
        and result.get("adverts", 0) > 0
        and result.get("restart_ok", not settings.stall_check)
    )
    result.pop("phase", None)
    return result


async def _measure(
    scan: Callable[[Callable[[int, Advert], None]], contextlib.AbstractAsyncContextManager[None]],
    collector: Collector,
    settings: Settings,
    result: dict[str, Any],
) -> None:
    variant = result["variant"]
    result["phase"] = "start"
    entered = time.monotonic()
    entered_ns = time.monotonic_ns()
    async with scan(collector.on_report):
        result["asyncio_policy"] = type(asyncio.get_event_loop_policy()).__name__
        result["asyncio_policy_patched"] = (
            asyncio.get_event_loop_policy.__module__ != "asyncio.events"
        )
        await collector.first(START_TIMEOUT_S, entered_ns)
        result["start_s"] = round(time.monotonic() - entered, 3)
        progress(f"  {variant}: first advert after {result['start_s']:.2f} s; measuring")
        result["phase"] = "measure"
        await collector.consume(settings.warmup_s)
        window = Window()
        cpu_before, began = cpu_s(), time.monotonic()
        await collector.consume(settings.duration_s, window)
        cpu_used, seconds = cpu_s() - cpu_before, time.monotonic() - began
        result["rss_kib"] = proc_status_kb("VmRSS")
        result["threads"] = threading.active_count()
        result.update(window.summary(seconds, cpu_used))
        result["overflow"] = collector.overflow
        if settings.stall_check:
            result["phase"] = "stall"
            print("stall", flush=True)  # the parent passes it on to the simulator
            with trio.fail_after(settings.stall_s + 10):
                await collector.quiet(settings.stall_s)
        result["phase"] = "exit"
        leaving = time.monotonic()
    result["exit_s"] = round(time.monotonic() - leaving, 3)
    if settings.stall_check:
        result["phase"] = "restart"
        collector.drain()
        restarting = time.monotonic()
        restarting_ns = time.monotonic_ns()
        async with scan(collector.on_report):
            await collector.first(START_TIMEOUT_S, restarting_ns)
            result["restart_s"] = round(time.monotonic() - restarting, 3)
            result["restart_ok"] = True
            result["phase"] = "exit after restart"
        progress(f"  {variant}: scan restarted after a stall in {result['restart_s']:.2f} s")
    result["vm_hwm_kib"] = proc_status_kb("VmHWM")


# --------------------------------------------------------------------------- cancellation check


async def cancel_check(variant: str) -> dict[str, Any]:
    """Cancellation and cleanup semantics of one variant, without D-Bus.

    * ``cancel_reaches_asyncio``: cancelling the Trio caller cancels the asyncio coroutine;
    * ``cleanup_done_on_return``: when the cancelled Trio call returns, the coroutine's own
      cleanup (an ``await`` in its ``finally``) has finished;
    * ``exception_type_kept``: an exception raised in asyncio reaches Trio as itself;
    * ``leftover_task_cancelled``: a task a library left running is cancelled, and its
      cleanup run, when the loop is left (bleak leaves its D-Bus monitor running).
    """
    state: dict[str, bool] = {}

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancel_reaches_asyncio"] = True
            raise
        finally:
            await asyncio.sleep(0.05)  # a cleanup that itself waits (closing a D-Bus call)
            state["cleaned"] = True

    async def fail() -> None:
        await asyncio.sleep(0)
        raise LookupError("from asyncio")

    async def leftover() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            state["leftover_task_cancelled"] = True

    async def spawn() -> None:
        state["spawned"] = True
        asyncio.get_running_loop().create_task(leftover())

    async def cases(run: Runner) -> None:
        with trio.move_on_after(0.2):
            await run(slow)
        state["cleanup_done_on_return"] = state.get("cleaned", False)
        try:
            await run(fail)
        except LookupError as exc:
            state["exception_type_kept"] = str(exc) == "from asyncio"
        await run(spawn)

    if variant == "thread":
        async with AsyncioThread("cancel-check") as bridge:
            await cases(bridge.run)
    else:
        trio_asyncio = import_trio_asyncio()
        async with trio_asyncio.open_loop():

            async def run(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
                await trio_asyncio.aio_as_trio(make)()

            await cases(run)
    # Give a cleanup that only finishes later a chance to show up as late, not as missing.
    await trio.sleep(0.1)
    return {
        "variant": variant,
        "cleanup_done_later": state.get("cleaned", False),
        "cancel_reaches_asyncio": state.get("cancel_reaches_asyncio", False),
        "cleanup_done_on_return": state.get("cleanup_done_on_return", False),
        "exception_type_kept": state.get("exception_type_kept", False),
        "leftover_task_cancelled": state.get("leftover_task_cancelled", False),
    }


# --------------------------------------------------------------------------- orchestrator


def _child(role: str, settings: Settings, variant: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "bench.ble_bridge", "--role", role]
    command += ["--advertisers", str(settings.advertisers), "--period", str(settings.period_s)]
    command += ["--scan-interval", str(settings.scan_interval_s)]
    command += ["--duration", str(settings.duration_s), "--warmup", str(settings.warmup_s)]
    command += ["--stall", str(settings.stall_s)]
    if not settings.stall_check:
        command.append("--no-stall-check")
    if variant is not None:
        command += ["--variants", variant]
    return command


def _result_line(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("result "):
            result: dict[str, Any] = json.loads(line.removeprefix("result "))
            return result
    raise BenchError(f"{what} exited without a result (status {process.wait()})")


def run_scan(variant: str, settings: Settings) -> dict[str, Any]:
    """One run: a fresh simulator and a scanner process for ``variant``."""
    with tempfile.TemporaryFile("w+") as sim_log:
        simulator = subprocess.Popen(
            _child("simulator", settings),
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sim_log,
            text=True,
        )
        assert simulator.stdin is not None
        assert simulator.stdout is not None
        try:
            first = simulator.stdout.readline()
            ready = simulator.stdout.readline()
            if not first.startswith("bus ") or ready.strip() != "ready":
                sim_log.seek(0)
                raise BenchError(f"simulator did not start: {first!r} {sim_log.read()[-2000:]}")
            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=first.split(" ", 1)[1].strip())
            scanner = subprocess.Popen(
                _child("scanner", settings, variant),
                cwd=REPO_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert scanner.stdout is not None
            result: dict[str, Any] | None = None
            for line in scanner.stdout:
                if line.strip() == "stall":
                    simulator.stdin.write("stall\n")
                    simulator.stdin.flush()
                elif line.startswith("result "):
                    result = json.loads(line.removeprefix("result "))
            if scanner.wait() != 0 or result is None:
                raise BenchError(f"{variant} scanner failed (status {scanner.returncode})")
            return result
        finally:
            simulator.stdin.close()
            try:
                simulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait()


def run_cancel_check(variant: str, settings: Settings) -> dict[str, Any]:
    checker = subprocess.Popen(
        _child("cancel-check", settings, variant), cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    result = _result_line(checker, f"{variant} cancellation check")
    checker.wait()
    return result


NUMBERS: Final = (
    ("adverts_per_s", "adverts/s delivered to Trio"),
    ("changes_delivered", "share of changes delivered"),
    ("e2e_p50_ms", "change → Trio p50, ms"),
    ("e2e_p99_ms", "change → Trio p99, ms"),
    ("to_bleak_p50_ms", "change → bleak callback p50, ms"),
    ("to_bleak_p99_ms", "change → bleak callback p99, ms"),
    ("hop_p50_ms", "bleak callback → Trio p50, ms"),
    ("hop_p99_ms", "bleak callback → Trio p99, ms"),
    ("cpu_us_per_advert", "scanner CPU per advert, µs"),
    ("rss_kib", "scanner RSS, KiB"),
    ("threads", "threads"),
    ("start_s", "scan start → first advert, s"),
    ("exit_s", "stop scan and leave the loop, s"),
    ("restart_s", "restart after a stall → first advert, s"),
)


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Min and max of every figure over the runs of each variant, and the failure modes."""
    summary: dict[str, dict[str, Any]] = {}
    for variant, results in runs.items():
        figures: dict[str, Any] = {}
        for key, _label in NUMBERS:
            values = [r[key] for r in results if key in r]
            if values:
                figures[key] = {"min": min(values), "max": max(values)}
        figures["bleak_unchanged"] = all(r["bleak_unchanged"] for r in results)
        figures["failures"] = sorted({f for r in results for f in r["failures"]})
        figures["log_errors"] = sorted({m for r in results for m in r["log_errors"]})
        figures["warnings"] = sorted({w for r in results for w in r["warnings"]})
        figures["asyncio_policy"] = sorted({r.get("asyncio_policy", "?") for r in results})
        figures["asyncio_policy_patched"] = any(r.get("asyncio_policy_patched") for r in results)
        summary[variant] = figures
    return summary


def markdown_table(summary: dict[str, dict[str, Any]], cancel: dict[str, dict[str, Any]]) -> str:
    variants = list(summary)
    lines = ["| metric | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for key, label in NUMBERS:
        cells = []
        for variant in variants:
            span = summary[variant].get(key)
            if span is None:
                cells.append("-")
            elif span["min"] == span["max"]:
                cells.append(f"{span['min']:g}")
            else:
                cells.append(f"{span['min']:g} to {span['max']:g}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key in ("cancel_reaches_asyncio", "cleanup_done_on_return", "exception_type_kept",
                "leftover_task_cancelled"):  # fmt: skip
        cells = ["yes" if cancel.get(v, {}).get(key) else "no" for v in variants]
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
    cells = [
        " ".join(summary[v]["asyncio_policy"])
        + (" (asyncio's policy functions patched)" if summary[v]["asyncio_policy_patched"] else "")
        for v in variants
    ]
    lines.append("| asyncio policy seen in Trio | " + " | ".join(cells) + " |")
    cells = ["yes" if summary[v]["bleak_unchanged"] else "no" for v in variants]
    lines.append("| bleak unchanged, no errors | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("bleak", "dbus-fast", "bluezoo", "trio", "trio-asyncio"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": versions,
    }


def run_all(settings: Settings) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in settings.variants}
    for number in range(1, settings.runs + 1):
        for variant in settings.variants:  # interleaved, so drift hits every variant alike
            progress(f"run {number}/{settings.runs}: {variant}")
            runs[variant].append(run_scan(variant, settings))
    cancel = {}
    for variant in settings.variants:
        progress(f"cancellation check: {variant}")
        cancel[variant] = run_cancel_check(variant, settings)
    return runs, cancel


def report(
    settings: Settings, runs: dict[str, list[dict[str, Any]]], cancel: dict[str, Any]
) -> str:
    """Write the JSON results file and return the Markdown table."""
    summary = summarise(runs)
    document = {
        "schema": SCHEMA,
        "machine": machine_info(),
        "parameters": {
            k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()
        },
        "runs": runs,
        "cancellation": cancel,
        "summary": summary,
    }
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return markdown_table(summary, cancel)


# --------------------------------------------------------------------------- command line


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def _variants(text: str) -> tuple[str, ...]:
    chosen = tuple(v for v in text.split(",") if v)
    unknown = set(chosen) - set(VARIANTS)
    if not chosen or unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(VARIANTS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--role`` is internal: the child processes)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.ble_bridge",
        description=(
            "Compare the asyncio-thread bridge and trio-asyncio for bleak: real bleak against "
            "the mock BlueZ on a private D-Bus, N advertisers whose data changes."
        ),
    )
    add = parser.add_argument
    add("--advertisers", type=_positive(int), default=8, metavar="N", help="advertisers (8)")
    add("--period", type=_positive(float), default=0.1, metavar="S",
        help="each advertiser changes its data every S seconds (0.1)")  # fmt: skip
    add("--scan-interval", type=_positive(float), default=0.02, metavar="S",
        help="the mock BlueZ re-reports changed data every S seconds (0.02)")  # fmt: skip
    add("--duration", type=_positive(float), default=10.0, metavar="S",
        help="measured seconds per run (10)")  # fmt: skip
    add("--warmup", type=float, default=1.0, metavar="S", help="unmeasured seconds first (1)")
    add("--runs", type=_positive(int), default=3, metavar="N", help="runs per variant (3)")
    add("--stall", type=_positive(float), default=1.0, metavar="S",
        help="silence that counts as a stall before the scan is restarted (1)")  # fmt: skip
    add("--no-stall-check", action="store_true", help="skip the stall and restart check")
    add("--variants", type=_variants, default=VARIANTS, metavar="V,...",
        help="comma-separated, default all: " + ",".join(VARIANTS))  # fmt: skip
    add("--output", type=Path, default=DEFAULT_OUTPUT, metavar="PATH",
        help="results JSON (default bench/results/ble_bridge.json)")  # fmt: skip
    add("--role", choices=("simulator", "scanner", "cancel-check"), help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    settings = Settings(
        advertisers=int(args.advertisers),
        period_s=args.period,
        scan_interval_s=args.scan_interval,
        duration_s=args.duration,
        warmup_s=max(0.0, args.warmup),
        runs=int(args.runs),
        stall_s=args.stall,
        stall_check=not args.no_stall_check,
        variants=args.variants,
        output=args.output,
    )
    try:
        if args.role == "simulator":
            return simulator_main(settings)
        if args.role == "scanner":
            result = trio.run(scanner_main, settings.variants[0], settings)
            print("result " + json.dumps(result), flush=True)
            return 0
        if args.role == "cancel-check":
            print("result " + json.dumps(trio.run(cancel_check, settings.variants[0])), flush=True)
            return 0
        if "trio-asyncio" in settings.variants and importlib.util.find_spec("trio_asyncio") is None:
            raise BenchError(TRIO_ASYNCIO_HINT)
        runs, cancel = run_all(settings)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(settings, runs, cancel))
    progress(f"results written to {settings.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
