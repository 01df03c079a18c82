"""The link server: WSS endpoint every gateway and module connects to.

A thin Trio shell around :class:`protocol.session.CoreSession`:

* **Handshake.** ``process_request`` checks the path, the subprotocol and the bearer token
  in the ``Authorization`` header (never the URL) before the upgrade; a refusal is an HTTP
  401/403/400 with a JSON body and an access-log entry, and the handler never runs.
* **Proof of possession.** A key-bound token (``cnf.jkt``) also needs a DPoP proof in the
  ``DPoP`` header (``proof``, :class:`cloud.enrolment.LinkProof`); otherwise HTTP 401.
* **Commands.** Once ``Welcome`` is sent the link is attached to ``commands`` (the fleet
  agent's :class:`cloud.fleet.agent.CommandHub`), which sends each ``Command`` and
  receives its ``Result``.
* **Ingest.** A reader task decodes messages and queues batches; a writer task (started
  with the link's first batch, so an idle link costs neither it nor its queue) takes every
  batch queued so far, stores them in one call, and only after the store has committed sends
  one cumulative ack and publishes the events on the bus. Reading the next batch while the
  previous one commits keeps one link and the store busy at once. Batches stay in their
  checked wire form (:class:`protocol.wire.WireEvents`) from decoding to the store's rows;
  ``Event`` values are built only for a tenant with live subscribers.
* **Errors.** A protocol violation ends only the offending link, with an ``Error`` message
  and the close code the error carries (``docs/protocol.md`` §Close codes).

It does not verify token signatures itself (``authenticate`` does) and knows nothing about
the storage engine beyond :class:`cloud.storage.base.EventStore`.
"""

from __future__ import annotations

import contextlib
import json
import resource
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING

import trio
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.trio.server import ServerConnection, serve

from cloud.errors import AuthError
from cloud.fleet.dpop import ProofError
from cloud.listeners import open_logged_listeners
from cloud.principal import Principal, PrincipalKind, event_topic, valid_pattern
from cloud.storage.errors import StorageError
from protocol import limits
from protocol.errors import MessageTooBig, ProtocolError
from protocol.messages import Delivered, ErrorCode, Result, Subscribe
from protocol.session import CoreSession, HelloReceived, WireBatchReceived
from protocol.wire import WireEvents

if TYPE_CHECKING:
    import ssl

    from websockets.http11 import Request

    from cloud.accesslog import AccessLog
    from cloud.bus import Bus, Subscription
    from cloud.fleet.agent import CommandHub
    from cloud.storage.base import EventStore

LINK_PATH = "/link"
#: Batches a link may have read but not yet stored; the reader waits beyond that (TCP then
#: slows the peer down).
QUEUED_BATCHES = 8
#: RFC 6455 leaves 4000-4999 to applications: the token expired or was revoked mid-link.
CLOSE_TOKEN_ENDED = 4401
CLOSE_REPLACED = 4409
#: Keepalive: a ping this often on an open link, closed 1011 if its pong is this late. The
#: interval is longer than the timeout: websockets' Trio keepalive waits ``interval -
#: latency`` before the next ping, and stops with an error if a pong came later than the
#: interval. At 10,000 links this is 333 pings a second.
PING_INTERVAL_S = 30
PING_TIMEOUT_S = 20

Authenticate = Callable[[str], Awaitable[Principal]]
#: Checks a DPoP proof for a token (``cloud.enrolment.LinkProof``); raises ProofError.
ProofCheck = Callable[[str, str], None]


class _LinkConnection(ServerConnection):
    """A server connection that carries the principal its handshake authenticated.

    Kept on the connection object, not in a table, so a handshake that passes
    authentication and then fails leaves nothing behind.
    """

    principal: Principal | None = None


@dataclass
class LinkStatistics:
    connections: int = 0
    refused_handshakes: int = 0
    batches: int = 0
    events_stored: int = 0
    duplicates: int = 0
    protocol_errors: int = 0


@dataclass
class LinkServer:
    """Serves the link protocol; one instance per core process."""

    authenticate: Authenticate
    store: EventStore
    bus: Bus
    access_log: AccessLog
    clock_ns: Callable[[], int] = time.time_ns
    stats: LinkStatistics = field(default_factory=LinkStatistics)
    proof: ProofCheck | None = None  # key-bound tokens need a DPoP proof (RFC 9449)
    commands: CommandHub | None = None  # open links, for commands from the core
    # Live links by (tenant, principal id): ids are unique only within a tenant.
    _active: dict[tuple[str, str], ServerConnection] = field(default_factory=dict)
    _by_token: dict[str, tuple[Principal, ServerConnection]] = field(default_factory=dict)

    async def disconnect(
        self,
        token_ids: Collection[str] = (),
        *,
        principal: tuple[str, str] | None = None,
        code: int = CLOSE_TOKEN_ENDED,
        reason: str = "credential revoked",
    ) -> int:
        """Close at once every live link of these token ids and/or this (tenant, principal id).

        Called when a session logs out or a credential is revoked. Returns how many links
        were closed.
        """
        targets = [
            connection
            for jti, (who, connection) in list(self._by_token.items())
            if jti in token_ids or (who.tenant, who.id) == principal
        ]
        for connection in targets:
            self.access_log.record("link.disconnect", code=code, reason=reason)
            with contextlib.suppress(ConnectionClosed, trio.BrokenResourceError):
                await connection.aclose(code, reason)
        return len(targets)

    async def serve(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until cancelled; ``task_status.started`` gets the bound port."""

        async def started(server_port: int) -> None:
            task_status.started(server_port)

        raise_open_files_limit()  # a descriptor per link
        listeners = await open_logged_listeners(host, port, self.access_log, "link")
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve(
                    self._handle,
                    listeners=listeners,  # type: ignore[arg-type]
                    ssl=ssl_context,
                    process_request=self._process_request,
                    subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
                    compression=None,  # CBOR batches compress poorly; 50 KiB less per link
                    max_size=limits.MAX_MESSAGE_BYTES,
                    server_header=None,  # no version banner
                    create_connection=_LinkConnection,
                    open_timeout=10,
                    ping_interval=PING_INTERVAL_S,
                    ping_timeout=PING_TIMEOUT_S,
                    task_status=task_status,
                )
            )
            bound = server.listeners[0].socket.getsockname()[1]
            await started(bound)

    # --- handshake ------------------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        peer = _address(connection)
        self.stats.connections += 1
        if request.path != LINK_PATH:
            return self._refuse(peer, HTTPStatus.NOT_FOUND, "not_found", "no such endpoint")
        offered = ",".join(request.headers.get_all("Sec-WebSocket-Protocol"))
        if limits.SUBPROTOCOL not in [p.strip() for p in offered.split(",")]:
            return self._refuse(
                peer,
                HTTPStatus.BAD_REQUEST,
                "subprotocol_required",
                f"offer the WebSocket subprotocol {limits.SUBPROTOCOL}",
            )
        authorization = request.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "dpop") or not token.strip():
            return self._refuse(
                peer, HTTPStatus.UNAUTHORIZED, "token_missing", "send Authorization: Bearer"
            )
        try:
            principal = await self.authenticate(token.strip())
        except AuthError as exc:
            return self._refuse(peer, HTTPStatus.UNAUTHORIZED, exc.code, exc.public_message)
        if self.proof is not None:
            try:
                self.proof(token.strip(), request.headers.get("DPoP", ""))
            except ProofError as exc:
                return self._refuse(peer, HTTPStatus.UNAUTHORIZED, "dpop_invalid", str(exc))
        assert isinstance(connection, _LinkConnection)
        connection.principal = principal
        self.access_log.record(
            "link.auth_ok",
            peer=peer,
            principal=principal.id,
            kind=principal.kind.value,
            tenant=principal.tenant,
            jti=principal.token_id,
        )
        return None

    def _refuse(self, peer: str, status: HTTPStatus, code: str, message: str) -> Response:
        self.stats.refused_handshakes += 1
        self.access_log.record("link.refused", peer=peer, status=int(status), error=code)
        body = json.dumps({"error": code, "message": message}).encode()
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
        )
        if status is HTTPStatus.UNAUTHORIZED:
            headers["WWW-Authenticate"] = 'Bearer realm="assetbook-link"'
        return Response(int(status), status.phrase, headers, body)

    # --- a connected link -----------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, _LinkConnection)
        principal = connection.principal
        assert principal is not None  # _process_request refuses the handshake otherwise
        # The upgrade request's headers (the bearer token among them) are not needed once
        # the principal is known: dropping them saves about 4 KiB per link and keeps no
        # token in memory for the life of the link. The request itself stays: websockets
        # reads ``connection.request is None`` to tell the handshake from later frames.
        if connection.request is not None:
            connection.request.headers = Headers()
        peer = _address(connection)
        key = (principal.tenant, principal.id)
        previous = self._active.get(key)
        if previous is not None:
            # One live link per principal: a reconnecting gateway replaces its stale link.
            await previous.aclose(CLOSE_REPLACED, "replaced by a newer link")
        self._active[key] = connection
        self._by_token[principal.token_id] = (principal, connection)
        self.access_log.record("link.open", peer=peer, principal=principal.id)
        link = _Link(self, connection, principal, peer)
        try:
            await link.run()
        finally:
            if self.commands is not None:
                self.commands.detach(principal, connection)
            if self._active.get(key) is connection:
                del self._active[key]
            if self._by_token.get(principal.token_id, (None, None))[1] is connection:
                del self._by_token[principal.token_id]
            self.access_log.record(
                "link.closed",
                peer=peer,
                principal=principal.id,
                code=_close_code(connection),
                reason=connection.close_reason,
                stored=link.stored,
            )


@dataclass(slots=True)
class _Link:
    server: LinkServer
    connection: ServerConnection
    principal: Principal
    peer: str
    stored: int = 0

    async def run(self) -> None:
        session = CoreSession(self.principal.id, wire_events=True)
        async with trio.open_nursery() as ingest, trio.open_nursery() as live:
            try:
                await self._read(session, ingest, live)
            except ProtocolError as exc:
                await self._fail(exc)
            except (ConnectionClosed, trio.BrokenResourceError):
                pass  # peer gone, or the store task ended the link
            live.cancel_scope.cancel()
            # The ingest nursery then waits for the store task, so batches read before the
            # link ended are still stored: they were valid.

    async def _read(
        self, session: CoreSession, ingest: trio.Nursery, nursery: trio.Nursery
    ) -> None:
        # The batch queue and its store task start with the first batch: a link that sends
        # none (a module that only subscribes) never pays for them.
        batches: trio.MemorySendChannel[WireEvents] | None = None
        try:
            while True:
                try:
                    data = await self.connection.recv()
                except ConnectionClosed:
                    return
                if isinstance(data, str):
                    await self._close(1003, "text frames are not accepted; send binary CBOR")
                    return
                match session.receive(data):
                    case HelloReceived():
                        acked = await self.server.store.acked_seq(
                            self.principal.tenant, self.principal.id
                        )
                        await self.connection.send(session.welcome(secrets.token_hex(8), acked))
                        # Lifecycle commands (status, configure, update) are for gateways only.
                        if (
                            self.server.commands is not None
                            and self.principal.kind is PrincipalKind.GATEWAY
                        ):
                            self.server.commands.attach(self.principal, session, self.connection)
                    case WireBatchReceived(events):
                        self._check_publish(events)
                        if batches is None:
                            batches, queued = trio.open_memory_channel[WireEvents](QUEUED_BATCHES)
                            ingest.start_soon(self._store_and_ack, session, queued)
                        await batches.send(events)
                    case Subscribe() as request:
                        await self._subscribe(session, request, nursery)
                    case Result() as result:
                        self.server.access_log.record(
                            "link.result", principal=self.principal.id, command=result.command_id
                        )
                        if self.server.commands is not None:
                            self.server.commands.resolve(self.principal, result)
        finally:
            if batches is not None:
                batches.close()  # the store task ends once it has stored what was queued

    def _check_publish(self, events: WireEvents) -> None:
        for device in events.devices():
            topic = event_topic(self.principal.id, device)
            if not self.principal.may_publish(topic):
                self.server.access_log.record(
                    "link.denied", principal=self.principal.id, action="publish", topic=topic
                )
                raise _Forbidden(f"not allowed to publish on {topic}")

    async def _store_and_ack(
        self, session: CoreSession, batches: trio.MemoryReceiveChannel[WireEvents]
    ) -> None:
        server = self.server
        async for first in batches:
            parts = [first]
            # Take everything already queued: one commit and one ack for all of it.
            while True:
                try:
                    parts.append(batches.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            # The session let each batch through only above the previous one's last seq.
            events = WireEvents.join(parts)
            try:
                # The link codec already refused everything the store would (integer
                # ranges, strict UTF-8 text, finite readings), so it is not checked twice.
                result = await server.store.store_wire_batch(
                    self.principal.tenant, self.principal.id, events, server.clock_ns()
                )
            except StorageError as exc:
                # Nothing was acked, so nothing is lost: the peer resends after reconnecting.
                server.access_log.record(
                    "link.store_failed", principal=self.principal.id, error=type(exc).__name__
                )
                with contextlib.suppress(ConnectionClosed, ProtocolError):
                    await self.connection.send(
                        CoreSession.error(ErrorCode.INTERNAL, "storage unavailable; retry later")
                    )
                await self._close(1011, "storage unavailable")
                return
            server.stats.batches += 1
            server.stats.events_stored += result.stored
            server.stats.duplicates += result.duplicates
            self.stored += result.stored
            # Stored either way: if the ack is lost, the peer resends and the store deduplicates.
            with contextlib.suppress(ConnectionClosed):
                await self.connection.send(session.ack(result.acked_seq))
            # Most tenants have no live subscriber: then no Delivered value is built at all.
            if server.bus.has_subscribers(self.principal.tenant):
                gateway = self.principal.id
                delivered = [Delivered(gateway, e) for e in events.to_events()]
                server.bus.publish(self.principal.tenant, delivered)

    async def _subscribe(
        self, session: CoreSession, request: Subscribe, nursery: trio.Nursery
    ) -> None:
        for pattern in request.patterns:
            if not valid_pattern(pattern) or not self.principal.may_subscribe(pattern):
                self.server.access_log.record(
                    "link.denied", principal=self.principal.id, action="subscribe", topic=pattern
                )
                await self.connection.send(
                    session.error(
                        ErrorCode.FORBIDDEN, f"may not subscribe to {pattern}", request.request_id
                    )
                )
                return
        subscription = self.server.bus.subscribe(self.principal.tenant, request.patterns)
        nursery.start_soon(self._deliver, session, subscription)
        await self.connection.send(session.subscribed(request.request_id, request.patterns))

    async def _deliver(self, session: CoreSession, subscription: Subscription) -> None:
        with subscription:
            async for first in subscription.receive:
                items = [first]
                while len(items) < limits.MAX_BATCH_EVENTS:
                    try:
                        items.append(subscription.receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                try:
                    await self.connection.send(session.deliver(tuple(items)))
                except ConnectionClosed:
                    return

    async def _fail(self, exc: ProtocolError) -> None:
        self.server.stats.protocol_errors += 1
        code = ErrorCode.FORBIDDEN if isinstance(exc, _Forbidden) else _error_code(exc)
        self.server.access_log.record(
            "link.protocol_error",
            peer=self.peer,
            principal=self.principal.id,
            error=type(exc).__name__,
            reason=exc.reason,
            close_code=exc.close_code,
        )
        with contextlib.suppress(ConnectionClosed, ProtocolError):
            await self.connection.send(CoreSession.error(code, exc.reason))
        await self._close(exc.close_code, exc.reason)

    async def _close(self, code: int, reason: str) -> None:
        # RFC 6455 §5.5: a close frame's reason fits in 123 bytes.
        await self.connection.aclose(code, reason.encode()[:123].decode(errors="ignore"))


class _Forbidden(ProtocolError):
    close_code = 1008


def _error_code(exc: ProtocolError) -> ErrorCode:
    if isinstance(exc, MessageTooBig):
        return ErrorCode.TOO_BIG
    if exc.close_code == 1007:
        return ErrorCode.MALFORMED
    if exc.close_code == 1008:
        return ErrorCode.IDENTITY
    return ErrorCode.SEQUENCE


def _close_code(connection: ServerConnection) -> int | None:
    """The code this side sent if it closed first (what the peer was told), else the peer's."""
    sent = connection.protocol.close_sent
    if sent is not None:
        return int(sent.code)
    return connection.close_code


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the new limit.

    Every link holds a socket; many systems start processes with a soft limit of 1,024,
    which would refuse the 1,025th link with EMFILE.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            # Linux refuses RLIM_INFINITY for this limit: fall back to a large number.
            target = hard if hard != resource.RLIM_INFINITY else 1 << 20
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _address(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
    except (OSError, TypeError, ValueError):
        return "unknown"
    return f"{host}:{port}"
