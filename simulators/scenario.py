"""Site scenario files: the pure parser and the values it produces.

A scenario (format: docs/simulators.md; the shipped one is ``simulators/scenarios/site.toml``)
lists simulated devices of every kind: ``[[gps]]`` receivers on routes, ``[[modbus]]`` RTU
buses with several slaves, MicroPython ``[[node]]``s, ``[[ble]]`` advertisers and
``[[ble_gatt]]`` sensors.
:func:`parse_scenario` validates a parsed TOML document into a frozen :class:`Scenario` and
raises :class:`ScenarioError` naming the bad key (``modbus[0].slaves[1].slave``): an
unknown section or key, a wrong type or range, a name used twice. It does no I/O;
:func:`load_scenario` and :func:`default_scenario_text` read files. What to run for a
scenario is :mod:`simulators.site`'s business.

``[[ble_gatt]]`` lists BLE GATT sensors (Environmental Sensing and Battery, simulated by
:mod:`simulators.ble.gatt_peripheral`) that the gateway connects to.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Mapping

ADVERT_KINDS: Final = ("bthome", "ruuvi", "ibeacon", "eddystone")
_ADDRESS: Final = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SECTIONS: Final = frozenset({"site", "gps", "modbus", "node", "ble", "ble_gatt"})


class ScenarioError(ValueError):
    """A scenario file is not valid; ``key`` names where (``gps[1].rate``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Gps:
    device: str
    rate: float = 1.0
    speed: float = 5.0
    route: tuple[tuple[float, float], ...] | None = None  # None: the simulator's default


@dataclass(frozen=True, slots=True)
class ModbusSlave:
    device: str
    slave: int
    poll_s: float = 1.0


@dataclass(frozen=True, slots=True)
class ModbusBus:
    name: str
    slaves: tuple[ModbusSlave, ...]
    baudrate: int = 19200
    step_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Node:
    device: str
    period_ms: int = 1000


@dataclass(frozen=True, slots=True)
class BleDevice:
    """An advertiser (``kind`` one of :data:`ADVERT_KINDS`) or a GATT sensor (``"gatt"``)."""

    kind: str
    address: str

    @property
    def device(self) -> str:
        """The device id the gateway gives its samples (drivers.ble.scan_config)."""
        return "ble-" + self.address.replace(":", "").lower()


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "site"
    ble_period_s: float = 1.0
    gps: tuple[Gps, ...] = ()
    modbus: tuple[ModbusBus, ...] = ()
    nodes: tuple[Node, ...] = ()
    ble: tuple[BleDevice, ...] = ()
    ble_gatt: tuple[BleDevice, ...] = ()


def load_scenario(path: Path | str) -> Scenario:
    """Read and parse a scenario file.

    Raises:
        ScenarioError: not TOML (key ``<file>``) or not a valid scenario.
        OSError: the file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("<file>", f"not TOML: {exc}") from exc
    return parse_scenario(document)


def default_scenario_text() -> str:
    """The shipped scenario (``simulators/scenarios/site.toml``)."""
    return (resources.files("simulators") / "scenarios" / "site.toml").read_text("utf-8")


def parse_scenario(document: Mapping[str, Any]) -> Scenario:
    """Validate a parsed TOML document.

    Raises:
        ScenarioError: an unknown section or key, a wrong type or range, a duplicate name.
    """
    _only(document, _SECTIONS, "")
    site = _table(document.get("site", {}), "site")
    _only(site, {"name", "ble_period_s"}, "site")
    scenario = Scenario(
        name=_name(site.get("name", "site"), "site.name"),
        ble_period_s=positive(site.get("ble_period_s", 1.0), "site.ble_period_s"),
        gps=tuple(_gps(t, f"gps[{i}]") for i, t in _tables(document, "gps")),
        modbus=tuple(_modbus(t, f"modbus[{i}]") for i, t in _tables(document, "modbus")),
        nodes=tuple(_node(t, f"node[{i}]") for i, t in _tables(document, "node")),
        ble=tuple(_advertiser(t, f"ble[{i}]") for i, t in _tables(document, "ble")),
        ble_gatt=tuple(_gatt(t, f"ble_gatt[{i}]") for i, t in _tables(document, "ble_gatt")),
    )
    _check_unique(scenario)
    return scenario


def _gps(table: dict[str, Any], key: str) -> Gps:
    _only(table, {"device", "rate", "speed", "route"}, key)
    route = None
    if "route" in table:
        points = table["route"]
        if not isinstance(points, list) or len(points) < 2:
            raise ScenarioError(f"{key}.route", "must be a list of two or more [lat, lon]")
        route = tuple(_point(p, f"{key}.route[{i}]") for i, p in enumerate(points))
    speed = table.get("speed", 5.0)
    if isinstance(speed, bool) or not isinstance(speed, int | float) or speed < 0:
        raise ScenarioError(f"{key}.speed", "must be a number of m/s, 0 or more")
    return Gps(
        device=_name(table.get("device"), f"{key}.device"),
        rate=positive(table.get("rate", 1.0), f"{key}.rate"),
        speed=float(speed),
        route=route,
    )


def _point(value: object, key: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not (-90 <= value[0] <= 90 and -180 <= value[1] <= 180)
    ):
        raise ScenarioError(key, "must be [latitude, longitude] in decimal degrees")
    return float(value[0]), float(value[1])


def _modbus(table: dict[str, Any], key: str) -> ModbusBus:
    _only(table, {"name", "baudrate", "step_s", "slaves"}, key)
    slaves = table.get("slaves")
    if not isinstance(slaves, list) or not slaves:
        raise ScenarioError(f"{key}.slaves", "must be a non-empty list of slave tables")
    parsed = []
    for i, raw in enumerate(slaves):
        at = f"{key}.slaves[{i}]"
        slave = _table(raw, at)
        _only(slave, {"device", "slave", "poll_s"}, at)
        number = slave.get("slave")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 247:
            raise ScenarioError(f"{at}.slave", "must be a slave id 1-247")
        poll = positive(slave.get("poll_s", 1.0), f"{at}.poll_s")
        parsed.append(ModbusSlave(_name(slave.get("device"), f"{at}.device"), number, poll))
    numbers = [s.slave for s in parsed]
    for i, number in enumerate(numbers):
        if number in numbers[:i]:
            raise ScenarioError(f"{key}.slaves[{i}].slave", f"slave id {number} is used twice")
    baudrate = table.get("baudrate", 19200)
    if (
        isinstance(baudrate, bool)
        or not isinstance(baudrate, int)
        or not 1200 <= baudrate <= 115200
    ):
        raise ScenarioError(f"{key}.baudrate", "must be 1200 to 115200")
    return ModbusBus(
        name=_name(table.get("name"), f"{key}.name"),
        slaves=tuple(parsed),
        baudrate=baudrate,
        step_s=positive(table.get("step_s", 1.0), f"{key}.step_s"),
    )


def _node(table: dict[str, Any], key: str) -> Node:
    _only(table, {"device", "period_ms"}, key)
    period = table.get("period_ms", 1000)
    if isinstance(period, bool) or not isinstance(period, int) or not 10 <= period <= 3_600_000:
        raise ScenarioError(f"{key}.period_ms", "must be 10 to 3600000 ms")
    return Node(_name(table.get("device"), f"{key}.device"), period)


def _advertiser(table: dict[str, Any], key: str) -> BleDevice:
    _only(table, {"kind", "address"}, key)
    kind = table.get("kind")
    if kind not in ADVERT_KINDS:
        raise ScenarioError(f"{key}.kind", f"must be one of {', '.join(ADVERT_KINDS)}")
    return BleDevice(kind, _address(table, key))


def _gatt(table: dict[str, Any], key: str) -> BleDevice:
    _only(table, {"address"}, key)
    return BleDevice("gatt", _address(table, key))


def _address(table: dict[str, Any], key: str) -> str:
    address = table.get("address")
    if not isinstance(address, str) or not _ADDRESS.match(address.upper()):
        raise ScenarioError(f"{key}.address", "must be an address like AA:BB:CC:DD:EE:FF")
    return address.upper()


def _check_unique(scenario: Scenario) -> None:
    """Device ids and driver names must be unique: they name samples and health entries."""
    names: list[tuple[str, str]] = [
        (f"gps[{i}].device", g.device) for i, g in enumerate(scenario.gps)
    ]
    for i, bus in enumerate(scenario.modbus):
        names.append((f"modbus[{i}].name", bus.name))
        names += [(f"modbus[{i}].slaves[{j}].device", s.device) for j, s in enumerate(bus.slaves)]
    names += [(f"node[{i}].device", n.device) for i, n in enumerate(scenario.nodes)]
    names += [(f"ble[{i}].address", b.device) for i, b in enumerate(scenario.ble)]
    names += [(f"ble_gatt[{i}].address", b.device) for i, b in enumerate(scenario.ble_gatt)]
    seen: set[str] = set()
    for key, name in names:
        if name in seen:
            raise ScenarioError(key, f"{name!r} is used twice")
        seen.add(name)


def _tables(document: Mapping[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    value = document.get(section, [])
    if not isinstance(value, list):
        raise ScenarioError(section, f"must be an array of tables ([[{section}]])")
    return [(i, _table(t, f"{section}[{i}]")) for i, t in enumerate(value)]


def _table(value: object, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(key, "must be a table")
    return value


def _only(table: Mapping[str, Any], allowed: set[str] | frozenset[str], key: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise ScenarioError(where, f"unknown key (known: {', '.join(sorted(allowed))})")


def _name(value: object, key: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ScenarioError(key, "must be lowercase letters, digits, '-' or '_' (1-63)")
    return value


def positive(value: object, key: str) -> float:
    """``value`` as a positive finite float, or ScenarioError naming ``key``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ScenarioError(key, "must be a positive number")
    return float(value)
