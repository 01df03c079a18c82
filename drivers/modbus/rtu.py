"""Modbus RTU master codec: read-register requests out, replies in, on pymodbus's PDU layer.

We use pymodbus (``docs/decisions/modbus.md``) for what it does well without I/O: the PDU
classes (``ReadHoldingRegistersRequest`` and friends encode and decode §6.3/§6.4 bodies,
``DecodePDU`` maps function codes, ``ExceptionResponse`` §7) and the RTU CRC
(``FramerRTU.compute_CRC``, CRC-16/MODBUS: polynomial 0xA001 reflected, init 0xFFFF, sent
low byte first; Modbus over Serial Line V1.02 §2.5.1.2 and Appendix B). Framing is ours:
as the master we know which reply we are waiting for, so the expected length follows from
the request (§2.5.1.1 has no length field), and a reply is complete after exactly that many
bytes, with no reliance on timing (USB adapters blur the 3.5-character silences).

:class:`ReplyReader` is incremental and sans-IO: :meth:`ReplyReader.feed` returns ``None``
until a reply is complete, then a :class:`Registers` or :class:`ExceptionReply` value, or
raises :class:`~drivers.errors.DecodeError` (kinds ``crc``, ``slave``, ``function``,
``length``). Only the Trio shell (:mod:`drivers.modbus.bus`) has a clock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
)

from drivers.errors import DecodeError, InvalidValue

# pymodbus logs a warning for every undecodable PDU; we count those in health instead.
logging.getLogger("pymodbus").setLevel(logging.ERROR)

#: §6.3: 1 to 125 registers per read.
MAX_REGISTERS: Final = 125
#: §2.5.1: an RTU frame is at most 256 bytes.
MAX_FRAME: Final = 256
_REQUESTS: Final = {3: ReadHoldingRegistersRequest, 4: ReadInputRegistersRequest}
_REPLIES: Final = {3: ReadHoldingRegistersResponse, 4: ReadInputRegistersResponse}
# §7: exception code meanings, for messages and health.
EXCEPTION_NAMES: Final = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read ``count`` registers from ``address`` of ``slave`` with ``function`` 3 or 4."""

    slave: int
    function: int
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class Registers:
    """A normal reply: the register values, in order."""

    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """A §7 exception reply: the device understood the request and refused it."""

    code: int

    @property
    def meaning(self) -> str:
        """The §7 name of the code."""
        return EXCEPTION_NAMES.get(self.code, f"exception {self.code}")


Reply = Registers | ExceptionReply


def crc16(data: bytes) -> bytes:
    """CRC-16/MODBUS of ``data`` as sent on the wire (low byte first)."""
    # compute_CRC returns the value byte-swapped so that big-endian packing gives wire order.
    return int(FramerRTU.compute_CRC(data)).to_bytes(2, "big")


def encode_request(request: ReadRequest) -> bytes:
    """The RTU frame (slave, PDU, CRC) for ``request``.

    Raises:
        InvalidValue: a slave outside 1-247 (§2.2: 0 is broadcast, which read requests
            cannot use), an unknown function, or a count/address outside §6.3 limits.
    """
    if not 1 <= request.slave <= 247:
        raise InvalidValue(f"slave {request.slave} is not 1-247")
    if request.function not in _REQUESTS:
        raise InvalidValue(f"function {request.function} is not 3 or 4")
    if not 1 <= request.count <= MAX_REGISTERS or request.address + request.count > 0x10000:
        raise InvalidValue(f"cannot read {request.count} registers at {request.address}")
    pdu: ModbusPDU = _REQUESTS[request.function](
        address=request.address, count=request.count, dev_id=request.slave
    )
    return bytes(FramerRTU(DecodePDU(is_server=False)).buildFrame(pdu))


class ReplyReader:
    """Collects the reply to one request (see the module docstring)."""

    def __init__(self, request: ReadRequest) -> None:
        self.request = request
        self._buffer = bytearray()
        self._decoder = DecodePDU(is_server=False)
        #: Bytes received after the complete reply.
        self.extra = 0

    @property
    def received(self) -> bytes:
        """The bytes taken so far."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> Reply | None:
        """Take bytes; the reply once complete, else ``None``.

        Raises:
            DecodeError: the reply is for another slave or function, has a bad length or
                CRC, or more bytes arrived than the reply can hold.
        """
        self._buffer += data
        frame = bytes(self._buffer)
        expected = self._expected_length(frame)
        if expected is None or len(frame) < expected:
            return None
        # Bytes after the expected length are not part of the reply (line noise, or a
        # late echo); the bus discards them, counted, while it waits out the frame gap.
        self.extra = len(frame) - expected
        frame = frame[:expected]
        if crc16(frame[:-2]) != frame[-2:]:
            raise DecodeError("crc", f"CRC {frame[-2:].hex()} != {crc16(frame[:-2]).hex()}", frame)
        return self._decode(frame)

    def _expected_length(self, frame: bytes) -> int | None:
        if len(frame) < 2:
            return None
        slave, function = frame[0], frame[1]
        if slave != self.request.slave:
            raise DecodeError("slave", f"reply from slave {slave}", frame)
        if function == self.request.function | 0x80:
            return 5  # slave, function, exception code, CRC (§7)
        if function != self.request.function:
            raise DecodeError("function", f"reply with function {function}", frame)
        if len(frame) < 3:
            return None
        if frame[2] != 2 * self.request.count:
            raise DecodeError("length", f"byte count {frame[2]} for {self.request.count}", frame)
        return 3 + frame[2] + 2

    def _decode(self, frame: bytes) -> Reply:
        pdu = self._decoder.decode(frame[1:-2])
        if isinstance(pdu, ExceptionResponse):
            return ExceptionReply(pdu.exception_code)
        if not isinstance(pdu, _REPLIES[self.request.function]):
            raise DecodeError("function", "pymodbus could not decode the reply", frame)
        return Registers(tuple(int(v) for v in pdu.registers))
