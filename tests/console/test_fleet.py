"""Browser tests: the fleet pages, live events, provisioning and revoking gateways,
hostile text rendering inert, and ids of another tenant's objects."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio
from websockets.trio.client import connect

from cloud.pki import client_ssl_context
from cloud.registry import issue_gateway_credentials
from protocol import codec, limits
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Ack, Batch, Hello, Welcome
from tests.console.conftest import HOSTILE, Console
from tests.support import receive_skipping_commands

pytestmark = pytest.mark.slow


def test_gateways_show_health(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/")
    row = admin.locator("#gateways tr[data-gateway=gw-1]")
    assert row.locator(".badge").inner_text() == "online"
    cells = row.locator("td").all_inner_texts()
    assert cells[3] == "0"  # outbox depth from the seeded health report
    assert "online, 1 connects / 0 drops" in cells[4]


def test_devices_and_hostile_names_render_inert(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/devices")
    table = admin.locator("#devices")
    assert table.get_by_role("link", name="temp-1").is_visible()
    assert table.get_by_text("temperature = 22.9 Cel").is_visible()  # the 30th reading
    # The hostile device name and value are shown as text: no element, no script ran.
    assert table.get_by_role("link", name=HOSTILE).is_visible()
    assert admin.locator("#devices img").count() == 0
    assert admin.locator("#devices script").count() == 0
    assert admin.evaluate("window.pwned") is None
    table.get_by_role("link", name=HOSTILE).click()
    assert admin.locator("#device-name").inner_text() == HOSTILE
    assert admin.evaluate("window.pwned") is None


def test_device_page_draws_chart_and_track(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/devices/gw-1/temp-1")
    admin.locator("#chart[data-drawn=true] canvas").wait_for()
    series = json.loads(admin.locator("#chart").get_attribute("data-series"))
    assert len(series["t"]) == 30 and series["series"]["temperature"][0] == 20.0
    admin.goto(console.url + "/console/devices/gw-1/gps-1")
    points = admin.locator("#track polyline").get_attribute("points").split()
    assert len(points) == 20
    xy = [tuple(map(float, p.split(","))) for p in points]
    # Scaled into the 400x400 box with a 10 px margin; the longest side spans it.
    assert min(x for x, _ in xy) == 10.0 and min(y for _, y in xy) == 10.0
    assert max(max(x for x, _ in xy), max(y for _, y in xy)) == 390.0
    assert xy[0][1] == 390.0  # the first fix is the southernmost: bottom of the box


def test_another_tenants_device_looks_missing(admin: Any, console: Console) -> None:
    theirs = admin.goto(console.url + "/console/devices/gw-9/secret-dev")
    their_text = admin.locator("main").inner_text()
    missing = admin.goto(console.url + "/console/devices/gw-9/no-such-device")
    assert theirs is not None and missing is not None
    assert theirs.status == missing.status == 404
    assert admin.locator("main").inner_text() == their_text
    assert "secret-dev" not in their_text


def test_live_events_arrive_filtered_and_inert(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/live")
    admin.get_by_label("Device").fill(HOSTILE)
    admin.get_by_role("button", name="Watch").click()
    admin.locator("#live-status[data-state=open]").wait_for()
    token = issue_gateway_credentials(console.home, "acme", "gw-live").token
    trio.run(_send_events, console, token)
    row = admin.locator("#live-events tbody tr").first
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1:3] == ["gw-live", HOSTILE]
    assert admin.locator("#live-events tbody tr").count() == 1  # "other-dev" was filtered out
    assert admin.locator("#live-events img, #live-events script").count() == 0
    assert admin.evaluate("window.pwned") is None


def test_live_socket_refuses_other_origins_and_bad_tickets(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/live")
    admin.locator("#live-status[data-state=open]").wait_for()
    # From the page itself but with a made-up ticket: closed without a single event.
    result = admin.evaluate(
        """() => new Promise((done) => {
            const ws = new WebSocket("wss://" + location.host + "/console/live/socket");
            ws.onopen = () => ws.send(JSON.stringify({ticket: "forged"}));
            ws.onclose = (e) => done(e.code);
        })"""
    )
    assert result == 1008
    # A handshake with a foreign Origin is refused before any message.
    refused = trio.run(_foreign_origin_handshake, console)
    assert refused == 403


def test_provision_and_revoke_a_gateway(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/")
    admin.get_by_role("link", name="Provision a gateway").click()
    admin.get_by_label("Gateway id").fill("gw-new")
    admin.get_by_role("button", name="Create an enrolment code").click()
    boot = admin.locator("#boot-file").inner_text()
    assert 'gateway_id = "gw-new"' in boot and 'code = "' in boot
    assert "BEGIN CERTIFICATE" in boot
    admin.goto(console.url + "/console/")
    row = admin.locator("#gateways tr[data-gateway=gw-new]")
    row.get_by_role("button", name="Revoke").click()
    admin.wait_for_url("**/console/")
    assert row.locator(".badge").inner_text() == "revoked"


async def _send_events(console: Console, token: str) -> None:
    now = time.time_ns()
    events = tuple(
        Event(seq, device, bytes(16), seq, now + seq, ClockSource.NTP,
              (Reading("note", "", HOSTILE),))
        for seq, device in ((1, "other-dev"), (2, HOSTILE))
    )  # fmt: skip
    with trio.fail_after(10):
        async with connect(
            _link_url(console),
            ssl=client_ssl_context(console.home.ca_cert),
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
        ) as ws:
            await ws.send(codec.encode(Hello(1, "gw-live", "tests", bytes(16), 1)))
            assert isinstance(codec.decode(await ws.recv()), Welcome)  # type: ignore[arg-type]
            await ws.send(codec.encode(Batch(events)))
            assert isinstance(await receive_skipping_commands(ws), Ack)


def _link_url(console: Console) -> str:
    from cloud.home import load_config

    return load_config(console.home).link_url


async def _foreign_origin_handshake(console: Console) -> int:
    from websockets.exceptions import InvalidStatus

    url = console.url.replace("https://", "wss://") + "/console/live/socket"
    try:
        async with connect(url, ssl=client_ssl_context(console.home.ca_cert),
                           origin="https://evil.example"):  # type: ignore[arg-type]  # fmt: skip
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
