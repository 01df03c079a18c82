"""The HTTPS surface: headers, generic errors, no listing, plain HTTP, limits, operator shapes,
and the security records the access log gets (seed: attack prevention; issue 4: HTTP surface).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from cloud.home import CoreHome
from cloud.identity.runtime import Identity
from cloud.pki import client_ssl_context
from tests.security.conftest import PASSWORD, add_user, bearer, client, login, tokens
from tests.security.surface import configure, raw_exchange, running
from tests.support import RunningCore

LIMITS = {
    "burst_per_address": 1000,
    "rate_per_address": 1000,
    "burst_per_token": 1000,
    "rate_per_token": 1000,
    "max_body_bytes": 4096,
    "max_header_bytes": 4096,
    "read_timeout_s": 20,
}


@pytest.fixture
async def surface(core_home: CoreHome, identity: Identity) -> AsyncIterator[RunningCore]:
    configure(core_home, http=LIMITS)
    async with running(core_home) as core:
        yield core


def _http_port(core: RunningCore) -> int:
    import tomllib

    port: int = tomllib.loads(core.home.config_path.read_text())["listen"]["http_port"]
    return port


def _log(core: RunningCore) -> list[dict[str, Any]]:
    return [json.loads(line) for line in core.home.access_log.read_text().splitlines()]


def _assert_hardened(response: httpx.Response) -> None:
    headers = response.headers
    max_age = int(headers["strict-transport-security"].split("max-age=")[1].split(";")[0])
    assert max_age >= 31_536_000  # one year: OWASP HTTP Headers Cheat Sheet
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert "x-xss-protection" not in headers  # deprecated; OWASP says do not send it
    assert not any(ch.isdigit() for ch in headers.get("server", ""))  # no version banner
    assert "x-powered-by" not in headers
    assert headers["content-type"].startswith("application/json")


async def test_every_answer_carries_the_security_headers(surface: RunningCore) -> None:
    async with client(surface) as http:
        answers = [
            await http.get("/api/v1/health"),
            await http.get("/api/v1/no-such-thing"),
            await http.get("/api/v1/events"),
            await http.delete("/api/v1/health"),
            await http.post("/api/v1/auth/login", content=b"{", headers={"content-type": "x"}),
        ]
    assert [a.status_code for a in answers] == [200, 404, 401, 405, 400]
    for answer in answers:
        _assert_hardened(answer)


async def test_error_answers_are_generic_and_carry_only_a_request_id(
    surface: RunningCore,
) -> None:
    async with client(surface) as http:
        missing = await http.get("/api/v1/users/../../etc/passwd")
        method = await http.put("/api/v1/health")
        broken = await http.get("/api/v1/events", params={"limit": "%s%n%x"})
    for answer in (missing, method, broken):
        body = answer.json()
        assert set(body) == {"error", "message", "request_id"}
        assert body["request_id"] == answer.headers["x-request-id"]
        text = answer.text.lower()
        for leak in ("traceback", "sqlite", "select ", "/work", "site-packages", "fastapi"):
            assert leak not in text
    ids = {line.get("request_id") for line in _log(surface)}
    assert missing.json()["request_id"] in ids  # the id ties the answer to its log line


async def test_no_directory_listing_or_docs_ui(surface: RunningCore) -> None:
    paths = ["/api/", "/api/v1/", "/static/", "/.git/", "/docs", "/redoc", "/logs/", "/tls/"]
    async with client(surface) as http:
        for path in paths:
            answer = await http.get(path, headers={"accept": "text/html"})
            assert answer.status_code == 404, path
            assert answer.headers["content-type"].startswith("application/json")
            assert "index of" not in answer.text.lower()
            assert "access.jsonl" not in answer.text


async def test_plain_http_redirects_browser_pages_to_https(surface: RunningCore) -> None:
    port = _http_port(surface)
    reply = await raw_exchange(
        port,
        b"GET /console/events?page=2 HTTP/1.1\r\nHost: evil.example\r\n"
        b"Accept: text/html,application/xhtml+xml\r\n\r\n",
    )
    head = reply.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 308 ")
    assert f"location: {surface.rest_url}/console/events?page=2" in head.lower()
    assert "evil.example" not in head  # the Host header never picks the target
    # An absolute-form target or a "//host" path cannot choose the host either.
    for target in (b"http://evil.example/x", b"//evil.example/x"):
        other = await raw_exchange(
            port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\n\r\n"
        )
        location = [
            line for line in other.decode().split("\r\n") if line.lower().startswith("location")
        ]
        assert location == [f"location: {surface.rest_url}/x"]


REFUSED_ON_PLAIN_HTTP = [
    b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
    b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n",
    b"GET /console HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n",
    b"DELETE /console HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n",
]


async def test_plain_http_refuses_api_calls_without_processing_them(
    surface: RunningCore, identity: Identity
) -> None:
    add_user(identity, "ann@example.com")
    body = json.dumps({"tenant": "acme", "email": "ann@example.com", "password": PASSWORD}).encode()
    secret = "Bearer plain-http-credential-0123456789"
    for request_head in REFUSED_ON_PLAIN_HTTP:
        reply = await raw_exchange(
            _http_port(surface),
            request_head
            + f"Authorization: {secret}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body,
        )
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403 "), request_head
        assert json.loads(payload)["error"] == "https_required"
    records = _log(surface)
    plain = [r for r in records if r["event"] == "http.plain"]
    assert [r["outcome"] for r in plain] == ["refused"] * len(REFUSED_ON_PLAIN_HTTP)
    # Nothing was processed: no sign-in attempt, and neither secret reached the log.
    assert not [r for r in records if r["event"].startswith("auth.")]
    text = surface.home.access_log.read_text()
    assert PASSWORD not in text
    assert "plain-http-credential" not in text


async def test_request_bodies_and_headers_are_bounded(surface: RunningCore) -> None:
    async with client(surface) as http:
        declared = await http.post(
            "/api/v1/auth/login", content=b"x" * 5000, headers={"content-type": "text/plain"}
        )

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 1000

        streamed = await http.post("/api/v1/auth/login", content=chunks())
        try:
            huge = await http.get("/api/v1/health", headers={"x-filler": "z" * 8000})
            huge_status = huge.status_code
        except httpx.HTTPError:
            huge_status = 0  # the server closed the connection: also a refusal
        after = await http.get("/api/v1/health")
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert huge_status in (0, 431)
    assert after.status_code == 200  # the core is still serving


async def test_a_client_that_sends_its_headers_slowly_is_dropped(core_home: CoreHome) -> None:
    configure(core_home, http={**LIMITS, "read_timeout_s": 1})
    async with running(core_home) as surface:
        await _slow_client(surface)


async def _slow_client(surface: RunningCore) -> None:
    context = client_ssl_context(surface.home.ca_cert)
    port = int(surface.rest_url.rsplit(":", 1)[1])
    stream = trio.SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname="localhost"
    )
    async with stream:
        await stream.do_handshake()
        await stream.send_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\n")
        # read_timeout_s is 1: the server must give up on us well within this deadline.
        with trio.fail_after(10):
            try:
                data = await stream.receive_some(1024)
            except (trio.BrokenResourceError, ssl.SSLError):
                data = b""
    assert not data.startswith(b"HTTP/1.1 200")


OPERATOR_CASES: list[tuple[str, str, dict[str, str] | None, dict[str, Any] | None]] = [
    ("GET", "/api/v1/events", {"device[$ne]": "x"}, None),
    ("GET", "/api/v1/events", {"$where": "1==1"}, None),
    ("GET", "/api/v1/events", {"__proto__": "x"}, None),
    ("POST", "/api/v1/auth/login", None, {"tenant": "acme", "email": {"$ne": ""}}),
    ("POST", "/api/v1/auth/login", None, {"tenant": "acme", "$or": [{"a": 1}]}),
    ("POST", "/api/v1/auth/password-reset", None, {"items": [{"x": {"$gt": ""}}]}),
]


async def test_query_operator_shapes_are_refused(surface: RunningCore) -> None:
    async with client(surface) as http:
        for method, path, params, body in OPERATOR_CASES:
            answer = await http.request(method, path, params=params, json=body)
            assert answer.status_code == 400, (path, params, body)
            assert answer.json()["error"] == "invalid_request"
            records = [r for r in _log(surface) if r["event"] == "input.invalid"]
            assert records[-1]["path"] == path
            assert records[-1]["reason"] == "operator_shape"
    assert not [r for r in _log(surface) if r["event"] == "auth.failed"]  # never reached login


async def test_rate_limit_per_address(core_home: CoreHome) -> None:
    configure(core_home, http={**LIMITS, "burst_per_address": 5, "rate_per_address": 1})
    async with running(core_home) as core, client(core) as http, client(core, "127.0.0.2") as other:
        statuses = [(await http.get("/api/v1/health")).status_code for _ in range(6)]
        limited = await http.get("/api/v1/health")
        elsewhere = await other.get("/api/v1/health")
    assert statuses == [200] * 5 + [429]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    _assert_hardened(limited)
    assert elsewhere.status_code == 200  # another address has its own bucket
    assert any(r["event"] == "rate.limited" for r in _log(core))


async def test_rate_limit_per_token(core_home: CoreHome) -> None:
    configure(core_home, http={**LIMITS, "burst_per_token": 3, "rate_per_token": 1})
    async with running(core_home) as core, client(core) as http:
        first, second = core.api_token(), core.api_token()
        statuses = [
            (await http.get("/api/v1/events", headers=bearer(first))).status_code for _ in range(4)
        ]
        fresh = await http.get("/api/v1/events", headers=bearer(second))
    assert statuses == [200, 200, 200, 429]
    assert fresh.status_code == 200
    assert first not in core.home.access_log.read_text()


async def test_security_events_are_logged_without_secrets(
    surface: RunningCore, identity: Identity
) -> None:
    add_user(identity, "bob@example.com")
    async with client(surface) as http:
        issued = await tokens(http, "bob@example.com")
        await login(http, "bob@example.com", "Wrong-password-1!")
        await http.get("/api/v1/events", headers=bearer("not-a-token"))
        await http.get("/api/v1/users", headers=bearer(issued["access_token"]))  # viewer
        await http.get("/api/v1/events", params={"limit": "0"}, headers=bearer("x"))
    records = _log(surface)
    events = [r["event"] for r in records]
    assert "auth.ok" in events
    failed = [r for r in records if r["event"] == "auth.failed"]
    assert {r["path"] for r in failed} >= {"/api/v1/auth/login", "/api/v1/events"}
    assert any(r["event"] == "authz.denied" and r["principal"] for r in records)
    text = surface.home.access_log.read_text()
    for secret in (PASSWORD, "Wrong-password-1!", issued["access_token"], issued["refresh_token"]):
        assert secret not in text


FORMAT_STRINGS = [
    "%s%s%s%n",
    "%x%x%x%x",
    "%p%n{0}{1!r}",
    "${jndi:ldap://x}",
    "%(a)s",
    "{__class__}",
]
MARKUP = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "\u202e\x00'\";--"]


async def test_format_strings_and_markup_are_plain_data(
    surface: RunningCore, identity: Identity
) -> None:
    api_token = surface.api_token()
    async with client(surface) as http:
        # Names must be printable (the identity service refuses control characters).
        name = " ".join(
            "".join(ch for ch in t if ch.isprintable()) for t in FORMAT_STRINGS + MARKUP
        )
        add_user(identity, "carol@example.com", name=name)
        me_tokens = await tokens(http, "carol@example.com")
        me = await http.get("/api/v1/auth/me", headers=bearer(me_tokens["access_token"]))
        assert me.status_code == 200
        assert me.headers["content-type"] == "application/json"
        assert me.json()["name"] == name  # returned verbatim, as JSON data
        for text in FORMAT_STRINGS + MARKUP:
            refused = await login(http, f"{text}@example.com", text)
            query = await http.get(
                "/api/v1/events", params={"device": text.lstrip("$")}, headers=bearer(api_token)
            )
            assert refused.status_code in (400, 401), text  # a generic refusal, not a crash
            assert refused.json()["error"] in ("login_failed", "invalid_request")
            assert query.status_code in (200, 400), text
            assert query.headers["content-type"] == "application/json"
