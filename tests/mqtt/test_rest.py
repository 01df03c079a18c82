"""MQTT credentials over REST: scope ``mqtt:admin``, tenant confinement, token shown once."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import httpx

from tests.mqtt.clients import client, connect_error, in_asyncio

if TYPE_CHECKING:
    from tests.mqtt.conftest import Broker
    from tests.support import RunningCore


async def test_create_list_revoke(core: RunningCore, broker: Broker) -> None:
    verify = ssl.create_default_context(cafile=str(core.home.ca_cert))
    admin = {"Authorization": f"Bearer {core.api_token(('mqtt:admin',))}"}
    reader = {"Authorization": f"Bearer {core.api_token(('events:read',))}"}
    async with httpx.AsyncClient(base_url=core.rest_url, verify=verify) as http:
        body = {"name": "app", "publish": ["up/+"], "subscribe": ["ev/#"]}
        denied = await http.post("/api/v1/mqtt/credentials", json=body, headers=reader)
        assert denied.status_code == 403
        bad = await http.post(
            "/api/v1/mqtt/credentials", json={**body, "publish": ["$SYS/#"]}, headers=admin
        )
        assert bad.status_code == 400
        made = await http.post("/api/v1/mqtt/credentials", json=body, headers=admin)
        assert made.status_code == 201, made.text
        issued = made.json()
        assert issued["username"] == "acme.app"
        assert issued["publish"] == ["t/acme/up/+"]
        listed = await http.get("/api/v1/mqtt/credentials", headers=admin)
        assert [c["username"] for c in listed.json()] == ["acme.app"]
        assert "token" not in listed.json()[0]  # shown once, at creation only
        again = await http.post("/api/v1/mqtt/credentials", json=body, headers=admin)
        assert again.status_code == 409

        async def connects() -> object:
            return await connect_error(client(broker, "acme.app", issued["token"]))

        assert await in_asyncio(connects) is None
        gone = await http.delete("/api/v1/mqtt/credentials/app", headers=admin)
        assert gone.status_code == 200
        assert gone.json()["revoked_at"] is not None
        assert await in_asyncio(connects) is not None
