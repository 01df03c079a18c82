"""The NMEA GPS driver: a thin Trio shell around :mod:`drivers.nmea` and a serial port.

Loop (websockets' ``recv_events`` shape): receive bytes → feed the framer → parse each
sentence → send the samples → repeat. Everything the codec refuses is counted in
:class:`~drivers.base.DriverHealth` and dropped; nothing it refuses reaches a sample.

Samples: one per GGA with a satellite fix and one per RMC with status ``A`` (see
:mod:`drivers.nmea.samples` for why the two are not merged).

Health: ``frames`` counts accepted sentences (any type with a good checksum and, for GGA
and RMC, valid fields); ``bad_frames`` and ``errors_by_kind`` count refused ones (kinds:
``checksum``, ``truncated``, ``too_long``, ``bad_byte``, ``syntax``, ``address``,
``field``); ``skipped_bytes`` counts noise between sentences; ``restarts`` counts reopens
after the port broke; serial failures are counted under the kind ``serial``.

Reopening: when the port breaks (unplugged adapter, vanished pty) or cannot be opened, the
driver waits with exponential backoff and jitter (``backoff_s`` doubling up to
``max_backoff_s``) and reopens the same path, so a udev or simulator symlink that comes
back is picked up (:class:`~drivers.serial_port.Reopener`, shared by the serial drivers).
``task_status.started()`` is called the first time the port opens.

It does not stamp gateway time or persist anything; the gateway does that with the samples.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

import trio

from drivers.base import DriverHealth, Sample
from drivers.errors import ConfigError, DecodeError
from drivers.nmea import GpsSampler, NmeaFramer, Sentence, parse_sentence
from drivers.serial_port import Reopener, open_serial_port

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drivers.serial_port import SerialPort

log = logging.getLogger(__name__)

KIND: Final = "nmea-gps"
DEFAULT_BAUDRATE: Final = 9600
# Rates NMEA receivers use (NMEA 0183 §4: 4800 standard, 38400 "high speed"; u-blox and
# others go up to 921600).
BAUDRATES: Final = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
INITIAL_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 30.0
RECEIVE_BYTES: Final = 1024


class NmeaGpsDriver:
    """Reads an NMEA 0183 GPS receiver on a serial port (implements ``drivers.base.Driver``).

    Args:
        name: the driver instance name (for logs and health).
        device: the device id put on every sample.
        port: the serial device path, e.g. ``/dev/ttyUSB0`` or a stable symlink.
        baudrate: line speed.
        backoff_s: first delay before reopening a broken port; doubles on each failure.
        max_backoff_s: the longest delay between reopen attempts.
    """

    def __init__(
        self,
        name: str,
        device: str,
        port: str,
        baudrate: int = DEFAULT_BAUDRATE,
        *,
        backoff_s: float = INITIAL_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.name = name
        self.device = device
        self.port = port
        self.baudrate = baudrate
        self.health = DriverHealth()
        self._reopener = Reopener(
            name, self.health, log, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self._framer = NmeaFramer()
        self._sampler = GpsSampler(device)

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read the port forever, reopening it when it breaks; never returns normally."""
        await self._reopener.run(
            lambda: open_serial_port(self.port, self.baudrate),
            lambda port: self._pump(port, send),
            on_broken=lambda: self._count_bad(self._framer.reset()),
            task_status=task_status,
        )

    async def wait_open(self, opens: int = 1) -> None:
        """Wait until the port has been opened at least ``opens`` times in total."""
        await self._reopener.wait_open(opens)

    async def _pump(self, port: SerialPort, send: trio.MemorySendChannel[Sample]) -> None:
        log.info("%s: opened %s at %d baud", self.name, self.port, self.baudrate)
        while True:
            data = await port.receive_some(RECEIVE_BYTES)
            skipped_before = self._framer.skipped_bytes
            items = self._framer.feed(data)
            self.health.skipped_bytes += self._framer.skipped_bytes - skipped_before
            for sample in self._decode(items):
                await send.send(sample)
                self.health.samples += 1
                self.health.last_sample_mono_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def _decode(self, items: list[Sentence | DecodeError]) -> list[Sample]:
        samples: list[Sample] = []
        for item in items:
            try:
                if isinstance(item, DecodeError):
                    raise item
                message = parse_sentence(item)
            except DecodeError as error:
                self._count_bad([error])
                continue
            self.health.frames += 1
            samples.extend(self._sampler.handle(message))
        return samples

    def _count_bad(self, errors: list[DecodeError]) -> None:
        for error in errors:
            self.health.bad_frames += 1
            self.health.count_error(error.kind, str(error))


def make_driver(cfg: Mapping[str, object]) -> NmeaGpsDriver:
    """Build a driver from a config table such as
    ``{kind = "nmea-gps", name = "gps-1", device = "gps-1", port = "/dev/ttyUSB0",
    baudrate = 9600}`` (``baudrate`` optional).

    Raises:
        ConfigError: a missing, unknown or ill-typed key, or an unsupported baud rate.
    """
    unknown = sorted(set(cfg) - {"kind", "name", "device", "port", "baudrate"})
    if unknown:
        raise ConfigError(key=unknown[0], reason=f"unknown key for a {KIND} driver")
    if _text(cfg, "kind") != KIND:
        raise ConfigError(key="kind", reason=f"expected {KIND!r}, got {cfg['kind']!r}")
    baudrate = cfg.get("baudrate", DEFAULT_BAUDRATE)
    # bool is an int subclass; `baudrate = true` is a typo, not 1 baud.
    if not isinstance(baudrate, int) or isinstance(baudrate, bool):
        raise ConfigError(key="baudrate", reason=f"must be an integer, got {baudrate!r}")
    if baudrate not in BAUDRATES:
        raise ConfigError(key="baudrate", reason=f"{baudrate} is not one of {BAUDRATES}")
    return NmeaGpsDriver(_text(cfg, "name"), _text(cfg, "device"), _text(cfg, "port"), baudrate)


def _text(cfg: Mapping[str, object], key: str) -> str:
    if key not in cfg:
        raise ConfigError(key=key, reason="missing")
    value = cfg[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key=key, reason=f"must be a non-empty string, got {value!r}")
    return value
