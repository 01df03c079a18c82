"""Framing for the node protocol: COBS-stuffed frames with a CRC-32, delimited by zero bytes.

Wire form of one frame (``docs/node-protocol.md`` §Framing)::

    COBS(payload || CRC-32(payload) as 4 bytes, little-endian) || 0x00

* COBS is Consistent Overhead Byte Stuffing (Cheshire and Baker, IEEE/ACM Transactions on
  Networking 7(2), 1999): the stuffed bytes never contain 0x00, so a zero byte always ends
  a frame and a receiver resynchronises at the next zero after any garbage.
* The CRC is CRC-32/ISO-HDLC (the IEEE 802.3 / zlib CRC: polynomial 0x04C11DB7 reflected,
  init and xorout 0xFFFFFFFF, check value 0xCBF43926 for ``b"123456789"``), computed over
  the payload only. MicroPython has the same function as ``binascii.crc32``.
* A payload is 1 to :data:`MAX_PAYLOAD` bytes; a longer run of non-zero bytes is refused as
  ``too_long`` without buffering it, so noise cannot make the buffer grow.
* Empty frames (two zero bytes in a row) are ignored: a sender may start with a zero byte
  to end whatever partial frame the receiver holds.

:class:`NodeFramer` is incremental: :meth:`NodeFramer.feed` takes bytes in chunks of any
size and returns the payloads completed by them, each a ``bytes`` or a
:class:`~drivers.errors.DecodeError` value (never raised). Feeding whole or byte by byte
gives the same list. It does no I/O and does not interpret payloads
(:mod:`drivers.node.messages` does).
"""

from __future__ import annotations

import zlib
from typing import Final

from drivers.errors import DecodeError, InvalidValue

#: Largest CBOR payload a frame may carry; a batch of 16 readings fits in about 400 bytes.
MAX_PAYLOAD: Final = 512
CRC_BYTES: Final = 4
#: Most stuffed bytes before the delimiter: one code byte per 254 data bytes, plus one.
MAX_STUFFED: Final = MAX_PAYLOAD + CRC_BYTES + (MAX_PAYLOAD + CRC_BYTES) // 254 + 1
DELIMITER: Final = 0


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC of ``data`` (see the module docstring)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """COBS-stuff ``data``: the result has no zero byte and is at most 1 + len/254 longer."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
            continue
        block.append(byte)
        if len(block) == 254:
            # A full block (code 0xFF) carries no implied zero after it.
            out.append(255)
            out += block
            block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Undo :func:`cobs_encode`.

    Raises:
        DecodeError: ``cobs`` when a code byte is zero or points past the end.
    """
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        end = i + code
        if code == 0 or end > len(data):
            raise DecodeError("cobs", f"code byte {code} at offset {i} overruns the frame", data)
        block = data[i + 1 : end]
        if 0 in block:
            raise DecodeError("cobs", "zero byte inside a stuffed frame", data)
        out += block
        i = end
        if code != 255 and i < len(data):
            out.append(0)
    return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    """The bytes that carry ``payload`` on the wire, delimiter included.

    Raises:
        InvalidValue: an empty payload, or one longer than :data:`MAX_PAYLOAD`.
    """
    if not 0 < len(payload) <= MAX_PAYLOAD:
        raise InvalidValue(f"a payload is 1 to {MAX_PAYLOAD} bytes, not {len(payload)}")
    body = payload + crc32(payload).to_bytes(CRC_BYTES, "little")
    return cobs_encode(body) + bytes([DELIMITER])


def decode_frame(stuffed: bytes) -> bytes:
    """The payload of one frame given without its delimiter.

    Raises:
        DecodeError: ``too_long``, ``cobs``, ``truncated`` (shorter than a CRC plus one
            byte) or ``crc`` (the check value does not match).
    """
    if len(stuffed) > MAX_STUFFED:
        raise DecodeError("too_long", f"more than {MAX_STUFFED} bytes before a delimiter", stuffed)
    body = cobs_decode(stuffed)
    if len(body) <= CRC_BYTES:
        raise DecodeError("truncated", f"{len(body)} bytes cannot hold a payload and CRC", stuffed)
    if len(body) > MAX_PAYLOAD + CRC_BYTES:
        raise DecodeError("too_long", f"payload of {len(body) - CRC_BYTES} bytes", stuffed)
    payload, check = body[:-CRC_BYTES], int.from_bytes(body[-CRC_BYTES:], "little")
    if crc32(payload) != check:
        raise DecodeError("crc", f"CRC-32 {crc32(payload):08x} != {check:08x}", stuffed)
    return payload


class NodeFramer:
    """Incremental frame decoder (see the module docstring for the contract)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._overflowed = False
        #: Bytes discarded because they belonged to an over-long frame.
        self.skipped_bytes = 0

    def feed(self, data: bytes) -> list[bytes | DecodeError]:
        """Take ``data`` and return every frame it completes, in order."""
        out: list[bytes | DecodeError] = []
        start = 0
        while start < len(data):
            end = data.find(DELIMITER, start)
            chunk = data[start:] if end < 0 else data[start:end]
            self._take(chunk, out)
            if end < 0:
                break
            self._finish(out)
            start = end + 1
        return out

    def reset(self) -> list[DecodeError]:
        """Forget a partial frame (the port closed); returns it as a ``truncated`` error."""
        pending = bytes(self._buffer)
        overflowed, self._overflowed = self._overflowed, False
        self._buffer.clear()
        if pending and not overflowed:
            return [DecodeError("truncated", "the stream ended inside a frame", pending)]
        return []

    def _take(self, chunk: bytes, out: list[bytes | DecodeError]) -> None:
        if self._overflowed:
            self.skipped_bytes += len(chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > MAX_STUFFED:
            # Report once, then drop everything up to the next delimiter (resync point).
            raw = bytes(self._buffer[:64])
            out.append(DecodeError("too_long", f"no delimiter within {MAX_STUFFED} bytes", raw))
            self.skipped_bytes += len(self._buffer)
            self._buffer.clear()
            self._overflowed = True

    def _finish(self, out: list[bytes | DecodeError]) -> None:
        stuffed = bytes(self._buffer)
        self._buffer.clear()
        if self._overflowed:
            self._overflowed = False
            return
        if not stuffed:
            return  # empty frame: a sender's resync byte
        try:
            out.append(decode_frame(stuffed))
        except DecodeError as error:
            out.append(error)
