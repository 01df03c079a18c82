"""End to end through real processes: simulated GPS → gateway → core → REST.

Everything is set up with the ``assetbook`` command, as a user would (tests/e2e/sites.py).
The simulator holds its first fix until the gateway has opened the port (pyserial drops
input that arrived before), so the stored readings can be compared one for one with the
simulator's record.

Nothing lost, nothing doubled is checked two ways: the stored events equal the record, and
the stored sequence numbers are exactly 1..N (the outbox numbers every event it accepts, so
a gap would be a lost event and a repeat a doubled one).
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.e2e.processes import Process, spawn
from tests.e2e.sites import Site, make_site

pytestmark = pytest.mark.slow

START_TIME = "2024-05-01T12:00:00Z"
#: The gateway's own health reports are events too (gateway.health); they use seqs as well.
HEALTH_DEVICE = "_health"


@dataclass
class GpsSite(Site):
    """The shared site (tests/e2e/sites.py) with a GPS simulator on ``tty``."""

    tty: Path = Path()

    def gps(self, count: int, rate: float, *faults: str) -> Any:
        args = [
            "assetbook", "sim", "gps", "--hold", "--link", str(self.tty),
            "--count", str(count), "--rate", str(rate), "--start-time", START_TIME,
            "--record", str(self.root / "record.jsonl"), *faults,
        ]  # fmt: skip
        return spawn("gps", args)

    def record(self) -> list[dict[str, Any]]:
        lines = (self.root / "record.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["type"] == "sample"]

    async def wait_stored(self, count: int, *, sensors_only: bool = True) -> list[dict[str, Any]]:
        """Wait until the core holds at least ``count`` sensor events (or events of any
        device), and return every stored event (another process: poll)."""
        with trio.fail_after(60):
            while True:
                events = await self.poll_events()
                if len(sensor_events(events) if sensors_only else events) >= count:
                    return events
                await trio.sleep(0.2)


@pytest.fixture
def site(tmp_path: Path) -> GpsSite:
    tty = tmp_path / "gps.tty"
    base = make_site(tmp_path, gps_port=tty)
    return GpsSite(base.root, base.home, base.gateway_config, base.rest_url, base.api_token, tty)


async def start_streaming(gps: Process, gateway: Process) -> None:
    """Release the simulator once the gateway has opened the port."""
    await gps.wait_for("holding")
    await gateway.wait_for(r"gps-1: opened")
    assert gps.process.stdin is not None
    await gps.process.stdin.send_all(b"\n")


def sensor_events(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in stored if e["device"] != HEALTH_DEVICE]


def assert_same_readings(stored: list[dict[str, Any]], record: list[dict[str, Any]]) -> None:
    """Stored sensor events equal the simulator's record: values, units, times, in order."""
    stored = sensor_events(stored)
    assert len(stored) == len(record)
    for event, expected in zip(stored, record, strict=True):
        assert event["device"] == "gps-1"
        assert event["clock"] == "gps"
        assert event["wall_ns"] == expected["time_ns"]
        got = [(r["n"], r.get("u", ""), r["v"]) for r in event["readings"]]
        want = [tuple(r) for r in expected["readings"]]
        assert [(n, u) for n, u, _ in got] == [(n, u) for n, u, _ in want]
        for (name, _, value), (_, _, expected_value) in zip(got, want, strict=True):
            assert math.isclose(value, expected_value, rel_tol=1e-12, abs_tol=1e-9), name


def assert_exactly_once(stored: list[dict[str, Any]]) -> None:
    seqs = sorted(e["seq"] for e in stored)
    assert seqs == list(range(1, len(seqs) + 1)), "a gap is a lost event, a repeat a doubled one"


async def test_readings_arrive_exactly_as_the_sensor_sent_them(site: GpsSite) -> None:
    async with (
        site.core() as core,
        site.gps(40, 50, "--garbage-every", "7", "--corrupt-every", "9") as gps,
    ):
        await core.wait_for("core ready")
        async with site.gateway() as gateway:
            await start_streaming(gps, gateway)
            await gps.wait_for("sent 40 fixes")
            record = site.record()
            stored = await site.wait_stored(len(record))
            assert await gateway.stop(signal.SIGINT) == 0
    assert_same_readings(stored, record)
    assert_exactly_once(stored)
    health = json.loads((site.gateway_config.parent / "data" / "health.json").read_text())
    assert health["drivers"]["gps-1"]["errors_by_kind"]["checksum"] == 40 // 9
    assert health["drivers"]["gps-1"]["skipped_bytes"] > 0


async def test_core_killed_mid_stream_loses_and_doubles_nothing(site: GpsSite) -> None:
    async with site.gps(300, 100) as gps, site.gateway() as gateway:
        async with site.core() as core:
            await core.wait_for("core ready")
            await start_streaming(gps, gateway)
            await site.wait_stored(100)
            core.send_signal(signal.SIGKILL)
        await gateway.wait_for("link failed|protocol error|refused")
        async with site.core() as core:
            await core.wait_for("core ready")
            stored = await site.wait_stored(600)
    assert_exactly_once(stored)
    assert_same_readings(stored, site.record())


async def test_gateway_killed_mid_stream_delivers_its_outbox_exactly_once(site: GpsSite) -> None:
    async with site.core() as core, site.gps(300, 100) as gps:
        await core.wait_for("core ready")
        async with site.gateway() as gateway:
            await start_streaming(gps, gateway)
            await site.wait_stored(100)
            gateway.send_signal(signal.SIGKILL)
            await gateway.process.wait()
        written = _outbox_high_water(site)
        async with site.gateway() as gateway:
            stored = await site.wait_stored(written, sensors_only=False)
            await gateway.stop()
    assert_exactly_once(stored)
    assert len(stored) >= written
    # What was stored matches what the sensor sent, fix for fix, from the first one on.
    before_kill = sensor_events([e for e in stored if e["seq"] <= written])
    assert_same_readings(before_kill, site.record()[: len(before_kill)])


def _outbox_high_water(site: GpsSite) -> int:
    """The highest seq the killed gateway's outbox had ever issued."""
    path = site.gateway_config.parent / "data" / "outbox.sqlite"
    with sqlite3.connect(path) as db:
        (next_seq,) = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
    return int(next_seq) - 1


async def test_gateway_buffers_while_the_core_is_down_then_drains_in_order(site: GpsSite) -> None:
    async with site.gps(100, 100) as gps, site.gateway() as gateway:
        await start_streaming(gps, gateway)
        await gps.wait_for("sent 100 fixes")
        async with site.core() as core:
            await core.wait_for("core ready")
            stored = await site.wait_stored(200)
        await gateway.stop()
    assert_exactly_once(stored)
    assert_same_readings(stored, site.record())
    by_seq = sorted(stored, key=lambda e: e["seq"])
    received = [e["received_ns"] for e in by_seq]
    assert received == sorted(received), "drained out of order"
