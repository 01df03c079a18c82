"""The ``ble-adverts`` driver: a bleak scanner, its decoders, filters and a stall watchdog.

Loop: open the asyncio bridge, start a bleak scan on ``adapter``, and for every report turn
it into an :class:`~drivers.ble.advert.Advert` (on the asyncio thread), hand it to Trio, filter
it, decode it with :func:`~drivers.ble.formats.decode_advert` and send one
:class:`~drivers.base.Sample` per decoded payload.

Filters (counted in ``health.errors_by_kind``, never silent): ``filtered`` (address or
service not in the allowlist), ``unsupported`` (no known payload), ``duplicate`` (the same
BTHome packet id / Ruuvi sequence as the last report of that device), ``overflow`` (Trio
side not keeping up; the newest report is dropped). Decoder refusals count as
``bad_frames`` under their own kind.

Never silent: when devices are expected (an allowlist is set, or ``expect_adverts``) and no
report at all arrives for ``stall_s`` seconds, the scan is stopped and restarted, counted
as ``stalled`` and in ``restarts``. Adapter failures (kind ``adapter``) restart it with
exponential backoff and jitter. A bleak start or stop that hangs (BlueZ never answers) is
cancelled and, once the bridge's grace has passed, abandoned on the asyncio thread: that is
counted as ``adapter`` too, but never replaces what was under way, so a stalled scan is
still restarted and a cancelled driver still ends cancelled. It does not connect to devices
(see ``ble-gatt``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import TYPE_CHECKING, Final

import trio

from drivers.base import DriverHealth, Sample
from drivers.ble.advert import Advert
from drivers.ble.bridge import AsyncioThread, TaskAbandoned
from drivers.ble.formats import decode_advert
from drivers.ble.scan_config import ScanConfig, parse_scan_config
from drivers.errors import BleUnavailable, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

QUEUE: Final = 256
STOP_TIMEOUT_S: Final = 5.0


class ScannerStalled(Exception):
    """No report for ``stall_s`` seconds while devices are expected."""


class BleAdvertsDriver:
    """Scans one adapter and decodes every supported advert (implements ``Driver``)."""

    def __init__(self, config: ScanConfig) -> None:
        self.name = config.name
        self.config = config
        self.health = DriverHealth()
        self._last_dedup: dict[tuple[str, str], object] = {}
        self._scans = 0
        self._scan_started = trio.Event()

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Scan forever, restarting the scan after failures and stalls."""
        delay = self.config.backoff_s
        while True:
            scans_before = self._scans
            try:
                await self._scan_once(send, task_status)
            except (BleUnavailable, ScannerStalled) as exc:
                kind = "stalled" if isinstance(exc, ScannerStalled) else "adapter"
                log.warning("%s: %s; restarting the scan", self.name, exc)
                self.health.count_error(kind, str(exc))
            if self._scans > scans_before:  # the scan ran: start backing off afresh
                delay = self.config.backoff_s
            # Jitter keeps many gateways on one flaky host from retrying in lockstep.
            await trio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - not crypto
            delay = min(delay * 2, self.config.max_backoff_s)

    async def wait_scanning(self, scans: int = 1) -> None:
        """Wait until the scan has been started at least ``scans`` times in total."""
        while self._scans < scans:
            await self._scan_started.wait()

    async def _scan_once(
        self, send: trio.MemorySendChannel[Sample], task_status: trio.TaskStatus[None]
    ) -> None:
        reports_send, reports = trio.open_memory_channel[Advert](QUEUE)
        async with AsyncioThread(f"{self.name}-bleak") as bridge:

            def on_report(advert: Advert) -> None:  # runs on the Trio thread
                try:
                    reports_send.send_nowait(advert)
                except trio.WouldBlock:
                    self._drop("overflow")

            try:
                scanner = await _start(bridge, self.config.adapter, on_report)
            except TaskAbandoned as exc:
                # The bridge raises this only to a cancelled caller, and the scope that
                # cancelled us is still cancelled: the checkpoint raises that cancellation,
                # so the driver ends as asked instead of crashing on the abandoned start.
                self._count_abandoned("starting", exc)
                await trio.lowlevel.checkpoint()
                raise
            try:
                self._on_scanning(task_status)
                await self._pump(reports, send)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT_S):
                    try:
                        await _stop(bridge, scanner)
                    except TaskAbandoned as exc:
                        # Raised from here it would replace the exception in flight: the
                        # ScannerStalled that restarts the scan, or the Cancelled that ends
                        # the driver. The hung stop stays on the bridge until it closes.
                        self._count_abandoned("stopping", exc)

    def _on_scanning(self, task_status: trio.TaskStatus[None]) -> None:
        log.info("%s: scanning on %s", self.name, self.config.adapter)
        if self._scans == 0:
            task_status.started()
        else:
            self.health.restarts += 1
        self._scans += 1
        self._scan_started.set()
        self._scan_started = trio.Event()

    async def _pump(
        self, reports: trio.MemoryReceiveChannel[Advert], send: trio.MemorySendChannel[Sample]
    ) -> None:
        stall = self.config.stall_s if self.config.expects_adverts else math.inf
        while True:
            with trio.move_on_after(stall) as scope:
                advert = await reports.receive()
            if scope.cancelled_caught:
                raise ScannerStalled(f"no advert for {stall:g} s on {self.config.adapter}")
            for sample in self.handle(advert):
                await send.send(sample)
                self.health.samples += 1
                self.health.last_sample_mono_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def handle(self, advert: Advert) -> list[Sample]:
        """Filter and decode one report (pure apart from the health counters)."""
        if not self.config.allows(advert):
            self._drop("filtered")
            return []
        results = decode_advert(advert, self.config.keys)
        if not results:
            self._drop("unsupported")
        samples: list[Sample] = []
        for result in results:
            if isinstance(result, DecodeError):
                self.health.bad_frames += 1
                self.health.count_error(result.kind, str(result))
                continue
            self.health.frames += 1
            key = (result.address, result.fmt)
            if result.dedup is not None and self._last_dedup.get(key) == result.dedup:
                self._drop("duplicate")
                continue
            self._last_dedup[key] = result.dedup
            samples.append(Sample(self.config.device_id(result.address), result.readings))
        return samples

    def _count_abandoned(self, step: str, exc: TaskAbandoned) -> None:
        message = f"{step} the scan on {self.config.adapter} hung and was abandoned: {exc}"
        log.warning("%s: %s", self.name, message)
        self.health.count_error("adapter", message)

    def _drop(self, kind: str) -> None:
        # Drops are expected traffic, not errors: counted without touching last_error.
        self.health.errors_by_kind[kind] = self.health.errors_by_kind.get(kind, 0) + 1


async def _start(
    bridge: AsyncioThread, adapter: str, on_report: Callable[[Advert], None]
) -> object:
    from drivers.ble.bleak_io import start_scanner  # bleak is imported only when scanning

    return await bridge.run(lambda: start_scanner(bridge, adapter, on_report))


async def _stop(bridge: AsyncioThread, scanner: object) -> None:
    from drivers.ble.bleak_io import stop_scanner

    await bridge.run(lambda: stop_scanner(scanner))


def make_driver(cfg: Mapping[str, object]) -> BleAdvertsDriver:
    """Build a driver from a ``[[sensors]]`` table (keys: docs/drivers.md, "BLE").

    Raises:
        ConfigError: a missing, unknown or ill-typed key.
    """
    return BleAdvertsDriver(parse_scan_config(cfg))
