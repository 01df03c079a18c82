"""The ``[[sensors]]`` table of a ``ble-gatt`` driver, validated into a frozen value.

Keys: ``kind = "ble-gatt"``, ``name``, ``adapter`` (default ``"hci0"``), ``devices`` (a
non-empty list of tables: ``address``, optional ``name`` (a label for logs), optional
``characteristics`` (16-bit UUIDs as hex strings such as ``"2a6e"``; default: every
characteristic :mod:`drivers.ble.ess` decodes that the device offers with ``notify``)),
``max_connections`` (default 4: devices beyond it wait until a connected one drops),
``stall_s`` (default 60: no notification for that long → read one characteristic; if the
read fails too, disconnect and reconnect),
``connect_timeout_s`` (default 10, covering the scan that finds the device and the
connection), ``backoff_s`` (default 1) and ``max_backoff_s`` (default 60) for reconnects.
Sample device ids are ``ble-`` plus the address in lower-case hex, as for ``ble-adverts``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.ble.ess import CHARACTERISTICS
from drivers.ble.scan_config import ScanConfig, check_table_head, seconds
from drivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

KIND: Final = "ble-gatt"
_ADDRESS: Final = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_KEYS: Final = frozenset(
    {"kind", "name", "adapter", "devices", "max_connections", "stall_s", "connect_timeout_s",
     "backoff_s", "max_backoff_s"}
)  # fmt: skip
_DEVICE_KEYS: Final = frozenset({"address", "name", "characteristics"})


@dataclass(frozen=True, slots=True)
class GattDevice:
    """One configured peripheral. ``characteristics`` empty means every decodable one."""

    address: str
    name: str | None = None
    characteristics: tuple[int, ...] = ()

    @property
    def device_id(self) -> str:
        return ScanConfig.device_id(self.address)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})" if self.name else self.address

    def wants(self, characteristic: int) -> bool:
        if self.characteristics:
            return characteristic in self.characteristics
        return characteristic in CHARACTERISTICS


@dataclass(frozen=True, slots=True)
class GattConfig:
    name: str
    devices: tuple[GattDevice, ...]
    adapter: str = "hci0"
    max_connections: int = 4
    stall_s: float = 60.0
    connect_timeout_s: float = 10.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0


def parse_gatt_config(cfg: Mapping[str, object]) -> GattConfig:
    """Validate a table.

    Raises:
        ConfigError: a missing, unknown or ill-typed key.
    """
    name, adapter = check_table_head(cfg, KIND, _KEYS)
    devices = cfg.get("devices")
    if not isinstance(devices, list) or not devices:
        raise ConfigError(key="devices", reason="must be a non-empty list of tables")
    parsed = tuple(_device(d) for d in devices)
    addresses = [d.address for d in parsed]
    if len(set(addresses)) != len(addresses):
        raise ConfigError(key="devices", reason="an address is listed twice")
    limit = cfg.get("max_connections", 4)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(key="max_connections", reason="must be a whole number >= 1")
    backoff = seconds(cfg, "backoff_s", 1.0)
    max_backoff = seconds(cfg, "max_backoff_s", 60.0)
    if max_backoff < backoff:
        raise ConfigError(key="max_backoff_s", reason="must not be less than backoff_s")
    return GattConfig(
        name=name,
        devices=parsed,
        adapter=adapter,
        max_connections=limit,
        stall_s=seconds(cfg, "stall_s", 60.0),
        connect_timeout_s=seconds(cfg, "connect_timeout_s", 10.0),
        backoff_s=backoff,
        max_backoff_s=max_backoff,
    )


def _device(value: object) -> GattDevice:
    if not isinstance(value, dict):
        raise ConfigError(key="devices", reason="each device must be a table")
    unknown = sorted(set(value) - _DEVICE_KEYS)
    if unknown:
        raise ConfigError(key=f"devices.{unknown[0]}", reason="unknown key for a device")
    address = value.get("address")
    if not isinstance(address, str) or not _ADDRESS.match(address.upper()):
        raise ConfigError(key="devices.address", reason="must be like AA:BB:CC:DD:EE:FF")
    name = value.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(key="devices.name", reason="must be a non-empty string")
    chars = value.get("characteristics", [])
    if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
        raise ConfigError(key="devices.characteristics", reason="must be a list of strings")
    shorts: list[int] = []
    for text in chars:
        if not re.fullmatch(r"(0x)?[0-9A-Fa-f]{4}", text):
            raise ConfigError(
                key="devices.characteristics", reason=f"{text!r} is not a 16-bit UUID"
            )
        short = int(text.removeprefix("0x"), 16)
        if short not in CHARACTERISTICS:
            known = ", ".join(f"{k:04x}" for k in CHARACTERISTICS)
            raise ConfigError(
                key="devices.characteristics", reason=f"{text!r} is not decoded (known: {known})"
            )
        shorts.append(short)
    return GattDevice(address.upper(), name, tuple(shorts))
