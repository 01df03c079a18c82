"""Health reports: their SenML readings, and a whole gateway whose stalled driver stops the
systemd heartbeat and is named in the report that reaches the core's REST API."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from cloud.api.gateways import HealthReport, fold_reports, gateway_out
from cloud.pki import client_ssl_context
from cloud.registry import Registry
from cloud.storage.base import StoredEvent
from drivers.base import DriverHealth, Sample
from gateway.app import Gateway
from gateway.config import write_config
from gateway.health import HEALTH_DEVICE, health_readings, read_system_stats
from gateway.watchdog import Notifier, StallLimits, Watchdog
from protocol import codec, limits
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Batch
from tests.support import RunningCore

# --- readings ---------------------------------------------------------------------------------


def report(drivers: int = 1, **extra: Any) -> dict[str, Any]:
    health = DriverHealth(samples=5, frames=7, bad_frames=2, restarts=1)
    health.count_error("checksum", "bad")
    health.count_error("serial", "gone")
    health.last_sample_mono_ns = 1_000_000_000
    return {
        "mono_ns": 3_500_000_000,
        "uptime_s": 12.5,
        "watchdog": {"healthy": False, "stalled": [{"part": "driver/a", "quiet_s": 1}]},
        "clock_source": "ntp",
        "drivers": {f"d{i:02}": _asdict(health) for i in range(drivers)},
        "outbox": {"depth": 3, "bytes_on_disk": 4096},
        "outbox_oldest_age_s": 2.0,
        "losses": {"outbox_full": 4},
        "uplink": {"state": "offline", "connects": 1, "disconnects": 1, "acked_seq": 9,
                   "last_error": "é" * 500},
        "system": {"disk_free": 10, "disk_total": 20, "mem_available": 30, "rss": 40,
                   "clock_maxerror_s": 0.5},
        **extra,
    }  # fmt: skip


def _asdict(health: DriverHealth) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(health)


def as_dict(readings: tuple[Reading, ...]) -> dict[str, tuple[str, object]]:
    return {r.name: (r.unit, r.value) for r in readings}


def test_readings_carry_every_figure_with_senml_units() -> None:
    got = as_dict(health_readings(report(), interval_s=60))
    assert got["interval"] == ("s", 60)
    assert got["watchdog/healthy"] == ("", False)
    assert got["watchdog/stalled"] == ("", "driver/a")
    assert got["link/state"] == ("", "offline")
    assert got["outbox/depth"] == ("count", 3)
    assert got["outbox/bytes"] == ("B", 4096)
    assert got["outbox/oldest_age"] == ("s", 2.0)
    assert got["loss/outbox_full"] == ("count", 4)
    assert got["clock/source"] == ("", "ntp")
    assert got["clock/maxerror"] == ("s", 0.5)
    assert got["disk/free"] == ("B", 10)
    assert got["mem/rss"] == ("B", 40)
    assert got["driver/d00/samples"] == ("count", 5)
    assert got["driver/d00/errors"] == ("count", 2)  # one refused frame, one serial failure
    assert got["driver/d00/restarts"] == ("count", 1)
    assert got["driver/d00/last_age"] == ("s", 2.5)


def test_absent_figures_are_left_out_not_sent_as_null() -> None:
    got = as_dict(health_readings(report(outbox_oldest_age_s=None, drivers=0), interval_s=60))
    assert "outbox/oldest_age" not in got
    assert not any(name.startswith("driver/") for name in got)


def test_many_drivers_fit_one_event_and_the_rest_are_counted() -> None:
    readings = health_readings(report(drivers=40), interval_s=60)
    assert len(readings) <= limits.MAX_READINGS_PER_EVENT
    got = as_dict(readings)
    shown = {name.split("/")[1] for name in got if name.startswith("driver/")}
    assert got["drivers/omitted"] == ("count", 40 - len(shown))
    assert shown == {f"d{i:02}" for i in range(len(shown))}  # the first ones, by name


def test_a_report_is_a_valid_link_event() -> None:
    readings = health_readings(report(drivers=40), interval_s=60)
    event = Event(1, HEALTH_DEVICE, bytes(16), 1, 2, ClockSource.NTP, readings)
    # The link's own decoder enforces the reading and text limits.
    assert codec.decode(codec.encode(Batch((event,)))) == Batch((event,))


def test_system_stats_read_this_machine(tmp_path: Path) -> None:
    stats = read_system_stats(tmp_path)
    assert 0 < stats.disk_free <= stats.disk_total
    assert stats.rss is not None and stats.rss > 1_000_000
    assert stats.mem_available is not None and stats.mem_available > 0


# --- the core's view --------------------------------------------------------------------------


def stored(seq: int, readings: tuple[Reading, ...], device: str = HEALTH_DEVICE) -> StoredEvent:
    event = Event(seq, device, bytes(16), seq, 1_000 * 10**9, ClockSource.NTP, readings)
    return StoredEvent("acme", "gw-1", event, received_ns=1_000 * 10**9 + 250_000_000)


def test_the_latest_report_is_the_highest_seq_whatever_the_order() -> None:
    latest: dict[str, HealthReport] = {}
    fold_reports(latest, [stored(5, (Reading("interval", "s", 60),))])
    fold_reports(latest, [stored(3, (Reading("interval", "s", 1),))])
    fold_reports(latest, [stored(9, (Reading("lat", "lat", 1.0),), device="gps-1")])
    assert latest["gw-1"].seq == 5


def test_clock_offset_only_for_reports_sent_at_once_and_staleness_by_interval() -> None:
    sent_at_once = (
        Reading("interval", "s", 10),
        Reading("link/state", "", "online"),
        Reading("outbox/depth", "count", 0),
    )
    latest: dict[str, HealthReport] = {}
    fold_reports(latest, [stored(1, sent_at_once)])
    out = gateway_out(latest["gw-1"], now_ns=1_020 * 10**9)
    assert out.clock_offset_s == -0.25
    assert out.since_contact_s == 19.75
    assert not out.stale
    assert gateway_out(latest["gw-1"], now_ns=1_031 * 10**9).stale
    fold_reports(latest, [stored(2, (*sent_at_once[:2], Reading("outbox/depth", "count", 7)))])
    assert gateway_out(latest["gw-1"], now_ns=1_020 * 10**9).clock_offset_s is None


# --- a whole gateway with a stuck driver --------------------------------------------------------


class StuckDriver:
    """A driver whose task hangs: it never produces, refuses or retries anything."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.health = DriverHealth()

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        await trio.sleep_forever()


class TickingDriver(StuckDriver):
    """A healthy driver: a reading every 20 ms."""

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        while True:
            await send.send(Sample("thermo-1", (Reading("temperature", "Cel", 21.5),)))
            self.health.samples += 1
            await trio.sleep(0.02)


@pytest.fixture
async def notify_socket(tmp_path: Path) -> AsyncIterator[trio.socket.SocketType]:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(tmp_path / "notify"))
    with sock:
        yield sock


async def next_notice(sock: trio.socket.SocketType) -> dict[str, str]:
    data = await sock.recv(4096)
    return dict(line.split("=", 1) for line in data.decode().splitlines())


async def test_a_stuck_driver_stops_the_heartbeat_and_the_core_hears_which(
    core: RunningCore, tmp_path: Path, notify_socket: trio.socket.SocketType
) -> None:
    config = write_config(
        tmp_path / "gateway.toml",
        gateway_id="gw-1",
        tenant="acme",
        url=core.link_url,
        ca_file=str(core.home.ca_cert),
        token=core.gateway_token("gw-1"),
    )
    watchdog = Watchdog(
        Notifier(str(tmp_path / "notify")),
        interval_s=0.05,
        limits=StallLimits(driver_s=0.5, outbox_s=5, uplink_s=5),
    )
    gateway = Gateway(config, watchdog=watchdog, report_interval_s=0.1)
    gateway.drivers = [TickingDriver("thermo"), StuckDriver("stuck")]
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run, stop)
        with trio.fail_after(10):
            assert (await next_notice(notify_socket))["READY"] == "1"
            while "WATCHDOG" not in await next_notice(notify_socket):
                pass
            while "stalled" not in (notice := await next_notice(notify_socket)).get("STATUS", ""):
                pass
        assert "driver/stuck" in notice["STATUS"]
        assert "thermo" not in notice["STATUS"]
        assert "WATCHDOG" not in notice
        # Absence can only be shown by waiting: several more checks bring no heartbeat.
        with trio.move_on_after(0.3):
            while True:
                assert "WATCHDOG" not in await next_notice(notify_socket)
        body = await wait_for_gateway_report(core, lambda b: b["healthy"] is False)
        stop.set()
    assert body["stalled"] == ["driver/stuck"]
    readings = {r["n"]: r for r in body["report"]}
    assert readings["driver/thermo/samples"]["v"] > 0
    assert readings["driver/stuck/samples"]["v"] == 0
    assert readings["link/state"]["vs"] == "online"
    health = json.loads((config.gateway.data_dir / "health.json").read_text())
    assert [s["part"] for s in health["watchdog"]["stalled"]] == ["driver/stuck"]


async def wait_for_gateway_report(core: RunningCore, ready: Any) -> dict[str, Any]:
    """Poll the REST API (the core is another component: no event to await)."""
    token = core.api_token(("gateways:read",))
    async with httpx.AsyncClient(
        base_url=core.rest_url,
        verify=client_ssl_context(core.home.ca_cert),
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        with trio.fail_after(10):
            while True:
                response = await client.get("/api/v1/gateways/gw-1")
                if response.status_code == 200 and ready(body := response.json()):
                    listing = (await client.get("/api/v1/gateways")).json()
                    assert [g["gateway"] for g in listing["gateways"]] == ["gw-1"]
                    return body  # type: ignore[no-any-return]
                assert response.status_code in (200, 404), response.text
                await trio.sleep(0.05)


async def test_gateways_api_needs_its_scope_and_stays_in_the_tenant(core: RunningCore) -> None:
    with Registry(core.home.db_path) as registry:
        registry.create_tenant("other")
    from tests.cloud.test_rest import store

    now = time.time_ns()  # reports are looked up by wall time (cloud.api.gateways)
    report = Event(1, HEALTH_DEVICE, bytes(16), 1, now, ClockSource.NTP, (Reading("up", "s", 1),))
    await store(core, "gw-1", "acme", [report])
    async with httpx.AsyncClient(
        base_url=core.rest_url, verify=client_ssl_context(core.home.ca_cert)
    ) as client:

        async def get(path: str, scopes: tuple[str, ...], tenant: str = "acme") -> httpx.Response:
            token = core.api_token(scopes, tenant=tenant)
            return await client.get(path, headers={"Authorization": f"Bearer {token}"})

        mine = await get("/api/v1/gateways", ("gateways:read",))
        assert [g["gateway"] for g in mine.json()["gateways"]] == ["gw-1"]
        assert (await get("/api/v1/gateways", ("events:read",))).status_code == 403
        assert (await client.get("/api/v1/gateways")).status_code == 401
        theirs = await get("/api/v1/gateways", ("gateways:read",), tenant="other")
        assert theirs.json() == {"gateways": []}
        missing = await get("/api/v1/gateways/gw-1", ("gateways:read",), tenant="other")
        assert missing.status_code == 404
        assert (await get("/api/v1/gateways/GW!", ("gateways:read",))).status_code == 400
