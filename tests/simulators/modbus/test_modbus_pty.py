"""Modbus RTU over a real pty: simulated slaves → pyserial → ModbusBus → ModbusRtuDriver."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from drivers.base import Sample
from drivers.modbus.driver import ModbusRtuDriver, make_driver
from simulators.modbus import Faults, SlaveBus, run_modbus_simulator

SLAVE_ARGS = ("--slaves", "3,4", "--step-s", "0.05")
POINTS = [
    {"name": "voltage", "unit": "V", "function": 4, "address": 0, "type": "float32"},
    {"name": "temp", "unit": "Cel", "function": 4, "address": 2, "type": "int16", "scale": 0.1},
    {
        "name": "energy",
        "unit": "count",
        "function": 3,
        "address": 10,
        "type": "uint32",
        "word_order": "little",
    },
    {"name": "id", "unit": "", "function": 3, "address": 20},
]


def config(link: str, slaves: list[int], **extra: Any) -> dict[str, Any]:
    devices = [
        {"device": f"dev-{s}", "slave": s, "poll_s": 0.05, "timeout_ms": 60, "registers": POINTS}
        for s in slaves
    ]
    return {"kind": "modbus-rtu", "name": "bus", "port": link, "baudrate": 38400, **extra,
            "devices": devices}  # fmt: skip


def check_values(sample: Sample) -> None:
    """Each reading equals the simulator's documented formula for some tick (independent)."""
    slave = int(sample.device.removeprefix("dev-"))
    values = {r.name: r.value for r in sample.readings}
    energy = values["energy"]
    assert isinstance(energy, int)
    assert energy - 1000 * slave >= 0  # the energy register carries the tick
    assert values["id"] == slave
    assert [r.unit for r in sample.readings] == ["V", "Cel", "count", ""]
    # Registers are read one point at a time, so the tick may move on between points.
    voltages = {struct.unpack(">f", struct.pack(">f", 230 + (t % 8) / 2))[0] for t in range(8)}
    assert values["voltage"] in voltages
    temp = values["temp"]
    assert isinstance(temp, float)
    assert 17.5 - 1e-9 <= temp <= 22.4 + 1e-9
    assert math.isclose(temp * 10, round(temp * 10), abs_tol=1e-6)


async def collect(
    link: str, driver: ModbusRtuDriver, until: Any, limit_s: float = 10
) -> list[Sample]:
    send, receive = trio.open_memory_channel[Sample](math.inf)
    samples: list[Sample] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        with trio.fail_after(limit_s):
            async for sample in receive:
                samples.append(sample)
                if until(samples):
                    break
        nursery.cancel_scope.cancel()
    return samples


async def test_three_slaves_share_one_bus_with_faults(tmp_path: Path) -> None:
    link = str(tmp_path / "rs485")
    faults = Faults(noise_every=4, corrupt_every=7, truncate_every=9, seed=3)
    async with trio.open_nursery() as nursery:
        bus: SlaveBus = await nursery.start(
            run_modbus_simulator, link, frozenset({1, 2, 7}), 0.02, faults
        )
        driver = make_driver(config(link, [1, 2, 7]))

        def enough(samples: list[Sample]) -> bool:
            complete = [s for s in samples if len(s.readings) == 4]
            return all(sum(s.device == f"dev-{d}" for s in complete) >= 5 for d in (1, 2, 7))

        samples = await collect(link, driver, enough)
        nursery.cancel_scope.cancel()
    for sample in samples:
        if len(sample.readings) == 4:
            check_values(sample)
    health = driver.health
    assert health.errors_by_kind.get("crc", 0) + health.errors_by_kind.get("slave", 0) > 0
    assert health.errors_by_kind.get("timeout", 0) > 0  # truncated replies
    assert bus.replies > 0
    stats = driver.statistics()["devices"]
    assert all(stats[f"dev-{d}"]["online"] for d in (1, 2, 7))


async def test_a_silent_slave_is_counted_and_the_bus_keeps_serving_others(tmp_path: Path) -> None:
    link = str(tmp_path / "rs485")
    # Long enough for at least one whole poll (4 points x 2 attempts x 60 ms) to fail.
    faults = Faults(mute_slave=2, mute_after=4, mute_for_s=1.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_modbus_simulator, link, frozenset({1, 2}), 0.02, faults)
        driver = make_driver(config(link, [1, 2]))
        offline_seen = False

        def back_again(samples: list[Sample]) -> bool:
            nonlocal offline_seen
            if not driver.statistics()["devices"]["dev-2"]["online"]:
                offline_seen = True
            return offline_seen and samples[-1].device == "dev-2"

        samples = await collect(link, driver, back_again)
        nursery.cancel_scope.cancel()
    stats = driver.statistics()["devices"]
    assert stats["dev-2"]["timeouts"] >= 4
    assert stats["dev-2"]["online"]  # answered again after the mute ended
    during = [s for s in samples if s.device == "dev-1"]
    # Slave 1 kept being served while 2 was silent (each of its requests waits at most one
    # of slave 2's 60 ms timeouts, the fair queue on the bus).
    assert len(during) >= 3
    assert stats["dev-1"]["timeouts"] == 0


async def test_unplugged_port_is_reopened_behind_the_same_path(tmp_path: Path) -> None:
    link = str(tmp_path / "rs485")
    faults = Faults(unplug_after=6, unplug_for_s=0.3)
    async with trio.open_nursery() as nursery:
        bus: SlaveBus = await nursery.start(
            run_modbus_simulator, link, frozenset({1}), 0.02, faults
        )
        driver = make_driver(config(link, [1]))
        samples = await collect(link, driver, lambda _s: driver.health.restarts >= 1 and
                                bus.replies >= 20)  # fmt: skip
        nursery.cancel_scope.cancel()
    assert driver.health.errors_by_kind.get("serial", 0) >= 1
    assert driver.health.restarts == 1
    assert bus.replies >= 20  # the bus served requests on the new pty
    assert samples


async def test_simulator_cli_answers_a_real_driver(tmp_path: Path) -> None:
    link = str(tmp_path / "rs485")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "simulators.modbus", "--link", link, *SLAVE_ARGS],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(10):
            assert b"ready" in await process.stdout.receive_some()
        driver = make_driver(config(link, [3, 4]))
        samples = await collect(link, driver, lambda s: len({x.device for x in s}) == 2)
    finally:
        process.terminate()
        await process.wait()
    assert process.returncode == 0  # SIGTERM is a clean stop
    for sample in samples:
        check_values(sample)
