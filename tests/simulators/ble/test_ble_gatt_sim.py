"""GATT simulator on a private D-Bus → real bleak → ble-gatt driver → samples, with faults.

The simulator runs as its own process (mock BlueZ + ESS sensors on their own adapters); the
driver runs in this process against that bus and connects from ``hci0``. Asserted values
come from the simulator's schedule (simulators.ble.gatt_peripheral.values docstring).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from drivers.base import Sample
from drivers.ble.gatt import BleGattDriver, make_driver
from simulators.ble.gatt import address_of
from tests.simulators.ble.test_ble_scan_sim import command, readline
from tests.support import require_program

pytestmark = pytest.mark.slow

FIRST, SECOND = address_of(0), address_of(1)
FIRST_ID, SECOND_ID = "ble-c0ffee001001", "ble-c0ffee001002"
NAMES = {"temperature", "humidity", "pressure", "battery"}

Simulator = Callable[[int], Any]


@pytest.fixture
async def start_simulator(
    monkeypatch: pytest.MonkeyPatch, nursery: trio.Nursery
) -> AsyncIterator[Callable[[int], Any]]:
    """Start ``assetbook sim ble-gatt --count N`` and point bleak at its bus."""
    require_program("dbus-daemon")
    processes: list[trio.Process] = []

    async def start(count: int) -> trio.Process:
        code = "import sys; from simulators.ble.gatt import main; sys.exit(main(sys.argv[1:]))"
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", code, "--count", str(count), "--period", "0.2", "--commands"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        with trio.fail_after(20):
            first = await readline(process)
            assert first.startswith("DBUS_SYSTEM_BUS_ADDRESS=")
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", first.split("=", 1)[1])
            assert await readline(process) == "ready"
        return process

    yield start
    for process in processes:
        assert process.stdin is not None
        await process.stdin.aclose()
        with trio.move_on_after(5):
            await process.wait()
        process.kill()


def driver_for(*addresses: str, **extra: object) -> BleGattDriver:
    table: dict[str, object] = {
        "kind": "ble-gatt",
        "name": "env",
        "devices": [{"address": a} for a in addresses],
        "connect_timeout_s": 2,
        "backoff_s": 0.1,
        "max_backoff_s": 0.5,
        "stall_s": 5,
        **extra,
    }
    return make_driver(table)


async def names_seen(
    receive: trio.MemoryReceiveChannel[Sample], want: dict[str, set[str]]
) -> dict[str, dict[str, tuple[str, Any]]]:
    """Receive until every device in ``want`` has sent every reading name listed for it."""
    seen: dict[str, dict[str, tuple[str, Any]]] = {}
    while any(not names <= set(seen.get(device, {})) for device, names in want.items()):
        sample = await receive.receive()
        for reading in sample.readings:
            seen.setdefault(sample.device, {})[reading.name] = (reading.unit, reading.value)
    return seen


def drain(receive: trio.MemoryReceiveChannel[Sample]) -> None:
    while receive.statistics().current_buffer_used:
        receive.receive_nowait()


async def test_notifications_become_samples_and_bad_values_are_counted(
    start_simulator: Simulator,
) -> None:
    simulator = await start_simulator(2)
    driver = driver_for(FIRST, SECOND)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(30):
            seen = await names_seen(receive, {FIRST_ID: NAMES, SECOND_ID: NAMES})
            assert driver.health.bad_frames == 0
            await command(simulator, "corrupt 0 3")
            await command(simulator, "unknown 1 3")
            while (
                driver.health.bad_frames < 4 or "unknown_value" not in driver.health.errors_by_kind
            ):
                await receive.receive()
            drain(receive)
            await names_seen(receive, {FIRST_ID: NAMES, SECOND_ID: NAMES})  # still flowing
        nursery.cancel_scope.cancel()
    for index, device in enumerate((FIRST_ID, SECOND_ID)):
        values = seen[device]
        assert values["temperature"][0] == "Cel"
        assert values["temperature"][1] in {21.5 + index + 0.25 * k for k in range(4)}
        assert values["humidity"][0] == "%RH"
        assert values["humidity"][1] in {45.0, 46.0, 47.0, 48.0}
        assert values["pressure"][0] == "Pa"
        assert values["pressure"][1] in {101325.0 + 10 * k for k in range(4)}
        assert values["battery"] == ("%EL", 90 - index)
    assert driver.health.errors_by_kind["truncated"] >= 4  # one per characteristic per round
    assert driver.health.errors_by_kind["unknown_value"] >= 2
    assert driver.health.restarts == 0


async def test_out_of_range_and_back_reconnects_with_backoff(start_simulator: Simulator) -> None:
    simulator = await start_simulator(1)
    driver = driver_for(FIRST, connect_timeout_s=0.5)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(40):
            await driver.wait_linked(FIRST)
            await command(simulator, "hide 0")
            await driver.wait_failures("unreachable", 2)  # scans that cannot find it
            await command(simulator, "show 0")
            await driver.wait_linked(FIRST, 2)
            drain(receive)
            await names_seen(receive, {FIRST_ID: NAMES})
            await command(simulator, "drop 0")  # the link drops, the device stays in range
            await driver.wait_linked(FIRST, 3)
            drain(receive)
            await names_seen(receive, {FIRST_ID: NAMES})
        nursery.cancel_scope.cancel()
    assert driver.health.errors_by_kind["disconnected"] == 2
    assert driver.health.restarts == 2


async def test_connection_cap_makes_devices_wait_their_turn(start_simulator: Simulator) -> None:
    simulator = await start_simulator(2)
    driver = driver_for(FIRST, SECOND, max_connections=1)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(40):
            holder = (await receive.receive()).device  # whichever took the only slot
            for _ in range(20):  # several rounds while the other device waits
                assert (await receive.receive()).device == holder
            index = 0 if holder == FIRST_ID else 1
            assert driver.connected == {(FIRST, SECOND)[index]}
            await command(simulator, f"hide {index}")
            await driver.wait_linked((SECOND, FIRST)[index])  # the other got the free slot
            drain(receive)
            await names_seen(receive, {(SECOND_ID, FIRST_ID)[index]: NAMES})
        nursery.cancel_scope.cancel()
    assert driver.peak_connections == 1


async def test_adapter_that_stops_reporting_is_detected_as_a_stall(
    start_simulator: Simulator,
) -> None:
    simulator = await start_simulator(1)
    driver = driver_for(FIRST, stall_s=1)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(30):
            await driver.wait_linked(FIRST)
            await command(simulator, "stall")
            await driver.wait_linked(FIRST, 2)  # the watchdog disconnected and reconnected
            drain(receive)
            await names_seen(receive, {FIRST_ID: NAMES})
        nursery.cancel_scope.cancel()
    assert driver.health.errors_by_kind["stalled"] == 1
    assert driver.health.restarts == 1
