"""The gateway's health report, sent to the core as an ordinary event.

Every :data:`REPORT_INTERVAL_S` the gateway turns what it knows about itself (the dictionary
``Gateway.health()`` returns, also written to ``health.json``) into SenML readings and sends
them as one sample from the reserved device :data:`HEALTH_DEVICE`. The report therefore takes
the same path as sensor data: outbox first, then the uplink, stored and routed by the core
like any event, so a report written while offline arrives when the link returns and nothing
new is needed in the link protocol. The core's ``GET /api/v1/gateways`` serves the latest one.

Readings (RFC 8428 names and units; ``B`` is the byte unit of RFC 8798):

=========================== ======= =====================================================
name                        unit    value
=========================== ======= =====================================================
``interval``                s       seconds until the next report
``uptime``                  s       seconds since the gateway process started
``watchdog/healthy``                true while every part makes progress
``watchdog/stalled``                stalled parts, comma-separated ("" when none)
``link/state``                      connecting, online or offline
``link/connects``           count   links established since start
``link/disconnects``        count   links lost since start
``link/acked_seq``          count   highest seq the core has acknowledged
``link/last_error``                 the last reason the link failed (if any)
``outbox/depth``            count   events waiting for the core
``outbox/bytes``            B       the outbox's size on disk
``outbox/oldest_age``       s       age of the oldest waiting event (only when depth > 0)
``loss/<reason>``           count   the loss ledger: events dropped on purpose, per reason
``filter/<reason>``         count   samples the filters dropped before the outbox, per
                                    reason (``filtered_rate``, ...; only with ``[filters]``)
``filter/evicted``          count   devices whose filter state was evicted (the LRU bound)
``clock/source``                    none, ntp, gps or rtc
``clock/maxerror``          s       the kernel's maximum clock error (adjtimex(2)), if known
``disk/free``, ``disk/total`` B     the data directory's file system
``mem/available``           B       the kernel's MemAvailable (proc(5))
``mem/rss``                 B       this process's resident memory
``driver/<name>/samples``   count   samples the driver produced since start
``driver/<name>/errors``    count   inputs it refused, plus transport failures
``driver/<name>/restarts``  count   times its transport was reopened
``driver/<name>/last_age``  s       age of its last sample (absent until the first)
``drivers/omitted``         count   drivers left out to stay within the reading limit
=========================== ======= =====================================================

Strings are cut to :data:`MAX_TEXT_CHARS` so they stay within the link's text limit.
:func:`health_readings` is pure; :func:`read_system_stats` reads /proc and statvfs only. This
module does not decide whether the gateway is healthy (``gateway.watchdog`` does) and keeps
no history.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from drivers.base import Sample
from protocol.events import Reading
from protocol.limits import MAX_READINGS_PER_EVENT, MAX_TEXT_BYTES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

#: The device id health reports are sent from; sensors must not use it.
HEALTH_DEVICE: Final = "_health"
REPORT_INTERVAL_S: Final = 60.0
#: Longest string reading; 4 bytes per character at most keeps it under the link's limit.
MAX_TEXT_CHARS: Final = MAX_TEXT_BYTES // 4
MEMINFO_PATH: Final = Path("/proc/meminfo")
STATM_PATH: Final = Path("/proc/self/statm")
#: Readings per driver in a report.
_PER_DRIVER: Final = 4


@dataclass(frozen=True, slots=True)
class SystemStats:
    """Disk, memory and clock figures for the health report (``None``: not available)."""

    disk_free: int
    disk_total: int
    mem_available: int | None
    rss: int | None
    clock_maxerror_s: float | None


class _Timex(ctypes.Structure):
    # The leading fields of struct timex (adjtimex(2)); ctypes applies the C ABI's padding,
    # and the buffer is enlarged below so the kernel's write of the whole struct fits.
    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 512),
    )


@functools.cache
def _adjtimex() -> Any | None:
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def clock_maxerror_s() -> float | None:
    """The kernel's maximum error of the system clock in seconds (``modes = 0``: read only)."""
    call = _adjtimex()
    if call is None:
        return None
    timex = _Timex()
    if int(call(ctypes.byref(timex))) < 0:
        return None
    return int(timex.maxerror) / 1e6  # microseconds (adjtimex(2))


def read_system_stats(data_dir: Path) -> SystemStats:
    """Free space where the outbox lives, memory, and the clock's error bound."""
    fs = os.statvfs(data_dir)
    return SystemStats(
        disk_free=fs.f_bavail * fs.f_frsize,
        disk_total=fs.f_blocks * fs.f_frsize,
        mem_available=_meminfo_available(),
        rss=_rss_bytes(),
        clock_maxerror_s=clock_maxerror_s(),
    )


def _meminfo_available(path: Path = MEMINFO_PATH) -> int | None:
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            key, _, rest = line.partition(":")
            if key == "MemAvailable":
                return int(rest.split()[0]) * 1024  # proc(5): the figure is in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_bytes(path: Path = STATM_PATH) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


def system_report(data_dir: Path) -> dict[str, Any]:
    return asdict(read_system_stats(data_dir))


def _text(value: object) -> str:
    return str(value)[:MAX_TEXT_CHARS]


def health_readings(report: Mapping[str, Any], interval_s: float) -> tuple[Reading, ...]:
    """Turn a health report (``Gateway.health()``) into at most 64 SenML readings.

    Drivers come last, in name order; those that do not fit are counted in
    ``drivers/omitted`` rather than split over several events.
    """
    readings: list[Reading] = [Reading("interval", "s", interval_s)]
    readings += _general(report)
    drivers: Mapping[str, Mapping[str, Any]] = report.get("drivers", {})
    room = MAX_READINGS_PER_EVENT - len(readings) - 1  # one for drivers/omitted
    fits = max(0, room // _PER_DRIVER)
    names = sorted(drivers)
    for name in names[:fits]:
        readings += _driver(name, drivers[name], report.get("mono_ns"))
    if len(names) > fits:
        readings.append(Reading("drivers/omitted", "count", len(names) - fits))
    return tuple(readings)


def _general(report: Mapping[str, Any]) -> list[Reading]:
    watchdog = report.get("watchdog", {"healthy": True, "stalled": []})
    uplink = report.get("uplink", {})
    outbox = report.get("outbox", {})
    system = report.get("system", {})
    found: list[tuple[str, str, object]] = [
        ("uptime", "s", report.get("uptime_s")),
        ("watchdog/healthy", "", bool(watchdog["healthy"])),
        ("watchdog/stalled", "", ",".join(s["part"] for s in watchdog["stalled"])),
        ("link/state", "", uplink.get("state")),
        ("link/connects", "count", uplink.get("connects")),
        ("link/disconnects", "count", uplink.get("disconnects")),
        ("link/acked_seq", "count", uplink.get("acked_seq")),
        ("link/last_error", "", uplink.get("last_error")),
        ("outbox/depth", "count", outbox.get("depth")),
        ("outbox/bytes", "B", outbox.get("bytes_on_disk")),
        ("outbox/oldest_age", "s", report.get("outbox_oldest_age_s")),
        ("clock/source", "", report.get("clock_source")),
        ("clock/maxerror", "s", system.get("clock_maxerror_s")),
        ("disk/free", "B", system.get("disk_free")),
        ("disk/total", "B", system.get("disk_total")),
        ("mem/available", "B", system.get("mem_available")),
        ("mem/rss", "B", system.get("rss")),
    ]
    losses: Mapping[str, int] = report.get("losses", {})
    found += [(f"loss/{reason}", "count", count) for reason, count in sorted(losses.items())]
    # Filter drops are not losses: they never became events (gateway.filters).
    filters: Mapping[str, Any] = report.get("filters", {})
    dropped: Mapping[str, int] = filters.get("dropped", {})
    found += [(f"filter/{reason}", "count", count) for reason, count in sorted(dropped.items())]
    found.append(("filter/evicted", "count", filters.get("evicted")))
    return [_reading(name, unit, value) for name, unit, value in found if value is not None]


def _driver(name: str, health: Mapping[str, Any], now_ns: int | None) -> list[Reading]:
    # Every refused frame and every transport failure is counted by kind (drivers.base).
    errors = sum(int(count) for count in health.get("errors_by_kind", {}).values())
    readings = [
        Reading(f"driver/{name}/samples", "count", int(health.get("samples", 0))),
        Reading(f"driver/{name}/errors", "count", errors),
        Reading(f"driver/{name}/restarts", "count", int(health.get("restarts", 0))),
    ]
    last = health.get("last_sample_mono_ns")
    if now_ns is not None and last is not None:
        readings.append(Reading(f"driver/{name}/last_age", "s", max(0, now_ns - last) / 1e9))
    return readings


def _reading(name: str, unit: str, value: object) -> Reading:
    if isinstance(value, bool | int | float):
        return Reading(name, unit, value)
    return Reading(name, unit, _text(value))


class HealthReporter:
    """Sends a health report as a :data:`HEALTH_DEVICE` sample every ``interval_s``."""

    def __init__(
        self,
        gather: Callable[[], Awaitable[Mapping[str, Any]]],
        interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self.gather = gather
        self.interval_s = interval_s
        self.sent = 0

    async def run(self, send: trio.MemorySendChannel[Sample]) -> None:
        """Report at once, then every ``interval_s``, until cancelled."""
        async with send:
            while True:
                readings = health_readings(await self.gather(), self.interval_s)
                await send.send(Sample(HEALTH_DEVICE, readings))
                self.sent += 1
                await trio.sleep(self.interval_s)
