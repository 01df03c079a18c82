"""End to end through real processes: a small site scenario (one device of every kind) →
``assetbook sim site`` → real gateway (real pyserial on ptys, real bleak on a private D-Bus
with the mock BlueZ) → real core → REST.

Every device of the scenario must have events stored, each with the SenML names and units
its format defines, values from the simulators' documented schedules (simulators/modbus.py,
simulators/site_ble.py, simulators/ble/gatt_peripheral.py, firmware/main.py) and
timestamps within the run. This is also the BLE-through-the-whole-path test: adverts and
GATT notifications reach the REST API through the gateway process.
"""

from __future__ import annotations

import json
import struct
import time
from typing import TYPE_CHECKING, Any

import pytest
import trio

from simulators.node import find_micropython
from tests.e2e.processes import spawn
from tests.e2e.sites import Site, make_site
from tests.support import require_program

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow

SCENARIO = """
[site]
ble_period_s = 0.5

[[gps]]
device = "gps-1"
rate = 5

[[modbus]]
name = "rs485-1"
step_s = 0.2
slaves = [{ device = "meter-7", slave = 7, poll_s = 0.2 }]

[[node]]
device = "node-1"
period_ms = 100

[[ble]]
kind = "bthome"
address = "54:48:E6:8F:80:A5"

[[ble]]
kind = "ruuvi"
address = "CB:B8:33:4C:88:4F"

[[ble]]
kind = "ibeacon"
address = "C0:FF:EE:00:00:01"

[[ble]]
kind = "eddystone"
address = "C0:FF:EE:00:00:02"

[[ble_gatt]]
address = "C0:FF:EE:00:10:00"
"""
BTHOME, RUUVI, IBEACON, EDDYSTONE, GATT = (
    "ble-5448e68f80a5", "ble-cbb8334c884f", "ble-c0ffee000001", "ble-c0ffee000002",
    "ble-c0ffee001000",
)  # fmt: skip
#: (name, unit) of every reading each format may send (docs/drivers.md).
GPS_UNITS = {"lat": "lat", "lon": "lon", "alt": "m", "sats": "count", "hdop": "/", "fix": "",
             "speed": "m/s", "course": "rad"}  # fmt: skip
EDDYSTONE_UNITS = {"present": "", "namespace": "", "instance": "", "txpower": "dBm",
                   "voltage": "V", "temperature": "Cel", "adv_count": "count",
                   "uptime": "s"}  # fmt: skip

#: What the GATT sensor notifies (simulators.ble.gatt_peripheral.values, index 0).
GATT_VALUES: dict[str, set[tuple[str, Any]]] = {
    "temperature": {("Cel", 21.5 + 0.25 * t) for t in range(4)},
    "humidity": {("%RH", 45.0 + t) for t in range(4)},
    "pressure": {("Pa", 101325.0 + 10 * t) for t in range(4)},
    "battery": {("%EL", 90)},  # SenML "percent of energy level" (RFC 8428 §12.1)
}


def value(record: dict[str, Any]) -> Any:
    """A SenML record's value, whichever field carries it (RFC 8428 §4.2)."""
    return next(record[k] for k in ("v", "vs", "vb", "vd") if k in record)


def readings(event: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {r["n"]: (r.get("u", ""), value(r)) for r in event["readings"]}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    require_program("dbus-daemon")
    if find_micropython() is None:
        require_program("micropython")
    return make_site(tmp_path)


async def test_every_device_of_a_site_reaches_the_rest_api(site: Site) -> None:
    scenario = site.root / "scenario.toml"
    scenario.write_text(SCENARIO)
    run = ["assetbook", "sim", "site", "--scenario", str(scenario), "--dir",
           str(site.root / "site"), "--gateway-config", str(site.gateway_config)]  # fmt: skip
    devices = ["gps-1", "meter-7", "node-1", BTHOME, RUUVI, IBEACON, EDDYSTONE, GATT]
    before = time.time_ns()
    async with spawn("site", run) as simulators, site.core() as core:
        await simulators.wait_for("site ready: 8 devices")
        info = json.loads((site.root / "site" / "site.json").read_text())
        assert info["skipped"] == []
        assert sorted(info["devices"]) == sorted(devices)
        await core.wait_for("core ready")
        async with site.gateway(env=info["env"]):
            stored = await wait_for_devices(site, devices, 2)
        after = time.time_ns()
        assert await simulators.stop() == 0  # a clean stop: no simulator died meanwhile
    for device in devices:
        for event in stored[device]:
            assert before - 10**9 <= event["wall_ns"] <= after, (device, event)
    check_gps(stored["gps-1"])
    check_modbus(stored["meter-7"])
    check_node(stored["node-1"])
    check_ble(stored)


async def wait_for_devices(site: Site, devices: list[str], count: int) -> dict[str, list[Any]]:
    """Poll the REST API until every device has ``count`` events; returns them by device."""
    with trio.fail_after(45):
        while True:
            by_device: dict[str, list[Any]] = {d: [] for d in devices}
            for event in await site.poll_events():
                by_device.setdefault(event["device"], []).append(event)
            if all(len(by_device[d]) >= count for d in devices):
                return by_device
            await trio.sleep(0.3)


def check_gps(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert event["clock"] == "gps"  # the receiver's time, not the gateway's
        got = readings(event)
        assert {"lat", "lon"} <= set(got)
        assert {n: u for n, (u, _) in got.items()} == {n: GPS_UNITS[n] for n in got}
        lat, lon = got["lat"][1], got["lon"][1]
        assert 48.117 <= lat <= 48.1191 and 11.5166 <= lon <= 11.5201  # the default route


def check_modbus(events: list[dict[str, Any]]) -> None:
    voltages = {struct.unpack(">f", struct.pack(">f", 230 + t / 2))[0] for t in range(8)}
    for event in events:
        got = readings(event)
        assert [(n, u) for n, (u, _) in got.items()] == [
            ("voltage", "V"), ("temp", "Cel"), ("energy", "J"),
        ]  # fmt: skip
        assert got["voltage"][1] in voltages
        assert 17.5 - 1e-9 <= got["temp"][1] <= 22.4 + 1e-9
        # 1000 * slave + tick watt-hours, in joules.
        assert got["energy"][1] >= 7000 * 3600
        assert got["energy"][1] % 3600 == pytest.approx(0, abs=1e-6)


def check_node(events: list[dict[str, Any]]) -> None:
    for event in events:
        got = readings(event)
        assert {n: u for n, (u, _) in got.items()} == {"temp": "Cel", "rh": "%RH", "vbat": "V"}
        assert 20 <= got["temp"][1] < 36 and 40 <= got["rh"][1] < 56 and 3 <= got["vbat"][1] < 4


def check_ble(stored: dict[str, list[dict[str, Any]]]) -> None:
    for event in stored[BTHOME]:
        got = readings(event)
        assert got["temperature"][0] == "Cel"
        assert got["temperature"][1] in {20.0, 20.25, 20.5, 20.75}
        assert got["humidity"] == ("%RH", 40.0)
        assert got["battery"] == ("%EL", 90)
    for event in stored[RUUVI]:
        got = readings(event)
        assert got["temperature"][0] == "Cel"
        assert got["temperature"][1] in {18.0, 18.5, 19.0, 19.5}
        assert got["humidity"] == ("%RH", 50.0)
        assert got["pressure"] == ("Pa", 100000)
    for event in stored[IBEACON]:
        got = readings(event)
        assert got["present"] == ("", True)
        assert (got["major"], got["minor"], got["txpower"]) == (("", 1), ("", 1), ("dBm", -59))
    for event in stored[EDDYSTONE]:
        got = readings(event)
        assert {n: u for n, (u, _) in got.items()} == {n: EDDYSTONE_UNITS[n] for n in got}
        if "instance" in got:  # UID frame
            assert got["instance"] == ("", "000000000000")
        else:  # TLM frame
            assert got["voltage"] == ("V", 3.0)
            assert got["temperature"] == ("Cel", 22.0)
    for event in stored[GATT]:
        # simulators.ble.gatt_peripheral.values(tick, 0); one notification per event.
        ((name, reading),) = readings(event).items()
        assert reading in GATT_VALUES[name], event
