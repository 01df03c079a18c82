"""The messages of the link protocol, as values (``docs/protocol.md`` §Messages).

Each message is a frozen dataclass; :mod:`protocol.codec` maps them to and from CBOR arrays
whose first element is the :class:`MessageType`. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.events import Event


class MessageType(IntEnum):
    """Wire codes: the first element of every message array."""

    HELLO = 1
    WELCOME = 2
    BATCH = 3
    ACK = 4
    COMMAND = 5
    RESULT = 6
    FLOW = 7
    SUBSCRIBE = 8
    SUBSCRIBED = 9
    DELIVER = 10
    ERROR = 11


#: Values allowed in command arguments and results: CBOR simple types only.
Scalar = str | int | float | bool | bytes | None


@dataclass(frozen=True, slots=True)
class Hello:
    """Peer → core, first message. ``resume_from`` is the oldest seq the peer still holds
    unacknowledged (its next seq if it holds none): the core can tell a gap from a resend."""

    version: int
    peer_id: str
    software: str
    boot_id: bytes
    resume_from: int


@dataclass(frozen=True, slots=True)
class Welcome:
    """Core → peer, answer to :class:`Hello`. ``acked_seq`` is the highest seq the core has
    stored for this peer: everything at or below it may leave the peer's outbox."""

    version: int
    session_id: str
    acked_seq: int
    max_message_bytes: int
    max_batch_events: int
    flow: Flow


@dataclass(frozen=True, slots=True)
class Batch:
    """Peer → core: events in strictly increasing ``seq`` order."""

    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """Core → peer, cumulative: every event with ``seq <= acked_seq`` is durably stored."""

    acked_seq: int


@dataclass(frozen=True, slots=True)
class Command:
    """Core → peer: run ``name`` with ``args``; answered by a :class:`Result` with the same id."""

    command_id: int
    name: str
    args: dict[str, Scalar]


@dataclass(frozen=True, slots=True)
class Result:
    """Peer → core: the outcome of a :class:`Command`."""

    command_id: int
    ok: bool
    detail: dict[str, Scalar]


@dataclass(frozen=True, slots=True)
class Flow:
    """Core → peer flow control: at most ``max_inflight_events`` unacknowledged events on the
    link, and at most ``max_events_per_s`` (0 = no rate cap)."""

    max_inflight_events: int
    max_events_per_s: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Peer → core: deliver live events on these topic patterns."""

    request_id: int
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscribed:
    """Core → peer: the patterns of request ``request_id`` now delivering (all granted, or the
    request was refused with an :class:`Error` instead)."""

    request_id: int
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Delivered:
    """One live event delivered to a subscriber, with the gateway it came from."""

    gateway: str
    event: Event


@dataclass(frozen=True, slots=True)
class Deliver:
    """Core → subscriber: live events whose topics match the subscriber's patterns."""

    items: tuple[Delivered, ...]


class ErrorCode(IntEnum):
    """Why a peer is refused or a request denied (also in the close reason)."""

    MALFORMED = 1  # undecodable or wrongly shaped message
    TOO_BIG = 2  # over an explicit limit
    SEQUENCE = 3  # sequence went backwards / message out of turn
    FORBIDDEN = 4  # topic permission denied
    UNSUPPORTED = 5  # unknown message type or version
    IDENTITY = 6  # Hello names another peer than the token
    INTERNAL = 7  # the core could not complete the request; retry later


@dataclass(frozen=True, slots=True)
class Error:
    """Either direction: a refusal. ``request_id`` names the request it answers, if any."""

    code: ErrorCode
    reason: str
    request_id: int = 0


Message = (
    Hello
    | Welcome
    | Batch
    | Ack
    | Command
    | Result
    | Flow
    | Subscribe
    | Subscribed
    | Deliver
    | Error
)
