"""Errors raised by the link protocol.

::

    ProtocolError (ValueError)
    ├── DecodeError            bytes that are not a valid message (malformed CBOR, wrong shape,
    │                          a refused CBOR tag, a value out of range)
    ├── MessageTooBig          a message or one of its parts is over its explicit size limit
    └── SequenceError          a peer broke the protocol's ordering rules (a sequence that goes
                               backwards, a message out of turn)

Every error carries the WebSocket close code the shell should use when it ends the link.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A peer violated the link protocol."""

    close_code: int = 1002  # RFC 6455 §7.4.1: protocol error

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DecodeError(ProtocolError):
    """A message could not be decoded into a valid protocol message."""

    close_code = 1007  # RFC 6455 §7.4.1: data inconsistent with the message type


class MessageTooBig(ProtocolError):
    """A message, batch or field exceeds its explicit limit."""

    close_code = 1009  # RFC 6455 §7.4.1: message too big


class SequenceError(ProtocolError):
    """Sequence numbers went backwards, or a message arrived out of turn."""

    close_code = 1002
