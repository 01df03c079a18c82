"""Shared plumbing of the console's routes: context, rendering, sign-in and CSRF checks.

Contract: :func:`operator` is the one gate of every signed-in page: it maps the cookie to a
console session, checks the access token with the core's verifier (so a revoked session
opens nothing), refreshes it when it is about to expire, and checks the page's scope.
:func:`checked_form` refuses a state change without our ``Origin`` and the session's CSRF
token. Missing objects and other tenants' objects raise :class:`Missing`, rendered as one
"not found" page.

Not done here: the pages themselves (``account``, ``fleet``, ``admin``, ``mqtt`` modules).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import jinja2
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from cloud.api.gateways import HealthIndex
from cloud.console.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    cookie_header,
    origin_allowed,
    origin_of,
    page_headers,
    same_secret,
)
from cloud.console.sessions import ConsoleSessions
from cloud.errors import AuthError, NotFound
from cloud.identity.errors import LoginFailed, MethodRequired

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.datastructures import FormData
    from starlette.requests import Request

    from cloud.accesslog import AccessLog
    from cloud.api.common import IdentityApi
    from cloud.api.fleet import FleetApi
    from cloud.bus import Bus
    from cloud.console.sessions import ConsoleSession
    from cloud.home import CoreHome
    from cloud.identity.passkeys import PasskeyService
    from cloud.identity.store import User
    from cloud.principal import Principal
    from cloud.storage.base import EventStore

T = TypeVar("T")
HERE = Path(__file__).parent
REFRESH_MARGIN_S = 60


@dataclass(frozen=True, slots=True)
class ConsoleContext:
    """What the console needs from the running core."""

    home: CoreHome
    api: IdentityApi
    store: EventStore
    bus: Bus
    access_log: AccessLog
    passkeys: PasskeyService
    fleet: FleetApi
    origin: str
    authenticate: Callable[[str], Awaitable[Principal]]


@dataclass(frozen=True, slots=True)
class Operator:
    """The signed-in user of a request."""

    principal: Principal
    user: User
    session: ConsoleSession

    def can(self, scope: str) -> bool:
        return scope in self.principal.scopes


class NeedLogin(Exception):
    """No usable console session: go to the login page."""


class Missing(Exception):
    """Not found, or another tenant's: the same page either way."""


class Forbidden(Exception):
    """A bad CSRF token or Origin, or a page above the user's role."""


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every value is HTML-escaped unless a template says otherwise
    undefined=jinja2.StrictUndefined,
)
_templates.filters["when"] = lambda seconds: time.strftime(
    "%Y-%m-%d %H:%M UTC", time.gmtime(float(seconds))
)


def ctx(request: Request) -> ConsoleContext:
    context: ConsoleContext = request.app.state.console
    return context


def sessions(request: Request) -> ConsoleSessions:
    table: ConsoleSessions = request.app.state.sessions
    return table


def render(
    request: Request,
    template: str,
    status: int = 200,
    operator: Operator | None = None,
    **values: Any,
) -> HTMLResponse:
    html = _templates.get_template(template).render(
        op=operator, csrf=operator.session.csrf if operator else values.pop("csrf", ""), **values
    )
    return HTMLResponse(html, status_code=status, headers=page_headers())


def redirect(path: str) -> RedirectResponse:
    response = RedirectResponse(path, status_code=303)
    for name, value in page_headers().items():
        response.headers[name] = value
    return response


def set_cookie(response: Response, name: str, value: str, max_age_s: int) -> None:
    response.headers.append("set-cookie", cookie_header(name, value, max_age_s))


async def in_thread(fn: Callable[[], T]) -> T:
    """Blocking work (Argon2, SQLite) off the event loop."""
    return await anyio.to_thread.run_sync(fn)


async def operator(request: Request, scope: str = "account:self") -> Operator:
    """The signed-in operator; raises NeedLogin, or Forbidden without ``scope``."""
    table = sessions(request)
    session = table.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NeedLogin
    context = ctx(request)
    if session.access_expires_at - time.time() < REFRESH_MARGIN_S:
        session = await _refresh(request, session)
    try:
        principal = await context.authenticate(session.access_token)
    except AuthError:
        table.close(session.sid)
        raise NeedLogin from None
    user = await in_thread(lambda: context.api.identity.store.user(principal.tenant, principal.id))
    if scope not in principal.scopes:
        raise Forbidden
    request.state.principal = principal
    return Operator(principal, user, session)


async def _refresh(request: Request, session: ConsoleSession) -> ConsoleSession:
    table = sessions(request)
    manager = ctx(request).api.identity.sessions
    try:
        tokens = await in_thread(lambda: manager.refresh(session.refresh_token))
    except (LoginFailed, MethodRequired):
        table.close(session.sid)
        raise NeedLogin from None
    fresh = table.rotate(session.sid, tokens.access_token, tokens.refresh_token, tokens.expires_in)
    if fresh is None:
        raise NeedLogin
    return fresh


async def checked_form(request: Request, expected_csrf: str) -> FormData:
    """The posted form, after the Origin and CSRF checks (raises Forbidden)."""
    if not origin_allowed(ctx(request).origin, request.headers.get("origin")):
        raise Forbidden
    form = await request.form(max_files=0, max_fields=64)
    presented = form.get(CSRF_FIELD)
    header = request.headers.get(CSRF_HEADER)
    if not (same_secret(expected_csrf, presented if isinstance(presented, str) else None)
            or same_secret(expected_csrf, header)):  # fmt: skip
        raise Forbidden
    return form


def text(form: FormData, name: str, limit: int = 1024) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def create_console_app(context: ConsoleContext) -> Starlette:
    """The console application (mounted at ``/console`` by :mod:`cloud.rest`)."""
    from cloud.console import account, admin, fleet, mqtt

    routes = [*account.routes, *fleet.routes, *admin.routes, *mqtt.routes]
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    app = Starlette(routes=routes)
    app.state.console = context
    app.state.sessions = ConsoleSessions()
    app.state.health = HealthIndex(context.store)

    async def need_login(request: Request, exc: Exception) -> Response:
        response = redirect("/console/login")
        if SESSION_COOKIE in request.cookies:
            set_cookie(response, SESSION_COOKIE, "", 0)
        return response

    async def missing(request: Request, exc: Exception) -> Response:
        return render(request, "missing.html", 404)

    async def forbidden(request: Request, exc: Exception) -> Response:
        request.state.error = "forbidden"
        return render(request, "forbidden.html", 403)

    app.add_exception_handler(NeedLogin, need_login)
    app.add_exception_handler(Missing, missing)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(NotFound, missing)
    app.add_exception_handler(404, missing)
    return app


__all__ = ["ConsoleContext", "Operator", "create_console_app", "origin_of"]
