"""Incremental NMEA 0183 framer: bytes in, checksummed sentences (or typed errors) out.

Contract:

* :meth:`NmeaFramer.feed` takes any bytes, in chunks of any size, and returns the sentences
  completed by them, in order, each either a :class:`Sentence` or a
  :class:`~drivers.errors.DecodeError` *value* (never raised). Feeding a stream whole or
  byte by byte gives the same list; an incomplete sentence gives nothing yet.
* A sentence starts at ``$`` (parametric) or ``!`` (encapsulated) and ends at ``<CR><LF>``
  (NMEA 0183 v4.11 §5.3; a bare ``<LF>`` is tolerated). Bytes outside a sentence are
  skipped and counted in :attr:`NmeaFramer.skipped_bytes`, except the CR/LF that separate
  sentences.
* A start character inside a sentence ends the broken sentence (``truncated``) and starts a
  new one, so a receiver that restarts mid-line costs one sentence, not two.
* Sentences are bounded (:data:`MAX_SENTENCE_BYTES`), so noise cannot make the buffer grow.
* The checksum (``*hh``, XOR of every byte between the start character and ``*``, §5.3.1)
  is mandatory: GGA and RMC have required it since NMEA 0183 v2.30, and a sentence without
  one cannot be told apart from a line cut short.

It does not interpret fields (see :mod:`drivers.nmea.sentences`), does no I/O and keeps no
clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from drivers.errors import DecodeError

#: NMEA 0183 §5.3: at most 82 characters including ``$`` and ``<CR><LF>``. Real receivers
#: exceed it a little (u-blox PUBX, long GSV), so we allow some slack.
MAX_SENTENCE_BYTES: Final = 100

START_BYTES: Final = b"$!"
_CR: Final = 0x0D
_LF: Final = 0x0A
# §5.1: sentences are printable ASCII; 0x20..0x7E.
_PRINTABLE_MIN: Final = 0x20
_PRINTABLE_MAX: Final = 0x7E
# Talker (2 letters) + formatter (3 letters), or proprietary "P" + maker + type (§5.3.3).
_ADDRESS_RE: Final = re.compile(r"[A-Z][A-Z0-9]{4}|P[A-Z0-9]{1,8}")
_HEX_RE: Final = re.compile(rb"[0-9A-Fa-f]{2}")


@dataclass(frozen=True, slots=True)
class Sentence:
    """One checksummed NMEA sentence, split into fields but not interpreted.

    Attributes:
        talker: ``"GP"``, ``"GN"``, ... or ``"P"`` for a proprietary sentence.
        formatter: the sentence type, e.g. ``"GGA"``.
        fields: the data fields after the address, as text (empty string = null field).
        raw: the sentence as received, without ``<CR><LF>``.
    """

    talker: str
    formatter: str
    fields: tuple[str, ...]
    raw: bytes


def checksum(body: bytes) -> int:
    """XOR of ``body``, the bytes between the start character and ``*`` (§5.3.1)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def parse_frame(frame: bytes) -> Sentence:
    """Check and split one complete frame (start character through checksum, no CR/LF).

    Raises:
        DecodeError: the checksum is missing or wrong, or the address is malformed.
    """
    star = frame.rfind(b"*")
    if star < 0 or len(frame) - star != 3 or not _HEX_RE.fullmatch(frame[star + 1 :]):
        raise DecodeError("checksum", "missing or malformed '*hh' checksum", frame)
    body = frame[1:star]
    expected = int(frame[star + 1 :], 16)
    actual = checksum(body)
    if actual != expected:
        raise DecodeError("checksum", f"checksum {expected:02X} != computed {actual:02X}", frame)
    # Printable ASCII was enforced while framing, so this cannot fail.
    parts = body.decode("ascii").split(",")
    address = parts[0]
    if not _ADDRESS_RE.fullmatch(address):
        raise DecodeError("address", f"malformed address field {address!r}", frame)
    if address.startswith("P"):
        talker, formatter = "P", address[1:]
    else:
        talker, formatter = address[:2], address[2:]
    return Sentence(talker, formatter, tuple(parts[1:]), frame)


class NmeaFramer:
    """Cut a byte stream into NMEA sentences; see the module docstring for the contract."""

    def __init__(self, max_sentence_bytes: int = MAX_SENTENCE_BYTES) -> None:
        self._max = max_sentence_bytes
        self._frame = bytearray()  # empty = hunting for a start character
        #: Bytes discarded while looking for a start character (never reset).
        self.skipped_bytes = 0

    def feed(self, data: bytes) -> list[Sentence | DecodeError]:
        """Consume ``data``; return every sentence or framing error it completes."""
        out: list[Sentence | DecodeError] = []
        for byte in data:
            self._step(byte, out)
        return out

    def reset(self) -> list[DecodeError]:
        """Drop a partial sentence (e.g. when the port is reopened); report it if any."""
        if not self._frame:
            return []
        partial = bytes(self._frame)
        self._frame.clear()
        return [DecodeError("truncated", "sentence cut off by a transport reset", partial)]

    def _step(self, byte: int, out: list[Sentence | DecodeError]) -> None:
        if byte in START_BYTES:
            if self._frame:
                out.append(self._drop("truncated", "new sentence began before <CR><LF>"))
            self._frame.append(byte)
        elif not self._frame:
            # Between sentences: CR/LF are separators, anything else is noise.
            if byte not in (_CR, _LF):
                self.skipped_bytes += 1
        elif byte == _LF:
            out.append(self._finish())
        elif self._frame[-1] == _CR:
            out.append(self._drop("syntax", "<CR> not followed by <LF>"))
            self._step(byte, out)  # the byte may be noise or the start of a sentence
        elif byte == _CR or _PRINTABLE_MIN <= byte <= _PRINTABLE_MAX:
            self._frame.append(byte)
            if len(self._frame) + 1 > self._max:  # +1: the LF still to come
                out.append(self._drop("too_long", f"sentence longer than {self._max} bytes"))
        else:
            out.append(self._drop("bad_byte", f"non-printable byte 0x{byte:02X} in sentence"))

    def _drop(self, kind: str, reason: str) -> DecodeError:
        error = DecodeError(kind, reason, bytes(self._frame))
        self._frame.clear()
        return error

    def _finish(self) -> Sentence | DecodeError:
        frame = bytes(self._frame)
        self._frame.clear()
        # §5.3 requires <CR><LF>; a bare <LF> is accepted because the checksum, not the
        # terminator, is what proves the sentence intact.
        try:
            return parse_frame(frame.removesuffix(b"\r"))
        except DecodeError as error:
            return error
