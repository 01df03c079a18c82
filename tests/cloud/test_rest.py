"""The REST API over real HTTPS: scopes, tenant confinement, paging, errors, access log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from cloud.pki import client_ssl_context
from cloud.registry import Registry
from protocol import codec, limits
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Ack, Batch, Hello
from tests.support import RunningCore, receive_skipping_commands


@pytest.fixture
async def client(core: RunningCore) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=core.rest_url, verify=client_ssl_context(core.home.ca_cert)
    ) as client:
        yield client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def store(core: RunningCore, gateway: str, tenant: str, events: list[Event]) -> None:
    """Send ``events`` over a real link and wait for their ack."""
    from websockets.trio.client import connect

    token = core.gateway_token(gateway, tenant)
    async with connect(
        core.link_url,
        ssl=client_ssl_context(core.home.ca_cert),
        additional_headers=auth(token),
        subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
    ) as ws:
        await ws.send(codec.encode(Hello(1, gateway, "tests", bytes(16), 1)))
        await ws.recv()
        await ws.send(codec.encode(Batch(tuple(events))))
        with trio.fail_after(5):
            assert isinstance(await receive_skipping_commands(ws), Ack)


def events(device: str, count: int, start_ns: int = 1_700_000_000 * 10**9) -> list[Event]:
    return [
        Event(
            i + 1,
            device,
            bytes(16),
            i,
            start_ns + i * 10**9,
            ClockSource.GPS,
            (
                Reading("temperature", "Cel", 20.5),
                Reading("ok", "", True),
                Reading("raw", "", b"\x01"),
            ),
        )
        for i in range(count)
    ]


async def test_events_come_back_as_senml_with_time_fields(
    core: RunningCore, client: httpx.AsyncClient
) -> None:
    await store(core, "gw-1", "acme", events("dev-1", 2))
    response = await client.get("/api/v1/events", headers=auth(core.api_token()))
    assert response.status_code == 200
    first = response.json()["events"][0]
    assert first["readings"] == [
        {"n": "temperature", "u": "Cel", "v": 20.5},
        {"n": "ok", "vb": True},
        {"n": "raw", "vd": "AQ"},
    ]
    assert first["time"] == "2023-11-14T22:13:20.000000Z"
    assert (first["clock"], first["boot_id"], first["seq"]) == ("gps", "00" * 16, 1)
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["cache-control"] == "no-store"


async def test_paging_returns_every_event_once_in_order(
    core: RunningCore, client: httpx.AsyncClient
) -> None:
    await store(core, "gw-1", "acme", events("dev-1", 25))
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 10, "device": "dev-1"}
    while True:
        page = (
            await client.get("/api/v1/events", params=params, headers=auth(core.api_token()))
        ).json()
        seen.extend(e["seq"] for e in page["events"])
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == list(range(1, 26))


async def test_time_range_is_half_open(core: RunningCore, client: httpx.AsyncClient) -> None:
    start = 1_700_000_000 * 10**9
    await store(core, "gw-1", "acme", events("dev-1", 5, start))
    params = {"since_ns": start + 10**9, "until_ns": start + 3 * 10**9}
    page = (
        await client.get("/api/v1/events", params=params, headers=auth(core.api_token()))
    ).json()
    assert [e["seq"] for e in page["events"]] == [2, 3]


async def test_another_tenants_events_are_invisible(
    core: RunningCore, client: httpx.AsyncClient
) -> None:
    with Registry(core.home.db_path) as registry:
        registry.create_tenant("other")
    await store(core, "gw-other", "other", events("secret-dev", 3))
    page = (await client.get("/api/v1/events", headers=auth(core.api_token()))).json()
    assert page["events"] == []
    filtered = await client.get(
        "/api/v1/events", params={"gateway": "gw-other"}, headers=auth(core.api_token())
    )
    assert filtered.json()["events"] == []


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthorized"),
        ({"Authorization": "Bearer garbage"}, 401, "unauthorized"),
    ],
)
async def test_unauthenticated_requests_get_a_generic_json_error(
    core: RunningCore, client: httpx.AsyncClient, headers: dict[str, str], status: int, error: str
) -> None:
    response = await client.get("/api/v1/events", headers=headers)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == error
    assert response.headers["www-authenticate"].startswith("Bearer")
    logged = [json.loads(line) for line in core.home.access_log.read_text().splitlines()]
    entry = next(e for e in logged if e.get("request_id") == body["request_id"])
    assert entry["status"] == status
    assert entry["path"] == "/api/v1/events"


async def test_a_token_in_the_url_is_not_accepted(
    core: RunningCore, client: httpx.AsyncClient
) -> None:
    token = core.api_token()
    response = await client.get("/api/v1/events", params={"access_token": token, "token": token})
    assert response.status_code == 401
    assert token not in core.home.access_log.read_text()


async def test_a_token_without_the_scope_is_forbidden(
    core: RunningCore, client: httpx.AsyncClient
) -> None:
    token = core.api_token(scopes=("gateways:read",))
    response = await client.get("/api/v1/events", headers=auth(token))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"since_ns": -1}, "since_ns"),
        ({"gateway": "Not_An_Id"}, "gateway"),
        ({"device": "$where"}, "device"),
    ],
)
async def test_invalid_parameters_are_named(
    core: RunningCore, client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/v1/events", params=params, headers=auth(core.api_token()))
    assert response.status_code == 400
    assert field in response.json()["message"]


async def test_a_tampered_cursor_is_refused(core: RunningCore, client: httpx.AsyncClient) -> None:
    await store(core, "gw-1", "acme", events("dev-1", 3))
    token = core.api_token()
    page = (await client.get("/api/v1/events", params={"limit": 1}, headers=auth(token))).json()
    cursor = page["next_cursor"]
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    response = await client.get(
        "/api/v1/events", params={"limit": 1, "cursor": tampered}, headers=auth(token)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_cursor"


async def test_unknown_paths_answer_404_without_detail(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/../../etc/passwd")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "message", "request_id"}


async def test_the_openapi_document_describes_the_events_call(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/events" in document["paths"]
    assert (await client.get("/api/v1/health")).json() == {"status": "ok"}
