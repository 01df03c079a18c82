"""The ``ble-gatt`` driver: connect to BLE sensors, subscribe to their notifications.

One asyncio bridge (:mod:`drivers.ble.bridge`) carries every bleak call; each configured
device gets a Trio task that loops: take a connection slot (at most ``max_connections``
devices are connected or connecting at once; the others wait their turn, first come first
served), scan for the device and connect (one scan at a time), subscribe to its
Environmental Sensing / Battery characteristics (:mod:`drivers.ble.gatt_io`), then send
one :class:`~drivers.base.Sample` per notification, decoded by :mod:`drivers.ble.ess`,
with the device id ``ble-<address in lower-case hex>``. When the link ends it gives the
slot back, waits a full-jitter exponential backoff and starts again.

A link quiet for ``stall_s`` is probed: the driver reads one subscribed characteristic (the
next one in turn at each probe). Many sensors notify only when a value changes, so a read
that answers means the link is alive: its value becomes a sample, nothing is counted and
the wait starts again (a stable sensor thus gives one sample per ``stall_s``). Only a read
that fails or gets no answer within ``connect_timeout_s`` makes the link stalled.

Health (``errors_by_kind``; never silent): ``unreachable`` (not found, refused),
``disconnected`` (the device dropped the link), ``stalled`` (no notification for
``stall_s`` and the probe read failed: the driver disconnects and reconnects — this also
catches a device or adapter that stops answering while the link looks up), ``adapter``
(BlueZ or the adapter failed, or a bleak call ignored its cancellation for the bridge's
grace period); decoder refusals count as ``bad_frames`` under their kind (``truncated``,
``too_long``, ``range``); ``unknown_value`` ("value is not known", no sample) and
``overflow`` (Trio side not keeping up) are drops. ``restarts`` counts reconnections after
a link that had been up. It does not pair, bond or write to devices.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Final

import trio

from drivers.base import DriverHealth, Sample
from drivers.ble.bridge import AsyncioThread, TaskAbandoned
from drivers.ble.gatt_config import GattConfig, GattDevice, parse_gatt_config
from drivers.ble.gatt_session import (
    DeviceUnreachable,
    LinkLost,
    LinkStalled,
    Notification,
    full_jitter,
    sample_from,
)
from drivers.errors import BleUnavailable, DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

QUEUE: Final = 256
CLOSE_TIMEOUT_S: Final = 5.0


class BleGattDriver:
    """Keeps every configured device connected and subscribed (implements ``Driver``)."""

    def __init__(self, config: GattConfig) -> None:
        self.name = config.name
        self.config = config
        self.health = DriverHealth()
        #: Addresses holding a connection slot right now (connecting or connected).
        self.connected: set[str] = set()
        #: The most slots ever held at once (never above ``max_connections``).
        self.peak_connections = 0
        #: Probe reads that found a quiet link alive (not a health figure: nothing failed).
        self.probes = 0
        self._links: dict[str, int] = {}  # address → links established so far
        self._link_up = trio.Event()
        self._failed = trio.Event()

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve every device until cancelled; ``started`` once the bridge is up."""
        slots = trio.Semaphore(self.config.max_connections)
        scan_lock = trio.Lock()
        async with AsyncioThread(f"{self.name}-bleak") as bridge, trio.open_nursery() as nursery:
            for device in self.config.devices:
                nursery.start_soon(self._serve_device, bridge, device, send, slots, scan_lock)
            log.info(
                "%s: serving %d device(s) on %s",
                self.name,
                len(self.config.devices),
                self.config.adapter,
            )
            task_status.started()

    def links(self, address: str) -> int:
        """How many times ``address`` has been connected and subscribed so far."""
        return self._links.get(address.upper(), 0)

    async def wait_linked(self, address: str, links: int = 1) -> None:
        """Wait until ``address`` has been connected and subscribed ``links`` times."""
        while self.links(address) < links:
            await self._link_up.wait()

    async def wait_failures(self, kind: str, count: int = 1) -> None:
        """Wait until ``health.errors_by_kind[kind]`` (a link failure kind) reaches ``count``."""
        while self.health.errors_by_kind.get(kind, 0) < count:
            await self._failed.wait()

    async def _serve_device(
        self,
        bridge: AsyncioThread,
        device: GattDevice,
        send: trio.MemorySendChannel[Sample],
        slots: trio.Semaphore,
        scan_lock: trio.Lock,
    ) -> None:
        attempt = 0
        while True:
            linked_before = self._links.get(device.address, 0)
            async with slots:
                self.connected.add(device.address)
                self.peak_connections = max(self.peak_connections, len(self.connected))
                try:
                    await self._session(bridge, device, send, scan_lock)
                except (BleUnavailable, LinkStalled, TaskAbandoned) as exc:
                    # TaskAbandoned: a bleak call ignored its cancellation; it is left on
                    # the bridge and the slot is given back (counted as ``adapter``).
                    self._count_failure(device, exc)
                finally:
                    self.connected.discard(device.address)
            if self._links.get(device.address, 0) > linked_before:
                attempt = 0  # the link was up: back off afresh
            draw = random.random()  # noqa: S311 - jitter, not crypto
            delay = full_jitter(attempt, self.config.backoff_s, self.config.max_backoff_s, draw)
            attempt += 1
            await trio.sleep(delay)

    async def _session(
        self,
        bridge: AsyncioThread,
        device: GattDevice,
        send: trio.MemorySendChannel[Sample],
        scan_lock: trio.Lock,
    ) -> None:
        notes_send, notes = trio.open_memory_channel[Notification](QUEUE)

        def on_value(note: Notification) -> None:  # runs on the Trio thread
            try:
                notes_send.send_nowait(note)
            except trio.WouldBlock:
                self._drop("overflow")
            except trio.ClosedResourceError:
                pass  # the link is being torn down; a late value has no session

        def on_lost() -> None:  # runs on the Trio thread
            notes_send.close()

        async with scan_lock:
            link = await _open(bridge, self.config, device, on_value, on_lost)
        try:
            self._on_linked(device)
            await self._pump(bridge, device, link, notes, send)
        finally:
            notes_send.close()
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                await _close(bridge, link)

    def _on_linked(self, device: GattDevice) -> None:
        count = self._links.get(device.address, 0)
        if count:
            self.health.restarts += 1
        self._links[device.address] = count + 1
        log.info("%s: %s connected and subscribed", self.name, device.label)
        self._link_up.set()
        self._link_up = trio.Event()

    async def _pump(
        self,
        bridge: AsyncioThread,
        device: GattDevice,
        link: object,
        notes: trio.MemoryReceiveChannel[Notification],
        send: trio.MemorySendChannel[Sample],
    ) -> None:
        probes = 0  # per link, so that successive probes go round its characteristics
        # BlueZ stores a value it read in the characteristic's Value property and bleak
        # reports every change of that property as a notification, so a probe's value can
        # come back as one: the first identical notification after a probe is dropped.
        echo: Notification | None = None
        while True:
            with trio.move_on_after(self.config.stall_s) as scope:
                try:
                    note = await notes.receive()
                except trio.EndOfChannel:
                    raise LinkLost(f"{device.label} dropped the connection") from None
            if scope.cancelled_caught:
                note = echo = await self._probe(bridge, device, link, notes, probes)
                probes += 1
            elif echo is not None:
                seen, echo = echo, None
                if note == seen:
                    continue
            sample = self.handle(device, note)
            if sample is not None:
                await send.send(sample)
                self.health.samples += 1
                self.health.last_sample_mono_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    async def _probe(
        self,
        bridge: AsyncioThread,
        device: GattDevice,
        link: object,
        notes: trio.MemoryReceiveChannel[Notification],
        turn: int,
    ) -> Notification:
        """Read one subscribed characteristic of a quiet link: alive if it answers.

        Raises:
            LinkStalled: the read failed or got no answer within ``connect_timeout_s``.
            LinkLost: the device dropped the link meanwhile.
        """
        quiet = f"no notification from {device.label} for {self.config.stall_s:g} s"
        failure: str | None = None
        with trio.move_on_after(self.config.connect_timeout_s) as scope:
            try:
                note = await _read(bridge, link, device.address, turn)
            except BleUnavailable as exc:
                failure = f"{quiet} and a read failed: {exc}"
        if scope.cancelled_caught:
            failure = f"{quiet} and a read got no answer for {self.config.connect_timeout_s:g} s"
        if failure is not None:
            if notes.statistics().open_send_channels == 0:  # on_lost ran: a drop, not a stall
                raise LinkLost(f"{device.label} dropped the connection")
            raise LinkStalled(failure)
        self.probes += 1
        return note

    def handle(self, device: GattDevice, note: Notification) -> Sample | None:
        """Decode one notification (pure apart from the health counters)."""
        try:
            sample = sample_from(device.device_id, note)
        except DecodeError as exc:
            self.health.bad_frames += 1
            self.health.count_error(exc.kind, f"{device.label}: {exc}")
            return None
        self.health.frames += 1
        if sample is None:
            self._drop("unknown_value")
        return sample

    def _count_failure(self, device: GattDevice, exc: Exception) -> None:
        kinds: dict[type[Exception], str] = {
            DeviceUnreachable: "unreachable",
            LinkLost: "disconnected",
            LinkStalled: "stalled",
        }
        kind = kinds.get(type(exc), "adapter")
        log.warning("%s: %s; reconnecting with backoff", self.name, exc)
        self.health.count_error(kind, str(exc))
        self._failed.set()
        self._failed = trio.Event()

    def _drop(self, kind: str) -> None:
        # Drops are expected traffic, not errors: counted without touching last_error.
        self.health.errors_by_kind[kind] = self.health.errors_by_kind.get(kind, 0) + 1


async def _open(
    bridge: AsyncioThread,
    config: GattConfig,
    device: GattDevice,
    on_value: Callable[[Notification], None],
    on_lost: Callable[[], None],
) -> object:
    from drivers.ble.gatt_io import open_link  # bleak is imported only when connecting

    return await bridge.run(
        lambda: open_link(
            bridge, config.adapter, device, config.connect_timeout_s, on_value, on_lost
        )
    )


async def _read(bridge: AsyncioThread, link: object, address: str, turn: int) -> Notification:
    from drivers.ble.gatt_io import read_value

    return await bridge.run(lambda: read_value(link, address, turn))


async def _close(bridge: AsyncioThread, link: object) -> None:
    from drivers.ble.gatt_io import close_link

    await bridge.run(lambda: close_link(link))


def make_driver(cfg: Mapping[str, object]) -> BleGattDriver:
    """Build a driver from a ``[[sensors]]`` table (keys: docs/drivers.md, "BLE GATT").

    Raises:
        ConfigError: a missing, unknown or ill-typed key.
    """
    return BleGattDriver(parse_gatt_config(cfg))
