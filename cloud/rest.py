"""The HTTPS REST API: query stored events with a scoped API token.

FastAPI (Starlette underneath, running on Trio through anyio) serves the routes and
generates the OpenAPI document at ``/api/v1/openapi.json``; Hypercorn terminates TLS.

Contract:

* Every route but ``/api/v1/health`` needs ``Authorization: Bearer <token>`` with audience
  ``assetbook:rest`` and the route's scope; tokens are never accepted in the URL.
* Every answer is confined to the token's tenant.
* Errors are JSON ``{"error": code, "message": ..., "request_id": ...}`` and never carry stack
  traces, SQL or token material; the request id ties an answer to its access-log line.
* Every request is written to the access log (method, path, status, principal, duration),
  whatever its outcome.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cloud.errors import AuthCode, AuthError, ConfigError
from cloud.principal import Principal
from cloud.ratelimit import Guarded, HttpLimits
from cloud.storage.base import DEFAULT_PAGE_EVENTS, MAX_PAGE_EVENTS
from cloud.storage.errors import InvalidCursor, InvalidQuery, StorageError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from cloud.accesslog import AccessLog
    from cloud.api import IdentityApi
    from cloud.api.fleet import FleetApi
    from cloud.console import ConsoleContext
    from cloud.home import CoreHome
    from cloud.storage.base import EventStore, StoredEvent
    from protocol.events import Reading

API_PREFIX = "/api/v1"
SCOPE_EVENTS_READ = "events:read"
GATEWAY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

Authenticate = Callable[[str], Awaitable["Principal"]]

_SECURITY_HEADERS = [
    (b"strict-transport-security", b"max-age=63072000; includeSubDomains"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),  # for browsers without CSP frame-ancestors
]
# Successful answers on these paths are sign-ins: they get an ``auth.ok`` record.
_SIGN_IN_PATHS = frozenset(
    {f"{API_PREFIX}/auth/login", f"{API_PREFIX}/auth/login/totp", f"{API_PREFIX}/auth/refresh"}
)
# Failed answers get a security record beside their http.request line (issue 4: logging).
_SECURITY_EVENTS = {
    401: "auth.failed",
    403: "authz.denied",
    400: "input.invalid",
    413: "input.invalid",
    422: "input.invalid",
    429: "rate.limited",
}


class ApiError(Exception):
    """An error answer with a stable code (``status``, ``code``, safe ``message``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class SenmlRecord(BaseModel):
    """One reading in SenML JSON form (RFC 8428 §5): exactly one of v, vs, vb, vd."""

    n: str = Field(description="SenML name")
    u: str | None = Field(default=None, description="SenML unit (RFC 8428 §12)")
    v: int | float | None = None
    vs: str | None = None
    vb: bool | None = None
    vd: str | None = Field(default=None, description="data value, base64url without padding")

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # SenML records carry only the fields that are present (RFC 8428 §4).
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class EventOut(BaseModel):
    gateway: str
    device: str
    seq: int
    time: str = Field(description="wall-clock time of the event, RFC 3339, UTC")
    wall_ns: int
    mono_ns: int
    boot_id: str = Field(description="the gateway's boot id, hex")
    clock: str = Field(description="where the time came from: none, ntp, gps or rtc")
    received_ns: int
    readings: list[SenmlRecord]


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page")


class HealthOut(BaseModel):
    status: str


class ErrorOut(BaseModel):
    error: str
    message: str
    request_id: str


def _senml(reading: Reading) -> SenmlRecord:
    value = reading.value
    record = SenmlRecord(n=reading.name, u=reading.unit or None)
    if isinstance(value, bool):
        record.vb = value
    elif isinstance(value, str):
        record.vs = value
    elif isinstance(value, bytes):
        record.vd = base64.urlsafe_b64encode(value).rstrip(b"=").decode()
    else:
        record.v = value
    return record


def _event_out(stored: StoredEvent) -> EventOut:
    event = stored.event
    when = datetime.fromtimestamp(event.wall_ns / 1e9, tz=UTC)
    return EventOut(
        gateway=stored.gateway,
        device=event.device,
        seq=event.seq,
        time=when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        wall_ns=event.wall_ns,
        mono_ns=event.mono_ns,
        boot_id=event.boot_id.hex(),
        clock=event.clock.name.lower(),
        received_ns=stored.received_ns,
        readings=[_senml(r) for r in event.readings],
    )


def _require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller's principal, which must hold ``scope``."""

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(AuthCode.MISSING)
        authenticate: Authenticate = request.app.state.authenticate
        principal = await authenticate(token.strip())
        request.state.principal = principal
        if scope not in principal.scopes:
            raise ApiError(403, "insufficient_scope", f"this call needs the scope {scope}")
        return principal

    return dependency


# Module level, because FastAPI resolves these annotations by name at run time.
EventsReader = Annotated[Principal, Depends(_require(SCOPE_EVENTS_READ))]


def create_rest_app(
    store: EventStore,
    authenticate: Authenticate,
    access_log: AccessLog,
    identity: IdentityApi | None = None,
    mqtt_home: CoreHome | None = None,
    fleet: FleetApi | None = None,
    console: ConsoleContext | None = None,
    limits: HttpLimits | None = None,
) -> ASGIApp:
    """Build the ASGI application (routes, error handling, security headers, access log)."""
    api = FastAPI(
        title="AssetBook core API",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # the docs UI would load scripts from a CDN
        redoc_url=None,
        responses={
            400: {"model": ErrorOut, "description": "the request does not validate"},
            401: {"model": ErrorOut, "description": "missing, invalid or expired token"},
            404: {"model": ErrorOut, "description": "no such object in the caller's tenant"},
            403: {"model": ErrorOut, "description": "the token lacks the route's scope"},
        },
    )

    api.state.authenticate = authenticate
    from cloud.api.gateways import install as install_gateways

    install_gateways(api, store)  # gateways' health reports (cloud.api.gateways)
    if identity is not None:  # users, sessions, tenants, API tokens (cloud.api)
        from cloud.api import install

        install(api, identity)
    if mqtt_home is not None:  # MQTT credentials (cloud.mqtt.rest)
        from cloud.mqtt.rest import install as install_mqtt

        install_mqtt(api, mqtt_home)
    if fleet is not None:  # enrolment, desired config, releases, rollouts (cloud.api.fleet)
        from cloud.api.fleet import install as install_fleet

        install_fleet(api, fleet)

    if console is not None:  # the operator console (cloud.console), with / leading to it
        from fastapi.responses import RedirectResponse

        from cloud.console import create_console_app

        @api.get("/", include_in_schema=False)
        @api.get("/console", include_in_schema=False)
        async def to_console() -> RedirectResponse:
            return RedirectResponse("/console/", status_code=303)

        api.mount("/console", create_console_app(console))

    @api.get(f"{API_PREFIX}/health", response_model=HealthOut, tags=["core"])
    async def health() -> HealthOut:
        """Liveness of the core; needs no token."""
        return HealthOut(status="ok")

    @api.get(
        f"{API_PREFIX}/events",
        response_model=EventPageOut,
        tags=["events"],
        responses={400: {"model": ErrorOut}},
    )
    async def list_events(
        principal: EventsReader,
        device: Annotated[str | None, Query(max_length=256, pattern=r"^[^$]")] = None,
        gateway: Annotated[
            str | None, Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
        ] = None,
        since_ns: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
        until_ns: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_EVENTS)] = DEFAULT_PAGE_EVENTS,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> EventPageOut:
        """Stored events of the token's tenant, oldest first, filtered by device, gateway and
        a half-open wall-time range ``[since_ns, until_ns)``, a page at a time."""
        try:
            page = await store.query_events(
                principal.tenant,
                device=device,
                gateway=gateway,
                since_ns=since_ns,
                until_ns=until_ns,
                limit=limit,
                cursor=cursor,
            )
        except InvalidCursor as exc:
            raise ApiError(400, "invalid_cursor", "the cursor is not valid for this query") from exc
        except InvalidQuery as exc:
            raise ApiError(400, "invalid_query", str(exc)) from exc
        return EventPageOut(
            events=[_event_out(e) for e in page.events], next_cursor=page.next_cursor
        )

    def answer(
        request: Request,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "-")
        body = {"error": code, "message": message, "request_id": request_id}
        if status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="assetbook"'}
        return JSONResponse(body, status_code=status, headers=headers)

    @api.exception_handler(AuthError)
    async def auth_failed(request: Request, exc: AuthError) -> JSONResponse:
        request.state.error = exc.code.value
        return answer(request, 401, "unauthorized", exc.public_message)

    @api.exception_handler(ApiError)
    async def api_failed(request: Request, exc: ApiError) -> JSONResponse:
        request.state.error = exc.code
        return answer(request, exc.status, exc.code, exc.message)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) for e in exc.errors()})
        request.state.error = "invalid_request"
        return answer(request, 400, "invalid_request", f"invalid parameters: {', '.join(fields)}")

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        # RFC 9110 §15.5.6: a 405 lists every method of the path. Starlette's own ``Allow``
        # names only the first route matching the path, so collect them all.
        allow = {"Allow": _allowed_methods(api, request.scope)} if exc.status_code == 405 else None
        return answer(request, exc.status_code, code, code.replace("_", " "), allow)

    @api.exception_handler(StorageError)
    async def storage_failed(request: Request, exc: StorageError) -> JSONResponse:
        request.state.error = type(exc).__name__
        return answer(request, 503, "unavailable", "storage unavailable; retry later")

    @api.exception_handler(ConfigError)
    async def not_set_up(request: Request, exc: ConfigError) -> JSONResponse:
        # A feature whose setup is missing (e.g. the MQTT broker before `assetbook mqtt setup`)
        # is unavailable, not a crash; the message would name paths, so it stays in the log.
        request.state.error = "not_configured"
        return answer(request, 503, "unavailable", "this feature is not set up on the core")

    @api.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        request.state.error = type(exc).__name__
        return answer(request, 500, "internal_error", "internal error; quote the request id")

    # Limits run inside the access-log layer, so a refused request is logged like any other.
    return _AccessLogged(Guarded(api, limits or HttpLimits()), access_log)


class _AccessLogged:
    """ASGI middleware: request ids, security headers, and one access-log line per request."""

    def __init__(self, app: ASGIApp, access_log: AccessLog) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        logged = False

        def log(status: int) -> None:
            nonlocal logged
            logged = True
            principal = state.get("principal")
            client = scope.get("client") or ("unknown", 0)
            self.access_log.record(
                "http.request",
                request_id=request_id,
                peer=f"{client[0]}:{client[1]}",
                method=scope["method"],
                path=scope["path"],
                query_params=sorted({k.decode() for k, _, _ in _query_items(scope)}),
                status=status,
                principal=principal.id if principal is not None else None,
                tenant=principal.tenant if principal is not None else None,
                error=state.get("error"),
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            event = _SECURITY_EVENTS.get(status)
            if event is None and status < 300 and scope["path"] in _SIGN_IN_PATHS:
                event = "auth.ok"
            if event is not None:
                self.access_log.record(
                    event,
                    request_id=request_id,
                    peer=f"{client[0]}:{client[1]}",
                    surface="rest",
                    path=scope["path"],
                    reason=state.get("error"),
                    principal=principal.id if principal is not None else None,
                )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Logged before the response leaves, so the record exists by the time the
                # client has the answer (and its request id) in hand.
                log(message["status"])
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}  # the console sets its own CSP
                headers.extend(h for h in _SECURITY_HEADERS if h[0] not in present)
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if not logged:  # the request ended without a response (client gone, crash)
                log(500)


def _allowed_methods(api: FastAPI, scope: Scope) -> str:
    methods: set[str] = set()
    for route in api.router.routes:
        match, _ = route.matches({**scope, "method": ""})
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _query_items(scope: Scope) -> list[tuple[bytes, bytes, bytes]]:
    # Only parameter names are logged: values may be long or personal.
    raw: bytes = scope.get("query_string", b"")
    items = []
    for part in raw.split(b"&"):
        if part:
            key, sep, value = part.partition(b"=")
            items.append((key, sep, value))
    return items
