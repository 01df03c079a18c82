"""Which driver serves which ``kind`` in a gateway's ``[[sensors]]`` table.

Each entry names a module with a ``make_driver(table) -> Driver`` factory, imported only when
a configuration uses it, so a gateway loads no code (and no library such as bleak) for
devices it does not have. Adding a device kind is one line here plus its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from drivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drivers.base import Driver

DRIVER_MODULES: Final[dict[str, str]] = {
    "nmea-gps": "drivers.gps",
    "modbus-rtu": "drivers.modbus.driver",
    "node-serial": "drivers.node.driver",
    "ble-adverts": "drivers.ble.scanner",
    "ble-gatt": "drivers.ble.gatt",
}


def make_driver(table: Mapping[str, object]) -> Driver:
    """Build the driver a ``[[sensors]]`` table describes.

    Raises:
        ConfigError: unknown ``kind``, or the driver refused the table.
    """
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in DRIVER_MODULES:
        known = ", ".join(sorted(DRIVER_MODULES))
        raise ConfigError(f"sensor kind {kind!r} is not supported (known: {known})")
    module = importlib.import_module(DRIVER_MODULES[kind])
    driver: Driver = module.make_driver(dict(table))
    return driver
