"""Shared pieces of the identity routers: context, dependencies, models and error answers.

Error answers have the same shape as :mod:`cloud.rest`'s: ``{"error", "message",
"request_id"}``. Login refusals are one answer whatever the cause: HTTP 401
``{"error": "login_failed", "message": "sign-in failed"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from cloud.errors import AuthCode, AuthError, Conflict, InvalidInput, NotFound
from cloud.identity.errors import (
    InvalidPersonnummer,
    LoginFailed,
    MethodRequired,
    PolicyViolation,
    SealError,
    Throttled,
)
from cloud.identity.store import Session
from cloud.principal import Principal, PrincipalKind
from cloud.rest import _require

if TYPE_CHECKING:
    from cloud.identity.runtime import Identity
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer

T = TypeVar("T")
Disconnect = Callable[..., Awaitable[int]]


@dataclass(frozen=True, slots=True)
class IdentityApi:
    """What the identity routes need from the running core."""

    identity: Identity
    registry: Registry
    issuer: TokenIssuer
    disconnect: Disconnect  # LinkServer.disconnect


class Strict(BaseModel):
    """Request bodies: unknown keys (``$where`` and friends included) are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class StatusOut(BaseModel):
    status: str


def context(request: Request) -> IdentityApi:
    ctx: IdentityApi = request.app.state.identity
    return ctx


def address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def in_thread(fn: Callable[[], T]) -> T:
    """Run blocking work (Argon2, SQLite) off the event loop."""
    return await anyio.to_thread.run_sync(fn)


def require(scope: str) -> Any:
    """A dependency: the principal holding ``scope`` (same check as cloud.rest)."""
    return Depends(_require(scope))


def _session_dependency() -> Callable[..., Awaitable[tuple[Principal, Session]]]:
    async def dependency(
        request: Request,
        principal: Annotated[Principal, Depends(_require("account:self"))],
    ) -> tuple[Principal, Session]:
        if principal.kind is not PrincipalKind.USER:
            raise AuthError(AuthCode.WRONG_TYPE, "a user session token is required")
        sessions = context(request).identity.sessions
        session = await in_thread(lambda: sessions.session_for(principal.token_id))
        return principal, session

    return dependency


SignedIn = Annotated[tuple[Principal, Session], Depends(_session_dependency())]


def _answer(request: Request, status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    request.state.error = code
    body = {"error": code, "message": message, "request_id": request.state.request_id, **extra}
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="assetbook"'
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(api: FastAPI) -> None:
    async def login_failed(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LoginFailed)
        response = _answer(request, 401, "login_failed", "sign-in failed")
        request.state.error = f"login_failed:{exc.reason}"  # the cause goes to the log only
        return response

    async def throttled(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Throttled)
        response = _answer(request, 429, "too_many_attempts", "too many attempts; slow down")
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    async def method_required(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MethodRequired)
        message = "this tenant requires another sign-in method"
        return _answer(request, 403, "login_method_required", message, required=exc.required)

    async def policy(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PolicyViolation)
        message = "password refused: " + ", ".join(exc.rules)
        return _answer(request, 400, "password_policy", message, rules=list(exc.rules))

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        code = "invalid_personnummer" if isinstance(exc, InvalidPersonnummer) else "invalid_input"
        return _answer(request, 400, code, str(exc))

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        # One answer for "missing" and "another tenant's": existence is not revealed.
        return _answer(request, 404, "not_found", "not found")

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return _answer(request, 409, "conflict", str(exc))

    async def unsealable(request: Request, exc: Exception) -> JSONResponse:
        return _answer(request, 500, "internal_error", "internal error; quote the request id")

    handlers: Sequence[tuple[type[Exception], Any]] = (
        (LoginFailed, login_failed),
        (Throttled, throttled),
        (MethodRequired, method_required),
        (PolicyViolation, policy),
        (InvalidInput, invalid),
        (NotFound, not_found),
        (Conflict, conflict),
        (SealError, unsealable),
    )
    for exc_type, handler in handlers:
        api.add_exception_handler(exc_type, handler)
