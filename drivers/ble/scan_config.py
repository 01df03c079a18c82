"""The ``[[sensors]]`` table of a ``ble-adverts`` driver, validated into a frozen value.

Keys: ``kind = "ble-adverts"``, ``name``, ``adapter`` (default ``"hci0"``),
``allow_addresses`` and ``allow_services`` (lists; empty = accept every advert),
``keys`` (table address → 32 hex digits, BTHome encryption keys), ``stall_s`` (default 60),
``expect_adverts`` (default: true when an allowlist is set), ``backoff_s``,
``max_backoff_s``. Sample device ids are ``ble-`` plus the address in lower-case hex.
Keys are secrets: they are never put in an error message or a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from drivers.ble.advert import uuid16
from drivers.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from drivers.ble.advert import Advert

KIND: Final = "ble-adverts"
_ADDRESS: Final = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_KEYS: Final = frozenset(
    {"kind", "name", "adapter", "allow_addresses", "allow_services", "keys", "stall_s",
     "expect_adverts", "backoff_s", "max_backoff_s"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScanConfig:
    name: str
    adapter: str = "hci0"
    allow_addresses: frozenset[str] = frozenset()
    allow_services: frozenset[str] = frozenset()
    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    stall_s: float = 60.0
    expect_adverts: bool | None = None
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    @property
    def expects_adverts(self) -> bool:
        if self.expect_adverts is not None:
            return self.expect_adverts
        return bool(self.allow_addresses or self.allow_services)

    def allows(self, advert: Advert) -> bool:
        if not (self.allow_addresses or self.allow_services):
            return True
        if advert.address in self.allow_addresses:
            return True
        offered = set(advert.service_uuids) | {uuid for uuid, _ in advert.service_data}
        return bool(offered & self.allow_services)

    @staticmethod
    def device_id(address: str) -> str:
        return "ble-" + address.replace(":", "").lower()


def parse_scan_config(cfg: Mapping[str, object]) -> ScanConfig:
    """Validate a table. Raises ConfigError (never quoting a key's value)."""
    name, adapter = check_table_head(cfg, KIND, _KEYS)
    expect = cfg.get("expect_adverts")
    if expect is not None and not isinstance(expect, bool):
        raise ConfigError(key="expect_adverts", reason="must be true or false")
    return ScanConfig(
        name=name,
        adapter=adapter,
        allow_addresses=frozenset(
            _address(a, "allow_addresses") for a in _list(cfg, "allow_addresses")
        ),
        allow_services=frozenset(_service(s) for s in _list(cfg, "allow_services")),
        keys=_keys(cfg.get("keys", {})),
        stall_s=seconds(cfg, "stall_s", 60.0),
        expect_adverts=expect,
        backoff_s=seconds(cfg, "backoff_s", 0.5),
        max_backoff_s=seconds(cfg, "max_backoff_s", 30.0),
    )


def _list(cfg: Mapping[str, object], key: str) -> list[str]:
    value = cfg.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key=key, reason="must be a list of strings")
    return value


def _address(value: str, key: str) -> str:
    address = value.upper()
    if not _ADDRESS.match(address):
        raise ConfigError(key=key, reason=f"{value!r} is not an address like AA:BB:CC:DD:EE:FF")
    return address


def _service(value: str) -> str:
    if re.fullmatch(r"[0-9A-Fa-f]{4}", value):
        return uuid16(int(value, 16))
    if re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value):
        return value.lower()
    raise ConfigError(key="allow_services", reason=f"{value!r} is not a 16-bit or 128-bit UUID")


def _keys(value: object) -> dict[str, bytes]:
    if not isinstance(value, dict):
        raise ConfigError(key="keys", reason="must be a table of address = hex key")
    out: dict[str, bytes] = {}
    for address, key in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[0-9a-fA-F]{32}", key):
            # The value is a secret: name the address, never the key.
            raise ConfigError(key="keys", reason=f"key of {address} must be 32 hex digits")
        out[_address(str(address), "keys")] = bytes.fromhex(key)
    return out


def check_table_head(cfg: Mapping[str, object], kind: str, keys: frozenset[str]) -> tuple[str, str]:
    """The checks every BLE driver table shares: no unknown key, its ``kind``, a ``name``
    and an ``adapter`` (default ``hci0``). Returns (name, adapter).

    Raises:
        ConfigError: the first key at fault.
    """
    unknown = sorted(set(cfg) - keys)
    if unknown:
        raise ConfigError(key=unknown[0], reason=f"unknown key for a {kind} driver")
    if cfg.get("kind") != kind:
        raise ConfigError(key="kind", reason=f"expected {kind!r}")
    name = cfg.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(key="name", reason="must be a non-empty string")
    adapter = cfg.get("adapter", "hci0")
    if not isinstance(adapter, str) or not re.fullmatch(r"hci\d+", adapter):
        raise ConfigError(key="adapter", reason="must look like 'hci0'")
    return name, adapter


def seconds(cfg: Mapping[str, object], key: str, default: float) -> float:
    """``cfg[key]`` (or ``default``) as a positive number of seconds, or ConfigError."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(key=key, reason="must be a positive number of seconds")
    return float(value)
