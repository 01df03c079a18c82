"""The console's browser-facing security rules as plain values and functions (no I/O).

* :data:`CSP`: a nonce-free Content-Security-Policy. Scripts and styles come only from our own
  origin (no inline code at all, CSP Level 3 §6.1), the live page may open a WebSocket to
  that origin, nothing may frame the console, forms post only to it, and ``<base>`` is
  refused. Violations are reported to :data:`CSP_REPORT_PATH`.
* Cookies are ``__Host-`` prefixed (RFC 6265bis §4.1.3.2: Secure, path ``/``, no Domain),
  ``HttpOnly`` and ``SameSite=Strict``; their value is an opaque random id: the tokens behind
  it stay on the server.
* CSRF: a synchronizer token per console session (OWASP CSRF cheat sheet), compared in
  constant time, plus an ``Origin`` check on every state-changing request.

Not done here: storing sessions (:mod:`cloud.console.sessions`), HTTP routing.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final
from urllib.parse import urlsplit

CSP_REPORT_PATH: Final = "/console/csp-report"
CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
        f"report-uri {CSP_REPORT_PATH}",
    )
)
SESSION_COOKIE: Final = "__Host-assetbook-console"
PRELOGIN_COOKIE: Final = "__Host-assetbook-login"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def page_headers(*, data: bool = True) -> dict[str, str]:
    """Headers for every console page; ``data`` pages are never stored by any cache."""
    headers = {
        "content-security-policy": CSP,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        # Not no-referrer: under it browsers send "Origin: null" on form posts (Fetch §3.2.5),
        # which would defeat the Origin check. same-origin keeps URLs from other sites.
        "referrer-policy": "same-origin",
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": "camera=(), microphone=(), geolocation=()",
    }
    headers["cache-control"] = "no-store" if data else "public, max-age=3600"
    return headers


def cookie_header(name: str, value: str, max_age_s: int) -> str:
    """A ``Set-Cookie`` value with every protective attribute; ``max_age_s=0`` deletes."""
    if not name.startswith("__Host-"):
        raise ValueError("console cookies are __Host- cookies")
    return f"{name}={value}; Path=/; Max-Age={max_age_s}; Secure; HttpOnly; SameSite=Strict"


def new_secret() -> str:
    """256 random bits, URL-safe (session ids, CSRF tokens, WebSocket tickets)."""
    return secrets.token_urlsafe(32)


def same_secret(expected: str, presented: str | None) -> bool:
    """Constant-time comparison; a missing or empty value never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL (the form of the ``Origin`` header, RFC 6454 §6.1)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def origin_allowed(expected: str, origin: str | None) -> bool:
    """Whether a request's ``Origin`` is ours. Browsers send it on every POST and WebSocket
    handshake (Fetch §3.2.5); a missing one is refused on those."""
    return origin is not None and hmac.compare_digest(expected.encode(), origin.encode())
