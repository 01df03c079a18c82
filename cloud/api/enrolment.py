"""``POST /api/v1/enrol`` and ``GET /api/v1/releases/{version}/bundle``: the gateway's REST calls.

* **Enrol.** No bearer token: the caller proves possession of its new device key with a DPoP
  proof (RFC 9449 §4) for ``POST <rest URL>/api/v1/enrol`` and sends the one-time code in the
  JSON body (never in the URL). The answer is a link token bound to that key (``cnf.jkt``).
  Unknown, used and expired codes get one answer, ``401 enrolment_refused``, so a guesser
  learns nothing.
* **Bundle download.** ``Authorization: DPoP <link token>`` plus a proof for the exact URL,
  by the key the token is bound to; the token must be a live gateway token. The bundle is
  signed; the gateway verifies it again before installing.

The enrolment route is mounted by :func:`install`; both need a :class:`FleetApi` context.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from cloud.errors import AuthError
from cloud.fleet.dpop import ProofError, verify_proof
from cloud.fleet.releases import bundle_path
from cloud.principal import PrincipalKind
from cloud.registry import verify_active
from cloud.rest import API_PREFIX, ApiError, ErrorOut
from cloud.tokens import Audience, confirmation_of

if TYPE_CHECKING:
    from cloud.api.fleet import FleetApi

router = APIRouter(tags=["lifecycle"])
VERSION_PATTERN = r"^[0-9]+(\.[0-9]+){0,3}$"


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=8, max_length=128)


class EnrolOut(BaseModel):
    tenant: str
    gateway_id: str
    token: str
    token_id: str
    expires_at: int
    link_url: str


def _context(request: Request) -> FleetApi:
    context: FleetApi = request.app.state.fleet
    return context


def _proof(request: Request, method: str, url: str, token: str | None = None) -> str:
    context = _context(request)
    try:
        return verify_proof(
            request.headers.get("dpop", ""),
            method=method,
            url=url,
            now=time.time(),
            replay=context.replay,
            token=token,
        )
    except ProofError as exc:
        raise ApiError(401, "dpop_invalid", str(exc)) from exc


@router.post(
    f"{API_PREFIX}/enrol",
    response_model=EnrolOut,
    responses={401: {"model": ErrorOut}},
)
async def enrol(request: Request, body: EnrolIn) -> EnrolOut:
    """Exchange a one-time enrolment code and a device-key proof for bound credentials."""
    context = _context(request)
    jkt = _proof(request, "POST", f"{context.rest_url}{API_PREFIX}/enrol")
    try:
        tenant, gateway_id, credentials = context.enrolment.redeem(body.code, jkt)
    except AuthError as exc:
        request.state.error = exc.code.value
        raise ApiError(401, "enrolment_refused", "enrolment code refused") from exc
    context.access_log.record("enrol.ok", tenant=tenant, principal=gateway_id, jkt=jkt)
    return EnrolOut(
        tenant=tenant,
        gateway_id=gateway_id,
        token=credentials.token,
        token_id=credentials.token_id,
        expires_at=credentials.expires_at,
        link_url=context.link_url,
    )


@router.get(
    f"{API_PREFIX}/releases/{{version}}/bundle",
    response_class=FileResponse,
    responses={401: {"model": ErrorOut}, 404: {"model": ErrorOut}},
)
async def download_bundle(
    request: Request, version: Annotated[str, Path(pattern=VERSION_PATTERN)]
) -> FileResponse:
    """A published, signed update bundle, for an enrolled gateway (DPoP-bound link token)."""
    context = _context(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "dpop" or not token.strip():
        raise ApiError(401, "unauthorized", "send Authorization: DPoP <link token>")
    token = token.strip()
    principal = verify_active(context.issuer, context.registry, token, Audience.LINK)
    request.state.principal = principal
    url = f"{context.rest_url}{API_PREFIX}/releases/{version}/bundle"
    jkt = _proof(request, "GET", url, token)
    if principal.kind is not PrincipalKind.GATEWAY or confirmation_of(token) != jkt:
        raise ApiError(401, "dpop_invalid", "the token is not bound to the proof's key")
    path = bundle_path(context.home, version)
    if not path.is_file():
        raise ApiError(404, "not_found", f"no release {version}")
    return FileResponse(path, media_type="application/x-tar")
