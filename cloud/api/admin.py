"""Tenant settings, tenants, third-party API tokens, device revocation and the JWKS.

* ``/api/v1/tenant/settings`` (``tenant:admin``): the password policy (preset + tuning) and
  login settings (minimum method, lockout) of the caller's tenant.
* ``/api/v1/tenants`` (``platform:admin``): list and create tenants.
* ``/api/v1/api-tokens`` (``tokens:write``): issue (shown once), list (never the token) and
  revoke scoped, expiring REST tokens for third parties.
* ``/api/v1/gateways/{id}/revoke`` and ``/api/v1/modules/{id}/revoke``: revoke every token of a
  device and close its live link at once.
* ``/api/v1/.well-known/jwks.json``: the public keys that verify the core's tokens.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from cloud.api.common import StatusOut, Strict, context, in_thread, require
from cloud.identity.policy import make_policy
from cloud.identity.roles import API_TOKEN_SCOPES, login_settings_from_dict
from cloud.principal import Principal, PrincipalKind
from cloud.registry import validate_id
from cloud.rest import API_PREFIX, ApiError, ErrorOut
from cloud.tokens import Audience

router = APIRouter(
    prefix=API_PREFIX,
    responses={
        400: {"model": ErrorOut},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)

DeviceId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Jti = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
TopicPattern = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^$]")]


class SettingsIO(Strict):
    password_policy: dict[str, Any]
    login: dict[str, Any]


class TenantIn(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class TenantListOut(BaseModel):
    tenants: list[str]


class ApiTokenIn(Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    scopes: Annotated[list[str], Field(min_length=1, max_length=16)]
    lifetime_s: Annotated[int, Field(ge=60, le=365 * 24 * 3600)] = 30 * 24 * 3600
    subscribe: Annotated[list[TopicPattern], Field(max_length=16)] = Field(default_factory=list)


class ApiTokenOut(BaseModel):
    jti: str
    name: str
    scopes: list[str]
    subscribe: list[str]
    expires_at: float
    revoked: bool


class ApiTokenIssuedOut(ApiTokenOut):
    token: str = Field(description="shown once; store it now")


class ApiTokenListOut(BaseModel):
    tokens: list[ApiTokenOut]


class RevokedOut(BaseModel):
    revoked_tokens: int
    disconnected_links: int


# --- tenant settings ----------------------------------------------------------------------


@router.get("/tenant/settings", response_model=SettingsIO, tags=["tenant"])
async def get_settings(
    principal: Annotated[Principal, require("tenant:admin")], request: Request
) -> SettingsIO:
    store = context(request).identity.store
    policy, login = await in_thread(lambda: store.tenant_settings(principal.tenant))
    return SettingsIO(password_policy=policy.to_dict(), login=login.to_dict())


@router.put("/tenant/settings", response_model=SettingsIO, tags=["tenant"])
async def put_settings(
    body: SettingsIO, principal: Annotated[Principal, require("tenant:admin")], request: Request
) -> SettingsIO:
    """Choose a preset (``seed`` or ``nist``), tune it, and set the login settings."""
    values = dict(body.password_policy)
    policy = make_policy(str(values.pop("preset", "seed")), **values)
    login = login_settings_from_dict(body.login)
    service = context(request).identity.service
    await in_thread(lambda: service.set_settings(principal.tenant, policy, login))
    return SettingsIO(password_policy=policy.to_dict(), login=login.to_dict())


# --- tenants (platform) -------------------------------------------------------------------


@router.get("/tenants", response_model=TenantListOut, tags=["tenant"])
async def list_tenants(
    principal: Annotated[Principal, require("platform:admin")], request: Request
) -> TenantListOut:
    registry = context(request).registry
    tenants = await in_thread(registry.list_tenants)
    return TenantListOut(tenants=[t.name for t in tenants])


@router.post("/tenants", response_model=TenantListOut, status_code=201, tags=["tenant"])
async def create_tenant(
    body: TenantIn, principal: Annotated[Principal, require("platform:admin")], request: Request
) -> TenantListOut:
    registry = context(request).registry
    await in_thread(lambda: registry.create_tenant(body.name))
    return TenantListOut(tenants=[body.name])


# --- API tokens ---------------------------------------------------------------------------


@router.post("/api-tokens", response_model=ApiTokenIssuedOut, status_code=201, tags=["tokens"])
async def create_api_token(
    body: ApiTokenIn, principal: Annotated[Principal, require("tokens:write")], request: Request
) -> ApiTokenIssuedOut:
    """Issue a scoped, expiring token for a third party; the token is in this answer only."""
    allowed = API_TOKEN_SCOPES & set(principal.scopes)
    if not set(body.scopes) <= allowed:
        raise ApiError(403, "insufficient_scope", f"grantable scopes: {sorted(allowed)}")
    ctx = context(request)
    await _check_session_method(request, principal)
    validate_id(body.name, "API token name")

    def issue() -> tuple[str, dict[str, Any]]:
        token, claims = ctx.issuer.issue(
            audience=Audience.REST, subject=body.name, tenant=principal.tenant,
            kind=PrincipalKind.API, lifetime_s=body.lifetime_s, scopes=body.scopes,
            subscribe=body.subscribe,
        )  # fmt: skip
        ctx.registry.record_claims(claims)
        return token, claims

    token, claims = await in_thread(issue)
    return ApiTokenIssuedOut(
        jti=claims["jti"], name=body.name, scopes=body.scopes, subscribe=body.subscribe,
        expires_at=claims["exp"], revoked=False, token=token,
    )  # fmt: skip


@router.get("/api-tokens", response_model=ApiTokenListOut, tags=["tokens"])
async def list_api_tokens(
    principal: Annotated[Principal, require("tokens:write")], request: Request
) -> ApiTokenListOut:
    registry = context(request).registry
    records = await in_thread(lambda: registry.list_tokens(principal.tenant))
    return ApiTokenListOut(
        tokens=[
            ApiTokenOut(
                jti=r.jti,
                name=r.subject,
                scopes=list(r.scopes),
                subscribe=list(r.subscribe),
                expires_at=r.expires_at,
                revoked=r.revoked_at is not None,
            )
            for r in records
            if r.kind is PrincipalKind.API
        ]
    )


@router.delete("/api-tokens/{jti}", response_model=StatusOut, tags=["tokens"])
async def revoke_api_token(
    jti: Jti, principal: Annotated[Principal, require("tokens:write")], request: Request
) -> StatusOut:
    ctx = context(request)

    def revoke() -> None:
        from cloud.errors import NotFound

        record = ctx.registry.get_token(jti)
        if record.tenant != principal.tenant or record.kind is not PrincipalKind.API:
            raise NotFound("no such token")  # another tenant's token: same as missing
        ctx.registry.revoke_token(jti)

    await in_thread(revoke)
    await ctx.disconnect([jti])
    return StatusOut(status="revoked")


# --- devices ------------------------------------------------------------------------------


@router.post("/gateways/{gateway_id}/revoke", response_model=RevokedOut, tags=["devices"])
async def revoke_gateway(
    gateway_id: DeviceId,
    principal: Annotated[Principal, require("gateways:write")],
    request: Request,
) -> RevokedOut:
    """Revoke a gateway's credentials and close its live link at once."""
    ctx = context(request)
    count = await in_thread(lambda: ctx.registry.revoke_gateway(principal.tenant, gateway_id))
    closed = await ctx.disconnect(principal=(principal.tenant, gateway_id))
    return RevokedOut(revoked_tokens=count, disconnected_links=closed)


@router.post("/modules/{module_id}/revoke", response_model=RevokedOut, tags=["devices"])
async def revoke_module(
    module_id: DeviceId,
    principal: Annotated[Principal, require("modules:write")],
    request: Request,
) -> RevokedOut:
    """Revoke a module's credentials and close its live link at once."""
    ctx = context(request)
    count = await in_thread(lambda: ctx.registry.revoke_module(principal.tenant, module_id))
    closed = await ctx.disconnect(principal=(principal.tenant, module_id))
    return RevokedOut(revoked_tokens=count, disconnected_links=closed)


# --- keys ---------------------------------------------------------------------------------


@router.get("/.well-known/jwks.json", tags=["keys"])
async def jwks(request: Request) -> dict[str, list[dict[str, str]]]:
    """The public keys (JWK Set, RFC 7517) that verify tokens signed by this core."""
    return context(request).issuer.jwks()


async def _check_session_method(request: Request, principal: Principal) -> None:
    # Minimum login method on every path that issues a token: an admin whose session was made
    # with a weaker method than the tenant now requires cannot mint tokens.
    if principal.kind is not PrincipalKind.USER:
        return
    from cloud.identity.errors import MethodRequired
    from cloud.identity.roles import satisfies

    ctx = context(request)
    session = await in_thread(lambda: ctx.identity.sessions.session_for(principal.token_id))
    _, login = await in_thread(lambda: ctx.identity.store.tenant_settings(principal.tenant))
    if not satisfies(session.method, login.min_method):
        raise MethodRequired(login.min_method.value)
