"""Tenants, gateways, modules and issued tokens, kept in SQLite; plus credential issuing.

Contract:

* :class:`Registry` is a synchronous store over ``db/core.sqlite``. It owns only the tables
  prefixed ``registry_`` and assumes other modules keep their own tables in the same file.
  Every public method is one transaction, guarded by a lock so that callers may use it from
  worker threads (``trio.to_thread.run_sync``); it never blocks on anything but SQLite.
* The registry is the source of truth for revocation: a token whose ``jti`` it does not know,
  or knows as revoked or expired, is not active. Only the ``jti`` and metadata are stored,
  never the token string, so a copy of the database cannot be replayed as credentials.
* Identifiers (tenants, gateways, modules, API token names) match ``[a-z0-9][a-z0-9-]{0,62}``
  (a DNS label, lower case: safe in topics, URLs, file names and logs).
* :func:`issue_gateway_credentials`, :func:`issue_module_token` and :func:`issue_api_token`
  tie the registry to :class:`cloud.tokens.TokenIssuer`; the CLI calls them.

Not done here: closing live sessions when a token is revoked (the link server and the MQTT
bridge poll :meth:`Registry.is_token_active`), and any event storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud.errors import ConfigError, Conflict, InvalidInput, NotFound
from cloud.home import CoreHome, load_config
from cloud.principal import Principal, PrincipalKind
from cloud.tokens import Audience, TokenIssuer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

SCHEMA_VERSION = 1
ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SCOPE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}:[a-z][a-z0-9_-]{0,31}")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS registry_meta (
        name TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS registry_tenants (
        name TEXT PRIMARY KEY, created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS registry_gateways (
        tenant TEXT NOT NULL REFERENCES registry_tenants(name),
        gateway_id TEXT NOT NULL, created_at REAL NOT NULL,
        revoked_at REAL, last_seen REAL,
        PRIMARY KEY (tenant, gateway_id))""",
    """CREATE TABLE IF NOT EXISTS registry_modules (
        tenant TEXT NOT NULL REFERENCES registry_tenants(name),
        module_id TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL,
        PRIMARY KEY (tenant, module_id))""",
    """CREATE TABLE IF NOT EXISTS registry_tokens (
        jti TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES registry_tenants(name),
        kind TEXT NOT NULL, subject TEXT NOT NULL, audience TEXT NOT NULL,
        issued_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL,
        publish TEXT NOT NULL, subscribe TEXT NOT NULL, scopes TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS registry_tokens_by_subject
        ON registry_tokens (tenant, kind, subject)""",
)


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Gateway:
    tenant: str
    gateway_id: str
    created_at: float
    revoked_at: float | None
    last_seen: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class Module:
    tenant: str
    module_id: str
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """What the registry knows about an issued token (never the token itself)."""

    jti: str
    tenant: str
    kind: PrincipalKind
    subject: str
    audience: str
    issued_at: float
    expires_at: float
    revoked_at: float | None
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    scopes: tuple[str, ...]

    def active_at(self, now: float) -> bool:
        return self.revoked_at is None and now <= self.expires_at


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    """Everything a gateway needs to connect: hand it over once, over a trusted channel."""

    tenant: str
    gateway_id: str
    token: str = field(repr=False)  # keep it out of reprs, tracebacks and logs
    token_id: str
    expires_at: int
    link_url: str
    ca_pem: bytes = field(repr=False)


def validate_id(value: str, what: str = "identifier") -> str:
    """Return ``value`` if it is a valid identifier.

    Raises:
        InvalidInput: it is not ``[a-z0-9][a-z0-9-]{0,62}``.
    """
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidInput(f"invalid {what} {value!r}: use a-z, 0-9 and '-', at most 63")
    return value


class Registry:
    """The registry tables in one SQLite file.

    Args:
        db_path: the database file (created 0600 if missing).
        now: wall clock in seconds since the epoch (injectable for tests).

    Raises:
        ConfigError: the file cannot be opened or holds a newer registry schema.
    """

    def __init__(self, db_path: str | os.PathLike[str], *, now: Callable[[], float] = time.time):
        self._now = now
        self._lock = threading.Lock()
        path = Path(db_path)
        try:
            _create_private(path)
        except OSError as exc:
            raise ConfigError(f"cannot create the registry: {exc}", key=str(path)) from exc
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
            # Per connection, and a no-op inside a transaction, so it goes first.
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._setup()
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the registry: {exc}", key=str(path)) from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- tenants ----------------------------------------------------------------------------

    def create_tenant(self, name: str) -> Tenant:
        """Raises: InvalidInput (bad name), Conflict (exists)."""
        validate_id(name, "tenant name")
        tenant = Tenant(name, self._now())
        with self._tx() as db:
            try:
                db.execute("INSERT INTO registry_tenants VALUES (?, ?)", (name, tenant.created_at))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"tenant {name} exists") from exc
        return tenant

    def get_tenant(self, name: str) -> Tenant:
        """Raises: NotFound."""
        with self._tx() as db:
            return self._tenant(db, name)

    def list_tenants(self) -> list[Tenant]:
        with self._tx() as db:
            rows = db.execute("SELECT name, created_at FROM registry_tenants ORDER BY name")
            return [Tenant(*row) for row in rows]

    # --- gateways ---------------------------------------------------------------------------

    def create_gateway(self, tenant: str, gateway_id: str) -> Gateway:
        """Raises: InvalidInput, NotFound (tenant), Conflict (exists, even if revoked)."""
        validate_id(gateway_id, "gateway id")
        gateway = Gateway(tenant, gateway_id, self._now(), None, None)
        with self._tx() as db:
            self._tenant(db, tenant)
            try:
                db.execute(
                    "INSERT INTO registry_gateways VALUES (?, ?, ?, NULL, NULL)",
                    (tenant, gateway_id, gateway.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"gateway {gateway_id} exists in {tenant}") from exc
        return gateway

    def get_gateway(self, tenant: str, gateway_id: str) -> Gateway:
        """Raises: NotFound."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM registry_gateways WHERE tenant = ? AND gateway_id = ?",
                (tenant, gateway_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no gateway {gateway_id} in {tenant}")
        return Gateway(*row)

    def list_gateways(self, tenant: str) -> list[Gateway]:
        """Raises: NotFound (tenant)."""
        with self._tx() as db:
            self._tenant(db, tenant)
            rows = db.execute(
                "SELECT * FROM registry_gateways WHERE tenant = ? ORDER BY gateway_id", (tenant,)
            )
            return [Gateway(*row) for row in rows]

    def revoke_gateway(self, tenant: str, gateway_id: str) -> int:
        """Revoke a gateway and every token issued to it.

        Returns:
            How many still-unrevoked tokens were revoked with it.

        Raises:
            NotFound: no such gateway.
        """
        return self._revoke_subject("registry_gateways", "gateway_id", tenant, gateway_id)

    def record_gateway_seen(self, tenant: str, gateway_id: str, now: float) -> None:
        """Note that the gateway connected or sent something at ``now``.

        Raises:
            NotFound: no such gateway.
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE registry_gateways SET last_seen = ? WHERE tenant = ? AND gateway_id = ?",
                (now, tenant, gateway_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no gateway {gateway_id} in {tenant}")

    # --- modules ----------------------------------------------------------------------------

    def create_module(self, tenant: str, module_id: str) -> Module:
        """Raises: InvalidInput, NotFound (tenant), Conflict (exists)."""
        validate_id(module_id, "module id")
        module = Module(tenant, module_id, self._now(), None)
        with self._tx() as db:
            self._tenant(db, tenant)
            try:
                db.execute(
                    "INSERT INTO registry_modules VALUES (?, ?, ?, NULL)",
                    (tenant, module_id, module.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"module {module_id} exists in {tenant}") from exc
        return module

    def get_module(self, tenant: str, module_id: str) -> Module:
        """Raises: NotFound."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM registry_modules WHERE tenant = ? AND module_id = ?",
                (tenant, module_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"no module {module_id} in {tenant}")
        return Module(*row)

    def list_modules(self, tenant: str) -> list[Module]:
        """Raises: NotFound (tenant)."""
        with self._tx() as db:
            self._tenant(db, tenant)
            rows = db.execute(
                "SELECT * FROM registry_modules WHERE tenant = ? ORDER BY module_id", (tenant,)
            )
            return [Module(*row) for row in rows]

    def revoke_module(self, tenant: str, module_id: str) -> int:
        """Revoke a module and every token issued to it; returns how many tokens."""
        return self._revoke_subject("registry_modules", "module_id", tenant, module_id)

    # --- tokens -----------------------------------------------------------------------------

    def record_token(
        self,
        jti: str,
        *,
        tenant: str,
        kind: PrincipalKind,
        subject: str,
        audience: str,
        issued_at: float,
        expires_at: float,
        publish: Sequence[str] = (),
        subscribe: Sequence[str] = (),
        scopes: Sequence[str] = (),
    ) -> TokenRecord:
        """Remember an issued token by its ``jti``.

        Raises:
            NotFound: unknown tenant.  Conflict: the ``jti`` is already recorded.
        """
        record = TokenRecord(
            jti,
            tenant,
            PrincipalKind(kind),
            subject,
            audience,
            issued_at,
            expires_at,
            None,
            tuple(publish),
            tuple(subscribe),
            tuple(scopes),
        )
        with self._tx() as db:
            self._tenant(db, tenant)
            try:
                db.execute(
                    "INSERT INTO registry_tokens VALUES (?,?,?,?,?,?,?,NULL,?,?,?)",
                    (
                        jti,
                        tenant,
                        record.kind.value,
                        subject,
                        audience,
                        issued_at,
                        expires_at,
                        *(json.dumps(list(v)) for v in (publish, subscribe, scopes)),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"token {jti} already recorded") from exc
        return record

    def record_claims(self, claims: Mapping[str, Any]) -> TokenRecord:
        """:meth:`record_token` from the claims returned by :meth:`TokenIssuer.issue`."""
        return self.record_token(
            claims["jti"],
            tenant=claims["tenant"],
            kind=PrincipalKind(claims["kind"]),
            subject=claims["sub"],
            audience=claims["aud"],
            issued_at=claims["iat"],
            expires_at=claims["exp"],
            publish=claims.get("pub", ()),
            subscribe=claims.get("sub_topics", ()),
            scopes=claims.get("scope", ()),
        )

    def revoke_token(self, jti: str) -> None:
        """Revoke a token (revoking twice is harmless). Raises: NotFound."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE registry_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE jti = ?",
                (self._now(), jti),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no token {jti}")

    def is_token_active(self, jti: str) -> bool:
        """True only for a known, unrevoked, unexpired token."""
        with self._tx() as db:
            row = db.execute(
                "SELECT revoked_at, expires_at FROM registry_tokens WHERE jti = ?", (jti,)
            ).fetchone()
        return row is not None and row[0] is None and self._now() <= row[1]

    def get_token(self, jti: str) -> TokenRecord:
        """Raises: NotFound."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM registry_tokens WHERE jti = ?", (jti,)).fetchone()
        if row is None:
            raise NotFound(f"no token {jti}")
        return _token(row)

    def list_tokens(self, tenant: str) -> list[TokenRecord]:
        """Every token recorded for ``tenant`` (including revoked and expired ones)."""
        with self._tx() as db:
            self._tenant(db, tenant)
            rows = db.execute(
                "SELECT * FROM registry_tokens WHERE tenant = ? ORDER BY issued_at, jti", (tenant,)
            )
            return [_token(row) for row in rows]

    # --- internals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # The lock serialises worker threads on the one connection; `with conn` commits or
        # rolls back the transaction Python's sqlite3 opened implicitly.
        with self._lock, self._conn:
            yield self._conn

    def _setup(self) -> None:
        with self._tx() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(
                "INSERT OR IGNORE INTO registry_meta VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            (version,) = db.execute(
                "SELECT value FROM registry_meta WHERE name = 'schema_version'"
            ).fetchone()
        if int(version) > SCHEMA_VERSION:
            raise ConfigError(f"registry schema {version} is newer than this code")

    def _tenant(self, db: sqlite3.Connection, name: str) -> Tenant:
        row = db.execute(
            "SELECT name, created_at FROM registry_tenants WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no tenant {name}")
        return Tenant(*row)

    def _revoke_subject(self, table: str, id_column: str, tenant: str, subject: str) -> int:
        kind = PrincipalKind.GATEWAY if table == "registry_gateways" else PrincipalKind.MODULE
        now = self._now()
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE {table} SET revoked_at = coalesce(revoked_at, ?) "  # noqa: S608  # nosec B608 - fixed names
                f"WHERE tenant = ? AND {id_column} = ?",
                (now, tenant, subject),
            )
            if cur.rowcount == 0:
                raise NotFound(f"no {kind.value} {subject} in {tenant}")
            cur = db.execute(
                "UPDATE registry_tokens SET revoked_at = ? WHERE tenant = ? AND kind = ? "
                "AND subject = ? AND revoked_at IS NULL",
                (now, tenant, kind.value, subject),
            )
            return cur.rowcount


def verify_active(
    issuer: TokenIssuer, registry: Registry, token: str | None, audience: Audience
) -> Principal:
    """Verify ``token`` and require the registry to know it as active.

    Raises:
        AuthError: any verification failure, or ``token_revoked`` for an unknown, revoked or
            expired ``jti``.
    """
    return issuer.verify(token, audience, is_active=registry.is_token_active)


def issue_gateway_credentials(
    home: CoreHome,
    tenant: str,
    gateway_id: str,
    *,
    registry: Registry | None = None,
    issuer: TokenIssuer | None = None,
) -> GatewayCredentials:
    """Register the gateway if new and issue it a link token.

    The token may publish ``gw/<gateway_id>/#`` and subscribe to ``cmd/<gateway_id>/#``.

    Raises:
        NotFound: unknown tenant.  Conflict: the gateway was revoked.  InvalidInput: bad id.
    """
    config = load_config(home)
    with _services(home, registry, issuer) as (reg, iss):
        _ensure_active(reg.get_gateway, reg.create_gateway, tenant, validate_id(gateway_id))
        token, claims = iss.issue(
            audience=Audience.LINK,
            subject=gateway_id,
            tenant=tenant,
            kind=PrincipalKind.GATEWAY,
            lifetime_s=config.gateway_token_lifetime_s,
            publish=[f"gw/{gateway_id}/#"],
            subscribe=[f"cmd/{gateway_id}/#"],
        )
        reg.record_claims(claims)
    return GatewayCredentials(
        tenant=tenant,
        gateway_id=gateway_id,
        token=token,
        token_id=claims["jti"],
        expires_at=claims["exp"],
        link_url=config.link_url,
        ca_pem=home.ca_cert.read_bytes(),
    )


def issue_module_token(
    home: CoreHome,
    tenant: str,
    module_id: str,
    publish: Sequence[str],
    subscribe: Sequence[str],
    *,
    registry: Registry | None = None,
    issuer: TokenIssuer | None = None,
) -> tuple[str, dict[str, Any]]:
    """Register the module if new and issue it a link token for the given topic patterns.

    Raises:
        NotFound: unknown tenant.  Conflict: the module was revoked.
        InvalidInput: bad id or topic pattern.
    """
    config = load_config(home)
    with _services(home, registry, issuer) as (reg, iss):
        _ensure_active(reg.get_module, reg.create_module, tenant, validate_id(module_id))
        token, claims = iss.issue(
            audience=Audience.LINK,
            subject=module_id,
            tenant=tenant,
            kind=PrincipalKind.MODULE,
            lifetime_s=config.module_token_lifetime_s,
            publish=publish,
            subscribe=subscribe,
        )
        reg.record_claims(claims)
    return token, claims


def issue_api_token(
    home: CoreHome,
    tenant: str,
    name: str,
    scopes: Sequence[str],
    lifetime_s: int,
    *,
    registry: Registry | None = None,
    issuer: TokenIssuer | None = None,
) -> tuple[str, dict[str, Any]]:
    """Issue a REST token named ``name`` with ``scopes`` (e.g. ``events:read``).

    Raises:
        NotFound: unknown tenant.
        InvalidInput: bad name or scope, no scopes, or a lifetime outside 1 s..the configured
            maximum (``tokens.api_max_lifetime_s``).
    """
    config = load_config(home)
    validate_id(name, "API token name")
    if not scopes or not all(SCOPE_RE.fullmatch(s) for s in scopes):
        raise InvalidInput(f"scopes must be one or more of the form 'resource:action': {scopes}")
    if not 0 < lifetime_s <= config.api_token_max_lifetime_s:
        raise InvalidInput(f"lifetime must be 1..{config.api_token_max_lifetime_s} s")
    with _services(home, registry, issuer) as (reg, iss):
        reg.get_tenant(tenant)
        token, claims = iss.issue(
            audience=Audience.REST,
            subject=name,
            tenant=tenant,
            kind=PrincipalKind.API,
            lifetime_s=lifetime_s,
            scopes=scopes,
        )
        reg.record_claims(claims)
    return token, claims


@contextlib.contextmanager
def _services(
    home: CoreHome, registry: Registry | None, issuer: TokenIssuer | None
) -> Iterator[tuple[Registry, TokenIssuer]]:
    with contextlib.ExitStack() as stack:
        if registry is None:
            registry = stack.enter_context(Registry(home.db_path))
        yield registry, issuer or TokenIssuer(home)


def _ensure_active(
    get: Callable[[str, str], Gateway | Module],
    create: Callable[[str, str], Gateway | Module],
    tenant: str,
    subject: str,
) -> None:
    try:
        found = get(tenant, subject)
    except NotFound:
        create(tenant, subject)
        return
    if found.revoked:
        # Re-enabling a revoked device must be a deliberate act, not a side effect of issuing.
        raise Conflict(f"{subject} in {tenant} was revoked")


def _create_private(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.close(fd)


def _token(row: tuple[Any, ...]) -> TokenRecord:
    jti, tenant, kind, subject, audience, issued, expires, revoked, pub, sub, scopes = row
    return TokenRecord(
        jti,
        tenant,
        PrincipalKind(kind),
        subject,
        audience,
        issued,
        expires,
        revoked,
        *(tuple(json.loads(v)) for v in (pub, sub, scopes)),
    )
