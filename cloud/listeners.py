"""TCP listeners that write every accepted connection to the access log.

The link server hands these to ``websockets`` in place of plain Trio listeners, so a
connection is on record from the moment it is accepted: one that then fails its TLS or
WebSocket handshake, or never sends a request, still leaves its ``tcp.accepted`` line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    import socket

    from cloud.accesslog import AccessLog


class LoggedListener(trio.abc.Listener[trio.SocketStream]):
    """Wraps a :class:`trio.SocketListener`; ``socket`` is exposed for the bound address."""

    def __init__(self, inner: trio.SocketListener, access_log: AccessLog, service: str) -> None:
        self._inner = inner
        self._access_log = access_log
        self._service = service

    @property
    def socket(self) -> socket.socket:
        return self._inner.socket  # type: ignore[return-value]

    async def accept(self) -> trio.SocketStream:
        stream = await self._inner.accept()
        try:
            host, port = stream.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "unknown"
        self._access_log.record("tcp.accepted", service=self._service, peer=peer)
        return stream

    async def aclose(self) -> None:
        await self._inner.aclose()


async def open_logged_listeners(
    host: str, port: int, access_log: AccessLog, service: str
) -> list[LoggedListener]:
    """Like :func:`trio.open_tcp_listeners`, with every accept logged."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    return [LoggedListener(listener, access_log, service) for listener in listeners]
