"""A core home, a tenant, a gateway config and a REST token, made with the ``assetbook``
command as a user would, for end-to-end tests with real processes.

:func:`make_site` does the setup; :class:`Site` starts the core and the gateway
(:mod:`tests.e2e.processes`), rewrites the gateway's sensors and reads the stored events
back over HTTPS. Tests add what is particular to them (a simulator, a record to compare).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import tomli_w
import trio

from cloud.pki import client_ssl_context
from tests.e2e.processes import spawn
from tests.support import free_port

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from tests.e2e.processes import Process

TENANT = "acme"
GATEWAY = "gw-1"


def assetbook(*args: str, cwd: Path) -> str:
    """Run one CLI command to completion and return its standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "assetbook", *args],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass
class Site:
    root: Path
    home: Path
    gateway_config: Path
    rest_url: str
    api_token: str

    @property
    def ca(self) -> Path:
        return self.home / "tls" / "ca.pem"

    def core(self) -> AbstractAsyncContextManager[Process]:
        return spawn("core", ["assetbook", "core", "run", "--home", str(self.home)])

    def gateway(self, env: dict[str, str] | None = None) -> AbstractAsyncContextManager[Process]:
        args = ["assetbook", "gateway", "run", "--config", str(self.gateway_config)]
        return spawn("gateway", args, env=env)

    def set_sensors(self, sensors: list[dict[str, Any]]) -> None:
        config = tomllib.loads(self.gateway_config.read_text())
        config["sensors"] = sensors
        self.gateway_config.write_text(tomli_w.dumps(config))

    async def events(self) -> list[dict[str, Any]]:
        """Every stored event, following the REST API's pages."""
        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        async with httpx.AsyncClient(
            base_url=self.rest_url,
            verify=client_ssl_context(self.ca),
            headers={"Authorization": f"Bearer {self.api_token}"},
        ) as client:
            while True:
                response = await client.get("/api/v1/events", params=params)
                assert response.status_code == 200, response.text
                page = response.json()
                events.extend(page["events"])
                if not page["next_cursor"]:
                    return events
                params["cursor"] = page["next_cursor"]

    async def poll_events(self) -> list[dict[str, Any]]:
        """Every stored event, or none while the core is (re)starting."""
        try:
            return await self.events()
        except httpx.TransportError:
            return []

    async def wait_for(self, device: str, count: int) -> list[dict[str, Any]]:
        """Poll the REST API (another process) until ``count`` events of ``device``."""
        with trio.fail_after(60):
            while True:
                events = [e for e in await self.poll_events() if e["device"] == device]
                if len(events) >= count:
                    return events
                await trio.sleep(0.2)


def make_site(root: Path, *, gps_port: Path | None = None) -> Site:
    """Create the core home, tenant ``acme``, gateway ``gw-1`` (with a GPS on ``gps_port``
    when given) and an ``events:read`` token under ``root``."""
    home = root / "core"
    rest_port = free_port()
    assetbook(
        "core", "init", "--home", str(home), "--host", "localhost",
        "--link-port", str(free_port()), "--rest-port", str(rest_port),
        "--http-port", str(free_port()),
        cwd=root,
    )  # fmt: skip
    assetbook("tenant", "create", TENANT, "--home", str(home), cwd=root)
    gps = ["--gps-port", str(gps_port)] if gps_port is not None else []
    assetbook(
        "gateway", "create", "--home", str(home), "--tenant", TENANT, "--id", GATEWAY,
        "--out", str(root / GATEWAY), *gps,
        cwd=root,
    )  # fmt: skip
    token = assetbook(
        "token", "create", "--home", str(home), "--tenant", TENANT, "--name", "tests",
        "--scope", "events:read",
        cwd=root,
    ).strip()  # fmt: skip
    config = root / GATEWAY / "gateway.toml"
    return Site(root, home, config, f"https://localhost:{rest_port}", token)
