"""Remote configuration end to end: applied and reported; refused with a reason; a change that
cuts the uplink rolled back and reported when the link returns. Also the REST surface."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio

from cloud.fleet.store import FleetStore
from cloud.pki import client_ssl_context
from gateway.enrol import enrol
from gateway.remote_config import ManagedGateway
from tests.lifecycle.lifecycle_support import prepare_boot, wait_reported
from tests.support import TENANT, RunningCore, free_port


def set_config(core: RunningCore, document: dict[str, object]) -> int:
    with FleetStore(core.home.db_path) as store:
        return store.set_config(TENANT, "gw-1", document).version


async def test_configuration_applied_refused_and_rolled_back(
    core: RunningCore, tmp_path: Path
) -> None:
    prepare_boot(core.home, tmp_path / "boot", "gw-1")
    config = await enrol(tmp_path / "boot", tmp_path / "gw")
    gateway = ManagedGateway(config)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run, stop)
        await wait_reported(core.home, "gw-1", "config_version", 0)

        good = set_config(core, {"log_level": "debug", "uplink": {"batch_max_events": 100}})
        await wait_reported(core.home, "gw-1", "config_version", good)
        assert gateway.gateway is not None
        assert gateway.gateway.config.uplink.batch_max_events == 100
        assert gateway.gateway.config.gateway.log_level == "debug"

        invalid = set_config(core, {"sensors": [{"kind": "no-such-sensor", "name": "s1"}]})
        reported = await wait_reported(core.home, "gw-1", "refused_version", invalid)
        assert "no-such-sensor" in reported["refused_reason"]
        assert reported["config_version"] == good

        nowhere = f"wss://127.0.0.1:{free_port()}/link"
        cut = set_config(core, {"uplink": {"url": nowhere}, "rollback_after_s": 2})
        reported = await wait_reported(core.home, "gw-1", "refused_version", cut, timeout_s=30)
        assert "rolled back" in reported["refused_reason"]
        assert reported["config_version"] == good
        assert gateway.gateway.config.uplink.url == core.link_url
        stop.set()


async def test_the_operator_sets_and_reads_configuration_over_rest(
    core: RunningCore, tmp_path: Path
) -> None:
    prepare_boot(core.home, tmp_path / "boot", "gw-1")
    writer = core.api_token(("fleet:read", "fleet:write"))
    reader = core.api_token(("fleet:read",))
    async with httpx.AsyncClient(
        base_url=core.rest_url, verify=client_ssl_context(core.home.ca_cert)
    ) as client:
        url = "/api/v1/fleet/gateways/gw-1/config"
        body = {"config": {"log_level": "warning"}}
        denied = await client.put(url, json=body, headers={"Authorization": f"Bearer {reader}"})
        assert denied.status_code == 403
        bad = await client.put(
            url, json={"config": {"colour": "red"}}, headers={"Authorization": f"Bearer {writer}"}
        )
        assert bad.status_code == 400
        assert "colour" in bad.json()["message"]
        ok = await client.put(url, json=body, headers={"Authorization": f"Bearer {writer}"})
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"gateway_id": "gw-1", "version": 1}
        state = await client.get(
            "/api/v1/fleet/gateways/gw-1", headers={"Authorization": f"Bearer {reader}"}
        )
        assert state.json()["desired_version"] == 1
        assert state.json()["desired"] == {"log_level": "warning"}
        missing = await client.get(
            "/api/v1/fleet/gateways/gw-404", headers={"Authorization": f"Bearer {reader}"}
        )
        assert missing.status_code == 404
    assert json.loads(json.dumps(state.json()["reported"])) == {}
