"""BLE simulator on a private D-Bus → real bleak → ble-adverts driver → samples, with faults.

The simulator runs as its own process (mock BlueZ + peripherals); the driver runs in this
process against that bus. Asserted values come from the simulator's documented schedule
(simulators.ble.peripherals.payloads docstring) and the formats' units.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from drivers.base import Sample
from drivers.ble.scanner import make_driver
from tests.support import require_program

pytestmark = pytest.mark.slow

BTHOME = "ble-5448e68f80a5"
RUUVI = "ble-cbb8334c884f"
BEACON = "ble-c0ffee000001"


@pytest.fixture
async def simulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[trio.Process]:
    require_program("dbus-daemon")
    code = "import sys; from simulators.ble import main; sys.exit(main(sys.argv[1:]))"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", code, "--period", "0.4", "--commands"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    with trio.fail_after(20):
        first = await readline(process)
        assert first.startswith("DBUS_SYSTEM_BUS_ADDRESS=")
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", first.split("=", 1)[1])
        assert await readline(process) == "ready"
    try:
        yield process
    finally:
        assert process.stdin is not None
        await process.stdin.aclose()
        with trio.move_on_after(5):
            await process.wait()
        process.kill()


async def readline(process: trio.Process) -> str:
    # One byte at a time so nothing after the line is consumed (two short lines only).
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        byte = await process.stdout.receive_some(1)
        assert byte, "simulator exited"
        line += byte
    return line.decode().strip()


async def command(process: trio.Process, line: str) -> None:
    assert process.stdin is not None
    await process.stdin.send_all(line.encode() + b"\n")


def values(sample: Sample) -> dict[str, tuple[str, Any]]:
    return {r.name: (r.unit, r.value) for r in sample.readings}


async def collect(receive: trio.MemoryReceiveChannel[Sample], want: set[str]) -> dict[str, Sample]:
    seen: dict[str, Sample] = {}
    while not want <= set(seen):
        sample = await receive.receive()
        seen.setdefault(sample.device, sample)
    return seen


async def test_every_simulated_device_decodes_with_units(simulator: trio.Process) -> None:
    driver = make_driver({"kind": "ble-adverts", "name": "ble", "stall_s": 5})
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(20):
            seen = await collect(receive, {BTHOME, RUUVI, BEACON})
        nursery.cancel_scope.cancel()
    bthome = values(seen[BTHOME])
    assert bthome["temperature"][0] == "Cel"
    assert bthome["temperature"][1] in {21.5, 21.75, 22.0, 22.25}
    assert bthome["humidity"] == ("%RH", 45.0)
    assert bthome["battery"] == ("%EL", 90)
    ruuvi = values(seen[RUUVI])
    assert ruuvi["humidity"] == ("%RH", 50.0)
    assert ruuvi["pressure"] == ("Pa", 100000)
    assert ruuvi["temperature"][1] in {20.0, 20.5, 21.0, 21.5}
    beacon = values(seen[BEACON])
    assert beacon["present"] == ("", True)
    assert driver.health.bad_frames == 0


async def test_stalled_adapter_is_detected_and_scan_restarted(simulator: trio.Process) -> None:
    driver = make_driver(
        {
            "kind": "ble-adverts",
            "name": "ble",
            "stall_s": 2,
            "backoff_s": 0.1,
            "expect_adverts": True,
        }
    )
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(30):
            await collect(receive, {BTHOME})
            await command(simulator, "stall")
            await driver.wait_scanning(2)  # the watchdog restarted the scan
            while receive.statistics().current_buffer_used:
                receive.receive_nowait()
            await collect(receive, {BTHOME, RUUVI})  # reports flow again
        nursery.cancel_scope.cancel()
    assert driver.health.errors_by_kind["stalled"] >= 1
    assert driver.health.restarts >= 1


async def test_corrupted_adverts_are_counted_and_device_recovers(simulator: trio.Process) -> None:
    driver = make_driver({"kind": "ble-adverts", "name": "ble", "stall_s": 5})
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(30):
            await collect(receive, {RUUVI})
            await command(simulator, "corrupt ruuvi 3")
            # The mock scans once a second and the period is 0.4 s, so some adverts are
            # never reported (as on a real radio): wait for the refusals that do arrive.
            while driver.health.bad_frames < 1:
                await receive.receive()
            await collect(receive, {RUUVI})
        nursery.cancel_scope.cancel()
    assert driver.health.bad_frames >= 1
    assert set(driver.health.errors_by_kind) & {"truncated", "format", "too_long"}


async def test_device_that_disappears_and_returns_is_seen_again(simulator: trio.Process) -> None:
    driver = make_driver(
        {
            "kind": "ble-adverts",
            "name": "ble",
            "stall_s": 5,
            "allow_addresses": ["CB:B8:33:4C:88:4F"],
        }
    )
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(30):
            await collect(receive, {RUUVI})
            await command(simulator, "hide ruuvi")
            await trio.sleep(1.5)  # several advert periods with the device gone
            while receive.statistics().current_buffer_used:
                receive.receive_nowait()
            await command(simulator, "show ruuvi")
            seen = await collect(receive, {RUUVI})
        nursery.cancel_scope.cancel()
    assert set(seen) == {RUUVI}  # the allowlist kept the others out ...
    assert driver.health.errors_by_kind["filtered"] > 0  # ... and counted them


async def test_a_refused_command_is_answered_and_the_simulator_goes_on(
    simulator: trio.Process,
) -> None:
    with trio.fail_after(30):
        await command(simulator, "hide ruuvi")
        assert await readline(simulator) == "hidden ruuvi"
        await command(simulator, "hide ruuvi")  # the mock refuses a second unregistration
        assert (await readline(simulator)).startswith("error: 'hide ruuvi' failed:")
        await command(simulator, "show ruuvi")
        assert await readline(simulator) == "shown ruuvi"
