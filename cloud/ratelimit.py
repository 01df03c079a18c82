"""Request limits for the REST API: token buckets per address and per token, body size, and
query-operator shapes.

Two parts:

* :class:`TokenBuckets` is sans-IO: ``take(key, now)`` answers "go" (0.0) or how many seconds
  until one request is allowed again. The caller passes the clock. Buckets are kept for at
  most ``max_keys`` keys (least recently used dropped first), so a flood of new source
  addresses cannot grow memory without bound; a dropped bucket is simply full again.
* :class:`Guarded` is the ASGI middleware that applies :class:`HttpLimits` before a request
  reaches a route: ``429`` with ``Retry-After`` (RFC 6585 §4) past a bucket, ``413`` past the
  body limit (decided on ``Content-Length`` before anything is read, and by counting for
  chunked bodies), ``400`` for a parameter name or JSON object key shaped like a query
  operator (``$ne``, ``device[$gt]``: the seed's NoSQL-injection case, OWASP NoSQL Security
  Cheat Sheet). The body is buffered (at most ``max_body_bytes``) and replayed to the app.

Per-token buckets are keyed by a SHA-256 prefix of the bearer string, checked before the token
is verified (a flood of invalid tokens is limited like any other), and the token itself is not
kept. Header size and slow clients are bounded by the HTTP server (Hypercorn's
``h11_max_incomplete_size`` and ``read_timeout``; see :func:`hypercorn_limits`).

Not done here: limits shared between several core processes (each process counts alone), and
login throttling (cloud.identity.lockout has its own, stricter buckets).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: A parameter name or JSON key that a document store would read as an operator or a path.
_OPERATOR_SHAPE = re.compile(r"^\$|[\[\]]|\.\$|^__")


@dataclass(frozen=True, slots=True)
class Rate:
    """``burst`` requests at once, refilled at ``per_s`` requests per second."""

    per_s: float
    burst: int


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Every limit the REST listener applies (``[http]`` in ``config.toml``)."""

    per_address: Rate = field(default_factory=lambda: Rate(50.0, 200))
    per_token: Rate = field(default_factory=lambda: Rate(25.0, 100))
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 16 * 1024
    read_timeout_s: int = 20


class TokenBuckets:
    """Token buckets by key (sans-IO: the caller supplies ``now`` in seconds)."""

    def __init__(self, rate: Rate, *, max_keys: int = 10_000) -> None:
        if rate.per_s <= 0 or rate.burst < 1:
            raise ValueError("a rate needs per_s > 0 and burst >= 1")
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # (tokens, at)

    def take(self, key: str, now: float) -> float:
        """Spend one token for ``key``: 0.0 if allowed, else the seconds until it would be."""
        tokens, at = self._buckets.pop(key, (float(self.rate.burst), now))
        tokens = min(float(self.rate.burst), tokens + max(0.0, now - at) * self.rate.per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) / self.rate.per_s

    def __len__(self) -> int:
        return len(self._buckets)


def operator_shaped(name: str) -> bool:
    """Whether ``name`` looks like a query operator or path (``$ne``, ``a[$gt]``, ``__proto__``)."""
    return bool(_OPERATOR_SHAPE.search(name))


def operator_keys(value: object, depth: int = 0) -> list[str]:
    """Operator-shaped object keys anywhere in a decoded JSON value (bounded depth)."""
    if depth > 32:
        return ["(nested too deep)"]
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if operator_shaped(str(key)):
                found.append(str(key))
            found.extend(operator_keys(item, depth + 1))
    elif isinstance(value, list):
        for item in value:
            found.extend(operator_keys(item, depth + 1))
    return found


def hypercorn_limits(config: Any, limits: HttpLimits) -> None:
    """Apply the server-side limits to a Hypercorn config (headers, slow clients)."""
    config.h11_max_incomplete_size = limits.max_header_bytes
    config.h2_max_header_list_size = limits.max_header_bytes
    config.read_timeout = limits.read_timeout_s  # a slow-loris client is dropped
    config.ssl_handshake_timeout = limits.read_timeout_s
    config.keep_alive_timeout = 5


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Guarded:
    """ASGI middleware applying :class:`HttpLimits`; place it inside the access-log layer."""

    def __init__(
        self, app: ASGIApp, limits: HttpLimits, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.limits = limits
        self.clock = clock
        self.by_address = TokenBuckets(limits.per_address)
        self.by_token = TokenBuckets(limits.per_token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check_rates(scope)
            self._check_head(scope)
            _check_query(scope)
            body = await self._read_body(scope, receive)
            _check_json(scope, body)
        except _Refused as refused:
            await _refuse(scope, send, refused)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_rates(self, scope: Scope) -> None:
        now = self.clock()
        client = scope.get("client") or ("unknown", 0)
        wait = self.by_address.take(str(client[0]), now)
        token = _bearer(scope)
        if not wait and token:
            wait = self.by_token.take(hashlib.sha256(token).hexdigest()[:32], now)
        if wait:
            scope.setdefault("state", {})["error"] = "rate_limited"
            raise _Refused(429, "rate_limited", "too many requests; retry later", wait)

    def _check_head(self, scope: Scope) -> None:
        # The HTTP server bounds an incomplete head; a complete one arriving at once is
        # counted here (RFC 6585 §5: 431 Request Header Fields Too Large).
        size = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
        size += sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))
        if size > self.limits.max_header_bytes:
            raise _Refused(431, "headers_too_large", "request headers are too large")

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.limits.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _Refused(400, "invalid_request", "bad Content-Length")
            if int(declared) > limit:
                raise _Refused(413, "too_large", f"request bodies are limited to {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body and then disconnect
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, "too_large", f"request bodies are limited to {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _bearer(scope: Scope) -> bytes:
    value = _header(scope, b"authorization")
    if value is None:
        return b""
    scheme, _, token = value.partition(" ")
    return token.strip().encode() if scheme.lower() in ("bearer", "dpop") else b""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


def _check_query(scope: Scope) -> None:
    raw: bytes = scope.get("query_string", b"")
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise _Refused(400, "invalid_request", "the query string is not UTF-8") from exc
    bad = sorted({name for name, _ in pairs if operator_shaped(name)})
    if bad:
        scope.setdefault("state", {})["error"] = "operator_shape"
        raise _Refused(400, "invalid_request", "query parameter names may not be operators")


def _check_json(scope: Scope, body: bytes) -> None:
    content_type = (_header(scope, b"content-type") or "").lower()
    if not body or "json" not in content_type:
        return
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return  # not JSON: the route's own validation answers 400
    if operator_keys(value):
        scope.setdefault("state", {})["error"] = "operator_shape"
        raise _Refused(400, "invalid_request", "JSON keys may not be query operators")


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect as usual

    return replay


async def _refuse(scope: Scope, send: Send, refused: _Refused) -> None:
    state = scope.setdefault("state", {})
    state.setdefault("error", refused.code)
    body = json.dumps(
        {
            "error": refused.code,
            "message": refused.message,
            "request_id": state.get("request_id", "-"),
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refused.retry_after:
        headers.append((b"retry-after", str(max(1, math.ceil(refused.retry_after))).encode()))
    if refused.status == 413:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
