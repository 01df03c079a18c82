"""``/api/v1/auth/...``: sign in (password, TOTP), refresh, sign out, reset and change passwords.

Tokens travel only in JSON bodies and the ``Authorization`` header, never in URLs. Every
answer that refuses credentials is the single ``login_failed`` answer of
:mod:`cloud.api.common`; a reset request answers the same whether or not the account exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from cloud.api.common import SignedIn, StatusOut, Strict, address, context, in_thread
from cloud.identity.service import SecondFactor
from cloud.rest import API_PREFIX, ErrorOut

if TYPE_CHECKING:
    from cloud.identity.sessions import Tokens

router = APIRouter(
    prefix=f"{API_PREFIX}/auth",
    tags=["auth"],
    responses={
        400: {"model": ErrorOut},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        429: {"model": ErrorOut},
    },
)

Password = Annotated[str, Field(min_length=1, max_length=1024)]
Secret = Annotated[str, Field(min_length=1, max_length=256)]
Email = Annotated[str, Field(min_length=3, max_length=320)]
Tenant = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Code = Annotated[str, Field(pattern=r"^[0-9]{6}$")]


class LoginIn(Strict):
    tenant: Tenant
    email: Email
    password: Password


class TokensOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (RFC 6750 token type, not a secret)
    expires_in: int
    refresh_token: str


class LoginOut(BaseModel):
    """Either tokens, or a ticket for the second step (``second_factor`` says which)."""

    second_factor: Literal["none", "totp", "totp_enrolment"]
    tokens: TokensOut | None = None
    ticket: str | None = None


class SecondFactorIn(Strict):
    ticket: Secret
    code: Code | None = None
    recovery_code: Annotated[str, Field(min_length=8, max_length=32)] | None = None


class TicketIn(Strict):
    ticket: Secret


class TicketCodeIn(Strict):
    ticket: Secret
    code: Code


class TotpSetupOut(BaseModel):
    secret: str
    otpauth_uri: str


class EnrolledOut(BaseModel):
    tokens: TokensOut
    recovery_codes: list[str]


class RecoveryOut(BaseModel):
    recovery_codes: list[str]


class CodeIn(Strict):
    code: Code


class RefreshIn(Strict):
    refresh_token: Secret


class ResetIn(Strict):
    tenant: Tenant
    email: Email


class ResetConfirmIn(Strict):
    code: Secret
    new_password: Password


class ChangeIn(Strict):
    current_password: Password
    new_password: Password


class MeOut(BaseModel):
    user_id: str
    tenant: str
    email: str
    name: str
    role: str
    totp_enabled: bool
    scopes: list[str]


class LinkTokenOut(BaseModel):
    token: str
    expires_in: int


def _tokens(tokens: Tokens) -> TokensOut:
    return TokensOut(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
    )


@router.post("/login", response_model=LoginOut)
async def login(body: LoginIn, request: Request) -> LoginOut:
    """Sign in with a password; may ask for a TOTP code (or enrolment) next."""
    service = context(request).identity.service
    result = await in_thread(
        lambda: service.login(body.tenant, body.email, body.password, address(request))
    )
    if isinstance(result, SecondFactor):
        step: Literal["totp", "totp_enrolment"] = "totp_enrolment" if result.enrol else "totp"
        return LoginOut(second_factor=step, ticket=result.ticket)
    return LoginOut(second_factor="none", tokens=_tokens(result))


@router.post("/login/totp", response_model=TokensOut)
async def login_totp(body: SecondFactorIn, request: Request) -> TokensOut:
    """Second step: a TOTP code, or one of the recovery codes."""
    service = context(request).identity.service
    tokens = await in_thread(
        lambda: service.second_factor(
            body.ticket, address(request), code=body.code, recovery=body.recovery_code
        )
    )
    return _tokens(tokens)


@router.post("/login/totp-enrolment", response_model=TotpSetupOut)
async def login_enrol(body: TicketIn, request: Request) -> TotpSetupOut:
    """When the tenant requires TOTP and the user has none: get a secret to enrol."""
    service = context(request).identity.service
    secret, uri = await in_thread(lambda: service.enrol_with_ticket(body.ticket, address(request)))
    return TotpSetupOut(secret=secret, otpauth_uri=uri)


@router.post("/login/totp-enrolment/confirm", response_model=EnrolledOut)
async def login_enrol_confirm(body: TicketCodeIn, request: Request) -> EnrolledOut:
    """Finish enrolment with a first code: tokens and recovery codes (shown once)."""
    service = context(request).identity.service
    tokens, codes = await in_thread(
        lambda: service.confirm_with_ticket(body.ticket, body.code, address(request))
    )
    return EnrolledOut(tokens=_tokens(tokens), recovery_codes=codes)


@router.post("/refresh", response_model=TokensOut)
async def refresh(body: RefreshIn, request: Request) -> TokensOut:
    """Rotate a refresh token; presenting a spent one ends its session."""
    sessions = context(request).identity.sessions
    service = context(request).identity.service
    await in_thread(lambda: service.throttle(address(request)))
    return _tokens(await in_thread(lambda: sessions.refresh(body.refresh_token)))


@router.post("/logout", response_model=StatusOut)
async def logout(signed_in: SignedIn, request: Request) -> StatusOut:
    """End this session everywhere: refresh token, access tokens, live WebSockets."""
    _, session = signed_in
    ctx = context(request)
    jtis = await in_thread(lambda: ctx.identity.sessions.end_session(session.session_id, "logout"))
    await ctx.disconnect(jtis)
    return StatusOut(status="signed out")


@router.get("/me", response_model=MeOut)
async def me(signed_in: SignedIn, request: Request) -> MeOut:
    principal, _ = signed_in
    store = context(request).identity.store
    user = await in_thread(lambda: store.user(principal.tenant, principal.id))
    return MeOut(
        user_id=user.user_id,
        tenant=user.tenant,
        email=user.email,
        name=user.name,
        role=user.role.value,
        totp_enabled=user.totp_enabled,
        scopes=list(principal.scopes),
    )


@router.post("/link-token", response_model=LinkTokenOut)
async def link_token(signed_in: SignedIn, request: Request) -> LinkTokenOut:
    """A WSS link token bound to this session (closed when the session ends)."""
    _, session = signed_in
    sessions = context(request).identity.sessions
    token, lifetime = await in_thread(lambda: sessions.link_token(session))
    return LinkTokenOut(token=token, expires_in=lifetime)


@router.post("/password-reset", response_model=StatusOut, status_code=202)
async def reset(body: ResetIn, request: Request) -> StatusOut:
    """Mail a reset code if the account exists (the answer is the same either way)."""
    service = context(request).identity.service
    await in_thread(lambda: service.request_reset(body.tenant, body.email, address(request)))
    return StatusOut(status="if the account exists, a reset code has been sent")


@router.post("/password-reset/confirm", response_model=StatusOut)
async def reset_confirm(body: ResetConfirmIn, request: Request) -> StatusOut:
    """Set a new password with a mailed code; every session of the account ends."""
    ctx = context(request)
    service = ctx.identity.service
    await in_thread(lambda: service.throttle(address(request)))
    jtis = await in_thread(lambda: service.confirm_reset(body.code, body.new_password))
    await ctx.disconnect(jtis)
    return StatusOut(status="password changed")


@router.post("/password", response_model=StatusOut)
async def change_password(body: ChangeIn, signed_in: SignedIn, request: Request) -> StatusOut:
    """Change the password; every session (this one included) ends."""
    principal, _ = signed_in
    ctx = context(request)
    service = ctx.identity.service
    jtis = await in_thread(
        lambda: service.change_password(
            principal.tenant, principal.id, body.current_password, body.new_password
        )
    )
    await ctx.disconnect(jtis)
    return StatusOut(status="password changed; sign in again")


@router.post("/totp", response_model=TotpSetupOut)
async def totp_begin(signed_in: SignedIn, request: Request) -> TotpSetupOut:
    """Start TOTP enrolment for the signed-in user."""
    principal, _ = signed_in
    service = context(request).identity.service
    secret, uri = await in_thread(lambda: service.begin_totp(principal.tenant, principal.id))
    return TotpSetupOut(secret=secret, otpauth_uri=uri)


@router.post("/totp/confirm", response_model=RecoveryOut)
async def totp_confirm(body: CodeIn, signed_in: SignedIn, request: Request) -> RecoveryOut:
    """Turn TOTP on with a first code; returns recovery codes (shown once)."""
    principal, _ = signed_in
    service = context(request).identity.service
    codes = await in_thread(lambda: service.confirm_totp(principal.tenant, principal.id, body.code))
    return RecoveryOut(recovery_codes=codes)
