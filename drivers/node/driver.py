"""The ``node-serial`` driver: a MicroPython sensor node on a UART, via the node protocol.

Loop (websockets' ``recv_events`` shape): receive bytes → :class:`NodeFramer` → decode →
:class:`NodeSession` → send samples / acks → repeat. Refused frames are counted in
:class:`~drivers.base.DriverHealth` (kinds ``cobs``, ``crc``, ``truncated``, ``too_long``,
``cbor``, ``type``, ``field``, ``serial``) and dropped; the link keeps running.

Acknowledgement after storage: each sample is a :class:`NodeSample` carrying a
:class:`trio.Event`. The gateway's outbox writer calls :meth:`NodeSample.mark_stored` after
the transaction that stored it commits; only then does this driver send the ack that lets
the node forget those readings. A gateway killed before the commit never acks, and the node
resends. If the gateway does not report a batch stored within ``store_timeout_s`` (outbox
refusing writes), the batch is given up and counted, so the node's resend is accepted later.

Timestamps: a record's age on the node is ``now-ms - t-ms``. Readings younger than
:data:`FRESH_MS` are stamped by the gateway as usual; older ones (resent after an outage)
are back-dated from the gateway's wall clock by their age, with clock source ``NONE``
because the result mixes the node's uptime with the gateway's clock.

Reopening after the port breaks: :class:`~drivers.serial_port.Reopener` (backoff with jitter,
same path), as in :mod:`drivers.gps`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from drivers.base import DriverHealth, Sample
from drivers.errors import ConfigError, DecodeError, SerialBroken
from drivers.node.framing import NodeFramer, encode_frame
from drivers.node.messages import Ack, decode_message, encode_message
from drivers.node.session import NodeSession
from drivers.serial_port import Reopener, open_serial_port
from protocol.events import ClockSource, Reading

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drivers.node.messages import Record
    from drivers.serial_port import SerialPort

log = logging.getLogger(__name__)

KIND: Final = "node-serial"
DEFAULT_BAUDRATE: Final = 115200
BAUDRATES: Final = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
FRESH_MS: Final = 2000
STORE_TIMEOUT_S: Final = 30.0
INITIAL_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 30.0
RECEIVE_BYTES: Final = 1024


@dataclass(frozen=True, slots=True)
class NodeSample(Sample):
    """A sample whose driver waits to hear that the gateway stored it."""

    node_boot: int = field(default=0, compare=False)
    last_seq: int = field(default=0, compare=False)  # highest record seq in this sample
    stored: trio.Event = field(default_factory=trio.Event, compare=False, repr=False)

    def mark_stored(self) -> None:
        """The gateway committed this sample: the driver may now acknowledge it to the node."""
        self.stored.set()


class NodeSerialDriver:
    """Reads one node on a serial port (implements ``drivers.base.Driver``).

    Args:
        name: the driver instance name (for logs and health).
        port: the serial device path (or a stable symlink).
        device: the device id for samples; ``None`` uses the node id from the wire.
        baudrate: line speed.
        store_timeout_s: how long to wait for the gateway to store a batch before giving up.
    """

    def __init__(
        self,
        name: str,
        port: str,
        device: str | None = None,
        baudrate: int = DEFAULT_BAUDRATE,
        *,
        store_timeout_s: float = STORE_TIMEOUT_S,
        backoff_s: float = INITIAL_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.name = name
        self.port = port
        self.device = device
        self.baudrate = baudrate
        self.health = DriverHealth()
        self.session = NodeSession()
        self._store_timeout_s = store_timeout_s
        self._reopener = Reopener(
            name, self.health, log, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self._framer = NodeFramer()
        self._send_lock = trio.Lock()
        self._port: SerialPort | None = None

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the node forever, reopening the port when it breaks."""
        # Ack waiters outlive a port: a batch stored after an unplug is still acknowledged
        # (on the reopened port), so the session never waits for an ack task that was lost.
        async with trio.open_nursery() as waiters:
            await self._reopener.run(
                lambda: open_serial_port(self.port, self.baudrate),
                lambda port: self._serve_port(port, send, waiters),
                on_broken=lambda: self._count_bad(self._framer.reset()),
                task_status=task_status,
            )

    def statistics(self) -> dict[str, Any]:
        """Node-link counters (health); the session's counters plus link state."""
        counters = self.session.counters
        return {
            "node_id": self.session.node_id,
            "boot": self.session.boot,
            "stored_seq": self.session.stored,
            "hellos": counters.hellos,
            "boots": counters.boots,
            "boot_regressions": counters.boot_regressions,
            "duplicates": counters.duplicates,
            "node_dropped": counters.node_dropped,
            "given_up": counters.given_up,
        }

    async def _serve_port(
        self, port: SerialPort, send: trio.MemorySendChannel[Sample], nursery: trio.Nursery
    ) -> None:
        log.info("%s: opened %s at %d baud", self.name, self.port, self.baudrate)
        self._port = port
        try:
            await self._pump(port, send, nursery)
        finally:
            self._port = None

    async def _pump(
        self, port: SerialPort, send: trio.MemorySendChannel[Sample], nursery: trio.Nursery
    ) -> None:
        while True:
            data = await port.receive_some(RECEIVE_BYTES)
            skipped_before = self._framer.skipped_bytes
            items = self._framer.feed(data)
            self.health.skipped_bytes += self._framer.skipped_bytes - skipped_before
            for item in items:
                await self._handle(item, send, nursery)

    async def _handle(
        self,
        item: bytes | DecodeError,
        send: trio.MemorySendChannel[Sample],
        nursery: trio.Nursery,
    ) -> None:
        try:
            if isinstance(item, DecodeError):
                raise item
            message = decode_message(item)
        except DecodeError as error:
            self._count_bad([error])
            return
        self.health.frames += 1
        delivery = self.session.receive(message)
        if delivery.ack_now is not None:
            await self._send_ack(delivery.ack_now)
        if not delivery.new:
            return
        samples = self._samples(delivery.new, delivery.boot, delivery.now_ms)
        for sample in samples:
            await send.send(sample)
            self.health.samples += 1
            self.health.last_sample_mono_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        # The gateway stores samples in order, so the last one stored means all are.
        nursery.start_soon(self._ack_when_stored, samples[-1])

    async def _ack_when_stored(self, last: NodeSample) -> None:
        with trio.move_on_after(self._store_timeout_s):
            await last.stored.wait()
            ack = self.session.mark_stored(last.node_boot, last.last_seq)
            if ack is not None:
                await self._send_ack(ack)
            return
        log.warning("%s: readings up to seq %d were not stored in time", self.name, last.last_seq)
        self.session.give_up(last.node_boot, last.last_seq)

    async def _send_ack(self, ack: Ack) -> None:
        port = self._port
        if port is None:
            return  # unplugged: the node resends, and the resend is acknowledged at once
        async with self._send_lock:
            try:
                await port.send_all(encode_frame(encode_message(ack)))
            except (SerialBroken, trio.ClosedResourceError) as exc:
                # The reading task sees the same failure and reopens; nothing to do here.
                log.info("%s: ack not sent: %s", self.name, exc)

    def _samples(self, records: tuple[Record, ...], boot: int, now_ms: int) -> list[NodeSample]:
        device = self.device or self.session.node_id or self.name
        samples: list[NodeSample] = []
        # Readings taken together share t-ms: one sample per sampling instant. A name that
        # repeats also starts a new sample (two samplings within one millisecond).
        for batch in _instants(records):
            readings = tuple(Reading(r.name, r.unit, r.value) for r in batch)
            age_ms = max(0, now_ms - batch[0].t_ms)
            wall, clock = None, None
            if age_ms >= FRESH_MS:
                wall, clock = time.time_ns() - age_ms * 1_000_000, ClockSource.NONE
            samples.append(NodeSample(device, readings, wall, clock, boot, batch[-1].seq))
        return samples

    def _count_bad(self, errors: list[DecodeError]) -> None:
        for error in errors:
            self.health.bad_frames += 1
            self.health.count_error(error.kind, str(error))


def _instants(records: tuple[Record, ...]) -> list[list[Record]]:
    groups: list[list[Record]] = []
    for record in records:
        group = groups[-1] if groups else None
        if group and group[0].t_ms == record.t_ms and all(r.name != record.name for r in group):
            group.append(record)
        else:
            groups.append([record])
    return groups


def make_driver(cfg: Mapping[str, object]) -> NodeSerialDriver:
    """Build a driver from a table such as ``{kind = "node-serial", name = "node-1",
    port = "/dev/ttyUSB1", baudrate = 115200, device = "node-1", store_timeout_s = 30}``
    (all but ``kind``, ``name`` and ``port`` optional).

    Raises:
        ConfigError: a missing, unknown or ill-typed key, or an unsupported baud rate.
    """
    known = {"kind", "name", "port", "device", "baudrate", "store_timeout_s"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(key=unknown[0], reason=f"unknown key for a {KIND} driver")
    if cfg.get("kind") != KIND:
        raise ConfigError(key="kind", reason=f"expected {KIND!r}, got {cfg.get('kind')!r}")
    baudrate = cfg.get("baudrate", DEFAULT_BAUDRATE)
    # bool is an int subclass; `baudrate = true` is a typo, not 1 baud.
    if type(baudrate) is not int or baudrate not in BAUDRATES:
        raise ConfigError(key="baudrate", reason=f"{baudrate!r} is not one of {BAUDRATES}")
    timeout = cfg.get("store_timeout_s", STORE_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ConfigError(key="store_timeout_s", reason="must be a number of seconds, 0-3600")
    device = cfg.get("device")
    if device is not None:
        device = _text(cfg, "device")
    return NodeSerialDriver(
        _text(cfg, "name"),
        _text(cfg, "port"),
        device,
        baudrate,
        store_timeout_s=float(timeout),
    )


def _text(cfg: Mapping[str, object], key: str) -> str:
    value = cfg.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key=key, reason=f"must be a non-empty string, got {value!r}")
    return value
