"""The uplink: drains the outbox to the core over WSS, resuming wherever it left off.

A thin Trio shell around :class:`protocol.session.UplinkSession`. For each connection:

1. Connect with the gateway's token in the ``Authorization`` header (never the URL),
   verifying the core's certificate against the configured CA only.
2. ``Hello`` with the oldest seq still in the outbox; the ``Welcome`` says what the core has
   already stored, and that part of the outbox is released at once.
3. A sender task reads events after the last one sent, in batches sized by the session's
   flow-control window, and sends the bytes the outbox stored for them (encoded once, at
   append); a receiver task applies cumulative acks to the outbox (the only way an event
   ever leaves it).

When the link breaks, everything unacknowledged is simply read again from the outbox on the
next connection: the outbox, not memory, is the retransmission buffer. Reconnects back off
exponentially with full jitter, so a fleet that lost its core does not return in lockstep.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, TypeAlias

import trio
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.trio.client import ClientConnection, connect

from protocol import limits
from protocol.errors import MessageTooBig, ProtocolError
from protocol.messages import Command, Flow
from protocol.session import Acked, PeerError, UplinkSession, Welcomed

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable

    from gateway.outbox import AsyncOutbox, StoredEvent
    from protocol.messages import Scalar

    CommandHandler: TypeAlias = Callable[[Command], Awaitable[tuple[bool, dict[str, Scalar]]]]

log = logging.getLogger(__name__)

SOFTWARE = "assetbook-gateway/0.1.0"
#: Failures after which the uplink reconnects (ssl.SSLError is an OSError).
_LINK_ERRORS = (OSError, InvalidHandshake, ConnectionClosed, trio.TooSlowError)


class LinkState(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    url: str
    token: str = field(repr=False)
    ssl_context: ssl.SSLContext
    gateway_id: str
    boot_id: bytes
    batch_max_events: int = 500
    #: Longest that committed events wait for earlier batches' ack to go out together; with
    #: nothing in flight they go at once.
    batch_max_delay_s: float = 0.05
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    open_timeout_s: float = 10.0
    #: Per-connection handshake headers that replace the bearer token (a key-bound token and
    #: its DPoP proof, ``gateway.enrol``); called once per connection attempt.
    headers: Callable[[], dict[str, str]] | None = None


@dataclass
class UplinkHealth:
    state: LinkState = LinkState.CONNECTING
    connects: int = 0
    disconnects: int = 0
    batches_sent: int = 0
    events_sent: int = 0
    events_acked: int = 0
    acked_seq: int = 0
    last_error: str | None = None


def backoff_delay(attempt: int, minimum: float, maximum: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, minimum * 2**attempt)]."""
    ceiling = min(maximum, minimum * (2 ** min(attempt, 32)))
    return max(minimum / 2, rng.uniform(0, ceiling))


class Uplink:
    """Keeps one link to the core alive and moves the outbox through it."""

    def __init__(
        self, settings: UplinkSettings, outbox: AsyncOutbox, rng: random.Random | None = None
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.health = UplinkHealth()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._acked = trio.Event()
        #: Answers the core's commands (``gateway.remote_config``); unset: all unknown.
        self.on_command: CommandHandler | None = None

    async def run(self) -> None:
        """Connect, drain, reconnect, forever (until cancelled)."""
        attempt = 0
        while True:
            self.health.state = LinkState.CONNECTING
            connects = self.health.connects
            try:
                await self._connect_once()
            except* InvalidStatus as group:
                refusal = group.exceptions[0]
                assert isinstance(refusal, InvalidStatus)
                status = refusal.response.status_code
                self._offline(f"core refused the link: HTTP {status} {_body(refusal)}")
            except* ProtocolError as group:
                self._offline(f"protocol error on the link: {group.exceptions[0]}")
            except* _LINK_ERRORS as group:
                failure = group.exceptions[0]
                self._offline(f"link failed: {type(failure).__name__}: {failure}")
            # A link that came up resets the backoff; repeated failures stretch it.
            attempt = 0 if self.health.connects != connects else attempt + 1
            delay = backoff_delay(
                attempt, self.settings.reconnect_min_s, self.settings.reconnect_max_s, self._rng
            )
            await trio.sleep(delay)

    def _offline(self, reason: str) -> None:
        if self.health.state is LinkState.ONLINE:
            self.health.disconnects += 1
        self.health.state = LinkState.OFFLINE
        if reason != self.health.last_error:
            log.warning("%s", reason)
        self.health.last_error = reason

    async def _connect_once(self) -> None:
        s = self.settings
        async with connect(
            s.url,
            ssl=s.ssl_context,
            additional_headers=s.headers() if s.headers else {"Authorization": f"Bearer {s.token}"},
            subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
            compression=None,
            max_size=limits.MAX_MESSAGE_BYTES,
            open_timeout=s.open_timeout_s,
            user_agent_header=SOFTWARE,
        ) as connection:
            session = UplinkSession(s.gateway_id, SOFTWARE, s.boot_id)
            await connection.send(session.hello(await self.outbox.resume_from()))
            with trio.fail_after(s.open_timeout_s):
                first = await connection.recv()
            welcome = session.receive(_binary(first))
            if isinstance(welcome, PeerError):
                raise ProtocolError(f"core refused the session: {welcome.reason}")
            if not isinstance(welcome, Welcomed):
                raise ProtocolError(f"expected welcome, got {type(welcome).__name__}")
            moved = await self.outbox.renumber_above(welcome.acked_seq)
            if moved:
                log.warning(
                    "the core already holds seqs up to %d that this outbox never issued (its "
                    "data directory was replaced); %d waiting events renumbered after them",
                    welcome.acked_seq,
                    moved,
                )
            await self.outbox.ack(welcome.acked_seq)
            self.health.acked_seq = welcome.acked_seq
            self.health.state = LinkState.ONLINE
            self.health.connects += 1
            log.info("link up; the core holds everything up to seq %d", welcome.acked_seq)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, connection, session)
                nursery.start_soon(self._release_acked)
                await self._send(connection, session)

    async def _send(self, connection: ClientConnection, session: UplinkSession) -> None:
        s = self.settings
        backlog = False
        while True:
            # Draining a backlog (the last read filled its batch), batches grow to the core's
            # limit: each costs the core one commit, so fewer, larger ones drain faster
            # (docs/performance.md, drain). Live traffic keeps the configured size.
            limit = session.max_batch_events if backlog else s.batch_max_events
            window = min(session.send_window(), limit)
            if window == 0:
                await self._wait_for_ack()
                continue
            events = await self.outbox.read_encoded_after(session.last_sent_seq, window)
            if not events:
                backlog = False
                await self.outbox.wait_for_events_after(session.last_sent_seq)
                if s.batch_max_delay_s > 0 and session.inflight_events:
                    # Earlier batches are still being stored: what commits until their ack
                    # (or batch_max_delay_s) goes as one batch, which the core stores with
                    # one commit anyway. With nothing in flight, waiting only adds latency:
                    # each append is already one group of samples.
                    with trio.move_on_after(s.batch_max_delay_s):
                        await self._wait_for_ack()
                continue
            backlog = len(events) == window
            data, sent = _fitting_batch(session, events)
            await connection.send(data)
            self.health.batches_sent += 1
            self.health.events_sent += sent

    async def _release_acked(self) -> None:
        """Remove acknowledged events from the outbox, coalescing acks that arrive meanwhile."""
        released = self.health.acked_seq
        while True:
            if self.health.acked_seq == released:
                await self._wait_for_ack()
                continue
            target = self.health.acked_seq
            # Shielded: an ack the core sent is applied even if the link drops meanwhile.
            with trio.CancelScope(shield=True):
                await self.outbox.ack(target)
            released = target

    async def _wait_for_ack(self) -> None:
        """Wait for the next ack or flow change (every waiter is woken: a broadcast)."""
        await self._acked.wait()

    def _notify_acked(self) -> None:
        self._acked.set()
        self._acked = trio.Event()

    async def _receive(self, connection: ClientConnection, session: UplinkSession) -> None:
        while True:
            event = session.receive(_binary(await connection.recv()))
            match event:
                case Acked(acked_seq, released):
                    # The window opens now; the outbox catches up in _release_acked, so a
                    # slow disk never stops this loop from reading the next ack.
                    self.health.acked_seq = acked_seq
                    self.health.events_acked += released
                    self._notify_acked()
                case Flow():
                    log.info("core set flow control: %s", event)
                    self._notify_acked()
                case Command(command_id, name, _args):
                    if self.on_command is not None:
                        ok, detail = await self.on_command(event)
                        await connection.send(session.result(command_id, ok, detail))
                        continue
                    await connection.send(
                        session.result(command_id, False, {"error": f"unknown command {name}"})
                    )
                case PeerError(code, reason, _request):
                    log.warning("core reported %s: %s", code.name, reason)
                case _:
                    log.debug("ignored %s from the core", type(event).__name__)


def _fitting_batch(session: UplinkSession, events: list[StoredEvent]) -> tuple[bytes, int]:
    """The batch of the first events of ``events`` that fits the core's message size limit.

    Large events (blobs) can make a full batch too big to send; halving until it fits keeps
    the link moving instead of failing on the same batch at every reconnect.
    """
    while True:
        try:
            return session.batch_of_encoded(events), len(events)
        except MessageTooBig:
            if len(events) == 1:
                raise
            events = events[: len(events) // 2]


def _binary(data: str | bytes) -> bytes:
    if isinstance(data, str):
        raise ProtocolError("the core sent a text frame")
    return data


def _body(exc: InvalidStatus) -> str:
    body = exc.response.body or b""
    return body[:200].decode(errors="replace")
