"""From decoded GGA/RMC sentences to :class:`~drivers.base.Sample` values (SenML readings).

Contract: :meth:`GpsSampler.handle` takes one decoded message and returns the samples it
yields (zero or one). Only sentences that report a valid fix yield a sample:

* GGA with a satellite fix quality (1..6) → ``lat``, ``lon``, ``alt`` (when present),
  ``sats``, ``hdop`` (when present), ``fix``.
* RMC with status ``A`` (and mode not ``N``) → ``lat``, ``lon``, ``speed``, ``course``
  (those present).

So a receiver sending GGA and RMC once per second gives two samples per second. We keep them
separate rather than merging the pair because receivers differ in which sentences they send
and in which order; merging would need a timeout, and a sans-IO codec has no clock.

Units (SenML, RFC 8428 §12.1 registry): ``lat`` and ``lon`` in the units of the same name,
``alt`` in ``m``, ``speed`` in ``m/s`` (knots * 1852/3600, the knot being exactly
1852 m/h), ``course`` in ``rad``: RFC 8798 §2 does register ``deg``, but as a primary unit
marked NOT RECOMMENDED for producers (it is not a secondary unit), so we convert. ``sats``
uses ``count`` ("1 (counter value)"); ``hdop`` is a dimensionless ratio, ``/``; ``fix`` is
the GGA quality code, an enumeration with no unit, so its unit is the empty string (SenML's
unit field is optional, RFC 8428 §4.2).

Time: RMC carries date and time of day, so a valid RMC gives the UTC time in ns since the
Unix epoch. GGA carries only the time of day; it is combined with the date of the last
valid RMC (the next day if the GGA time of day is more than 12 h before that RMC's, i.e.
midnight passed). Before any valid RMC a GGA sample has no device time. The device time
(``device_clock = GPS``) is set only on samples with a valid fix, i.e. on every sample.

No I/O, no clock: the only state is the last RMC date.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Final

from drivers.base import Sample
from drivers.nmea.sentences import Gga, NmeaMessage, Rmc
from protocol.events import ClockSource, Reading

METRES_PER_SECOND_PER_KNOT: Final = 1852.0 / 3600.0
NS_PER_DAY: Final = 86_400 * 10**9
_HALF_DAY_NS: Final = NS_PER_DAY // 2
_EPOCH: Final = dt.date(1970, 1, 1)


class GpsSampler:
    """Turns decoded NMEA messages from one receiver into samples for ``device``."""

    def __init__(self, device: str) -> None:
        self.device = device
        # (day number since the epoch, time of day) of the last valid RMC.
        self._last_rmc: tuple[int, int] | None = None

    def handle(self, message: NmeaMessage) -> list[Sample]:
        """Return the samples ``message`` yields: one for a valid fix, else none."""
        if isinstance(message, Gga):
            return self._from_gga(message)
        if isinstance(message, Rmc):
            return self._from_rmc(message)
        return []

    def _from_gga(self, gga: Gga) -> list[Sample]:
        if not gga.quality.is_fix or gga.latitude is None or gga.longitude is None:
            return []
        readings = gga_readings(gga)
        return [self._sample(readings, self._gga_time(gga.time_ns))]

    def _from_rmc(self, rmc: Rmc) -> list[Sample]:
        if not rmc.valid or rmc.latitude is None or rmc.longitude is None:
            return []
        time_ns = None
        if rmc.date is not None and rmc.time_ns is not None:
            day = (rmc.date - _EPOCH).days
            self._last_rmc = (day, rmc.time_ns)
            time_ns = day * NS_PER_DAY + rmc.time_ns
        return [self._sample(rmc_readings(rmc), time_ns)]

    def _gga_time(self, time_of_day_ns: int | None) -> int | None:
        if time_of_day_ns is None or self._last_rmc is None:
            return None
        day, rmc_time_ns = self._last_rmc
        if time_of_day_ns < rmc_time_ns - _HALF_DAY_NS:
            day += 1  # the GGA is from after midnight, the date we know from before
        return day * NS_PER_DAY + time_of_day_ns

    def _sample(self, readings: tuple[Reading, ...], time_ns: int | None) -> Sample:
        clock = None if time_ns is None else ClockSource.GPS
        return Sample(self.device, readings, device_time_ns=time_ns, device_clock=clock)


def gga_readings(gga: Gga) -> tuple[Reading, ...]:
    """The SenML readings of a GGA fix (see the module docstring for names and units)."""
    readings = [
        Reading("lat", "lat", _required(gga.latitude)),
        Reading("lon", "lon", _required(gga.longitude)),
    ]
    if gga.altitude_m is not None:
        readings.append(Reading("alt", "m", gga.altitude_m))
    if gga.satellites is not None:
        readings.append(Reading("sats", "count", gga.satellites))
    if gga.hdop is not None:
        readings.append(Reading("hdop", "/", gga.hdop))
    readings.append(Reading("fix", "", int(gga.quality)))
    return tuple(readings)


def rmc_readings(rmc: Rmc) -> tuple[Reading, ...]:
    """The SenML readings of an RMC fix (see the module docstring for names and units)."""
    readings = [
        Reading("lat", "lat", _required(rmc.latitude)),
        Reading("lon", "lon", _required(rmc.longitude)),
    ]
    if rmc.speed_knots is not None:
        readings.append(Reading("speed", "m/s", rmc.speed_knots * METRES_PER_SECOND_PER_KNOT))
    if rmc.course_deg is not None:
        readings.append(Reading("course", "rad", math.radians(rmc.course_deg)))
    return tuple(readings)


def _required(value: float | None) -> float:
    if value is None:
        raise ValueError("a fix without a position yields no readings")  # guarded by callers
    return value
