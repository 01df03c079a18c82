"""End to end through real processes: Modbus slaves and the node firmware (each a simulator
on a pty) → gateway → core → REST, checking values, SenML units and timestamps.

Set up with the ``assetbook`` command by the shared helper tests/e2e/sites.py; the
gateway's sensors are then replaced by a ``modbus-rtu`` and a ``node-serial`` table.
"""

from __future__ import annotations

import math
import struct
import time
from typing import TYPE_CHECKING, Any

import pytest

from simulators.node import find_micropython
from tests.e2e.processes import spawn
from tests.e2e.sites import Site, make_site
from tests.support import require_program

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


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
