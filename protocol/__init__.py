"""The AssetBook link protocol, sans-IO.

Gateways, modules and the core exchange CBOR messages in binary WebSocket frames under the
subprotocol :data:`SUBPROTOCOL`. This package encodes and decodes those messages and keeps
the per-link state machines; it performs no I/O, reads no clock and draws no randomness.
The wire format is specified in ``docs/protocol.md``.
"""

from protocol.events import ClockSource, Event, Reading
from protocol.limits import SUBPROTOCOL

__all__ = ["SUBPROTOCOL", "ClockSource", "Event", "Reading"]
