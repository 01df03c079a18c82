"""MQTT credentials the core issues to a tenant: a username and a random token, shown once.

Contract:

* A credential is ``<tenant>.<name>`` (the dot cannot occur in an identifier, so usernames of
  different tenants never collide) with a role of the same name that allows only the given
  patterns, anchored under ``t/<tenant>/`` (:func:`cloud.mqtt.topics.absolute_pattern`).
* The token is 256 random bits (``secrets.token_urlsafe``): Mosquitto stores only a weak
  PBKDF2 hash of it, so it must not be guessable. The core keeps no copy of it; the table
  ``mqtt_credentials`` in ``db/core.sqlite`` records who has what, never the secret.
* :func:`create_credential` records the credential, then creates it in the broker; if the
  broker refuses or is down, the record is removed again and the error raised.
* :func:`revoke_credential` records the revocation first, then disables the user in the broker
  (which disconnects its live sessions). If the broker cannot be told, the error says so and
  revoking again retries; a revoked credential is never reported active.

Synchronous (sqlite3 and :mod:`cloud.mqtt.control`); Trio callers use a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloud.errors import Conflict, InvalidInput, NotFound
from cloud.mqtt import control, dynsec
from cloud.mqtt.broker import TOKEN_BYTES
from cloud.mqtt.topics import absolute_pattern
from cloud.registry import Registry, validate_id

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from cloud.home import CoreHome

_SCHEMA = """CREATE TABLE IF NOT EXISTS mqtt_credentials (
    username TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL,
    publish TEXT NOT NULL, subscribe TEXT NOT NULL,
    created_at REAL NOT NULL, revoked_at REAL)"""
MAX_PATTERNS = 32


@dataclass(frozen=True, slots=True)
class Credential:
    """What the core records about an MQTT credential (never its token)."""

    tenant: str
    name: str
    username: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    credential: Credential
    token: str = field(repr=False)  # shown once to the operator; never logged


def username_for(tenant: str, name: str) -> str:
    return f"{tenant}.{name}"


def create_credential(
    home: CoreHome,
    tenant: str,
    name: str,
    publish: Sequence[str],
    subscribe: Sequence[str],
    *,
    now: float | None = None,
) -> IssuedCredential:
    """Issue a credential allowed ``publish``/``subscribe`` (patterns relative to the tenant).

    Raises:
        InvalidInput: bad name or pattern, or no pattern at all.
        NotFound: unknown tenant.  Conflict: the name is taken (even if revoked).
        BrokerUnavailable, ControlRefused: the broker could not create it.
    """
    validate_id(name, "credential name")
    if not publish and not subscribe:
        raise InvalidInput("give at least one --publish or --subscribe pattern")
    if len(publish) + len(subscribe) > MAX_PATTERNS:
        raise InvalidInput(f"at most {MAX_PATTERNS} patterns")
    with Registry(home.db_path) as registry:
        registry.get_tenant(tenant)
    credential = Credential(
        tenant,
        name,
        username_for(tenant, name),
        tuple(absolute_pattern(tenant, p) for p in publish),
        tuple(absolute_pattern(tenant, p) for p in subscribe),
        time.time() if now is None else now,
        None,
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    with _db(home) as db:
        try:
            db.execute(
                "INSERT INTO mqtt_credentials VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (
                    credential.username,
                    tenant,
                    name,
                    json.dumps(credential.publish),
                    json.dumps(credential.subscribe),
                    credential.created_at,
                ),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"MQTT credential {name} exists in {tenant}") from None
    acls = dynsec.tenant_acls(credential.publish, credential.subscribe)
    try:
        control.run_commands(
            home,
            [
                dynsec.create_role_command(credential.username, acls),
                dynsec.create_client_command(credential.username, token, credential.username),
            ],
        )
    except BaseException:
        with _db(home) as db:
            db.execute("DELETE FROM mqtt_credentials WHERE username = ?", (credential.username,))
        raise
    return IssuedCredential(credential, token)


def revoke_credential(home: CoreHome, tenant: str, name: str) -> Credential:
    """Revoke and disconnect. Raises: NotFound, BrokerUnavailable (recorded; retry)."""
    username = username_for(tenant, validate_id(name, "credential name"))
    with _db(home) as db:
        db.execute(
            "UPDATE mqtt_credentials SET revoked_at = coalesce(revoked_at, ?) "
            "WHERE username = ? AND tenant = ?",
            (time.time(), username, tenant),
        )
        row = db.execute(
            "SELECT * FROM mqtt_credentials WHERE username = ? AND tenant = ?",
            (username, tenant),
        ).fetchone()
    if row is None:
        raise NotFound(f"no MQTT credential {name} in {tenant}")
    control.run_commands(home, [dynsec.disable_client_command(username)])
    return _credential(row)


def list_credentials(home: CoreHome, tenant: str) -> list[Credential]:
    """Every credential of ``tenant``, revoked ones included. Raises: NotFound (tenant)."""
    with Registry(home.db_path) as registry:
        registry.get_tenant(tenant)
    with _db(home) as db:
        rows = db.execute(
            "SELECT * FROM mqtt_credentials WHERE tenant = ? ORDER BY name", (tenant,)
        ).fetchall()
    return [_credential(row) for row in rows]


@contextlib.contextmanager
def _db(home: CoreHome) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(home.db_path, timeout=10.0)
    try:
        with conn:
            conn.execute(_SCHEMA)
            yield conn
    finally:
        conn.close()


def _credential(row: tuple[object, ...]) -> Credential:
    username, tenant, name, publish, subscribe, created_at, revoked_at = row
    assert isinstance(publish, str)
    assert isinstance(subscribe, str)
    return Credential(
        str(tenant),
        str(name),
        str(username),
        tuple(json.loads(publish)),
        tuple(json.loads(subscribe)),
        float(created_at),  # type: ignore[arg-type]
        None if revoked_at is None else float(revoked_at),  # type: ignore[arg-type]
    )
