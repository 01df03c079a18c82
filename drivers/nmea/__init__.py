"""NMEA 0183 codec for GPS receivers (sans-IO): framing, GGA/RMC, SenML samples.

* :mod:`drivers.nmea.framing`: :class:`NmeaFramer`, bytes → :class:`Sentence` or
  :class:`~drivers.errors.DecodeError` values.
* :mod:`drivers.nmea.sentences`: :func:`parse_sentence` → :class:`Gga` / :class:`Rmc`, and
  the encoders :func:`encode_gga` / :func:`encode_rmc` the simulator uses.
* :mod:`drivers.nmea.samples`: :class:`GpsSampler`, decoded sentences → samples.

Nothing here does I/O, reads a clock or imports ``trio``; the serial shell is
:mod:`drivers.gps`.
"""

from __future__ import annotations

from drivers.nmea.framing import MAX_SENTENCE_BYTES, NmeaFramer, Sentence, checksum
from drivers.nmea.samples import GpsSampler, gga_readings, rmc_readings
from drivers.nmea.sentences import (
    FixQuality,
    Gga,
    NmeaMessage,
    Rmc,
    encode_gga,
    encode_rmc,
    parse_sentence,
)

__all__ = [
    "MAX_SENTENCE_BYTES",
    "FixQuality",
    "Gga",
    "GpsSampler",
    "NmeaFramer",
    "NmeaMessage",
    "Rmc",
    "Sentence",
    "checksum",
    "encode_gga",
    "encode_rmc",
    "gga_readings",
    "parse_sentence",
    "rmc_readings",
]
