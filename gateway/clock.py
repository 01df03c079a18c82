"""The gateway's sense of time and the stamping of samples into events.

Principle 3 of the brief, "time is data": a Raspberry Pi has no battery-backed clock, so its
wall clock may be anything until NTP has run. Every event therefore carries the kernel's boot
id, the monotonic time since boot (``CLOCK_BOOTTIME``), the wall time and where the wall time
came from, so that the core can trust, or later correct, the timestamp.

Contract:

* :func:`read_boot_id` returns the kernel's 16-byte boot id. Where the kernel does not expose
  one (not Linux, a restricted container) it returns 16 random bytes that are persisted
  nowhere: every process start then looks like a new boot. That is the safe direction: the
  core never compares monotonic times that are not comparable; it only loses comparisons it
  could have made.
* :func:`monotonic_ns` counts time spent in suspend (``CLOCK_BOOTTIME``, clock_gettime(2)), so
  a gateway that sleeps keeps a true elapsed time.
* :func:`system_clock_source` says ``NTP`` only when the kernel reports a synchronised clock.
* :class:`Stamper` turns :class:`~drivers.base.Sample` values into the fields of an
  :class:`~protocol.events.Event` after its seq (the outbox numbers and encodes them).
  Its clocks are injected: it reads no clock of its own, so tests drive it with plain numbers.

This module does not set or slew the clock, does not talk to NTP or GPS itself, and keeps no
state on disk.
"""

from __future__ import annotations

import ctypes
import functools
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from protocol.events import ClockSource
from protocol.limits import BOOT_ID_BYTES

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from drivers.base import Sample
    from protocol.events import Reading

    #: An event's fields after its seq: device, boot_id, mono_ns, wall_ns, clock, readings.
    EventFields = tuple[str, bytes, int, int, ClockSource, tuple[Reading, ...]]

BOOT_ID_PATH: Final = Path("/proc/sys/kernel/random/boot_id")
#: Created by systemd-timesyncd once it has synchronised the clock (timesyncd(8)).
TIMESYNC_FLAG_PATH: Final = Path("/run/systemd/timesync/synchronized")

#: adjtimex(2) return value when the clock is not synchronised (STA_UNSYNC set, among others).
TIME_ERROR: Final = 5
#: Bytes handed to adjtimex(2): larger than ``struct timex`` on every Linux ABI (208 bytes on
#: 64-bit), so no layout needs to be declared; only the return value is used.
_TIMEX_BUFFER_BYTES: Final = 512

# CLOCK_BOOTTIME is Linux-only; elsewhere the plain monotonic clock is the best there is.
_BOOT_CLOCK: Final = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def read_boot_id(
    path: Path = BOOT_ID_PATH, random_bytes: Callable[[int], bytes] = os.urandom
) -> bytes:
    """Return the kernel's boot id as 16 bytes, or a random stand-in where there is none.

    Args:
        path: the file holding the boot id as a UUID in text form (proc(5)).
        random_bytes: the randomness used for the stand-in.

    Returns:
        16 bytes that are the same for every call during one boot (with the kernel's id), or
        fresh random bytes (without it; see the module docstring for why that is safe).
    """
    try:
        return uuid.UUID(path.read_text(encoding="ascii").strip()).bytes
    except (OSError, ValueError):
        return random_bytes(BOOT_ID_BYTES)


def monotonic_ns() -> int:
    """Nanoseconds since boot, including time suspended (``CLOCK_BOOTTIME``)."""
    return time.clock_gettime_ns(_BOOT_CLOCK)


def wall_ns() -> int:
    """Nanoseconds since the Unix epoch by the system's wall clock, whatever its quality."""
    return time.time_ns()


@functools.cache
def _libc_adjtimex() -> Any | None:
    """Find adjtimex(2) in the C library the interpreter already links (looked up once)."""
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def _adjtimex_state() -> int | None:
    """Return adjtimex(2)'s clock state, or ``None`` where the call is not available.

    ``modes = 0`` (a zeroed buffer) only reads the kernel's state, which needs no privilege.
    """
    adjtimex = _libc_adjtimex()
    if adjtimex is None:
        return None
    buffer = ctypes.create_string_buffer(_TIMEX_BUFFER_BYTES)
    state = int(adjtimex(buffer))
    return None if state < 0 else state


def system_clock_source(
    adjtimex: Callable[[], int | None] = _adjtimex_state,
    timesync_flag: Path = TIMESYNC_FLAG_PATH,
) -> ClockSource:
    """Say whether the system's wall clock can be trusted.

    The kernel is asked first: any NTP client (chrony, ntpd, timesyncd) clears ``STA_UNSYNC``
    once it disciplines the clock, and adjtimex(2) then returns something other than
    ``TIME_ERROR``. Only where the call is unavailable is systemd-timesyncd's flag file used.

    Args:
        adjtimex: returns adjtimex(2)'s state, or ``None`` if it cannot be called.
        timesync_flag: the file systemd-timesyncd creates once synchronised.

    Returns:
        ``ClockSource.NTP`` when the clock is synchronised, else ``ClockSource.NONE``.
    """
    state = adjtimex()
    if state is None:
        return ClockSource.NTP if timesync_flag.exists() else ClockSource.NONE
    return ClockSource.NONE if state == TIME_ERROR else ClockSource.NTP


@dataclass(frozen=True, slots=True)
class Stamper:
    """Stamps samples with the gateway's identity and time.

    Attributes:
        boot_id: the gateway's 16-byte boot id.
        mono: returns ``CLOCK_BOOTTIME`` nanoseconds.
        wall: returns wall-clock nanoseconds since the Unix epoch.
        clock_source: says where ``wall``'s time comes from right now; asked once per
            :meth:`stamp_fields` call (one outbox batch), not once per process, because NTP
            may synchronise while the gateway runs.
    """

    boot_id: bytes
    mono: Callable[[], int]
    wall: Callable[[], int]
    clock_source: Callable[[], ClockSource]

    def __post_init__(self) -> None:
        if len(self.boot_id) != BOOT_ID_BYTES:
            raise ValueError(f"boot_id must be {BOOT_ID_BYTES} bytes, got {len(self.boot_id)}")

    @classmethod
    def system(cls) -> Stamper:
        """A stamper on this machine's real clocks and boot id."""
        return cls(read_boot_id(), monotonic_ns, wall_ns, system_clock_source)

    def stamp_fields(self, samples: Sequence[Sample]) -> list[EventFields]:
        """Stamp ``samples``: each one's event fields after the seq, in order.

        A sample that carries its own time (a GPS fix) keeps it, with the sample's clock
        source; if the driver gave a time but no source, ``ClockSource.NONE`` says the time
        is unvouched for. A source given without a time is ignored. The monotonic time is
        always the gateway's, read for each sample, so events stay ordered within a boot.

        The outbox encodes these tuples straight to bytes (it numbers the events itself), so
        building an event value per sample would be wasted work. The clock source is asked
        once for the whole list: the samples are stamped in the same instant, and asking is a
        system call (adjtimex(2)) that cost more than the rest of the stamp
        (docs/performance.md).
        """
        boot_id, mono, wall = self.boot_id, self.mono, self.wall
        source: ClockSource | None = None
        out: list[EventFields] = []
        for sample in samples:
            if sample.device_time_ns is not None:
                at = sample.device_time_ns
                clock = sample.device_clock if sample.device_clock is not None else ClockSource.NONE
            else:
                at = wall()
                if source is None:
                    source = self.clock_source()
                clock = source
            out.append((sample.device, boot_id, mono(), at, clock, sample.readings))
        return out
