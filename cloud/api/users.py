"""``/api/v1/users``: a tenant admin manages the users of its own tenant.

Answers never carry password hashes, sealed values, personnummer or TOTP secrets; a user of
another tenant answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from cloud.api.common import Strict, context, in_thread, require
from cloud.identity.roles import Role
from cloud.principal import Principal
from cloud.rest import API_PREFIX, ErrorOut

if TYPE_CHECKING:
    from cloud.identity.store import User

router = APIRouter(
    prefix=f"{API_PREFIX}/users",
    tags=["users"],
    responses={
        400: {"model": ErrorOut},
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        404: {"model": ErrorOut},
        409: {"model": ErrorOut},
    },
)

UserId = Annotated[str, Path(pattern=r"^u-[0-9a-f]{16}$")]
Reader = Annotated[Principal, require("users:read")]
Writer = Annotated[Principal, require("users:write")]


class UserOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: Role
    disabled: bool
    totp_enabled: bool
    has_personnummer: bool
    locked: bool


class UserListOut(BaseModel):
    users: list[UserOut]


class UserIn(Strict):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Role = Role.VIEWER
    password: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    personnummer: Annotated[str, Field(min_length=10, max_length=13)] | None = None


class RoleIn(Strict):
    role: Role


class LookupIn(Strict):
    personnummer: Annotated[str, Field(min_length=10, max_length=13)]


def _out(user: User, now_locked: bool = False) -> UserOut:
    return UserOut(
        user_id=user.user_id,
        email=user.email,
        name=user.name,
        role=user.role,
        disabled=user.disabled,
        totp_enabled=user.totp_enabled,
        has_personnummer=user.pnr is not None,
        locked=now_locked,
    )


def _locked(user: User) -> bool:
    import time

    return user.lock.locked(time.time())


@router.get("", response_model=UserListOut)
async def list_users(principal: Reader, request: Request) -> UserListOut:
    store = context(request).identity.store
    users = await in_thread(lambda: store.list_users(principal.tenant))
    return UserListOut(users=[_out(u, _locked(u)) for u in users])


@router.post("", response_model=UserOut, status_code=201)
async def create_user(body: UserIn, principal: Writer, request: Request) -> UserOut:
    """Create a user in the caller's tenant (a platform admin role needs a platform admin)."""
    if body.role is Role.PLATFORM_ADMIN and "platform:admin" not in principal.scopes:
        from cloud.rest import ApiError

        raise ApiError(403, "insufficient_scope", "only a platform admin grants that role")
    service = context(request).identity.service
    user = await in_thread(
        lambda: service.create_user(
            principal.tenant, body.email, body.name, body.role, body.password, body.personnummer
        )
    )
    return _out(user)


@router.post("/lookup", response_model=UserListOut)
async def lookup(body: LookupIn, principal: Reader, request: Request) -> UserListOut:
    """Find users by personnummer (sent in the body, never the URL; keyed index lookup)."""
    service = context(request).identity.service
    users = await in_thread(
        lambda: service.find_by_personnummer(principal.tenant, body.personnummer)
    )
    return UserListOut(users=[_out(u, _locked(u)) for u in users])


@router.get("/{user_id}", response_model=UserOut)
async def get_user(user_id: UserId, principal: Reader, request: Request) -> UserOut:
    store = context(request).identity.store
    user = await in_thread(lambda: store.user(principal.tenant, user_id))
    return _out(user, _locked(user))


@router.post("/{user_id}/disable", response_model=UserOut)
async def disable(user_id: UserId, principal: Writer, request: Request) -> UserOut:
    """Disable a user: every session ends and live links close."""
    return await _set_disabled(request, principal, user_id, True)


@router.post("/{user_id}/enable", response_model=UserOut)
async def enable(user_id: UserId, principal: Writer, request: Request) -> UserOut:
    return await _set_disabled(request, principal, user_id, False)


@router.put("/{user_id}/role", response_model=UserOut)
async def set_role(user_id: UserId, body: RoleIn, principal: Writer, request: Request) -> UserOut:
    """Change a role (sessions end so no token keeps the old scopes)."""
    if body.role is Role.PLATFORM_ADMIN and "platform:admin" not in principal.scopes:
        from cloud.rest import ApiError

        raise ApiError(403, "insufficient_scope", "only a platform admin grants that role")
    ctx = context(request)
    service = ctx.identity.service
    jtis = await in_thread(lambda: service.set_role(principal.tenant, user_id, body.role))
    await ctx.disconnect(jtis)
    user = await in_thread(lambda: ctx.identity.store.user(principal.tenant, user_id))
    return _out(user, _locked(user))


async def _set_disabled(
    request: Request, principal: Principal, user_id: str, disabled: bool
) -> UserOut:
    ctx = context(request)
    service = ctx.identity.service
    jtis = await in_thread(lambda: service.set_disabled(principal.tenant, user_id, disabled))
    await ctx.disconnect(jtis)
    user = await in_thread(lambda: ctx.identity.store.user(principal.tenant, user_id))
    return _out(user, _locked(user))
