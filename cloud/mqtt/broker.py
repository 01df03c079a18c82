"""The broker's files in the core home: settings, rendered config, dynsec file, admin secret.

Layout (directory 0700, every file 0600)::

    <home>/mqtt/
      mqtt.toml                  listen host, public host, ports, limits, plugin path
      mosquitto.conf             rendered from deploy/mosquitto/mosquitto.conf.template
      dynamic-security.json      written once by setup; afterwards owned by the broker
      admin.json                 the core's dynsec admin username and token
      data/                      the broker's persistence (queued QoS 1 messages)
      bridges/<tenant>.json      a bridge's link token and MQTT token
      bridges/<tenant>.sqlite    a bridge's durable inbox

Contract: :func:`setup_broker` creates all of it, or refuses (``Conflict``) to overwrite an
existing ``dynamic-security.json`` (the credentials issued since live only there) unless
``force``. :func:`render_config` is pure. Nothing here starts the broker or talks to it.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import string
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomli_w

from cloud.errors import ConfigError, Conflict
from cloud.home import CoreHome, write_private_file
from cloud.mqtt import dynsec

ADMIN_USER = "assetbook-core"
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mosquitto.conf.template"
PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
#: Random secrets the core issues: 256 bits, far above the 128-bit floor (see dynsec).
TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """The validated contents of ``mqtt.toml``."""

    host: str = "127.0.0.1"
    public_host: str = "localhost"
    tls_port: int = 8883
    wss_port: int = 8884
    max_connections: int = 1000
    max_packet_bytes: int = 65_536
    max_queued_messages: int = 1000
    plugin: str = ""


@dataclass(frozen=True, slots=True)
class BrokerPaths:
    home: CoreHome

    @property
    def root(self) -> Path:
        return self.home.root / "mqtt"

    @property
    def settings(self) -> Path:
        return self.root / "mqtt.toml"

    @property
    def config(self) -> Path:
        return self.root / "mosquitto.conf"

    @property
    def dynsec(self) -> Path:
        return self.root / "dynamic-security.json"

    @property
    def admin(self) -> Path:
        return self.root / "admin.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def bridges(self) -> Path:
        return self.root / "bridges"


def find_plugin() -> str:
    """The dynamic-security plugin shipped with the installed Mosquitto, or ``""``."""
    return next((p for p in PLUGIN_CANDIDATES if Path(p).is_file()), "")


def render_config(settings: BrokerSettings, paths: BrokerPaths, template: str, user: str) -> str:
    """Fill the template (pure). Raises: ConfigError for an unknown placeholder."""
    values = {
        **{k: str(v) for k, v in asdict(settings).items()},
        "dynsec_file": str(paths.dynsec),
        "data_dir": str(paths.data),
        "certfile": str(paths.home.server_cert),
        "keyfile": str(paths.home.server_key),
        "user": user,
    }
    for value in values.values():
        if any(c in value for c in "\n\r"):  # one directive per line (mosquitto.conf(5))
            raise ConfigError("a broker setting contains a line break")
    try:
        return string.Template(template).substitute(values)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"bad placeholder in the broker template: {exc}") from None


def setup_broker(home: CoreHome, settings: BrokerSettings, *, force: bool = False) -> BrokerPaths:
    """Write the broker's settings, config, dynsec file and admin secret into ``home``.

    Raises:
        Conflict: already set up (and not ``force``).
        ConfigError: no dynamic-security plugin found, or the template is missing.
    """
    paths = BrokerPaths(home)
    if paths.dynsec.exists() and not force:
        raise Conflict(
            f"the broker is already set up in {paths.root}; --force replaces its users "
            "(every MQTT credential issued so far stops working)"
        )
    if not settings.plugin:
        settings = BrokerSettings(**{**asdict(settings), "plugin": find_plugin()})
    if not settings.plugin:
        raise ConfigError("Mosquitto's dynamic-security plugin was not found: install mosquitto")
    for directory in (paths.root, paths.data, paths.bridges):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    write_private_file(paths.settings, tomli_w.dumps({"broker": asdict(settings)}).encode())
    _write_config(paths, settings)
    admin_token = secrets.token_urlsafe(TOKEN_BYTES)
    document = dynsec.initial_file(ADMIN_USER, admin_token, secrets.token_bytes(dynsec.SALT_BYTES))
    write_private_file(paths.dynsec, json.dumps(document, indent=1).encode())
    admin = {"username": ADMIN_USER, "token": admin_token}
    write_private_file(paths.admin, json.dumps(admin).encode())
    for stale in paths.bridges.glob("*.json"):
        stale.unlink()  # their MQTT users are gone with the old dynsec file
    return paths


def load_settings(home: CoreHome) -> BrokerSettings:
    """Read ``mqtt.toml``. Raises: ConfigError (missing: run setup; or invalid)."""
    paths = BrokerPaths(home)
    try:
        data = tomllib.loads(paths.settings.read_text(encoding="utf-8"))
        settings = BrokerSettings(**data["broker"])
    except FileNotFoundError:
        raise ConfigError(
            f"the broker is not set up in {home.root}: run `assetbook mqtt setup`"
        ) from None
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"invalid {paths.settings}: {exc}") from None
    _check(settings)
    return settings


def read_admin(home: CoreHome) -> tuple[str, str]:
    """The admin username and token. Raises: ConfigError."""
    try:
        data: dict[str, Any] = json.loads(BrokerPaths(home).admin.read_text(encoding="utf-8"))
        return str(data["username"]), str(data["token"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read the broker admin secret: {exc}") from None


def _write_config(paths: BrokerPaths, settings: BrokerSettings) -> None:
    _check(settings)
    try:
        template = TEMPLATE.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"broker template missing: {exc}") from None
    user = pwd.getpwuid(os.geteuid()).pw_name  # stay this user even when started as root
    write_private_file(paths.config, render_config(settings, paths, template, user).encode())


def _check(settings: BrokerSettings) -> None:
    for name in ("tls_port", "wss_port"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ConfigError("must be a port number", key=f"broker.{name}")
    if settings.tls_port == settings.wss_port:
        raise ConfigError("TLS and WSS need different ports", key="broker.wss_port")
    for name in ("max_connections", "max_packet_bytes", "max_queued_messages"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**28:
            raise ConfigError("must be a positive integer", key=f"broker.{name}")
