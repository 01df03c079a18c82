"""Sans-IO state machines for the two ends of a link.

:class:`UplinkSession` is the peer's side (a gateway or a module), :class:`CoreSession` the
core's. Both take received bytes in :meth:`receive` and return what happened as values;
methods that produce a message return the bytes to send. Neither does I/O, reads a clock or
draws randomness: the Trio shells in ``gateway/`` and ``cloud/`` own sockets and timers.

Ordering rules enforced here (``docs/protocol.md`` §Sessions):

* The peer speaks first with ``Hello``; the core answers ``Welcome`` before anything else.
* Within one session batch sequence numbers strictly increase. After a reconnect the peer
  may resend events the core already stored (their ack was lost); the core deduplicates them.
* Acknowledgements are cumulative and never go backwards, and never cover a seq the peer has
  not sent (in this session or an earlier one, i.e. at most the Welcome's ``acked_seq``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING

from protocol import codec, limits, preencoded
from protocol.errors import DecodeError, MessageTooBig, ProtocolError, SequenceError
from protocol.messages import (
    Ack,
    Batch,
    Command,
    Deliver,
    Delivered,
    Error,
    ErrorCode,
    Flow,
    Hello,
    Result,
    Scalar,
    Subscribe,
    Subscribed,
    Welcome,
)
from protocol.wire import WireEvents

if TYPE_CHECKING:
    from collections.abc import Sequence

    from protocol.events import Event

#: Flow control the core grants unless configured otherwise.
DEFAULT_FLOW = Flow(max_inflight_events=20_000, max_events_per_s=0)


class IdentityError(ProtocolError):
    """``Hello`` names another peer than the one the token was issued to."""

    close_code = 1008  # RFC 6455 §7.4.1: policy violation


class _State(Enum):
    START = auto()
    AWAIT_WELCOME = auto()
    OPEN = auto()


@dataclass(frozen=True, slots=True)
class Welcomed:
    acked_seq: int
    session_id: str


@dataclass(frozen=True, slots=True)
class Acked:
    acked_seq: int
    events_released: int


@dataclass(frozen=True, slots=True)
class PeerError:
    code: ErrorCode
    reason: str
    request_id: int


UplinkEvent = Welcomed | Acked | Command | Flow | Subscribed | Deliver | PeerError


class UplinkSession:
    """The peer's end of a link: what to send next, and what the core's messages mean."""

    def __init__(self, peer_id: str, software: str, boot_id: bytes) -> None:
        self.peer_id = peer_id
        self.software = software
        self.boot_id = boot_id
        self._state = _State.START
        self.acked_seq = 0
        self.last_sent_seq = 0
        self.flow = DEFAULT_FLOW
        self.max_batch_events = limits.MAX_BATCH_EVENTS
        self.max_message_bytes = limits.MAX_MESSAGE_BYTES
        self._inflight: deque[tuple[int, int]] = deque()  # (last seq of batch, events in it)
        self.inflight_events = 0
        self._next_request_id = 1

    @property
    def is_open(self) -> bool:
        return self._state is _State.OPEN

    def hello(self, resume_from: int) -> bytes:
        """The opening message; ``resume_from`` is the oldest unacknowledged seq held."""
        if self._state is not _State.START:
            raise SequenceError("hello already sent on this session")
        self._state = _State.AWAIT_WELCOME
        return codec.encode(
            Hello(limits.PROTOCOL_VERSION, self.peer_id, self.software, self.boot_id, resume_from)
        )

    def send_window(self) -> int:
        """How many events may go in the next batch under flow control (0: wait for acks)."""
        if not self.is_open:
            return 0
        free = self.flow.max_inflight_events - self.inflight_events
        return max(0, min(free, self.max_batch_events))

    def batch(self, events: tuple[Event, ...]) -> bytes:
        """Encode a batch, checking order and flow control.

        Raises:
            SequenceError: not open yet, or a seq not above everything sent before.
            MessageTooBig: over the event count or byte limit (send fewer events).
        """
        if not self.is_open:
            raise SequenceError("batch before the core's welcome")
        if not events:
            raise DecodeError("an empty batch is not sent")
        if events[0].seq <= self.last_sent_seq:
            raise SequenceError(f"seq {events[0].seq} not above last sent {self.last_sent_seq}")
        if len(events) > self.send_window():
            raise MessageTooBig(f"{len(events)} events exceed the send window")
        return self._sent(events[-1].seq, len(events), codec.encode(Batch(events)))

    def batch_of_encoded(self, events: Sequence[tuple[int, bytes]]) -> bytes:
        """As :meth:`batch`, for ``(seq, fields)`` pairs (:func:`preencoded.encode_event_fields`).

        The same checks and bookkeeping; the bytes are those :meth:`batch` would give.
        """
        if not self.is_open:
            raise SequenceError("batch before the core's welcome")
        if not events:
            raise DecodeError("an empty batch is not sent")
        if events[0][0] <= self.last_sent_seq:
            raise SequenceError(f"seq {events[0][0]} not above last sent {self.last_sent_seq}")
        if len(events) > self.send_window():
            raise MessageTooBig(f"{len(events)} events exceed the send window")
        return self._sent(events[-1][0], len(events), preencoded.encode_batch_of_encoded(events))

    def _sent(self, last_seq: int, count: int, data: bytes) -> bytes:
        if len(data) > self.max_message_bytes:
            raise MessageTooBig(f"batch of {len(data)} bytes exceeds {self.max_message_bytes}")
        self.last_sent_seq = last_seq
        self._inflight.append((last_seq, count))
        self.inflight_events += count
        return data

    def result(self, command_id: int, ok: bool, detail: dict[str, Scalar]) -> bytes:
        return codec.encode(Result(command_id, ok, detail))

    def subscribe(self, patterns: tuple[str, ...]) -> tuple[int, bytes]:
        """Ask for live events; returns the request id and the message."""
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id, codec.encode(Subscribe(request_id, patterns))

    def receive(self, data: bytes) -> UplinkEvent:
        """Interpret one message from the core.

        Raises:
            ProtocolError: malformed, or out of turn (e.g. anything before ``Welcome``).
        """
        message = codec.decode(data)
        if self._state is _State.AWAIT_WELCOME:
            if isinstance(message, Error):
                return PeerError(message.code, message.reason, message.request_id)
            if not isinstance(message, Welcome):
                raise SequenceError(f"expected welcome, got {type(message).__name__}")
            return self._welcomed(message)
        if self._state is not _State.OPEN:
            raise SequenceError("message before hello")
        match message:
            case Ack(acked_seq):
                return self._acked(acked_seq)
            case Flow():
                self.flow = message
                return message
            case Command() | Subscribed() | Deliver():
                return message
            case Error(code, reason, request_id):
                return PeerError(code, reason, request_id)
        raise SequenceError(f"unexpected {type(message).__name__} from the core")

    def _welcomed(self, welcome: Welcome) -> Welcomed:
        if welcome.version != limits.PROTOCOL_VERSION:
            raise ProtocolError(f"core speaks protocol version {welcome.version}")
        self._state = _State.OPEN
        self.acked_seq = welcome.acked_seq
        self.last_sent_seq = max(self.last_sent_seq, welcome.acked_seq)
        self.max_batch_events = min(welcome.max_batch_events, limits.MAX_BATCH_EVENTS)
        self.max_message_bytes = min(welcome.max_message_bytes, limits.MAX_MESSAGE_BYTES)
        self.flow = welcome.flow
        return Welcomed(welcome.acked_seq, welcome.session_id)

    def _acked(self, acked_seq: int) -> Acked:
        if acked_seq < self.acked_seq:
            raise SequenceError(f"ack went backwards: {acked_seq} after {self.acked_seq}")
        if acked_seq > self.last_sent_seq:
            raise SequenceError(f"ack {acked_seq} covers unsent seq (last {self.last_sent_seq})")
        self.acked_seq = acked_seq
        released = 0
        while self._inflight and self._inflight[0][0] <= acked_seq:
            released += self._inflight.popleft()[1]
        self.inflight_events -= released
        return Acked(acked_seq, released)


@dataclass(frozen=True, slots=True)
class HelloReceived:
    hello: Hello


@dataclass(frozen=True, slots=True)
class BatchReceived:
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class WireBatchReceived:
    """A batch received by a session made with ``wire_events=True``: its events checked
    exactly as for :class:`BatchReceived`, but kept in their wire form."""

    events: WireEvents


CoreEvent = HelloReceived | BatchReceived | WireBatchReceived | Result | Subscribe


def _kind(message: object) -> str:
    """The message's name in an error reason (the same whichever way a batch was decoded)."""
    return "Batch" if type(message) is WireEvents else type(message).__name__


class CoreSession:
    """The core's end of a link with one authenticated peer.

    With ``wire_events=True`` a batch is reported as :class:`WireBatchReceived` (decoded by
    :func:`protocol.codec.decode_wire`) instead of :class:`BatchReceived`: the same checks
    and the same errors, without building ``Event`` values a store does not need.
    """

    def __init__(
        self,
        peer_id: str,
        *,
        max_message_bytes: int = limits.MAX_MESSAGE_BYTES,
        max_batch_events: int = limits.MAX_BATCH_EVENTS,
        flow: Flow = DEFAULT_FLOW,
        wire_events: bool = False,
    ) -> None:
        self.peer_id = peer_id
        self.max_message_bytes = max_message_bytes
        self.max_batch_events = max_batch_events
        self.flow = flow
        self._decode = codec.decode_wire if wire_events else codec.decode
        self._state = _State.START
        self.last_received_seq = 0
        self.acked_seq = 0

    def receive(self, data: bytes) -> CoreEvent:
        """Interpret one message from the peer.

        Raises:
            ProtocolError: malformed, too big, out of turn, or a sequence that goes backwards.
        """
        if len(data) > self.max_message_bytes:
            raise MessageTooBig(f"message of {len(data)} bytes exceeds {self.max_message_bytes}")
        message = self._decode(data)
        if self._state is _State.START:
            if not isinstance(message, Hello):
                raise SequenceError(f"expected hello, got {_kind(message)}")
            if message.version != limits.PROTOCOL_VERSION:
                raise ProtocolError(f"unsupported protocol version {message.version}")
            if message.peer_id != self.peer_id:
                raise IdentityError("hello names another peer than the token")
            self._state = _State.AWAIT_WELCOME
            return HelloReceived(message)
        if self._state is not _State.OPEN:
            raise SequenceError(f"{_kind(message)} before the welcome")
        match message:
            case WireEvents():
                self._batch(len(message), message.first_seq, message.last_seq)
                return WireBatchReceived(message)
            case Batch(events):
                self._batch(len(events), events[0].seq, events[-1].seq)
                return BatchReceived(events)
            case Result() | Subscribe():
                return message
        raise SequenceError(f"unexpected {_kind(message)} from a peer")

    def _batch(self, count: int, first_seq: int, last_seq: int) -> None:
        if count > self.max_batch_events:
            raise MessageTooBig(f"{count} events exceed {self.max_batch_events}")
        if first_seq <= self.last_received_seq:
            raise SequenceError(
                f"sequence went backwards: {first_seq} after {self.last_received_seq}"
            )
        self.last_received_seq = last_seq

    def welcome(self, session_id: str, acked_seq: int) -> bytes:
        if self._state is not _State.AWAIT_WELCOME:
            raise SequenceError("welcome only answers a hello")
        self._state = _State.OPEN
        self.acked_seq = acked_seq
        return codec.encode(
            Welcome(
                limits.PROTOCOL_VERSION,
                session_id,
                acked_seq,
                self.max_message_bytes,
                self.max_batch_events,
                self.flow,
            )
        )

    def ack(self, acked_seq: int) -> bytes:
        """A cumulative ack; call only after the events up to ``acked_seq`` are committed."""
        if self._state is not _State.OPEN:
            raise SequenceError("ack before the welcome")
        if acked_seq < self.acked_seq:
            raise SequenceError(f"ack would go backwards: {acked_seq} after {self.acked_seq}")
        if acked_seq > max(self.last_received_seq, self.acked_seq):
            # The peer would refuse it (docs/protocol.md §Sessions): never ack unseen seq.
            raise SequenceError(f"ack {acked_seq} covers seq never received")
        self.acked_seq = acked_seq
        return codec.encode(Ack(acked_seq))

    def set_flow(self, flow: Flow) -> bytes:
        self.flow = flow
        return codec.encode(flow)

    def command(self, command_id: int, name: str, args: dict[str, Scalar]) -> bytes:
        return codec.encode(Command(command_id, name, args))

    def subscribed(self, request_id: int, patterns: tuple[str, ...]) -> bytes:
        return codec.encode(Subscribed(request_id, patterns))

    def deliver(self, items: tuple[Delivered, ...]) -> bytes:
        return codec.encode(Deliver(items))

    @staticmethod
    def error(code: ErrorCode, reason: str, request_id: int = 0) -> bytes:
        return codec.encode(Error(code, reason, request_id))
