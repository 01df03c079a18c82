"""The node protocol: framed CBOR between MicroPython sensor nodes and the gateway over UART.

``framing`` (COBS + CRC-32 frames), ``messages`` (CBOR payloads) and ``session`` (which
readings are new, what to acknowledge) are sans-IO; ``driver`` is the Trio shell that runs
them on a serial port. The specification is ``docs/node-protocol.md``.
"""

from __future__ import annotations

from drivers.node.framing import MAX_PAYLOAD, NodeFramer, decode_frame, encode_frame
from drivers.node.messages import (
    Ack,
    Hello,
    Message,
    MessageType,
    Readings,
    Record,
    decode_message,
    encode_message,
)

__all__ = [
    "MAX_PAYLOAD",
    "Ack",
    "Hello",
    "Message",
    "MessageType",
    "NodeFramer",
    "Readings",
    "Record",
    "decode_frame",
    "decode_message",
    "encode_frame",
    "encode_message",
]
