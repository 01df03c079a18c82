"""End to end through real processes: Modbus slaves and the node firmware (each a simulator
on a pty) → gateway → core → REST, checking values, SenML units and timestamps.

Set up with the ``assetbook`` command as in tests/e2e/test_end_to_end.py (helpers copied
here, not shared, so the two modules can change independently); the gateway's sensors are
then replaced by a ``modbus-rtu`` and a ``node-serial`` table.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
import trio

from cloud.pki import client_ssl_context
from simulators.node import find_micropython
from tests.e2e.processes import spawn
from tests.support import free_port, require_program

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


def assetbook(*args: str, cwd: Path) -> str:
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

    def core(self) -> Any:
        return spawn("core", ["assetbook", "core", "run", "--home", str(self.home)])

    def gateway(self) -> Any:
        return spawn(
            "gateway", ["assetbook", "gateway", "run", "--config", str(self.gateway_config)]
        )

    def set_sensors(self, sensors: list[dict[str, Any]]) -> None:
        config = tomllib.loads(self.gateway_config.read_text())
        config["sensors"] = sensors
        self.gateway_config.write_text(tomli_w.dumps(config))

    async def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        async with httpx.AsyncClient(
            base_url=self.rest_url,
            verify=client_ssl_context(self.home / "tls" / "ca.pem"),
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

    async def wait_for(self, device: str, count: int) -> list[dict[str, Any]]:
        """Poll the REST API (another process) until ``count`` events of ``device``."""
        with trio.fail_after(60):
            while True:
                try:
                    events = [e for e in await self.events() if e["device"] == device]
                except httpx.TransportError:
                    events = []
                if len(events) >= count:
                    return events
                await trio.sleep(0.2)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    home = tmp_path / "core"
    link_port, rest_port = free_port(), free_port()
    assetbook(
        "core", "init", "--home", str(home), "--host", "localhost",
        "--link-port", str(link_port), "--rest-port", str(rest_port), cwd=tmp_path,
    )  # fmt: skip
    assetbook("tenant", "create", "acme", "--home", str(home), cwd=tmp_path)
    assetbook(
        "gateway", "create", "--home", str(home), "--tenant", "acme", "--id", "gw-1",
        "--out", str(tmp_path / "gw-1"), cwd=tmp_path,
    )  # fmt: skip
    token = assetbook(
        "token", "create", "--home", str(home), "--tenant", "acme", "--name", "tests",
        "--scope", "events:read", cwd=tmp_path,
    ).strip()  # fmt: skip
    return Site(
        tmp_path, home, tmp_path / "gw-1" / "gateway.toml", f"https://localhost:{rest_port}", token
    )


def readings(event: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [(r["n"], r.get("u", ""), r["v"]) for r in event["readings"]]


async def test_modbus_slaves_reach_the_rest_api(site: Site) -> None:
    link = site.root / "rs485"
    points = [
        {"name": "voltage", "unit": "V", "function": 4, "address": 0, "type": "float32"},
        {"name": "id", "unit": "", "function": 3, "address": 20},
    ]
    devices = [
        {"device": f"meter-{s}", "slave": s, "poll_s": 0.2, "timeout_ms": 100, "registers": points}
        for s in (1, 2)
    ]
    site.set_sensors(
        [{"kind": "modbus-rtu", "name": "rs485", "port": str(link), "baudrate": 19200,
          "devices": devices}]
    )  # fmt: skip
    sim = ["simulators.modbus", "--link", str(link), "--slaves", "1,2", "--step-s", "0.1"]
    before = time.time_ns()
    async with site.core() as core, spawn("modbus", sim) as slaves:
        await core.wait_for("link server listening|listening")
        await slaves.wait_for("ready")
        async with site.gateway():
            one = await site.wait_for("meter-1", 3)
            two = await site.wait_for("meter-2", 3)
    after = time.time_ns()
    voltages = {struct.unpack(">f", struct.pack(">f", 230 + t / 2))[0] for t in range(8)}
    for slave, events in ((1, one), (2, two)):
        for event in events:
            (v_name, v_unit, voltage), (i_name, i_unit, ident) = readings(event)
            assert (v_name, v_unit, i_name, i_unit) == ("voltage", "V", "id", "")
            assert voltage in voltages
            assert ident == slave
            # No device clock: the gateway stamps with its own, within the run.
            assert before <= event["wall_ns"] <= after


async def test_node_firmware_survives_a_gateway_restart(site: Site) -> None:
    if find_micropython() is None:
        require_program("micropython")
    link = site.root / "node.tty"
    site.set_sensors(
        [{"kind": "node-serial", "name": "node-1", "port": str(link), "device": "node-1"}]
    )
    count = 40
    sim = [
        "simulators.node", "--link", str(link), "--state", str(site.root / "boot"),
        "--count", str(count), "--period-ms", "50", "--resend-ms", "300", "--capacity", "150",
    ]  # fmt: skip
    async with site.core() as core, spawn("node", sim) as node:
        await core.wait_for("listening")
        await node.wait_for("ready")
        async with site.gateway() as gateway:
            await node.wait_for(r"acked (2[4-9]|[3-9]\d)")
            gateway.process.kill()  # mid-stream, no clean shutdown
            await gateway.process.wait()
        async with site.gateway():
            await node.wait_for("all acked")
            events = await site.wait_for("node-1", count)
    # The REST API lists by wall time; storage order is the gateway's seq. Back-dated
    # readings (older than FRESH_MS when received) may be a few ms out of wall order.
    values = [readings(e) for e in sorted(events, key=lambda e: e["seq"])]
    expected = [
        [
            ("temp", "Cel", 20 + (i % 64) / 4),
            ("rh", "%RH", 40 + (i % 32) / 2),
            ("vbat", "V", 3 + (i % 16) / 16),
        ]
        for i in range(count)
    ]
    first_seen = [list(v) for v in dict.fromkeys(tuple(v) for v in values)]
    assert first_seen == expected  # nothing lost, in order
    assert len(values) - count <= 4  # at most one unacknowledged batch stored twice
    for event in events:
        assert event["clock"] in {"none", "ntp", "rtc"}
        assert math.isfinite(event["wall_ns"])
