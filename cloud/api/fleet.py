"""``/api/v1/fleet``: desired configuration, what each gateway runs, and rollouts.

Scopes: ``fleet:read`` to look, ``fleet:write`` to change. Everything is confined to the
token's tenant. What a gateway *runs* (configuration version, software version, why a
version was refused or rolled back) is what it last reported; the core never assumes a
command worked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from cloud.errors import CloudError, InvalidInput, NotFound
from cloud.fleet.dpop import ReplayCache
from cloud.principal import Principal
from cloud.rest import API_PREFIX, GATEWAY_ID_PATTERN, ApiError, ErrorOut, _require

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cloud.accesslog import AccessLog
    from cloud.enrolment import Enrolment
    from cloud.fleet.store import FleetStore
    from cloud.home import CoreHome
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer

SCOPE_FLEET_READ: Final = "fleet:read"
SCOPE_FLEET_WRITE: Final = "fleet:write"


@dataclass
class FleetApi:
    """What the lifecycle routes need from the running core."""

    home: CoreHome
    store: FleetStore
    enrolment: Enrolment
    registry: Registry
    issuer: TokenIssuer
    access_log: AccessLog
    rest_url: str
    link_url: str
    replay: ReplayCache = field(default_factory=ReplayCache)


FleetReader = Annotated[Principal, Depends(_require(SCOPE_FLEET_READ))]
FleetWriter = Annotated[Principal, Depends(_require(SCOPE_FLEET_WRITE))]
GatewayId = Annotated[str, Path(pattern=GATEWAY_ID_PATTERN)]
router = APIRouter(prefix=f"{API_PREFIX}/fleet", tags=["fleet"])


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] = Field(
        description="log_level, sensors, filters, uplink, rollback_after_s"
    )


class ConfigOut(BaseModel):
    gateway_id: str
    version: int


class GatewayStateOut(BaseModel):
    gateway_id: str
    desired_version: int | None
    desired: dict[str, Any] | None
    reported: dict[str, Any] = Field(
        description="config_version, config_pending, refused_version, refused_reason, "
        "software_version, update_version, update_state, update_error, ..."
    )
    reported_at: float | None


class RolloutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(pattern=r"^[0-9]+(\.[0-9]+){0,3}$")
    percent: int = Field(ge=0, le=100)
    force: bool = False


class RolloutOut(BaseModel):
    version: str
    percent: int
    force: bool
    created_at: float


def install(api: FastAPI, context: FleetApi) -> None:
    """Mount the fleet and enrolment routes on ``api``."""
    from cloud.api import enrolment

    api.state.fleet = context
    api.include_router(router)
    api.include_router(enrolment.router)


def _context(request: Request) -> FleetApi:
    context: FleetApi = request.app.state.fleet
    return context


def state_of(context: FleetApi, tenant: str, gateway_id: str) -> GatewayStateOut:
    desired = context.store.desired_config(tenant, gateway_id)
    reported, at = context.store.reported(tenant, gateway_id)
    return GatewayStateOut(
        gateway_id=gateway_id,
        desired_version=None if desired is None else desired.version,
        desired=None if desired is None else desired.document,
        reported=reported,
        reported_at=at,
    )


def _known_gateway(context: FleetApi, tenant: str, gateway_id: str) -> None:
    try:
        context.registry.get_gateway(tenant, gateway_id)
    except NotFound as exc:
        raise ApiError(404, "not_found", f"no gateway {gateway_id}") from exc


@router.get("/gateways", response_model=list[GatewayStateOut])
async def list_states(request: Request, principal: FleetReader) -> list[GatewayStateOut]:
    """Every gateway of the tenant: desired version and what it last reported."""
    context = _context(request)
    gateways = context.registry.list_gateways(principal.tenant)
    return [state_of(context, principal.tenant, g.gateway_id) for g in gateways]


@router.get(
    "/gateways/{gateway_id}", response_model=GatewayStateOut, responses={404: {"model": ErrorOut}}
)
async def get_state(
    request: Request, principal: FleetReader, gateway_id: GatewayId
) -> GatewayStateOut:
    context = _context(request)
    _known_gateway(context, principal.tenant, gateway_id)
    return state_of(context, principal.tenant, gateway_id)


@router.put(
    "/gateways/{gateway_id}/config",
    response_model=ConfigOut,
    responses={400: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
async def set_config(
    request: Request, principal: FleetWriter, gateway_id: GatewayId, body: ConfigIn
) -> ConfigOut:
    """Store a new desired configuration; it is pushed over the link when the gateway is on."""
    context = _context(request)
    _known_gateway(context, principal.tenant, gateway_id)
    try:
        desired = context.store.set_config(principal.tenant, gateway_id, body.config)
    except InvalidInput as exc:
        raise ApiError(400, "invalid_config", str(exc)) from exc
    return ConfigOut(gateway_id=gateway_id, version=desired.version)


@router.post("/rollouts", response_model=RolloutOut, responses={400: {"model": ErrorOut}})
async def start_rollout(request: Request, principal: FleetWriter, body: RolloutIn) -> RolloutOut:
    """Roll a published release out to ``percent`` % of the tenant's gateways (stable choice)."""
    context = _context(request)
    try:
        rollout = context.store.start_rollout(
            principal.tenant, body.version, body.percent, force=body.force
        )
    except CloudError as exc:
        raise ApiError(400, "invalid_rollout", str(exc)) from exc
    return RolloutOut(
        version=rollout.version,
        percent=rollout.percent,
        force=rollout.force,
        created_at=rollout.created_at,
    )
