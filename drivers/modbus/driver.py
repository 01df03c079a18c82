"""The ``modbus-rtu`` driver: polls the register maps of several slaves on one RS-485 port.

Configuration (one ``[[sensors]]`` table per port)::

    [[sensors]]
    kind = "modbus-rtu"
    name = "rs485-1"
    port = "/dev/serial/by-id/usb-FTDI-if00"
    baudrate = 9600          # optional, default 9600
    parity = "E"             # optional: "E" (the Modbus default, §2.5.1), "N", "O"
    stopbits = 1             # optional: 1 or 2

    [[sensors.devices]]
    device = "meter-1"       # device id on the samples
    slave = 1                # 1-247
    poll_s = 1.0             # optional, default 1.0
    timeout_ms = 200         # optional: reply timeout per request
    retries = 1              # optional: immediate retries after a timeout or bad reply
    registers = [
      { name = "voltage", unit = "V", function = 4, address = 0, type = "float32" },
      { name = "energy", unit = "J", function = 3, address = 10, type = "uint32",
        word_order = "little", scale = 3600.0 },
    ]

Each device is polled by its own task; all share the port through :class:`ModbusBus`. A
poll reads every register point and produces one sample with the readings that succeeded.
Exception replies (§7), CRC errors, damaged replies and timeouts are counted (in
``DriverHealth.errors_by_kind`` as ``exception``, ``crc``, ``timeout``, ... and per device
in :meth:`ModbusRtuDriver.statistics`), never raised out of the driver. A slave that misses
a whole poll is marked offline and polled less often (doubling up to
:data:`MAX_OFFLINE_POLL_S`) so it does not eat the bus's time; it is back on the normal
schedule as soon as it answers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from drivers.base import DriverHealth, Sample
from drivers.errors import ConfigError, DecodeError, SerialBroken
from drivers.modbus.bus import PARITIES, ModbusBus, ModbusTimeout
from drivers.modbus.registers import RegisterPoint, decode_point, parse_point
from drivers.modbus.rtu import ExceptionReply, ReadRequest
from protocol.events import Reading

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

KIND: Final = "modbus-rtu"
BAUDRATES: Final = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
MAX_OFFLINE_POLL_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One slave on the bus and its register map."""

    device: str
    slave: int
    points: tuple[RegisterPoint, ...]
    poll_s: float = 1.0
    timeout_s: float = 0.2
    retries: int = 1


@dataclass(slots=True)
class DeviceCounters:
    """Per-slave counters (never reset while the gateway runs)."""

    requests: int = 0
    replies: int = 0
    timeouts: int = 0
    exceptions: int = 0
    bad_replies: int = 0
    polls_missed: int = 0
    online: bool = True
    last_exception: str | None = None
    errors: dict[str, int] = field(default_factory=dict)


class ModbusRtuDriver:
    """Polls several slaves on one port (implements ``drivers.base.Driver``)."""

    def __init__(
        self,
        name: str,
        port: str,
        devices: tuple[DeviceConfig, ...],
        baudrate: int = 9600,
        *,
        parity: str = "E",
        stopbits: int = 1,
        backoff_s: float = 0.5,
    ) -> None:
        self.name = name
        self.devices = devices
        self.health = DriverHealth()
        self.bus = ModbusBus(
            port, baudrate, self.health, parity=parity, stopbits=stopbits, backoff_s=backoff_s
        )
        self.counters = {d.device: DeviceCounters() for d in devices}

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Open the port and poll every device forever."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.bus.serve)
            for device in self.devices:
                nursery.start_soon(self._poll_forever, device, send)
            task_status.started()

    def statistics(self) -> dict[str, Any]:
        """Per-device counters and bus totals, for the health report."""
        return {
            "transactions": self.bus.transactions,
            "devices": {
                name: {
                    "requests": c.requests,
                    "replies": c.replies,
                    "timeouts": c.timeouts,
                    "exceptions": c.exceptions,
                    "bad_replies": c.bad_replies,
                    "polls_missed": c.polls_missed,
                    "online": c.online,
                    "last_exception": c.last_exception,
                }
                for name, c in self.counters.items()
            },
        }

    async def _poll_forever(
        self, device: DeviceConfig, send: trio.MemorySendChannel[Sample]
    ) -> None:
        counters = self.counters[device.device]
        interval = device.poll_s
        next_poll = trio.current_time()
        while True:
            await trio.sleep_until(next_poll)
            readings = await self._poll_once(device, counters)
            if readings:
                await send.send(Sample(device.device, tuple(readings)))
                self.health.samples += 1
                self.health.last_sample_mono_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            interval = self._next_interval(device, counters, answered=bool(readings))
            # Fixed schedule, not "sleep after": polls do not drift by the time they took.
            next_poll = max(next_poll + interval, trio.current_time())

    def _next_interval(self, device: DeviceConfig, c: DeviceCounters, *, answered: bool) -> float:
        if answered:
            if not c.online:
                log.info("%s: slave %d answers again", device.device, device.slave)
            c.online = True
            c.polls_missed = 0
            return device.poll_s
        c.polls_missed += 1
        if c.online:
            log.warning("%s: slave %d does not answer", device.device, device.slave)
        c.online = False
        return float(min(device.poll_s * 2**c.polls_missed, MAX_OFFLINE_POLL_S))

    async def _poll_once(self, device: DeviceConfig, c: DeviceCounters) -> list[Reading]:
        readings: list[Reading] = []
        for point in device.points:
            value = await self._read_point(device, point, c)
            if value is not None:
                readings.append(Reading(point.name, point.unit, value))
        return readings

    async def _read_point(
        self, device: DeviceConfig, point: RegisterPoint, c: DeviceCounters
    ) -> int | float | None:
        request = ReadRequest(device.slave, point.function, point.address, point.count)
        for _attempt in range(1 + device.retries):
            c.requests += 1
            try:
                reply = await self.bus.transact(request, device.timeout_s)
            except ModbusTimeout as exc:
                c.timeouts += 1
                self._count(c, "timeout", str(exc))
                continue
            except DecodeError as error:
                c.bad_replies += 1
                self.health.bad_frames += 1
                self._count(c, error.kind, str(error))
                continue
            except SerialBroken:
                return None  # the bus reopens the port; this poll is lost
            c.replies += 1
            self.health.frames += 1
            if isinstance(reply, ExceptionReply):
                # The slave refused on purpose (§7); asking again at once will not help.
                c.exceptions += 1
                c.last_exception = f"{point.name}: {reply.meaning}"
                self._count(c, "exception", f"{device.device} {c.last_exception}")
                return None
            try:
                return decode_point(point, reply.values)
            except DecodeError as error:
                self._count(c, error.kind, f"{device.device} {point.name}: {error.reason}")
                return None
        return None

    def _count(self, c: DeviceCounters, kind: str, message: str) -> None:
        c.errors[kind] = c.errors.get(kind, 0) + 1
        self.health.count_error(kind, message)


def make_driver(cfg: Mapping[str, object]) -> ModbusRtuDriver:
    """Build a driver from a ``[[sensors]]`` table (see the module docstring).

    Raises:
        ConfigError: a missing, unknown or invalid key; ``key`` says which.
    """
    known = {"kind", "name", "port", "baudrate", "parity", "stopbits", "devices"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigError(key=unknown[0], reason=f"unknown key for a {KIND} driver")
    if cfg.get("kind") != KIND:
        raise ConfigError(key="kind", reason=f"expected {KIND!r}")
    baudrate = _int(cfg, "baudrate", "", 9600)
    if baudrate not in BAUDRATES:
        raise ConfigError(key="baudrate", reason=f"{baudrate} is not one of {BAUDRATES}")
    parity = cfg.get("parity", "E")
    if parity not in PARITIES:
        raise ConfigError(key="parity", reason="'E', 'N' or 'O'")
    stopbits = _int(cfg, "stopbits", "", 1)
    if stopbits not in (1, 2):
        raise ConfigError(key="stopbits", reason="1 or 2")
    tables = cfg.get("devices")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(key="devices", reason="at least one [[sensors.devices]] table")
    devices = tuple(_device(t, f"devices[{i}]") for i, t in enumerate(tables))
    _unique([d.device for d in devices], "device")
    _unique([str(d.slave) for d in devices], "slave")
    return ModbusRtuDriver(
        _text(cfg, "name"), _text(cfg, "port"), devices, baudrate,
        parity=str(parity), stopbits=stopbits,
    )  # fmt: skip


def _device(table: object, where: str) -> DeviceConfig:
    if not isinstance(table, dict):
        raise ConfigError(key=where, reason="must be a table")
    known = {"device", "slave", "poll_s", "timeout_ms", "retries", "registers"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(key=f"{where}.{unknown[0]}", reason="unknown key")
    slave = _int(table, "slave", where, None)
    if not 1 <= slave <= 247:
        raise ConfigError(key=f"{where}.slave", reason="1-247 (Modbus over Serial Line §2.2)")
    points = table.get("registers")
    if not isinstance(points, list) or not points:
        raise ConfigError(key=f"{where}.registers", reason="a non-empty array of tables")
    parsed = tuple(
        parse_point(p, f"{where}.registers[{i}]") if isinstance(p, dict) else _not_table(where)
        for i, p in enumerate(points)
    )
    poll_s = _number(table, "poll_s", where, 1.0, 0.01, 86400)
    timeout_s = _number(table, "timeout_ms", where, 200, 1, 10_000) / 1000
    retries = _int(table, "retries", where, 1)
    if not 0 <= retries <= 5:
        raise ConfigError(key=f"{where}.retries", reason="0-5")
    device = _text(table, "device", where)
    return DeviceConfig(device, slave, parsed, poll_s, timeout_s, retries)


def _not_table(where: str) -> RegisterPoint:
    raise ConfigError(key=f"{where}.registers", reason="each register is a table")


def _unique(values: list[str], key: str) -> None:
    if len(set(values)) != len(values):
        raise ConfigError(key=f"devices.{key}", reason="must be unique on one bus")


def _int(table: Mapping[str, object], key: str, where: str, default: int | None) -> int:
    value = table.get(key, default)
    # bool is an int subclass; `slave = true` is a typo.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key=f"{where}.{key}".lstrip("."), reason=f"must be an integer: {value!r}")
    return value


def _number(
    table: Mapping[str, object], key: str, where: str, default: float, low: float, high: float
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(key=f"{where}.{key}", reason=f"a number from {low} to {high}")
    return float(value)


def _text(table: Mapping[str, object], key: str, where: str = "") -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key=f"{where}.{key}".lstrip("."), reason="must be a non-empty string")
    return value
