"""GATT simulator on a private D-Bus → real bleak → ble-gatt driver → samples, with faults.

The simulator runs as its own process (mock BlueZ + ESS sensors on their own adapters); the
driver runs in this process against that bus and connects from ``hci0``. Asserted values
come from the simulator's schedule (simulators.ble.gatt_peripheral.values docstring).

Every wait is on an event or a condition (a sample, a link, a counted failure, the line
with which the simulator acknowledges a fault command); the ``fail_after`` bounds are
generous because they only decide when a test has failed, not how fast it must be. If the
simulator process dies, the next command or wait fails at once with its stderr instead of
running into the bound while the driver retries against a bus that is gone.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final, NoReturn

import pytest
import trio

from drivers.base import Sample
from drivers.ble.gatt import BleGattDriver, make_driver
from simulators.ble.gatt import address_of
from tests.support import require_program

pytestmark = pytest.mark.slow

FIRST, SECOND = address_of(0), address_of(1)
FIRST_ID, SECOND_ID = "ble-c0ffee001001", "ble-c0ffee001002"
NAMES = {"temperature", "humidity", "pressure", "battery"}
#: Failure bound of each test's waits (a loaded 2-core machine passes in well under 10 s).
BOUND_S: Final = 90


class Simulator:
    """A running ``assetbook sim ble-gatt --commands`` process."""

    def __init__(self, process: trio.Process, stderr: Path) -> None:
        self.process = process
        self.stderr = stderr

    async def readline(self) -> str:
        # One byte at a time so nothing after the line is consumed (short lines only).
        assert self.process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            byte = await self.process.stdout.receive_some(1)
            if not byte:
                self.fail("the simulator exited")
            line += byte
        return line.decode().strip()

    async def command(self, line: str) -> str:
        """Send one fault command and return the simulator's acknowledgement."""
        assert self.process.stdin is not None
        try:
            await self.process.stdin.send_all(line.encode() + b"\n")
        except trio.BrokenResourceError:
            self.fail(f"the simulator exited before {line!r}")
        return await self.readline()

    def fail(self, why: str) -> NoReturn:
        text = self.stderr.read_text(errors="replace")[-4000:]
        pytest.fail(f"{why}; its stderr ends with:\n{text}")


StartSimulator = Callable[[int], Awaitable[Simulator]]


async def watch(
    simulator: Simulator,
    *,
    task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fail the test as soon as the simulator exits, unless cancelled first."""
    with trio.CancelScope() as scope:
        task_status.started(scope)
        status = await simulator.process.wait()
        simulator.fail(f"the simulator exited with status {status}")


@pytest.fixture
async def start_simulator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[StartSimulator]:
    """Start ``assetbook sim ble-gatt --count N`` and point bleak at its bus."""
    require_program("dbus-daemon")
    simulators: list[Simulator] = []
    watchers: list[trio.CancelScope] = []

    async def start(count: int) -> Simulator:
        code = "import sys; from simulators.ble.gatt import main; sys.exit(main(sys.argv[1:]))"
        stderr = tmp_path / f"simulator-{len(simulators)}.stderr"
        argv = [sys.executable, "-c", code, "--count", str(count), "--period", "0.2", "--commands"]
        with stderr.open("wb") as sink:  # the child keeps its own descriptor
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=sink,
            )
        simulator = Simulator(process, stderr)
        simulators.append(simulator)
        with trio.fail_after(BOUND_S):
            first = await simulator.readline()
            assert first.startswith("DBUS_SYSTEM_BUS_ADDRESS=")
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", first.split("=", 1)[1])
            assert await simulator.readline() == "ready"
        watchers.append(await nursery.start(watch, simulator))
        return simulator

    yield start
    for scope in watchers:
        scope.cancel()
    for simulator in simulators:
        process = simulator.process
        assert process.stdin is not None
        await process.stdin.aclose()  # end of commands: the simulator exits
        with trio.move_on_after(10):
            await process.wait()
        process.kill()
        await process.wait()


def driver_for(*addresses: str, **extra: object) -> BleGattDriver:
    table: dict[str, object] = {
        "kind": "ble-gatt",
        "name": "env",
        "devices": [{"address": a} for a in addresses],
        # Above the mock's 1 s scan interval: a scan on a busy machine still finds a
        # device that is in range, so "unreachable" means out of range.
        "connect_timeout_s": 3,
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
    start_simulator: StartSimulator,
) -> None:
    simulator = await start_simulator(2)
    driver = driver_for(FIRST, SECOND)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(BOUND_S):
            seen = await names_seen(receive, {FIRST_ID: NAMES, SECOND_ID: NAMES})
            assert driver.health.bad_frames == 0
            assert await simulator.command("corrupt 0 3") == "corrupting 0 3"
            assert await simulator.command("unknown 1 3") == "unknown 1 3"
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


async def test_out_of_range_and_back_reconnects_with_backoff(
    start_simulator: StartSimulator,
) -> None:
    simulator = await start_simulator(1)
    driver = driver_for(FIRST)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(BOUND_S):
            await driver.wait_linked(FIRST)
            assert await simulator.command("hide 0") == "hidden 0"
            assert await simulator.command("hide 0") == "hidden 0"  # a repeat changes nothing
            await driver.wait_failures("disconnected", 1)
            await driver.wait_failures("unreachable", 1)  # a scan that cannot find it
            assert await simulator.command("show 0") == "shown 0"
            assert await simulator.command("show 0") == "shown 0"
            await driver.wait_linked(FIRST, 2)
            drain(receive)
            await names_seen(receive, {FIRST_ID: NAMES})
            assert await simulator.command("drop 0") == "dropped 0"  # the device stays in range
            await driver.wait_linked(FIRST, 3)
            drain(receive)
            await names_seen(receive, {FIRST_ID: NAMES})
        nursery.cancel_scope.cancel()
    assert driver.health.errors_by_kind["disconnected"] == 2
    assert driver.health.restarts == 2


async def test_connection_cap_makes_devices_wait_their_turn(
    start_simulator: StartSimulator,
) -> None:
    # Both device tasks start together and Trio picks which runs first, so either device
    # may take the only slot: the test finds out which and asserts the property (never
    # more than max_connections at once; a waiting device is served as soon as a slot
    # frees up), not an order.
    simulator = await start_simulator(2)
    driver = driver_for(FIRST, SECOND, max_connections=1)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(BOUND_S):
            holder_id = (await receive.receive()).device
            index = 0 if holder_id == FIRST_ID else 1
            holder, waiter = (FIRST, SECOND)[index], (SECOND, FIRST)[index]
            waiter_id = (SECOND_ID, FIRST_ID)[index]
            for _ in range(8):  # two rounds of notifications while the other one waits
                assert (await receive.receive()).device == holder_id
            assert driver.connected == {holder}
            assert (driver.links(holder), driver.links(waiter)) == (1, 0)

            assert await simulator.command(f"hide {index}") == f"hidden {index}"
            await driver.wait_linked(waiter)  # the waiting device got the freed slot
            drain(receive)
            await names_seen(receive, {waiter_id: NAMES})

            # And back: the first holder, in range again, is served once the other one goes
            # out of range (whichever of the two then asks for the slot first).
            assert await simulator.command(f"show {index}") == f"shown {index}"
            assert await simulator.command(f"hide {1 - index}") == f"hidden {1 - index}"
            await driver.wait_linked(holder, 2)
            drain(receive)
            await names_seen(receive, {holder_id: NAMES})
        nursery.cancel_scope.cancel()
    assert driver.peak_connections == 1


async def test_a_quiet_link_that_answers_a_read_is_kept(
    start_simulator: StartSimulator,
) -> None:
    # A sensor that notifies only on change looks like this: the link is up, nothing comes.
    simulator = await start_simulator(1)
    driver = driver_for(FIRST, stall_s=1)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(BOUND_S):
            await driver.wait_linked(FIRST)
            ack = await simulator.command("stall")
            assert ack == "stalled 4"  # its four subscriptions stopped forwarding
            while driver.probes < 1:  # each probe that answers sends its sample
                await receive.receive()
            # Notifications that were on their way are long delivered: from here on every
            # sample comes from a probe read, and the probes go round all four.
            drain(receive)
            probes = driver.probes
            await names_seen(receive, {FIRST_ID: NAMES})
        nursery.cancel_scope.cancel()
    assert driver.probes >= probes + 3
    assert "stalled" not in driver.health.errors_by_kind
    assert driver.links(FIRST) == 1
    assert driver.health.restarts == 0


async def test_a_device_that_stops_answering_is_detected_as_a_stall(
    start_simulator: StartSimulator,
) -> None:
    simulator = await start_simulator(1)
    # 1 s is five notification periods: only the injected fault can fail the probe read.
    driver = driver_for(FIRST, stall_s=1)
    send, receive = trio.open_memory_channel[Sample](1000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(BOUND_S):
            await driver.wait_linked(FIRST)
            assert await simulator.command("freeze 0") == "frozen 0"
            await driver.wait_failures("stalled", 1)  # the probe read failed: reconnect
            assert await simulator.command("thaw 0") == "thawed 0"
            await driver.wait_linked(FIRST, 2)
            drain(receive)
            await names_seen(receive, {FIRST_ID: NAMES})
        nursery.cancel_scope.cancel()
    assert driver.health.errors_by_kind["stalled"] >= 1
    assert "disconnected" not in driver.health.errors_by_kind
    assert driver.health.restarts >= 1
