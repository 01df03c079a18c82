"""REST routes for MQTT credentials, confined to the caller's tenant, scope ``mqtt:admin``.

``POST /api/v1/mqtt/credentials`` issues one (the token is in that answer only),
``GET`` lists them, ``DELETE /api/v1/mqtt/credentials/{name}`` revokes and disconnects.
Broker calls run in a worker thread (:mod:`cloud.mqtt.control` is synchronous). The core
home is taken from ``app.state.home``; errors map to the API's JSON error answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import trio
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from pydantic import BaseModel, Field

from cloud.errors import Conflict, InvalidInput, NotFound
from cloud.mqtt.credentials import (
    Credential,
    IssuedCredential,
    create_credential,
    list_credentials,
    revoke_credential,
)
from cloud.mqtt.errors import MqttError
from cloud.principal import Principal
from cloud.rest import API_PREFIX, ApiError, ErrorOut, _require

if TYPE_CHECKING:
    from collections.abc import Callable

    from cloud.home import CoreHome

SCOPE_MQTT_ADMIN = "mqtt:admin"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
TOPIC_PATTERN = r"^[^$/][^\x00]{0,199}$"

MqttAdmin = Annotated[Principal, Depends(_require(SCOPE_MQTT_ADMIN))]


class CredentialIn(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    publish: list[Annotated[str, Field(pattern=TOPIC_PATTERN)]] = Field(
        default=[], max_length=32, description="patterns relative to t/<tenant>/, e.g. up/+"
    )
    subscribe: list[Annotated[str, Field(pattern=TOPIC_PATTERN)]] = Field(
        default=[], max_length=32, description="patterns relative to t/<tenant>/, e.g. ev/#"
    )


class CredentialOut(BaseModel):
    name: str
    username: str
    publish: list[str] = Field(description="absolute topic patterns")
    subscribe: list[str]
    created_at: float
    revoked_at: float | None


class IssuedOut(CredentialOut):
    token: str = Field(description="the MQTT password; shown in this answer only")


def _out(c: Credential) -> CredentialOut:
    return CredentialOut(
        name=c.name,
        username=c.username,
        publish=list(c.publish),
        subscribe=list(c.subscribe),
        created_at=c.created_at,
        revoked_at=c.revoked_at,
    )


router = APIRouter(
    prefix=f"{API_PREFIX}/mqtt",
    tags=["mqtt"],
    responses={400: {"model": ErrorOut}, 409: {"model": ErrorOut}, 503: {"model": ErrorOut}},
)


def install(api: FastAPI, home: CoreHome) -> None:
    """Add the MQTT credential routes to ``api``, managing the broker of ``home``."""
    api.state.mqtt_home = home
    api.include_router(router)


def _home(request: Request) -> CoreHome:
    home: CoreHome = request.app.state.mqtt_home
    return home


async def _call(fn: Callable[..., Any], *args: object) -> Any:
    try:
        return await trio.to_thread.run_sync(fn, *args)
    except InvalidInput as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    except NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except MqttError as exc:
        raise ApiError(503, "broker_unavailable", str(exc)) from None


@router.post("/credentials", response_model=IssuedOut, status_code=201)
async def create(principal: MqttAdmin, body: CredentialIn, request: Request) -> IssuedOut:
    """Issue an MQTT credential for the caller's tenant; the token is shown once."""
    home = _home(request)

    issued: IssuedCredential = await _call(
        create_credential, home, principal.tenant, body.name, body.publish, body.subscribe
    )
    return IssuedOut(**_out(issued.credential).model_dump(), token=issued.token)


@router.get("/credentials", response_model=list[CredentialOut])
async def listing(principal: MqttAdmin, request: Request) -> list[CredentialOut]:
    """Every MQTT credential of the caller's tenant, revoked ones included."""
    home = _home(request)
    found: list[Credential] = await _call(list_credentials, home, principal.tenant)
    return [_out(c) for c in found]


@router.delete("/credentials/{name}", response_model=CredentialOut)
async def revoke(
    principal: MqttAdmin,
    request: Request,
    name: Annotated[str, Path(pattern=NAME_PATTERN)],
) -> CredentialOut:
    """Revoke a credential: the broker disables it and disconnects its sessions."""
    home = _home(request)
    credential: Credential = await _call(revoke_credential, home, principal.tenant, name)
    return _out(credential)
