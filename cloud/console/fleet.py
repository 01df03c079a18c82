"""The fleet pages: gateways and their health, devices, a device's history, live events,
provisioning and revoking gateways.

Contract:

* Every query is keyed by the signed-in user's tenant; a gateway or device id of another
  tenant finds nothing and renders the same "not found" page as a missing one.
* Live events: the page asks for a ticket over its session (POST with the CSRF token), opens
  a WebSocket to ``/console/live/socket`` and sends the ticket as the first message. The
  handshake's ``Origin`` must be ours and the ticket single-use, at most
  :data:`cloud.console.sessions.TICKET_LIFETIME_S` old and issued to the session whose cookie
  came with the handshake. The socket then carries the tenant's events from the bus whose
  topic matches the filter, as JSON; it closes when the console session ends.

Not done here: the health index (:mod:`cloud.api.gateways`), the bus (:mod:`cloud.bus`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Final

import anyio
import tomli_w
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from cloud.api.gateways import HealthIndex, gateway_out
from cloud.console import views
from cloud.console.security import SESSION_COOKIE, origin_allowed, same_secret
from cloud.console.web import (
    Forbidden,
    Missing,
    checked_form,
    ctx,
    in_thread,
    operator,
    redirect,
    render,
    sessions,
    text,
)
from cloud.errors import Conflict, InvalidInput, NotFound
from cloud.principal import event_topic, topic_matches, valid_pattern
from cloud.registry import validate_id
from cloud.storage.base import MAX_PAGE_EVENTS

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.websockets import WebSocket

    from cloud.storage.base import StoredEvent

LOOKBACK_NS: Final = 7 * 24 * 3600 * 1_000_000_000
MAX_PAGES: Final = 5
HISTORY_EVENTS: Final = 2000
FIRST_MESSAGE_S: Final = 5.0


async def _recent(
    request: Request, tenant: str, gateway: str | None = None, device: str | None = None
) -> list[StoredEvent]:
    store = ctx(request).store
    since = time.time_ns() - LOOKBACK_NS
    events: list[StoredEvent] = []
    cursor = None
    for _ in range(MAX_PAGES):
        page = await store.query_events(
            tenant,
            gateway=gateway,
            device=device,
            since_ns=since,
            limit=MAX_PAGE_EVENTS,
            cursor=cursor,
        )
        events.extend(page.events)
        cursor = page.next_cursor
        if cursor is None or len(events) >= HISTORY_EVENTS:
            break
    return events


def _health(request: Request) -> HealthIndex:
    index: HealthIndex = request.app.state.health
    return index


async def gateways(request: Request) -> Response:
    op = await operator(request, "gateways:read")
    index = _health(request)
    latest = await index.latest(op.user.tenant)
    now = index.clock_ns()
    registry = ctx(request).api.registry
    known = await in_thread(lambda: registry.list_gateways(op.user.tenant))
    rows = []
    for gw in sorted(known, key=lambda g: g.gateway_id):
        report = latest.get(gw.gateway_id)
        view = gateway_out(report, now) if report is not None else None
        values = {r.n: r.v if r.v is not None else r.vs for r in view.report} if view else {}
        rows.append({"id": gw.gateway_id, "revoked": gw.revoked, "view": view, "health": values})
    return render(request, "gateways.html", operator=op, rows=rows)


async def devices(request: Request) -> Response:
    op = await operator(request, "events:read")
    rows = views.latest_by_device(await _recent(request, op.user.tenant))
    return render(request, "devices.html", operator=op, rows=rows)


async def device(request: Request) -> Response:
    op = await operator(request, "events:read")
    gateway, name = request.path_params["gateway"], request.path_params["device"]
    events = await _recent(request, op.user.tenant, gateway=gateway, device=name)
    if not events:
        raise Missing  # unknown, or another tenant's: the same page
    series = views.numeric_series(events)
    latest = views.latest_by_device(events)[0]
    return render(request, "device.html", operator=op, gateway=gateway, device=name,
                  latest=latest, series=json.dumps(series), track=views.track_points(events),
                  track_size=views.TRACK_SIZE, count=len(events))  # fmt: skip


async def live(request: Request) -> Response:
    op = await operator(request, "events:read")
    return render(request, "live.html", operator=op)


async def live_ticket(request: Request) -> Response:
    op = await operator(request, "events:read")
    headers = request.headers
    if not origin_allowed(ctx(request).origin, headers.get("origin")) or not same_secret(
        op.session.csrf, headers.get("x-csrf-token")
    ):
        raise Forbidden
    ticket = sessions(request).ticket(op.session.sid)
    return JSONResponse({"ticket": ticket}, headers={"cache-control": "no-store"})


def live_filter(message: str) -> tuple[str, str] | None:
    """(ticket, subscription pattern) from the socket's first message, or None if invalid."""
    try:
        data = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ticket"), str):
        return None
    gateway, device, topic = (str(data.get(k) or "") for k in ("gateway", "device", "topic"))
    pattern = topic or event_topic(gateway or "+", device or "+")
    if not valid_pattern(pattern) or not topic_matches("gw/#", pattern.replace("+", "x")):
        return None
    return data["ticket"], pattern


async def live_socket(websocket: WebSocket) -> None:
    context = websocket.app.state.console
    if not origin_allowed(context.origin, websocket.headers.get("origin")):
        await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
        return
    await websocket.accept()
    first = None
    with anyio.move_on_after(FIRST_MESSAGE_S):
        first = await websocket.receive_text()
    parsed = live_filter(first) if first is not None else None
    table = websocket.app.state.sessions
    sid = websocket.cookies.get(SESSION_COOKIE)
    session = table.redeem(parsed[0], sid) if parsed else None
    if parsed is None or session is None:
        await websocket.close(code=1008)
        return
    gone = False
    with context.bus.subscribe(session.tenant, (parsed[1],), buffer=1000) as subscription:
        async with anyio.create_task_group() as group:

            async def until_closed() -> None:
                nonlocal gone
                try:
                    while True:
                        await websocket.receive_text()
                except WebSocketDisconnect:
                    gone = True
                    group.cancel_scope.cancel()

            group.start_soon(until_closed)
            while table.alive(session.sid):
                with anyio.move_on_after(2.0):  # re-check the session at least this often
                    item = await subscription.receive.receive()
                    await websocket.send_text(json.dumps(_event_json(item)))
            group.cancel_scope.cancel()  # the console session ended: close the socket
    if not gone:
        await websocket.close(code=1000)


def _event_json(item: object) -> dict[str, object]:
    gateway = getattr(item, "gateway", "")
    event = getattr(item, "event", None)
    readings = [dict(zip(("n", "v", "u"), views.shown(r), strict=True))
                for r in getattr(event, "readings", ())]  # fmt: skip
    return {
        "gateway": gateway,
        "device": getattr(event, "device", ""),
        "seq": getattr(event, "seq", 0),
        "time": views.when(getattr(event, "wall_ns", 0)),
        "readings": readings,
    }


async def provision_form(request: Request) -> Response:
    op = await operator(request, "gateways:write")
    return render(request, "provision.html", operator=op, boot="", gateway="", error="")


async def provision(request: Request) -> Response:
    op = await operator(request, "gateways:write")
    form = await checked_form(request, op.session.csrf)
    gateway = text(form, "gateway", 63).strip()
    fleet = ctx(request).fleet
    try:
        validate_id(gateway, "gateway id")
        info = await in_thread(lambda: fleet.enrolment.create_code(op.user.tenant, gateway))
    except (InvalidInput, Conflict) as exc:
        return render(request, "provision.html", 400, operator=op, boot="", gateway=gateway,
                      error=str(exc))  # fmt: skip
    boot = tomli_w.dumps({
        "enrolment": {
            "tenant": info.tenant, "gateway_id": info.gateway_id, "code": info.code,
            "expires_at": int(info.expires_at), "link_url": info.link_url,
            "rest_url": info.rest_url, "release_key": info.release_key,
            "ca_pem": info.ca_pem.decode(),
        }
    })  # fmt: skip
    ctx(request).access_log.record("console.gateway_provisioned", tenant=op.user.tenant,
                                   gateway=gateway, principal=op.user.user_id)  # fmt: skip
    return render(request, "provision.html", operator=op, boot=boot, gateway=gateway, error="")


async def revoke(request: Request) -> Response:
    op = await operator(request, "gateways:write")
    form = await checked_form(request, op.session.csrf)
    gateway = text(form, "gateway", 63)
    api = ctx(request).api
    try:
        await in_thread(lambda: api.registry.revoke_gateway(op.user.tenant, gateway))
    except (NotFound, InvalidInput):
        raise Missing from None
    await api.disconnect(principal=(op.user.tenant, gateway))
    ctx(request).access_log.record("console.gateway_revoked", tenant=op.user.tenant,
                                   gateway=gateway, principal=op.user.user_id)  # fmt: skip
    return redirect("/console/")


routes = [
    Route("/", gateways, methods=["GET"]),
    Route("/devices", devices, methods=["GET"]),
    Route("/devices/{gateway}/{device:path}", device, methods=["GET"]),
    Route("/live", live, methods=["GET"]),
    Route("/live/ticket", live_ticket, methods=["POST"]),
    WebSocketRoute("/live/socket", live_socket),
    Route("/gateways/provision", provision_form, methods=["GET"]),
    Route("/gateways/provision", provision, methods=["POST"]),
    Route("/gateways/revoke", revoke, methods=["POST"]),
]
