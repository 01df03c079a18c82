"""GGA and RMC: field-level parsing and encoding of the two NMEA 0183 sentences we use.

Contract:

* :func:`parse_sentence` turns a checksummed :class:`~drivers.nmea.framing.Sentence` into a
  :class:`Gga` or :class:`Rmc`, or returns the sentence unchanged when its type is one we do
  not interpret (GSV, VTG, ...: valid input, simply not needed). A GGA or RMC whose fields
  are malformed or out of range raises :class:`~drivers.errors.DecodeError` (kind
  ``"field"``) carrying the raw sentence.
* :func:`encode_gga` / :func:`encode_rmc` produce complete sentences (``$``, checksum,
  ``<CR><LF>``). Values are rounded to the precision written on the wire, documented per
  field; decoding an encoded sentence gives the values back within that precision.
* Units are those of the wire: degrees, knots, metres. Conversion to SenML readings is
  :mod:`drivers.nmea.samples`' job.

Field layouts follow NMEA 0183 v4.11 §6.3 (GGA, RMC). No I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Final

from drivers.errors import DecodeError, InvalidValue
from drivers.nmea.framing import MAX_SENTENCE_BYTES, Sentence, checksum

if TYPE_CHECKING:
    from collections.abc import Callable

_UNSIGNED_RE: Final = re.compile(r"\d+(?:\.\d+)?")
_SIGNED_RE: Final = re.compile(r"-?\d+(?:\.\d+)?")
_TIME_RE: Final = re.compile(r"(\d\d)(\d\d)(\d\d)(?:\.(\d{1,9}))?")
_DATE_RE: Final = re.compile(r"(\d\d)(\d\d)(\d\d)")
NS_PER_DAY: Final = 86_400 * 10**9
# Wire precision of the encoder (decimal places).
_MINUTE_DECIMALS: Final = 5  # 1e-5 arc-minute ≈ 1.9 cm of latitude
_TIME_DECIMALS: Final = 2  # centiseconds, as most receivers print
# RMC carries a two-digit year (§6.3 RMC); GPS time starts in 1980, so 80..99 are 19xx.
_CENTURY_PIVOT: Final = 80
# Plausibility bounds; they also keep an encoded sentence within MAX_SENTENCE_BYTES.
_MAX_HDOP: Final = 100.0
_MAX_METRES: Final = 100_000.0
_MAX_KNOTS: Final = 100_000.0


class FixQuality(IntEnum):
    """GGA field 6, GPS quality indicator (NMEA 0183 v4.11 §6.3 GGA)."""

    INVALID = 0
    GPS = 1
    DGPS = 2
    PPS = 3
    RTK_FIXED = 4
    RTK_FLOAT = 5
    ESTIMATED = 6  # dead reckoning
    MANUAL = 7
    SIMULATION = 8

    @property
    def is_fix(self) -> bool:
        """True for a position computed from satellites (manual/simulated ones are not)."""
        return FixQuality.GPS <= self <= FixQuality.ESTIMATED


@dataclass(frozen=True, slots=True)
class Gga:
    """Global positioning system fix data. ``None`` = the receiver left the field empty."""

    talker: str
    time_ns: int | None  # UTC time of day, ns since midnight
    latitude: float | None  # degrees, north positive
    longitude: float | None  # degrees, east positive
    quality: FixQuality
    satellites: int | None
    hdop: float | None
    altitude_m: float | None  # above mean sea level
    geoid_separation_m: float | None

    def __post_init__(self) -> None:
        _check_common(self.talker, self.time_ns, self.latitude, self.longitude)
        if self.satellites is not None and not 0 <= self.satellites <= 99:
            raise InvalidValue(f"satellite count {self.satellites} not in 0..99")
        if self.hdop is not None and not 0.0 <= self.hdop <= _MAX_HDOP:
            raise InvalidValue(f"hdop {self.hdop} not in 0..{_MAX_HDOP}")
        for what, metres in (("altitude", self.altitude_m), ("geoid", self.geoid_separation_m)):
            if metres is not None and not -_MAX_METRES <= metres <= _MAX_METRES:
                raise InvalidValue(f"{what} {metres} m not within ±{_MAX_METRES} m")


@dataclass(frozen=True, slots=True)
class Rmc:
    """Recommended minimum GNSS data. ``valid`` is the status field (``A`` = valid)."""

    talker: str
    time_ns: int | None  # UTC time of day, ns since midnight
    valid: bool
    latitude: float | None
    longitude: float | None
    speed_knots: float | None
    course_deg: float | None  # over ground, true
    date: dt.date | None
    magnetic_variation_deg: float | None  # east positive
    mode: str | None  # NMEA >= 2.3 mode indicator (A, D, E, M, S, N, ...)

    def __post_init__(self) -> None:
        _check_common(self.talker, self.time_ns, self.latitude, self.longitude)
        if self.speed_knots is not None and not 0.0 <= self.speed_knots <= _MAX_KNOTS:
            raise InvalidValue(f"speed {self.speed_knots} kn out of range")
        if self.course_deg is not None and not 0.0 <= self.course_deg < 360.0:
            raise InvalidValue(f"course {self.course_deg} not in [0, 360)")
        if self.date is not None and not 1980 <= self.date.year <= 2079:
            raise InvalidValue(f"date {self.date} not representable with a 2-digit year")
        mvar = self.magnetic_variation_deg
        if mvar is not None and not -180.0 <= mvar <= 180.0:
            raise InvalidValue(f"magnetic variation {mvar} not in [-180, 180]")
        if self.mode is not None and not re.fullmatch(r"[A-Z]", self.mode):
            raise InvalidValue(f"mode indicator {self.mode!r} is not one letter")


def _check_common(
    talker: str, time_ns: int | None, latitude: float | None, longitude: float | None
) -> None:
    if not re.fullmatch(r"[A-Z][A-Z0-9]", talker):
        raise InvalidValue(f"talker {talker!r} is not two characters")
    if time_ns is not None and not 0 <= time_ns < NS_PER_DAY + 10**9:  # leap second
        raise InvalidValue(f"time of day {time_ns} ns out of range")
    if latitude is not None and not -90.0 <= latitude <= 90.0:
        raise InvalidValue(f"latitude {latitude} not in [-90, 90]")
    if longitude is not None and not -180.0 <= longitude <= 180.0:
        raise InvalidValue(f"longitude {longitude} not in [-180, 180]")


NmeaMessage = Gga | Rmc | Sentence

# --- decoding ----------------------------------------------------------------------------


class _FieldError(Exception):
    """Internal: a field is malformed; turned into DecodeError with the raw sentence."""


def parse_sentence(sentence: Sentence) -> NmeaMessage:
    """Interpret GGA and RMC; return any other sentence type unchanged.

    Raises:
        DecodeError: a GGA or RMC with malformed or out-of-range fields (kind ``"field"``).
    """
    parser = _PARSERS.get(sentence.formatter)
    if parser is None or sentence.talker == "P":
        return sentence
    try:
        return parser(sentence)
    except (_FieldError, InvalidValue) as exc:
        raise DecodeError("field", f"{sentence.formatter}: {exc}", sentence.raw) from None


def _parse_gga(s: Sentence) -> Gga:
    # §6.3 GGA: time, lat, N/S, lon, E/W, quality, sats, hdop, alt, M, sep, M, age, station
    f = _expect_fields(s, 14, 14)
    quality = _uint(f[5], "quality")
    if quality is None or quality > max(FixQuality):
        raise _FieldError(f"fix quality {f[5]!r} is not 0..8")
    return Gga(
        talker=s.talker,
        time_ns=_time(f[0]),
        latitude=_coordinate(f[1], f[2], 2, "NS"),
        longitude=_coordinate(f[3], f[4], 3, "EW"),
        quality=FixQuality(quality),
        satellites=_uint(f[6], "satellites"),
        hdop=_number(f[7], "hdop", signed=False),
        altitude_m=_metres(f[8], f[9], "altitude"),
        geoid_separation_m=_metres(f[10], f[11], "geoid separation"),
    )


def _parse_rmc(s: Sentence) -> Rmc:
    # §6.3 RMC: time, status, lat, N/S, lon, E/W, speed, course, date, mvar, E/W
    # [, mode (v2.3+) [, navigational status (v4.1+)]]
    f = _expect_fields(s, 11, 13)
    if f[1] not in ("A", "V"):
        raise _FieldError(f"status {f[1]!r} is not A or V")
    mode = f[11] if len(f) > 11 and f[11] else None
    return Rmc(
        talker=s.talker,
        time_ns=_time(f[0]),
        # Mode "N" (data not valid) overrides status A in receivers that send both.
        valid=f[1] == "A" and mode != "N",
        latitude=_coordinate(f[2], f[3], 2, "NS"),
        longitude=_coordinate(f[4], f[5], 3, "EW"),
        speed_knots=_number(f[6], "speed", signed=False),
        course_deg=_number(f[7], "course", signed=False),
        date=_date(f[8]),
        magnetic_variation_deg=_signed_by_letter(f[9], f[10], "EW", "magnetic variation"),
        mode=mode,
    )


_PARSERS: Final[dict[str, Callable[[Sentence], Gga | Rmc]]] = {"GGA": _parse_gga, "RMC": _parse_rmc}


def _expect_fields(s: Sentence, least: int, most: int) -> tuple[str, ...]:
    if not least <= len(s.fields) <= most:
        raise _FieldError(f"{len(s.fields)} fields, expected {least}..{most}")
    return s.fields


def _uint(text: str, what: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not text.isascii():
        raise _FieldError(f"{what} {text!r} is not an unsigned integer")
    return int(text)


def _number(text: str, what: str, *, signed: bool) -> float | None:
    if not text:
        return None
    if not (_SIGNED_RE if signed else _UNSIGNED_RE).fullmatch(text):
        raise _FieldError(f"{what} {text!r} is not a decimal number")
    return float(text)


def _time(text: str) -> int | None:
    """``hhmmss[.s…]`` → ns since midnight (exact: integer arithmetic on the digits)."""
    if not text:
        return None
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise _FieldError(f"time {text!r} is not hhmmss[.ss]")
    hh, mm, ss = int(match[1]), int(match[2]), int(match[3])
    if hh > 23 or mm > 59 or ss > 60:  # 60: leap second
        raise _FieldError(f"time {text!r} out of range")
    fraction_ns = int((match[4] or "").ljust(9, "0"))
    return ((hh * 60 + mm) * 60 + ss) * 10**9 + fraction_ns


def _date(text: str) -> dt.date | None:
    if not text:
        return None
    match = _DATE_RE.fullmatch(text)
    if match is None:
        raise _FieldError(f"date {text!r} is not ddmmyy")
    day, month, yy = int(match[1]), int(match[2]), int(match[3])
    year = 1900 + yy if yy >= _CENTURY_PIVOT else 2000 + yy
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise _FieldError(f"date {text!r} is not a calendar date") from None


def _coordinate(text: str, hemisphere: str, degree_digits: int, letters: str) -> float | None:
    """``(d)ddmm.mmm`` + hemisphere letter → signed decimal degrees (§6.2 field types)."""
    if not text and not hemisphere:
        return None
    if not _UNSIGNED_RE.fullmatch(text) or hemisphere not in letters or not hemisphere:
        raise _FieldError(f"coordinate {text!r},{hemisphere!r} is malformed")
    integer = text.split(".")[0]
    # Receivers pad to 2 (lat) / 3 (lon) degree digits; accept fewer, never more.
    if not 3 <= len(integer) <= degree_digits + 2:
        raise _FieldError(f"coordinate {text!r} has a malformed degree/minute split")
    degrees = int(integer[:-2] or "0")
    minutes = float(text[len(integer) - 2 :])
    if minutes >= 60.0:
        raise _FieldError(f"coordinate {text!r} has {minutes} minutes")
    value = degrees + minutes / 60.0
    limit = 90.0 if degree_digits == 2 else 180.0
    if value > limit:
        raise _FieldError(f"coordinate {text!r} beyond {limit} degrees")
    return -value if hemisphere == letters[1] else value


def _metres(text: str, unit: str, what: str) -> float | None:
    value = _number(text, what, signed=True)
    if value is not None and unit != "M":
        raise _FieldError(f"{what} unit {unit!r} is not M")
    return value


def _signed_by_letter(text: str, letter: str, letters: str, what: str) -> float | None:
    value = _number(text, what, signed=False)
    if value is None:
        return None
    if letter not in letters or not letter:
        raise _FieldError(f"{what} direction {letter!r} not in {letters}")
    return -value if letter == letters[1] else value


# --- encoding ----------------------------------------------------------------------------


def frame(body: str) -> bytes:
    """Wrap a sentence body (address and fields, no ``$``) with ``$``, checksum, CR/LF."""
    raw = body.encode("ascii")
    sentence = b"$" + raw + b"*%02X\r\n" % checksum(raw)
    if len(sentence) > MAX_SENTENCE_BYTES:
        raise InvalidValue(f"sentence of {len(sentence)} bytes exceeds {MAX_SENTENCE_BYTES}")
    return sentence


def encode_gga(gga: Gga) -> bytes:
    """Encode a GGA sentence. Precision: time 0.01 s (truncated), position 1e-5 arc-minute,
    hdop 0.01, altitude and geoid separation 0.1 m."""
    fields = [
        _fmt_time(gga.time_ns),
        *_fmt_coordinate(gga.latitude, 2, "NS"),
        *_fmt_coordinate(gga.longitude, 3, "EW"),
        str(int(gga.quality)),
        "" if gga.satellites is None else f"{gga.satellites:02d}",
        _fmt(gga.hdop, 2),
        _fmt(gga.altitude_m, 1),
        "" if gga.altitude_m is None else "M",
        _fmt(gga.geoid_separation_m, 1),
        "" if gga.geoid_separation_m is None else "M",
        "",
        "",
    ]
    return frame(",".join([f"{gga.talker}GGA", *fields]))


def encode_rmc(rmc: Rmc) -> bytes:
    """Encode an RMC sentence (v2.3 layout, with the mode field when ``mode`` is set).
    Precision: time 0.01 s (truncated), position 1e-5 arc-minute, speed 0.001 kn,
    course and magnetic variation 0.01°."""
    mvar = rmc.magnetic_variation_deg
    fields = [
        _fmt_time(rmc.time_ns),
        "A" if rmc.valid else "V",
        *_fmt_coordinate(rmc.latitude, 2, "NS"),
        *_fmt_coordinate(rmc.longitude, 3, "EW"),
        _fmt(rmc.speed_knots, 3),
        _fmt_course(rmc.course_deg),
        "" if rmc.date is None else rmc.date.strftime("%d%m%y"),
        _fmt(None if mvar is None else abs(mvar), 2),
        "" if mvar is None else ("W" if mvar < 0 else "E"),
    ]
    if rmc.mode is not None:
        fields.append(rmc.mode)
    return frame(",".join([f"{rmc.talker}RMC", *fields]))


def _fmt(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def _fmt_course(course: float | None) -> str:
    text = _fmt(course, 2)
    # 359.996° prints as "360.00", which is not a course; it is 0.00.
    return "0.00" if text == "360.00" else text


def _fmt_time(time_ns: int | None) -> str:
    if time_ns is None:
        return ""
    step = 10 ** (9 - _TIME_DECIMALS)
    ticks = time_ns // step
    seconds, fraction = divmod(ticks, 10**_TIME_DECIMALS)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    if hh > 23:  # only a leap second at 23:59:60 goes past midnight
        hh, mm, ss = 23, 59, 60
    return f"{hh:02d}{mm:02d}{ss:02d}.{fraction:0{_TIME_DECIMALS}d}"


def _fmt_coordinate(value: float | None, degree_digits: int, letters: str) -> tuple[str, str]:
    if value is None:
        return "", ""
    # Round once, on an integer count of the smallest unit, so minutes never print as 60.
    scale = 10**_MINUTE_DECIMALS
    units = round(abs(value) * 60 * scale)
    degrees, minute_units = divmod(units, 60 * scale)
    minutes = f"{minute_units // scale:02d}.{minute_units % scale:0{_MINUTE_DECIMALS}d}"
    return f"{degrees:0{degree_digits}d}{minutes}", letters[1] if value < 0 else letters[0]
