"""The plain-HTTP listener: browsers are sent to HTTPS, API calls are refused unprocessed.

The seed asks that "all HTTP requests are blocked and automatically redirect a client to
HTTPS"; OWASP's REST Security Cheat Sheet asks that APIs not silently follow a redirect from
HTTP (the credentials would already have crossed the network in the clear). Both are kept:

* ``GET``/``HEAD`` of a page (not under ``/api/``) whose ``Accept`` names ``text/html`` gets
  ``308 Permanent Redirect`` (RFC 9110 §15.4.9) to the same path and query on the configured
  public HTTPS URL. The ``Host`` header is never used to build the target, so the listener
  cannot be made to redirect anywhere else.
* Anything else gets ``403`` with ``{"error": "https_required", ...}`` and ``Connection:
  close``. The request body is never parsed and the ``Authorization`` header, if any, is not
  looked at or logged; the answer tells the client to rotate a credential it sent in the clear.

No HSTS header is sent here: RFC 6797 §7.2 says a host must not send it over plain HTTP (the
HTTPS listener sends it).

:func:`decide` is sans-IO (request line and headers in, a :class:`PlainReply` out);
:func:`serve_plain_http` is the Trio shell: h11 parses at most ``MAX_HEAD_BYTES`` of request
head within ``HEAD_TIMEOUT_S``, one request per connection, at most ``MAX_CONNECTIONS`` at
once. Each request leaves an ``http.plain`` access-log record (method, path, outcome; no
query values, no headers).

Not done here: TLS (this port is plain by definition) and anything an API would do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import h11
import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cloud.accesslog import AccessLog

MAX_HEAD_BYTES = 8 * 1024
HEAD_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 64
#: After answering, unread bytes (a body we refused) are discarded for at most this long and
#: this much, so that closing does not reset the connection before the client reads the answer.
DRAIN_S = 1.0
DRAIN_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class PlainReply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    outcome: str  # "redirected" or "refused", for the access log


def decide(
    method: str, target: str, headers: Sequence[tuple[str, str]], https_base: str
) -> PlainReply:
    """What to answer to one plain-HTTP request.

    ``https_base`` is the public REST URL (``https://host:port``); ``target`` is the request
    target as sent.
    """
    path = _origin_form(target)
    accept = ",".join(v for k, v in headers if k.lower() == "accept").lower()
    is_page = (
        method in ("GET", "HEAD")
        and not (path == "/api" or path.startswith("/api/"))
        and "text/html" in accept
    )
    if is_page:
        location = https_base.rstrip("/") + path
        body = b"" if method == "HEAD" else f"Moved to {location}\n".encode()
        return PlainReply(
            308,
            (("location", location), ("content-type", "text/plain; charset=utf-8")),
            body,
            "redirected",
        )
    body = json.dumps(
        {
            "error": "https_required",
            "message": "this service accepts requests over HTTPS only; nothing was processed. "
            f"Use {https_base}. A credential sent over plain HTTP should be revoked.",
        }
    ).encode()
    return PlainReply(403, (("content-type", "application/json"),), body, "refused")


def _origin_form(target: str) -> str:
    # RFC 9112 §3.2: origin-form is "/path?query"; absolute-form is reduced to its path so
    # that a request for http://elsewhere/ cannot choose the redirect's host.
    if target.startswith("/"):
        parts = urlsplit(target)
    else:
        parts = urlsplit(target if "://" in target else "")
    path = parts.path if parts.path.startswith("/") else "/"
    if path.startswith("//"):  # "//evil.example" would be read as a host by the browser
        path = "/" + path.lstrip("/")
    return path + (f"?{parts.query}" if parts.query else "")


async def serve_plain_http(
    host: str,
    port: int,
    https_base: str,
    access_log: AccessLog,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the plain-HTTP port until cancelled; ``task_status.started`` gets the bound port."""
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            await stream.aclose()  # over capacity: drop, this port does no useful work anyway
            return
        try:
            await _answer(stream, https_base, access_log)
        finally:
            limiter.release()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


async def _answer(stream: trio.SocketStream, https_base: str, access_log: AccessLog) -> None:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    peer = _peer(stream)
    try:
        with trio.move_on_after(HEAD_TIMEOUT_S):
            request = await _read_head(stream, connection)
            if request is None:
                return
            method = request.method.decode("ascii", "replace")
            target = request.target.decode("ascii", "replace")
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
            reply = decide(method, target, headers, https_base)
            access_log.record(
                "http.plain",
                peer=peer,
                method=method,
                path=urlsplit(_origin_form(target)).path,
                status=reply.status,
                outcome=reply.outcome,
            )
            data = connection.send(
                h11.Response(
                    status_code=reply.status,
                    headers=[
                        *reply.headers,
                        ("content-length", str(len(reply.body))),
                        ("connection", "close"),
                        ("cache-control", "no-store"),
                        ("x-content-type-options", "nosniff"),
                    ],
                )
            )
            data = (data or b"") + (connection.send(h11.Data(data=reply.body)) or b"")
            await stream.send_all(data + (connection.send(h11.EndOfMessage()) or b""))
            await stream.send_eof()
        with trio.move_on_after(DRAIN_S):
            drained = 0
            while drained < DRAIN_BYTES and (chunk := await stream.receive_some(16384)):
                drained += len(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()


async def _read_head(stream: trio.SocketStream, connection: h11.Connection) -> h11.Request | None:
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:
            await _bad_request(stream, connection)
            return None
        if isinstance(event, h11.Request):
            return event
        if event is h11.NEED_DATA:
            data = await stream.receive_some(MAX_HEAD_BYTES)
            connection.receive_data(data)
            if not data:
                return None
        else:
            return None


async def _bad_request(stream: trio.SocketStream, connection: h11.Connection) -> None:
    body = b'{"error":"bad_request","message":"malformed HTTP request"}'
    try:
        data = connection.send(
            h11.Response(
                status_code=400,
                headers=[
                    ("content-type", "application/json"),
                    ("content-length", str(len(body))),
                    ("connection", "close"),
                ],
            )
        )
    except h11.LocalProtocolError:
        return
    await stream.send_all((data or b"") + body)


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"{host}:{port}"
