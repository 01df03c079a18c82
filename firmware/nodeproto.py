"""Node protocol, firmware side: COBS frames with CRC-32 and the few CBOR shapes a node uses.

The wire format is specified in docs/node-protocol.md; the gateway's implementation is
drivers/node/ (CPython). This module is a second, independent implementation for
MicroPython: it encodes hello and readings messages and decodes acks, nothing else.

Floats are always sent as CBOR float32 (RFC 8949 §3.3, major type 7, additional info 26):
ESP32 and RP2040 ports of MicroPython use single-precision floats, so the unix build in
tests sends exactly what a board would.

It does no I/O. (MicroPython has no ``__future__`` module; annotations here are never
evaluated at run time, so the house rule of ``from __future__ import annotations`` does
not apply to firmware/.)
"""

import binascii
import struct

MAX_PAYLOAD = 512
HELLO = 1
READINGS = 2
ACK = 3


def crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC, the same function as zlib.crc32 (check value 0xCBF43926)."""
    crc: int = binascii.crc32(data)
    return crc & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999): no zero byte in output."""
    out = bytearray()
    block = bytearray()
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out.extend(block)
            block = bytearray()
            continue
        block.append(byte)
        if len(block) == 254:
            out.append(255)
            out.extend(block)
            block = bytearray()
    out.append(len(block) + 1)
    out.extend(block)
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """Undo cobs_encode; None when the stuffing is broken."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        end = i + code
        if code == 0 or end > len(data):
            return None
        out.extend(data[i + 1 : end])
        i = end
        if code != 255 and i < len(data):
            out.append(0)
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """A whole frame: COBS(payload + CRC-32 little-endian) + 0x00."""
    return cobs_encode(payload + struct.pack("<I", crc32(payload))) + b"\x00"


def unframe(stuffed: bytes) -> bytes | None:
    """The payload of a frame given without its delimiter; None if it is damaged."""
    body = cobs_decode(stuffed)
    if body is None or len(body) <= 4:
        return None
    payload = body[:-4]
    if crc32(payload) != struct.unpack("<I", body[-4:])[0]:
        return None
    return payload


def _head(major: int, value: int) -> bytes:
    # RFC 8949 §3: shortest form of the initial byte and argument.
    if value < 24:
        return bytes([major << 5 | value])
    if value < 0x100:
        return bytes([major << 5 | 24, value])
    if value < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", value)
    if value < 0x100000000:
        return bytes([major << 5 | 26]) + struct.pack(">I", value)
    return bytes([major << 5 | 27]) + struct.pack(">Q", value)


def cbor(value: object) -> bytes:
    """Encode int, float, str, list or tuple (the only types node messages use)."""
    if isinstance(value, bool):
        raise TypeError("bool is not a node protocol value")
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfa" + struct.pack(">f", value)
    if isinstance(value, str):
        raw = value.encode()
        return _head(3, len(raw)) + raw
    if isinstance(value, (list, tuple)):
        return _head(4, len(value)) + b"".join(cbor(item) for item in value)
    raise TypeError("unsupported type")


def hello(node_id: str, boot: int, firmware: str) -> bytes:
    """Payload of a hello message."""
    return cbor([HELLO, node_id, boot, firmware])


def readings(node_id: str, boot: int, now_ms: int, dropped: int, records: list[tuple[int, int, str, str, float]]) -> bytes:
    """Payload of a readings message; records are (seq, t_ms, name, unit, value)."""
    return cbor([READINGS, node_id, boot, now_ms, dropped, records])


def _uint(data: bytes, i: int) -> tuple[int, int]:
    # Returns (value, next index) for a major-type-0 item at i; (-1, i) if it is not one.
    if i >= len(data) or data[i] >> 5 != 0:
        return -1, i
    info = data[i] & 31
    if info < 24:
        return info, i + 1
    sizes = {24: 1, 25: 2, 26: 4, 27: 8}
    size = sizes.get(info, 0)
    if size == 0 or i + 1 + size > len(data):
        return -1, i
    value = 0
    for byte in data[i + 1 : i + 1 + size]:
        value = value << 8 | byte
    return value, i + 1 + size


def parse_ack(payload: bytes) -> tuple[int, int] | None:
    """(boot, seq) from an ack payload [3, boot, seq]; None for anything else."""
    if len(payload) < 4 or payload[0] != 0x83:
        return None
    kind, i = _uint(payload, 1)
    boot, i = _uint(payload, i)
    seq, i = _uint(payload, i)
    if kind != ACK or boot < 0 or seq < 0 or i != len(payload):
        return None
    return boot, seq


class Deframer:
    """Splits received bytes into payloads at zero bytes; damaged frames are counted."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.bad = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Payloads completed by data (bytes objects), in order."""
        out: list[bytes] = []
        for byte in data:
            if byte != 0:
                if len(self.buffer) < MAX_PAYLOAD + 16:
                    self.buffer.append(byte)
                continue
            if self.buffer:
                payload = unframe(bytes(self.buffer))
                if payload is None:
                    self.bad += 1
                else:
                    out.append(payload)
                self.buffer = bytearray()
        return out
