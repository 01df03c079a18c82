"""The gateway application: drivers → outbox → uplink, under one supervisor.

Structure (one nursery per subsystem, so each can be stopped on its own):

* **drivers**: every configured sensor runs as a task that sends samples on one channel;
  a driver that fails is restarted with backoff and counted, never left silent.
* **filters**: when ``[filters]`` is configured, each sample is offered to the gateway's
  filter as its driver sends it; drops are counted by reason (``gateway.filters``).
* **outbox writer**: takes every sample waiting on the channel, stamps and appends them
  (one transaction per 500 events at most, so acks and reads never wait behind a whole
  backlog). A sample exists only in memory between its driver and its commit.
* **uplink**: drains the outbox to the core (``gateway.uplink``).
* **health**: writes ``health.json`` in the data directory every few seconds, and sends a
  report to the core as a ``_health`` event every minute (``gateway.health``).
* **watchdog**: tells systemd the gateway is ready, and keeps telling it the gateway is alive
  only while drivers, the outbox writer and the uplink all make progress
  (``gateway.watchdog``).

Shutdown (``stop`` set by SIGINT/SIGTERM) runs in dependency order: drivers are cancelled
first, the writer drains whatever they produced into the outbox and ends, and only then the
uplink and the health writer are cancelled. Nothing a driver produced is dropped on a clean
stop, and a hard kill loses at most what had not yet been committed.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

import trio

from drivers.base import Sample
from drivers.registry import make_driver
from gateway.clock import Stamper, monotonic_ns
from gateway.filter_send import filtered_channel
from gateway.filters import SampleFilter, without_receipts
from gateway.health import REPORT_INTERVAL_S, HealthReporter, system_report
from gateway.outbox import open_outbox
from gateway.tls import client_ssl_context
from gateway.uplink import Uplink, UplinkSettings
from gateway.watchdog import CountingRandom, Watchdog, watch_gateway

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from drivers.base import Driver
    from gateway.config import GatewayConfig
    from gateway.outbox import AsyncOutbox
    from gateway.uplink import CommandHandler
    from protocol.events import Event

log = logging.getLogger(__name__)

#: Samples that may wait for the outbox writer before drivers are slowed down.
SAMPLE_QUEUE: Final = 10_000
#: Most samples appended in one outbox transaction.
MAX_APPEND: Final = 2_000
HEALTH_INTERVAL_S: Final = 2.0
DRIVER_RESTART_MIN_S: Final = 0.5
DRIVER_RESTART_MAX_S: Final = 30.0


class Gateway:
    """A configured gateway; :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        config: GatewayConfig,
        stamper: Stamper | None = None,
        *,
        watchdog: Watchdog | None = None,
        report_interval_s: float = REPORT_INTERVAL_S,
        uplink_headers: Callable[[], dict[str, str]] | None = None,
        on_command: CommandHandler | None = None,
    ) -> None:
        self.config = config
        self.stamper = stamper or Stamper.system()
        self.watchdog = watchdog or Watchdog.from_environment()
        self.reporter = HealthReporter(self.health, report_interval_s)
        self._started_ns = monotonic_ns()
        self.drivers: list[Driver] = [make_driver(table) for table in config.sensors]
        # None when nothing can be dropped: drivers then send straight to the writer.
        self.filter = SampleFilter(config.filters) if config.filters.enabled else None
        self.uplink: Uplink | None = None
        self.outbox: AsyncOutbox | None = None
        # Lifecycle hooks (gateway.remote_config): key-bound credentials, core commands.
        self.uplink_headers = uplink_headers
        self.on_command = on_command

    async def run(
        self, stop: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        config.gateway.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        async with open_outbox(
            config.gateway.data_dir / "outbox.sqlite",
            self.stamper,
            max_events=config.outbox.max_events,
        ) as outbox:
            self.outbox = outbox
            jitter = CountingRandom()
            self.uplink = Uplink(self._uplink_settings(), outbox, jitter)
            self.uplink.on_command = self.on_command
            watch_gateway(self.watchdog, self.drivers, self.uplink, outbox, jitter)
            send, receive = trio.open_memory_channel[Sample](SAMPLE_QUEUE)
            async with trio.open_nursery() as background:
                background.start_soon(self.uplink.run)
                background.start_soon(self._report_health)
                written = trio.Event()
                background.start_soon(self._write_outbox, receive, written)
                async with send, trio.open_nursery() as drivers:
                    for driver in self.drivers:
                        drivers.start_soon(self._supervise, driver, send.clone())
                    drivers.start_soon(self.reporter.run, send.clone())
                    await background.start(self.watchdog.run)
                    task_status.started()
                    await stop.wait()
                    log.info("stopping: drivers first, then the outbox, then the uplink")
                    drivers.cancel_scope.cancel()
                await written.wait()
                await self._write_health()
                background.cancel_scope.cancel()

    def _uplink_settings(self) -> UplinkSettings:
        uplink = self.config.uplink
        return UplinkSettings(
            url=uplink.url,
            token=uplink.token.reveal(),
            ssl_context=client_ssl_context(uplink.ca_file),
            gateway_id=self.config.gateway.id,
            boot_id=self.stamper.boot_id,
            batch_max_events=uplink.batch_max_events,
            batch_max_delay_s=uplink.batch_max_delay_ms / 1000,
            reconnect_min_s=uplink.reconnect_min_s,
            reconnect_max_s=uplink.reconnect_max_s,
            headers=self.uplink_headers,
        )

    async def _supervise(self, driver: Driver, send: trio.MemorySendChannel[Sample]) -> None:
        delay = DRIVER_RESTART_MIN_S
        async with send:
            while True:
                try:
                    await driver.run(self._driver_channel(driver, send))
                except Exception as exc:
                    driver.health.restarts += 1
                    driver.health.count_error("driver_crash", f"{type(exc).__name__}: {exc}")
                    log.exception("driver %s failed; restarting in %.1f s", driver.name, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, DRIVER_RESTART_MAX_S)

    def _driver_channel(
        self, driver: Driver, send: trio.MemorySendChannel[Sample]
    ) -> trio.MemorySendChannel[Sample]:
        if self.filter is None:
            return send
        return filtered_channel(self.filter, driver.name, send, monotonic_ns)

    async def _write_outbox(
        self, receive: trio.MemoryReceiveChannel[Sample], written: trio.Event
    ) -> None:
        assert self.outbox is not None
        try:
            async with receive:
                async for first in receive:
                    samples = [first]
                    while len(samples) < MAX_APPEND:
                        try:
                            samples.append(receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    self.watchdog.tick("outbox")
                    # Shielded: a sample taken off the channel is committed even while the
                    # gateway is being cancelled, or it would be lost.
                    with trio.CancelScope(shield=True):
                        await self.outbox.append(
                            samples if self.filter is None else without_receipts(samples)
                        )
                    for sample in samples:
                        sample.mark_stored()  # the commit is done: drivers may tell devices
                    self.watchdog.idle("outbox")
        finally:
            written.set()

    async def _report_health(self) -> None:
        while True:
            await trio.sleep(HEALTH_INTERVAL_S)
            await self._write_health()

    async def _write_health(self) -> None:
        report = await self.health()
        _write_json_atomically(self.config.gateway.data_dir / "health.json", report)

    async def health(self) -> dict[str, Any]:
        """What the gateway knows about itself: drivers, outbox, uplink, loss ledger, filters."""
        assert self.outbox is not None
        assert self.uplink is not None
        stats = await self.outbox.statistics()
        oldest = await self.outbox.oldest()
        now_ns = monotonic_ns()
        return {
            "mono_ns": now_ns,
            "uptime_s": (now_ns - self._started_ns) / 1e9,
            "watchdog": self.watchdog.verdict.report(),
            "system": system_report(self.config.gateway.data_dir),
            "outbox_oldest_age_s": None if oldest is None else self._age_s(oldest),
            "gateway": self.config.gateway.id,
            "boot_id": self.stamper.boot_id.hex(),
            "clock_source": self.stamper.clock_source().name.lower(),
            "drivers": {d.name: asdict(d.health) for d in self.drivers},
            "outbox": asdict(stats),
            "losses": await self.outbox.losses(),
            "filters": {} if self.filter is None else self.filter.report(),
            "uplink": {
                k: str(v) if k == "state" else v for k, v in asdict(self.uplink.health).items()
            },
        }

    def _age_s(self, event: Event) -> float:
        # Monotonic times compare only within one boot; across a reboot, wall time must do.
        if event.boot_id == self.stamper.boot_id:
            return max(0, self.stamper.mono() - event.mono_ns) / 1e9
        return max(0, self.stamper.wall() - event.wall_ns) / 1e9


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".health-")
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)
