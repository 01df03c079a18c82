"""``/api/v1/gateways``: each gateway's last health report and last contact (scope
``gateways:read``).

Gateways send their health as ordinary events from the reserved device ``_health``
(``gateway.health``), so the reports are stored, deduplicated and routed like any other
event. This router reads them back through the event store:

* The latest report of a gateway is its ``_health`` event with the highest ``seq``. seq only
  grows for a gateway, so "latest" does not depend on the gateway's clock.
* :class:`HealthIndex` keeps the latest report per gateway in memory and finds new ones with
  a store query on wall time: the first query of a tenant looks back :data:`LOOKBACK_S`, later
  ones only from :data:`REWIND_S` before the newest report already seen (capped at the core's
  clock). A report whose wall time lies further in the past than that (a gateway whose
  clock is wrong by more than :data:`REWIND_S`) is not found; its gateway then shows an older
  report or none, and ``stale`` says so.
* ``last_contact`` is when the core received the latest report (the core's clock).
  ``clock_offset_s`` is the gateway's wall time minus that receipt time; it is given only when
  the report says the link was online with an empty outbox, i.e. it went out at once, and
  then errs by the delivery delay (milliseconds on a working link).

Answers are confined to the token's tenant. The index is per core process and is rebuilt
from the store after a restart; it stores nothing itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Final

import anyio
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from cloud.principal import Principal
from cloud.rest import API_PREFIX, GATEWAY_ID_PATTERN, ApiError, ErrorOut, SenmlRecord, _require
from cloud.storage.base import MAX_PAGE_EVENTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from fastapi import FastAPI

    from cloud.storage.base import EventStore, StoredEvent
    from protocol.events import Reading

SCOPE_GATEWAYS_READ: Final = "gateways:read"
#: The device id gateways send health reports from (``gateway.health.HEALTH_DEVICE``).
HEALTH_DEVICE: Final = "_health"
#: How far back the first look at a tenant's reports goes.
LOOKBACK_S: Final = 24 * 3600.0
#: How far before the newest report seen later looks start, for reports that arrive late.
REWIND_S: Final = 3600.0
#: A gateway is stale when nothing arrived for this many report intervals.
STALE_INTERVALS: Final = 3
_NS: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The latest health event of one gateway, as stored."""

    gateway: str
    seq: int
    wall_ns: int
    received_ns: int
    clock: str
    readings: tuple[Reading, ...]

    def value(self, name: str) -> object:
        """The value of the reading called ``name``, or ``None``."""
        return next((r.value for r in self.readings if r.name == name), None)


def fold_reports(latest: dict[str, HealthReport], events: Iterable[StoredEvent]) -> None:
    """Keep, per gateway, the health event with the highest seq (pure; no I/O)."""
    for stored in events:
        event = stored.event
        current = latest.get(stored.gateway)
        if event.device != HEALTH_DEVICE or (current is not None and current.seq >= event.seq):
            continue
        latest[stored.gateway] = HealthReport(
            stored.gateway,
            event.seq,
            event.wall_ns,
            stored.received_ns,
            event.clock.name.lower(),
            event.readings,
        )


@dataclass(slots=True)
class _TenantIndex:
    latest: dict[str, HealthReport] = field(default_factory=dict)
    newest_wall_ns: int | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class HealthIndex:
    """The latest health report of every gateway, per tenant, found through the store."""

    def __init__(self, store: EventStore, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.clock_ns = clock_ns
        self._tenants: dict[str, _TenantIndex] = {}

    async def latest(self, tenant: str) -> dict[str, HealthReport]:
        """Look for new reports of ``tenant``, then return the latest per gateway."""
        index = self._tenants.setdefault(tenant, _TenantIndex())
        async with index.lock:
            now = self.clock_ns()
            if index.newest_wall_ns is None:
                since = now - int(LOOKBACK_S * _NS)
            else:
                since = min(index.newest_wall_ns, now) - int(REWIND_S * _NS)
            cursor: str | None = None
            while True:
                page = await self.store.query_events(
                    tenant,
                    device=HEALTH_DEVICE,
                    since_ns=max(0, since),
                    limit=MAX_PAGE_EVENTS,
                    cursor=cursor,
                )
                fold_reports(index.latest, page.events)
                for stored in page.events:
                    wall = min(stored.event.wall_ns, now)
                    index.newest_wall_ns = max(index.newest_wall_ns or 0, wall)
                cursor = page.next_cursor
                if cursor is None:
                    return dict(index.latest)


class GatewayOut(BaseModel):
    gateway: str
    last_contact: str = Field(description="when the core received the latest report, RFC 3339")
    last_contact_ns: int
    since_contact_s: float = Field(description="seconds since last_contact, by the core's clock")
    stale: bool = Field(description="no report for more than three report intervals")
    healthy: bool | None = Field(
        description="every part of the gateway was making progress at the latest report"
    )
    stalled: list[str] = Field(description="the parts the gateway's watchdog found stalled")
    clock: str = Field(description="the gateway's clock source at the latest report")
    clock_offset_s: float | None = Field(
        description="gateway wall time minus receipt time, when the report was sent at once"
    )
    report: list[SenmlRecord] = Field(description="the latest report's readings (SenML)")


class GatewayListOut(BaseModel):
    gateways: list[GatewayOut]


def gateway_out(report: HealthReport, now_ns: int) -> GatewayOut:
    """The REST view of one report at ``now_ns``."""
    from cloud.rest import _senml

    since = max(0, now_ns - report.received_ns) / _NS
    interval = report.value("interval")
    stale = isinstance(interval, int | float) and since > STALE_INTERVALS * interval
    healthy = report.value("watchdog/healthy")
    stalled = report.value("watchdog/stalled")
    sent_at_once = report.value("link/state") == "online" and report.value("outbox/depth") == 0
    when = datetime.fromtimestamp(report.received_ns / _NS, tz=UTC)
    return GatewayOut(
        gateway=report.gateway,
        last_contact=when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        last_contact_ns=report.received_ns,
        since_contact_s=round(since, 3),
        stale=stale,
        healthy=healthy if isinstance(healthy, bool) else None,
        stalled=[p for p in stalled.split(",") if p] if isinstance(stalled, str) else [],
        clock=report.clock,
        clock_offset_s=(report.wall_ns - report.received_ns) / _NS if sent_at_once else None,
        report=[_senml(r) for r in report.readings],
    )


router = APIRouter(
    prefix=f"{API_PREFIX}/gateways",
    tags=["gateways"],
    responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}},
)
GatewaysReader = Annotated[Principal, Depends(_require(SCOPE_GATEWAYS_READ))]


def _index(request: Request) -> HealthIndex:
    index: HealthIndex = request.app.state.gateway_health
    return index


@router.get("", response_model=GatewayListOut)
async def list_gateways(principal: GatewaysReader, request: Request) -> GatewayListOut:
    """Every gateway of the token's tenant that has sent a health report, by id."""
    index = _index(request)
    latest = await index.latest(principal.tenant)
    now = index.clock_ns()
    return GatewayListOut(gateways=[gateway_out(latest[g], now) for g in sorted(latest)])


@router.get("/{gateway_id}", response_model=GatewayOut, responses={404: {"model": ErrorOut}})
async def get_gateway(
    principal: GatewaysReader,
    request: Request,
    gateway_id: Annotated[str, Path(pattern=GATEWAY_ID_PATTERN)],
) -> GatewayOut:
    """One gateway's latest health report and last contact."""
    index = _index(request)
    report = (await index.latest(principal.tenant)).get(gateway_id)
    if report is None:
        raise ApiError(404, "not_found", "no health report from this gateway")
    return gateway_out(report, index.clock_ns())


def install(api: FastAPI, store: EventStore) -> None:
    """Mount the routes on ``api``, reading reports from ``store``."""
    api.state.gateway_health = HealthIndex(store)
    api.include_router(router)
