"""The gateway's TOML configuration, loaded into frozen values with precise errors.

:func:`load_config` reads one TOML file (``tomllib``) and returns a :class:`GatewayConfig`, or
raises :class:`~gateway.errors.ConfigError` naming the file, the key, what is wrong and what to
do. Unknown keys are errors too, because a misspelt key silently falling back to a default is
the hardest kind of misconfiguration to find. Relative paths are taken relative to the
configuration file's folder, not the working directory, so a gateway started from anywhere
reads the same files.

The uplink token is secret: it is held in a :class:`Secret` whose ``repr`` is redacted, so
logging a config never leaks it (brief principle 4, "secrets never in logs"). A token file that
anyone on the machine can read is refused; one the group can read, or a config file holding an
inline token that the group or others can read, is loaded with a warning in
:attr:`GatewayConfig.warnings`.

``[[sensors]]`` tables are checked only for ``kind`` and a unique ``name``; the rest of each
table is the driver's to validate. ``[filters]`` (optional) is checked by
:func:`gateway.filters.parse_filters`; a rule's ``driver`` must name a sensor.
:func:`write_config` writes a ready config with mode 0600.
This module opens no connection and does not create ``data_dir``.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import tomli_w

from gateway.errors import ConfigError
from gateway.filters import FilterConfig, FilterConfigError, parse_filters
from protocol.limits import MAX_BATCH_EVENTS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Gateway ids, tenants and sensor names: lower-case DNS-label-like, at most 63 characters.
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")

_SECTIONS: Final = frozenset({"gateway", "uplink", "outbox", "sensors", "device_key", "filters"})
_GATEWAY_KEYS: Final = frozenset({"id", "tenant", "data_dir", "log_level"})
_UPLINK_KEYS: Final = frozenset(
    {
        "url",
        "token",
        "token_file",
        "ca_file",
        "batch_max_events",
        "batch_max_delay_ms",
        "max_inflight_batches",
        "reconnect_min_s",
        "reconnect_max_s",
    }
)
_OUTBOX_KEYS: Final = frozenset({"max_events"})
_DEVICE_KEY_KEYS: Final = frozenset(
    {"backend", "pkcs11_module", "token_label", "pin_file", "pin_env"}
)
DEVICE_KEY_BACKENDS: Final = ("file", "pkcs11")
# Permission bits that let someone other than the owner read a file (chmod(2)).
_GROUP_READ: Final = stat.S_IRGRP
_OTHER_READ: Final = stat.S_IROTH


@dataclass(frozen=True, slots=True, repr=False)
class Secret:
    """A secret string whose ``repr`` and ``str`` never show it; call :meth:`reveal` to use it."""

    _value: str

    def reveal(self) -> str:
        """The secret itself: pass it straight to where it is needed, never to a log."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """How the gateway reaches the core (``[uplink]``).

    Attributes:
        url: the core's link endpoint, always ``wss://``.
        token: the core-issued JWT, from ``token`` or the contents of ``token_file``.
        token_file: where the token was read from, if it came from a file.
        ca_file: the CA certificate(s) that verify the core's TLS certificate.
    """

    url: str
    token: Secret
    token_file: Path | None
    ca_file: Path
    batch_max_events: int = 500
    batch_max_delay_ms: int = 50
    max_inflight_batches: int = 8
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """The durable outbox's bound (``[outbox]``)."""

    max_events: int = 1_000_000


@dataclass(frozen=True, slots=True)
class DeviceKeyConfig:
    """Where the device key lives (``[device_key]``, optional; gateway.device_key).

    ``backend = "file"`` (the default, also when the section is absent) keeps the key in a
    0600 file in the data folder. ``backend = "pkcs11"`` keeps it in a PKCS#11 token and needs
    ``pkcs11_module`` (the module's path), ``token_label`` and exactly one PIN source:
    ``pin_file`` (a file readable only by the gateway's user) or ``pin_env`` (the name of an
    environment variable). The PIN itself is never accepted in the config file.
    """

    backend: str = "file"
    pkcs11_module: Path | None = None
    token_label: str | None = None
    pin_file: Path | None = None
    pin_env: str | None = None


@dataclass(frozen=True, slots=True)
class GatewaySection:
    """Who the gateway is and where it keeps its data (``[gateway]``).

    Attributes:
        id: the gateway's id, unique within its tenant.
        tenant: the tenant the gateway belongs to.
        data_dir: where the outbox and health report live (absolute).
        log_level: one of :data:`LOG_LEVELS`.
    """

    id: str
    tenant: str
    data_dir: Path
    log_level: str


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole configuration, as loaded from ``path``.

    Attributes:
        path: the file it was loaded from.
        sensors: one read-only mapping per ``[[sensors]]`` table, each with a string ``kind``
            and a ``name`` unique in this gateway; everything else is the driver's to check.
        warnings: problems that do not stop the gateway but that the operator should fix
            (loose file permissions); the caller logs them.
    """

    path: Path
    gateway: GatewaySection
    uplink: UplinkConfig
    outbox: OutboxConfig
    sensors: tuple[Mapping[str, Any], ...]
    warnings: tuple[str, ...] = field(default=())
    device_key: DeviceKeyConfig = field(default=DeviceKeyConfig())
    filters: FilterConfig = field(default=FilterConfig())


# -- loading ------------------------------------------------------------------------------


def load_config(path: Path | str) -> GatewayConfig:
    """Load and check the gateway configuration at ``path``.

    Raises:
        ConfigError: the file or a file it names is missing or unreadable, is not TOML, or a
            key is missing, unknown, of the wrong type or out of range.
    """
    path = Path(path)
    doc = _read_toml(path)
    return _Loader(path).load(doc)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError as exc:
        raise ConfigError(
            path, "", "file not found", "pass the path of an existing gateway config"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            path, "", f"cannot read: {exc.strerror}", "check its permissions"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}", "fix the syntax") from exc


class _Loader:
    """Walks one parsed document; every check knows the file and the key it is at."""

    def __init__(self, path: Path, source: Path | None = None) -> None:
        self.path = path
        # The file actually read; differs from ``path`` only while write_config checks its
        # temporary file.
        self.source = source if source is not None else path
        self.base = path.parent
        self.warnings: list[str] = []

    def fail(self, key: str, problem: str, hint: str) -> ConfigError:
        return ConfigError(self.path, key, problem, hint)

    def load(self, doc: dict[str, Any]) -> GatewayConfig:
        self.no_unknown_keys("", doc, _SECTIONS)
        gateway = self.table(doc, "gateway")
        self.no_unknown_keys("gateway", gateway, _GATEWAY_KEYS)
        uplink = self.uplink(self.table(doc, "uplink"))
        outbox = self.outbox(self.table(doc, "outbox", required=False))
        device_key = self.device_key(self.table(doc, "device_key", required=False))
        section = GatewaySection(
            id=self.name(gateway, "gateway", "id"),
            tenant=self.name(gateway, "gateway", "tenant"),
            data_dir=(self.base / self.non_empty(gateway, "gateway.data_dir")).absolute(),
            log_level=self.log_level(gateway),
        )
        sensors = self.sensors(doc.get("sensors", []))
        return GatewayConfig(
            path=self.path,
            gateway=section,
            uplink=uplink,
            outbox=outbox,
            sensors=sensors,
            warnings=tuple(self.warnings),
            device_key=device_key,
            filters=self.filters(self.table(doc, "filters", required=False), sensors),
        )

    # -- sections ----------------------------------------------------------------------

    def uplink(self, table: dict[str, Any]) -> UplinkConfig:
        self.no_unknown_keys("uplink", table, _UPLINK_KEYS)
        url = self.string(table, "uplink.url")
        if not url.startswith("wss://") or len(url) == len("wss://"):
            raise self.fail(
                "uplink.url",
                f"{url!r} is not a wss:// URL",
                "the uplink only speaks TLS: use wss://",
            )
        token, token_file = self.token(table)
        # Required: the gateway pins the CA that signed the core's certificate rather than
        # trusting every public CA (for a publicly signed core, name the system bundle).
        ca_file = self.existing_file(table, "uplink.ca_file")
        min_s = self.number(table, "uplink.reconnect_min_s", 0.5, low=0.001)
        max_s = self.number(table, "uplink.reconnect_max_s", 30.0, low=min_s)
        return UplinkConfig(
            url=url,
            token=token,
            token_file=token_file,
            ca_file=ca_file,
            batch_max_events=self.integer(
                table, "uplink.batch_max_events", 500, low=1, high=MAX_BATCH_EVENTS
            ),
            batch_max_delay_ms=self.integer(table, "uplink.batch_max_delay_ms", 50, low=0),
            max_inflight_batches=self.integer(table, "uplink.max_inflight_batches", 8, low=1),
            reconnect_min_s=min_s,
            reconnect_max_s=max_s,
        )

    def token(self, table: dict[str, Any]) -> tuple[Secret, Path | None]:
        if ("token" in table) == ("token_file" in table):
            raise self.fail(
                "uplink.token",
                "exactly one of token and token_file must be set",
                "prefer token_file, a file readable only by the gateway's user",
            )
        if "token" in table:
            self.warn_if_readable(self.source, "the config file holds an inline uplink.token")
            return Secret(self.non_empty(table, "uplink.token")), None
        token_file = self.existing_file(table, "uplink.token_file")
        mode = token_file.stat().st_mode
        if mode & _OTHER_READ:
            raise self.fail(
                "uplink.token_file",
                f"{token_file} is readable by every user on this machine",
                f"run: chmod 600 {token_file}",
            )
        self.warn_if_readable(token_file, "the uplink token file")
        try:
            text = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(
                "uplink.token_file", f"cannot read {token_file}: {exc}", "check the file"
            ) from exc
        if not text:
            raise self.fail(
                "uplink.token_file", f"{token_file} is empty", "write the core-issued token in it"
            )
        return Secret(text), token_file

    def outbox(self, table: dict[str, Any]) -> OutboxConfig:
        self.no_unknown_keys("outbox", table, _OUTBOX_KEYS)
        return OutboxConfig(self.integer(table, "outbox.max_events", 1_000_000, low=1))

    def device_key(self, table: dict[str, Any]) -> DeviceKeyConfig:
        if "pin" in table:
            raise self.fail(
                "device_key.pin",
                "the PIN is never accepted in the config file",
                "use pin_file (mode 0600) or pin_env",
            )
        self.no_unknown_keys("device_key", table, _DEVICE_KEY_KEYS)
        backend = self.string(table, "device_key.backend", "file")
        if backend not in DEVICE_KEY_BACKENDS:
            raise self.fail(
                "device_key.backend",
                f"{backend!r} is not a device key backend",
                f"use one of {DEVICE_KEY_BACKENDS}",
            )
        if backend == "file":
            extra = sorted(set(table) - {"backend"})
            if extra:
                raise self.fail(
                    f"device_key.{extra[0]}",
                    'only applies to backend = "pkcs11"',
                    'remove it, or set backend = "pkcs11"',
                )
            return DeviceKeyConfig()
        module = self.existing_file(table, "device_key.pkcs11_module")
        label = self.non_empty(table, "device_key.token_label")
        if ("pin_file" in table) == ("pin_env" in table):
            raise self.fail(
                "device_key.pin_file",
                "exactly one of pin_file and pin_env must be set",
                "name a 0600 file holding the token's user PIN, or an environment variable",
            )
        if "pin_env" in table:
            return DeviceKeyConfig(
                "pkcs11", module, label, None, self.non_empty(table, "device_key.pin_env")
            )
        pin_file = self.existing_file(table, "device_key.pin_file")
        if pin_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise self.fail(
                "device_key.pin_file",
                f"{pin_file} can be read by other users",
                f"run: chmod 600 {pin_file}",
            )
        return DeviceKeyConfig("pkcs11", module, label, pin_file, None)

    def sensors(self, tables: object) -> tuple[Mapping[str, Any], ...]:
        if not isinstance(tables, list):
            raise self.fail("sensors", "must be an array of tables", "write each as [[sensors]]")
        names: set[str] = set()
        for index, table in enumerate(tables):
            key = f"sensors[{index}]"
            if not isinstance(table, dict):
                raise self.fail(key, "must be a table", "write each as [[sensors]]")
            self.non_empty(table, f"{key}.kind")
            name = self.name(table, key, "name")
            if name in names:
                problem = f"{name!r} is used twice"
                raise self.fail(f"{key}.name", problem, "give every sensor its own name")
            names.add(name)
        return tuple(MappingProxyType(dict(table)) for table in tables)

    def filters(
        self, table: dict[str, Any], sensors: tuple[Mapping[str, Any], ...]
    ) -> FilterConfig:
        try:
            return parse_filters(table, [str(sensor["name"]) for sensor in sensors])
        except FilterConfigError as exc:
            raise self.fail(f"filters.{exc.key}", exc.problem, exc.hint) from exc

    def log_level(self, table: dict[str, Any]) -> str:
        level = self.string(table, "gateway.log_level", "info")
        if level not in LOG_LEVELS:
            raise self.fail(
                "gateway.log_level", f"{level!r} is not a log level", f"use one of {LOG_LEVELS}"
            )
        return level

    # -- typed getters -------------------------------------------------------------------

    def table(self, doc: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
        if key not in doc:
            if required:
                raise self.fail(key, "section is missing", f"add a [{key}] table")
            return {}
        value = doc[key]
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table", f"write it as [{key}]")
        return value

    def no_unknown_keys(self, section: str, table: dict[str, Any], known: frozenset[str]) -> None:
        for key in table:
            if key not in known:
                dotted = f"{section}.{key}" if section else key
                raise self.fail(dotted, "unknown key", f"known keys here: {sorted(known)}")

    def value(self, table: dict[str, Any], dotted: str, default: object = None) -> object:
        leaf = dotted.rsplit(".", 1)[-1]
        if leaf in table:
            return table[leaf]
        if default is None:
            raise self.fail(dotted, "is missing", "add this key; it has no default")
        return default

    def string(self, table: dict[str, Any], dotted: str, default: str | None = None) -> str:
        value = self.value(table, dotted, default)
        if not isinstance(value, str):
            raise self.fail(dotted, f"must be a string, got {value!r}", 'quote it: "..."')
        return value

    def non_empty(self, table: dict[str, Any], dotted: str) -> str:
        value = self.string(table, dotted)
        if not value.strip():
            raise self.fail(dotted, "is empty", "give it a value")
        return value

    def name(self, table: dict[str, Any], section: str, leaf: str) -> str:
        dotted = f"{section}.{leaf}"
        value = self.string(table, dotted)
        if not NAME_PATTERN.fullmatch(value):
            raise self.fail(
                dotted,
                f"{value!r} is not a valid name",
                "use 1-63 lower-case letters, digits and '-', starting with a letter or digit",
            )
        return value

    def integer(
        self, table: dict[str, Any], dotted: str, default: int, *, low: int, high: int | None = None
    ) -> int:
        value = self.value(table, dotted, default)
        # bool is an int subclass in Python, but `true` is never a count in TOML.
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(dotted, f"must be an integer, got {value!r}", "write a whole number")
        self.in_range(dotted, value, low, high)
        return value

    def number(self, table: dict[str, Any], dotted: str, default: float, *, low: float) -> float:
        value = self.value(table, dotted, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.fail(dotted, f"must be a number, got {value!r}", "write a number of seconds")
        self.in_range(dotted, value, low, None)
        return float(value)

    def in_range(self, dotted: str, value: float, low: float, high: float | None) -> None:
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise self.fail(dotted, f"{value} is out of range", f"use a value {bounds}")

    def existing_file(self, table: dict[str, Any], dotted: str) -> Path:
        path = self.base / self.non_empty(table, dotted)
        if not path.is_file():
            raise self.fail(
                dotted,
                f"{path} does not exist",
                "relative paths are relative to the config file's folder",
            )
        return path

    def warn_if_readable(self, path: Path, what: str) -> None:
        if path.stat().st_mode & (_GROUP_READ | _OTHER_READ):
            self.warnings.append(
                f"{path}: {what} and can be read by other users; run: chmod 600 {path}"
            )


# -- writing ------------------------------------------------------------------------------


def write_config(
    path: Path | str,
    *,
    gateway_id: str,
    tenant: str,
    url: str,
    ca_file: str,
    token: str | None = None,
    token_file: str | None = None,
    data_dir: str | None = None,
    log_level: str = "info",
    max_events: int = 1_000_000,
    sensors: Sequence[Mapping[str, Any]] = (),
    device_key: DeviceKeyConfig | None = None,
) -> GatewayConfig:
    """Write a ready gateway config with mode 0600 and return it as loaded.

    The file is written to a temporary name, fsync'd and renamed, so a crash never leaves half a
    config; it is then loaded back, so an invalid config is never left behind (the previous file,
    if any, is kept). File paths are written as given, relative to ``path``'s folder.

    Raises:
        ConfigError: the values do not make a valid config, or the file cannot be written.
    """
    path = Path(path)
    uplink: dict[str, Any] = {"url": url, "ca_file": ca_file}
    optional = {"token": token, "token_file": token_file}
    uplink.update({k: v for k, v in optional.items() if v is not None})
    doc = {
        "gateway": {
            "id": gateway_id,
            "tenant": tenant,
            "data_dir": data_dir if data_dir is not None else f"./{gateway_id}-data",
            "log_level": log_level,
        },
        "uplink": uplink,
        "outbox": {"max_events": max_events},
        "sensors": [dict(s) for s in sensors],
    }
    if device_key is not None and device_key.backend != "file":
        optional_keys = {
            "pkcs11_module": device_key.pkcs11_module,
            "token_label": device_key.token_label,
            "pin_file": device_key.pin_file,
            "pin_env": device_key.pin_env,
        }
        doc["device_key"] = {"backend": device_key.backend} | {
            k: str(v) for k, v in optional_keys.items() if v is not None
        }
    candidate = _write_private(path, tomli_w.dumps(doc).encode("utf-8"))
    try:
        _Loader(path, source=candidate).load(_read_toml(candidate))
        candidate.replace(path)
    finally:
        candidate.unlink(missing_ok=True)
    return load_config(path)


def _write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to a new 0600 file beside ``path`` and return its name."""
    try:
        # mkstemp creates the file with mode 0600 (tempfile docs), so the token is never
        # readable by others, even for an instant.
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise ConfigError(path, "", f"cannot write: {exc.strerror}", "check the folder") from exc
    return Path(name)


def load_device_key_config(path: Path | str) -> DeviceKeyConfig:
    """The ``[device_key]`` section of the TOML file at ``path``.

    Used on first boot, before ``gateway.toml`` exists, to say where enrolment creates the
    device key.

    Raises:
        ConfigError: the file or the section is missing or invalid.
    """
    path = Path(path)
    loader = _Loader(path)
    return loader.device_key(loader.table(_read_toml(path), "device_key"))


def config_from_document(path: Path | str, doc: dict[str, Any]) -> GatewayConfig:
    """Check an already parsed document as if it had been read from ``path`` (used to
    validate a remote configuration before it is written).

    Raises:
        ConfigError: as :func:`load_config`.
    """
    return _Loader(Path(path)).load(doc)
