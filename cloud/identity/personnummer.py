"""Swedish personal identity numbers (personnummer), validated and normalised.

Format (Skatteverket, SKV 704, "Personnummer"): ``YYMMDD-NNNC`` or ``YYYYMMDDNNNC``; the
separator is ``-``, or ``+`` for people aged 100 or more when the century is omitted. ``C`` is a
Luhn (mod 10) check digit over the ten digits ``YYMMDDNNN``. Coordination numbers
(samordningsnummer, SKV 707) add 60 to the day and are accepted too.

Contract: :func:`parse` returns a :class:`Personnummer` or raises
:class:`~cloud.identity.errors.InvalidPersonnummer`, for any input string. It is pure: the
century of a 10-digit form is taken from ``today`` (passed in), never from the clock.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cloud.identity.errors import InvalidPersonnummer

_FORM = re.compile(r"(\d{2})?(\d{2})(\d{2})(\d{2})([-+]?)(\d{3})(\d)")
COORDINATION_DAY_OFFSET = 60  # SKV 707: day of birth + 60


@dataclass(frozen=True, slots=True)
class Personnummer:
    """A valid number. ``canonical`` is the 12-digit form ``YYYYMMDDNNNC``."""

    birth_date: dt.date
    serial: str
    check: str
    coordination: bool

    @property
    def canonical(self) -> str:
        day = self.birth_date.day + (COORDINATION_DAY_OFFSET if self.coordination else 0)
        d = self.birth_date
        return f"{d.year:04d}{d.month:02d}{day:02d}{self.serial}{self.check}"


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for ``digits`` (weights 2,1,2,1,... from the left, SKV 704)."""
    total = 0
    for i, ch in enumerate(digits):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return str((10 - total % 10) % 10)


def parse(text: str, *, today: dt.date) -> Personnummer:
    """Validate and normalise ``text``.

    Args:
        text: 10 or 12 digits with an optional ``-``/``+`` before the last four.
        today: the reference date for the century of a 10-digit number.

    Raises:
        InvalidPersonnummer: wrong shape, impossible date, future date or bad check digit.
    """
    if not isinstance(text, str) or len(text) > 13:
        raise InvalidPersonnummer("a personnummer has 10 or 12 digits")
    match = _FORM.fullmatch(text.strip())
    if match is None or not text.isascii():
        raise InvalidPersonnummer("use YYYYMMDDNNNC or YYMMDD-NNNC")
    century, yy, mm, dd, sep, serial, check = match.groups()
    if luhn_digit(f"{yy}{mm}{dd}{serial}") != check:
        raise InvalidPersonnummer("the check digit does not match")
    day, coordination = int(dd), int(dd) > COORDINATION_DAY_OFFSET
    if coordination:
        day -= COORDINATION_DAY_OFFSET
    year = _year(century, int(yy), sep, today)
    try:
        born = dt.date(year, int(mm), day)
    except ValueError as exc:
        raise InvalidPersonnummer("the date of birth does not exist") from exc
    if born > today:
        raise InvalidPersonnummer("the date of birth is in the future")
    return Personnummer(born, serial, check, coordination)


def _year(century: str | None, yy: int, sep: str, today: dt.date) -> int:
    if century is not None:
        if sep == "+":
            raise InvalidPersonnummer("'+' is only used with a two-digit year")
        return int(century) * 100 + yy
    # Two-digit year: the most recent year ending in yy not after today; '+' adds 100 years.
    year = today.year - (today.year - yy) % 100
    return year - 100 if sep == "+" else year
