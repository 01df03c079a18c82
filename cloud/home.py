"""The core's home directory: where every file lives, how it is created, and its config.

Layout (all directories 0700; private keys, the database, the access log and the config 0600)::

    <home>/
      config.toml                 listen address, ports, public URLs, issuer, token lifetimes
      tls/ca.pem  tls/ca.key      development CA (see cloud.pki)
      tls/server.pem tls/server.key
      keys/signing-<kid>.pem      Ed25519 JWT signing keys, old ones kept for verification
      keys/active                 the kid that signs new tokens
      keys/secrets.json           the secrets key (pepper) kept outside the database
      keys/access-log.key         the access log's hash-chain key (cloud.accesslog)
      db/core.sqlite              registry (cloud.registry) and, in their own tables, events
      logs/access.jsonl           always-on access log (cloud.accesslog)

Contract: :func:`init_home` creates a complete home or refuses (``Conflict``) to touch an
existing one unless ``force``; ``config.toml`` is written last, so a home without it is an
interrupted init and may simply be initialised again. :func:`load_config` returns a validated
:class:`CoreConfig` or raises :class:`~cloud.errors.ConfigError` naming the key at fault.

Not done here: no key material is generated in this module (cloud.pki does it), no database
schema is created (each owner creates its own tables), nothing is served.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from cloud import pki
from cloud.errors import ConfigError, Conflict
from cloud.ratelimit import HttpLimits, Rate

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_LISTEN_HOST = "127.0.0.1"  # secure by default: loopback until the operator opts in
DEFAULT_LINK_PORT = 8444
DEFAULT_REST_PORT = 8443
DEFAULT_HTTP_PORT = 8080  # plain HTTP: redirects pages to HTTPS, refuses API calls
LINK_PATH = "/link"
DEFAULT_GATEWAY_TOKEN_LIFETIME_S = 30 * 24 * 3600
DEFAULT_MODULE_TOKEN_LIFETIME_S = 30 * 24 * 3600
DEFAULT_API_TOKEN_MAX_LIFETIME_S = 365 * 24 * 3600

_KID_RE = re.compile(r"[0-9a-f]{16}")
_HOME_ENTRIES = frozenset({"config.toml", "tls", "keys", "db", "logs"})


@dataclass(frozen=True, slots=True)
class CoreHome:
    """Paths inside a core home directory (nothing is read or created by this class)."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.tls_dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.tls_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.tls_dir / "server.key"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def active_key_file(self) -> Path:
        return self.keys_dir / "active"

    def signing_key(self, kid: str) -> Path:
        """Path of the signing key ``kid``.

        Raises:
            ConfigError: ``kid`` is not 16 lowercase hex digits (which also rules out paths).
        """
        if not _KID_RE.fullmatch(kid):
            raise ConfigError(f"malformed key id {kid!r}", key="keys/active")
        return self.keys_dir / f"signing-{kid}.pem"

    def signing_keys(self) -> dict[str, Path]:
        """Every signing key present, by kid."""
        found: dict[str, Path] = {}
        for path in sorted(self.keys_dir.glob("signing-*.pem")):
            kid = path.name.removeprefix("signing-").removesuffix(".pem")
            if _KID_RE.fullmatch(kid):
                found[kid] = path
        return found

    @property
    def secrets_key(self) -> Path:
        """The secrets key (cloud.identity.keyring); kept outside the database on purpose."""
        return self.keys_dir / "secrets.json"

    @property
    def db_dir(self) -> Path:
        return self.root / "db"

    @property
    def db_path(self) -> Path:
        return self.db_dir / "core.sqlite"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def access_log(self) -> Path:
        return self.logs_dir / "access.jsonl"


@dataclass(frozen=True, slots=True)
class SecretsConfig:
    """``[secrets]``: where the secrets key lives (cloud.identity.keyring / .pkcs11_keyring).

    ``backend = "file"`` (the default, also when the section is absent) uses
    ``keys/secrets.json``. ``backend = "pkcs11"`` needs ``pkcs11_module`` (the module's path),
    ``token_label`` and exactly one PIN source: ``pin_file`` (a 0600 file) or ``pin_env`` (an
    environment variable's name). The PIN itself is never accepted in ``config.toml``.
    """

    backend: str = "file"
    pkcs11_module: str | None = None
    token_label: str | None = None
    pin_file: str | None = None
    pin_env: str | None = None


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """The validated contents of ``config.toml``."""

    issuer: str
    listen_host: str
    link_port: int
    rest_port: int
    link_url: str
    rest_url: str
    tls_hosts: tuple[str, ...]
    gateway_token_lifetime_s: int
    module_token_lifetime_s: int
    api_token_max_lifetime_s: int
    http_port: int | None = None  # plain-HTTP listener (cloud.http_redirect); None: off
    http_limits: HttpLimits = field(default_factory=HttpLimits)  # cloud.ratelimit
    secrets: SecretsConfig = field(default_factory=SecretsConfig)  # [secrets]


def init_home(
    path: str | os.PathLike[str],
    *,
    hosts: tuple[str, ...] = DEFAULT_HOSTS,
    link_port: int = DEFAULT_LINK_PORT,
    rest_port: int = DEFAULT_REST_PORT,
    listen_host: str = DEFAULT_LISTEN_HOST,
    force: bool = False,
    now: datetime | None = None,
    http_port: int | None = None,
) -> CoreHome:
    """Create a complete core home at ``path``.

    ``http_port`` turns on the plain-HTTP listener (cloud.http_redirect); ``assetbook core
    init`` passes ``DEFAULT_HTTP_PORT`` unless told otherwise, so it is on by default there.

    With ``force``, an existing home gets a new config, new TLS material and a new signing key
    (old signing keys are deleted, so every token issued before stops verifying); the database
    and the access log are kept.

    Raises:
        Conflict: ``path`` is an existing home (and not ``force``) or a non-empty directory
            that is not a home.
        ConfigError: the arguments would make an invalid config.
    """
    home = CoreHome(Path(path))
    _check_target(home, force=force)
    config = _default_config(hosts, link_port, rest_port, listen_host, http_port)
    _validate(_config_to_toml(config))  # fail before writing anything
    for directory in (home.root, home.tls_dir, home.keys_dir, home.db_dir, home.logs_dir):
        _make_private_dir(directory)
    _write_tls(home, hosts, now or datetime.now(UTC))
    _reset_signing_keys(home)
    _ensure_secrets_key(home)
    _touch_private(home.db_path)
    _touch_private(home.access_log)
    write_private_file(home.config_path, tomli_w.dumps(_config_to_toml(config)).encode())
    return home


def load_config(home: CoreHome) -> CoreConfig:
    """Read and validate ``config.toml``.

    Raises:
        ConfigError: the file is missing, not TOML, or a key is missing, unknown or invalid.
    """
    try:
        text = home.config_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no config.toml in {home.root} (not an initialised home)", key="config.toml"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", key="config.toml") from exc
    return _validate(data)


def add_signing_key(home: CoreHome, kid: str, pem: bytes, *, activate: bool = True) -> None:
    """Install a signing key file and, by default, make it the one that signs new tokens."""
    write_private_file(home.signing_key(kid), pem)
    if activate:
        write_private_file(home.active_key_file, f"{kid}\n".encode())


def read_active_kid(home: CoreHome) -> str:
    """The kid that signs new tokens.

    Raises:
        ConfigError: ``keys/active`` is missing, malformed or names a key that is absent.
    """
    try:
        kid = home.active_key_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the active key id: {exc}", key="keys/active") from exc
    if not home.signing_key(kid).is_file():
        raise ConfigError(f"active key {kid} has no key file", key="keys/active")
    return kid


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600 from the first byte on disk."""
    tmp = path.with_name(f".{path.name}.tmp")
    # O_NOFOLLOW: never write through a symlink planted in our directory.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case a stale tmp file had another mode
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _check_target(home: CoreHome, *, force: bool) -> None:
    if home.config_path.exists():
        if not force:
            raise Conflict(f"{home.root} is already an AssetBook home (pass --force to replace it)")
        return
    if home.root.exists():
        if not home.root.is_dir():
            raise Conflict(f"{home.root} exists and is not a directory")
        # Only an empty directory or an interrupted init may be taken over: chmod-ing someone's
        # unrelated directory to 0700 would be a nasty surprise.
        stray = {p.name for p in home.root.iterdir()} - _HOME_ENTRIES
        if stray:
            raise Conflict(f"{home.root} is not empty and not an AssetBook home")


def _make_private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # mkdir's mode is filtered by the umask and ignored if it existed


def _touch_private(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _write_tls(home: CoreHome, hosts: tuple[str, ...], now: datetime) -> None:
    ca = pki.create_ca(now=now)
    server = pki.create_server_cert(ca, hosts, now=now)
    write_private_file(home.ca_key, ca.key_pem)
    write_private_file(home.ca_cert, ca.cert_pem)
    write_private_file(home.server_key, server.key_pem)
    write_private_file(home.server_cert, server.cert_pem)


def _reset_signing_keys(home: CoreHome) -> None:
    for path in home.signing_keys().values():
        path.unlink()
    with contextlib.suppress(FileNotFoundError):
        home.active_key_file.unlink()
    kid, pem = pki.new_signing_key()
    add_signing_key(home, kid, pem)


def _ensure_secrets_key(home: CoreHome) -> None:
    # Kept across `init --force`: a new pepper would make every stored hash unusable.
    from cloud.identity.keyring import new_key_file

    if not home.secrets_key.exists():
        new_key_file(home.secrets_key)


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"  # RFC 3986 §3.2.2: IPv6 literals are bracketed in URLs
    except ValueError:
        pass
    return host


def _default_config(
    hosts: tuple[str, ...],
    link_port: int,
    rest_port: int,
    listen_host: str,
    http_port: int | None = None,
) -> CoreConfig:
    public = _url_host(hosts[0]) if hosts else ""
    rest_url = f"https://{public}:{rest_port}"
    return CoreConfig(
        issuer=rest_url,
        listen_host=listen_host,
        link_port=link_port,
        rest_port=rest_port,
        link_url=f"wss://{public}:{link_port}{LINK_PATH}",
        rest_url=rest_url,
        tls_hosts=tuple(hosts),
        gateway_token_lifetime_s=DEFAULT_GATEWAY_TOKEN_LIFETIME_S,
        module_token_lifetime_s=DEFAULT_MODULE_TOKEN_LIFETIME_S,
        api_token_max_lifetime_s=DEFAULT_API_TOKEN_MAX_LIFETIME_S,
        http_port=http_port or None,
    )


def _config_to_toml(config: CoreConfig) -> dict[str, Any]:
    listen: dict[str, Any] = {"http_port": config.http_port} if config.http_port else {}
    return {
        "core": {"issuer": config.issuer},
        "listen": {
            "host": config.listen_host,
            "link_port": config.link_port,
            "rest_port": config.rest_port,
            **listen,
        },
        "public": {"link_url": config.link_url, "rest_url": config.rest_url},
        "tls": {"hosts": list(config.tls_hosts)},
        "tokens": {
            "gateway_lifetime_s": config.gateway_token_lifetime_s,
            "module_lifetime_s": config.module_token_lifetime_s,
            "api_max_lifetime_s": config.api_token_max_lifetime_s,
        },
        **_secrets_to_toml(config.secrets),
    }


def _secrets_to_toml(secrets: SecretsConfig) -> dict[str, Any]:
    # The file backend is the default: `core init` writes no [secrets] section for it.
    if secrets == SecretsConfig():
        return {}
    table = {
        "backend": secrets.backend,
        "pkcs11_module": secrets.pkcs11_module,
        "token_label": secrets.token_label,
        "pin_file": secrets.pin_file,
        "pin_env": secrets.pin_env,
    }
    return {"secrets": {k: v for k, v in table.items() if v is not None}}


_SCHEMA: dict[str, frozenset[str]] = {
    "core": frozenset({"issuer"}),
    "listen": frozenset({"host", "link_port", "rest_port", "http_port"}),
    "public": frozenset({"link_url", "rest_url"}),
    "tls": frozenset({"hosts"}),
    "tokens": frozenset({"gateway_lifetime_s", "module_lifetime_s", "api_max_lifetime_s"}),
    "smtp": frozenset({"host", "port", "sender", "starttls"}),  # read by cloud.identity.mail
    "http": frozenset(  # REST limits (cloud.ratelimit); every key optional
        {"rate_per_address", "burst_per_address", "rate_per_token", "burst_per_token"}
        | {"max_body_bytes", "max_header_bytes", "read_timeout_s"}
    ),
    "secrets": frozenset({"backend", "pkcs11_module", "token_label", "pin_file", "pin_env"}),
}


def _validate(data: dict[str, Any]) -> CoreConfig:
    _reject_unknown_keys(data)
    return CoreConfig(
        issuer=_text(data, "core", "issuer"),
        listen_host=_text(data, "listen", "host"),
        link_port=_port(data, "listen", "link_port"),
        rest_port=_port(data, "listen", "rest_port"),
        link_url=_url(data, "public", "link_url", "wss://"),
        rest_url=_url(data, "public", "rest_url", "https://"),
        tls_hosts=_hosts(data),
        gateway_token_lifetime_s=_seconds(data, "tokens", "gateway_lifetime_s"),
        module_token_lifetime_s=_seconds(data, "tokens", "module_lifetime_s"),
        api_token_max_lifetime_s=_seconds(data, "tokens", "api_max_lifetime_s"),
        http_port=_port(data, "listen", "http_port") if "http_port" in data["listen"] else None,
        http_limits=_http_limits(data),
        secrets=_secrets(data),
    )


def _secrets(data: dict[str, Any]) -> SecretsConfig:
    table = data.get("secrets", {})
    backend = _text(data, "secrets", "backend") if "backend" in table else "file"
    if backend not in ("file", "pkcs11"):
        raise ConfigError('must be "file" or "pkcs11"', key="secrets.backend")
    if backend == "file":
        extra = sorted(k for k in table if k != "backend")
        if extra:
            raise ConfigError('only used with backend = "pkcs11"', key=f"secrets.{extra[0]}")
        return SecretsConfig()
    sources = [k for k in ("pin_file", "pin_env") if k in table]
    if len(sources) != 1:
        raise ConfigError("set exactly one of pin_file and pin_env", key="secrets")
    return SecretsConfig(
        backend="pkcs11",
        pkcs11_module=_text(data, "secrets", "pkcs11_module"),
        token_label=_text(data, "secrets", "token_label"),
        pin_file=_text(data, "secrets", "pin_file") if "pin_file" in table else None,
        pin_env=_text(data, "secrets", "pin_env") if "pin_env" in table else None,
    )


def _http_limits(data: dict[str, Any]) -> HttpLimits:
    table = data.get("http", {})
    default = HttpLimits()

    def number(key: str, fallback: float, low: int, high: int) -> int:
        return _integer(data, "http", key, low, high) if key in table else int(fallback)

    return HttpLimits(
        per_address=Rate(
            number("rate_per_address", default.per_address.per_s, 1, 1_000_000),
            number("burst_per_address", default.per_address.burst, 1, 1_000_000),
        ),
        per_token=Rate(
            number("rate_per_token", default.per_token.per_s, 1, 1_000_000),
            number("burst_per_token", default.per_token.burst, 1, 1_000_000),
        ),
        max_body_bytes=number("max_body_bytes", default.max_body_bytes, 1024, 64 * 2**20),
        max_header_bytes=number("max_header_bytes", default.max_header_bytes, 1024, 2**20),
        read_timeout_s=number("read_timeout_s", default.read_timeout_s, 1, 3600),
    )


def _reject_unknown_keys(data: dict[str, Any]) -> None:
    # A typo such as "link_prot" must fail loudly, not silently fall back to a default.
    for section, value in data.items():
        if section not in _SCHEMA:
            raise ConfigError("unknown section", key=section)
        if not isinstance(value, dict):
            raise ConfigError("must be a table", key=section)
        for key in value:
            if key not in _SCHEMA[section]:
                raise ConfigError("unknown key", key=f"{section}.{key}")


def _raw(data: dict[str, Any], section: str, key: str) -> object:
    try:
        return data[section][key]
    except KeyError:
        raise ConfigError("missing", key=f"{section}.{key}") from None


def _text(data: dict[str, Any], section: str, key: str) -> str:
    value = _raw(data, section, key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("must be a non-empty string", key=f"{section}.{key}")
    return value


def _integer(data: dict[str, Any], section: str, key: str, low: int, high: int) -> int:
    value = _raw(data, section, key)
    # bool is an int subclass; `port = true` is a mistake, not port 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"must be an integer in {low}..{high}", key=f"{section}.{key}")
    return value


def _port(data: dict[str, Any], section: str, key: str) -> int:
    return _integer(data, section, key, 1, 65535)


def _seconds(data: dict[str, Any], section: str, key: str) -> int:
    return _integer(data, section, key, 60, 10 * 365 * 24 * 3600)


def _url(data: dict[str, Any], section: str, key: str, scheme: str) -> str:
    value = _text(data, section, key)
    # TLS on every listener (brief, principle 4): plain ws:// or http:// is a config error.
    if not value.startswith(scheme) or len(value) <= len(scheme):
        raise ConfigError(f"must be a {scheme} URL", key=f"{section}.{key}")
    return value


def _hosts(data: dict[str, Any]) -> tuple[str, ...]:
    value = _raw(data, "tls", "hosts")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(h, str) and h.strip() for h in value)
    ):
        raise ConfigError("must be a non-empty list of host names", key="tls.hosts")
    return tuple(value)
