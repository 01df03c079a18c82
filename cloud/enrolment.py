"""Enrolment codes and credentials bound to a gateway's device key.

Flow (``docs/gateway-lifecycle.md`` §Enrolment):

1. :meth:`Enrolment.create_code` registers the gateway if new and returns a one-time code.
   Only its SHA-256 is stored (the code carries 160 random bits, so a fast hash is enough:
   guessing is hopeless and a copy of the database yields nothing usable).
2. The gateway sends the code with a DPoP proof signed by its new device key.
   :meth:`Enrolment.redeem` spends the code in one ``UPDATE`` that matches only an unused,
   unexpired code, so two concurrent uses cannot both win; it records the key's thumbprint
   for the gateway, revokes the link tokens it held before (a re-flashed board has a new
   key) and issues a link token with ``cnf.jkt`` (RFC 7800 §3.1, RFC 9449 §6.1).
3. :meth:`Enrolment.renew` issues a fresh token bound to the same key (the core sends it
   over the live link, :mod:`cloud.fleet.agent`).

Not done here: HTTP (:mod:`cloud.api.enrolment`) and checking the proof itself
(:mod:`cloud.fleet.dpop`).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from cloud.errors import AuthCode, AuthError, Conflict, NotFound
from cloud.fleet.bundle import load_or_create_release_key, public_key_text
from cloud.fleet.dpop import ProofError, ReplayCache, verify_proof
from cloud.home import load_config
from cloud.principal import PrincipalKind
from cloud.registry import _ensure_active, validate_id
from cloud.tokens import Audience, confirmation_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from cloud.home import CoreHome
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer

DEFAULT_CODE_LIFETIME_S: Final = 72 * 3600
CODE_BYTES: Final = 20

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS enrolment_codes (
        code_hash TEXT PRIMARY KEY, tenant TEXT NOT NULL, gateway_id TEXT NOT NULL,
        created_at REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL)""",
    """CREATE TABLE IF NOT EXISTS enrolment_keys (
        tenant TEXT NOT NULL, gateway_id TEXT NOT NULL, jkt TEXT NOT NULL,
        enrolled_at REAL NOT NULL, PRIMARY KEY (tenant, gateway_id))""",
)


@dataclass(frozen=True, slots=True)
class BootInfo:
    """What goes on a board's boot partition: no long-lived secret, only a one-time code."""

    tenant: str
    gateway_id: str
    code: str = field(repr=False)
    expires_at: float
    link_url: str
    rest_url: str
    ca_pem: bytes = field(repr=False)
    release_key: str


@dataclass(frozen=True, slots=True)
class BoundCredentials:
    token: str = field(repr=False)
    token_id: str
    expires_at: int
    jkt: str


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


class Enrolment:
    """Codes, enrolled keys and bound tokens for one core home."""

    def __init__(
        self,
        home: CoreHome,
        registry: Registry,
        issuer: TokenIssuer,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._home = home
        self._registry = registry
        self._issuer = issuer
        self._now = now
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(home.db_path, check_same_thread=False, timeout=10.0)
        with self._tx() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def create_code(
        self, tenant: str, gateway_id: str, lifetime_s: int = DEFAULT_CODE_LIFETIME_S
    ) -> BootInfo:
        """Register the gateway if new and return a fresh one-time code for it.

        Raises:
            NotFound: unknown tenant.  Conflict: the gateway was revoked.
        """
        validate_id(gateway_id, "gateway id")
        reg = self._registry
        _ensure_active(reg.get_gateway, reg.create_gateway, tenant, gateway_id)
        code = secrets.token_urlsafe(CODE_BYTES)
        now = self._now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO enrolment_codes VALUES (?, ?, ?, ?, ?, NULL)",
                (code_hash(code), tenant, gateway_id, now, now + lifetime_s),
            )
        config = load_config(self._home)
        release_key = public_key_text(load_or_create_release_key(self._home).public_key())
        return BootInfo(
            tenant,
            gateway_id,
            code,
            now + lifetime_s,
            config.link_url,
            config.rest_url,
            self._home.ca_cert.read_bytes(),
            release_key,
        )

    def redeem(self, code: str, jkt: str) -> tuple[str, str, BoundCredentials]:
        """Spend ``code`` for the key ``jkt``; returns (tenant, gateway id, credentials).

        Raises:
            AuthError: unknown, used or expired code (one answer for all three), or a
                revoked gateway.
        """
        now = self._now()
        with self._tx() as db:
            row = db.execute(
                "UPDATE enrolment_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL "
                "AND expires_at >= ? RETURNING tenant, gateway_id",
                (now, code_hash(code), now),
            ).fetchone()
            if row is None:
                raise AuthError(AuthCode.INVALID, "enrolment code unknown, used or expired")
            tenant, gateway_id = row
            db.execute(
                "INSERT OR REPLACE INTO enrolment_keys VALUES (?, ?, ?, ?)",
                (tenant, gateway_id, jkt, now),
            )
        if self._registry.get_gateway(tenant, gateway_id).revoked:
            raise AuthError(AuthCode.REVOKED, "gateway revoked")
        self._revoke_link_tokens(tenant, gateway_id)
        return tenant, gateway_id, self._issue(tenant, gateway_id, jkt)

    def _revoke_link_tokens(self, tenant: str, gateway_id: str) -> None:
        # A board enrolled again (re-flashed) has a new key: what the old one held must go.
        now = self._now()
        for record in self._registry.list_tokens(tenant):
            if (
                record.kind is PrincipalKind.GATEWAY
                and record.subject == gateway_id
                and record.active_at(now)
            ):
                self._registry.revoke_token(record.jti)

    def enrolled_key(self, tenant: str, gateway_id: str) -> str:
        """The thumbprint the gateway enrolled with. Raises: NotFound."""
        with self._tx() as db:
            row = db.execute(
                "SELECT jkt FROM enrolment_keys WHERE tenant = ? AND gateway_id = ?",
                (tenant, gateway_id),
            ).fetchone()
        if row is None:
            raise NotFound(f"gateway {gateway_id} in {tenant} never enrolled")
        return str(row[0])

    def renew(self, tenant: str, gateway_id: str) -> BoundCredentials:
        """A new token bound to the enrolled key. Raises: NotFound, Conflict (revoked)."""
        if self._registry.get_gateway(tenant, gateway_id).revoked:
            raise Conflict(f"gateway {gateway_id} in {tenant} was revoked")
        return self._issue(tenant, gateway_id, self.enrolled_key(tenant, gateway_id))

    def _issue(self, tenant: str, gateway_id: str, jkt: str) -> BoundCredentials:
        config = load_config(self._home)
        token, claims = self._issuer.issue(
            audience=Audience.LINK,
            subject=gateway_id,
            tenant=tenant,
            kind=PrincipalKind.GATEWAY,
            lifetime_s=config.gateway_token_lifetime_s,
            publish=[f"gw/{gateway_id}/#"],
            subscribe=[f"cmd/{gateway_id}/#"],
            confirmation=jkt,
        )
        self._registry.record_claims(claims)
        return BoundCredentials(token, claims["jti"], claims["exp"], jkt)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._conn:
            yield self._conn


class LinkProof:
    """The link handshake's proof-of-possession check (``LinkServer.proof``).

    A token without ``cnf`` passes unchanged (credentials from ``assetbook gateway create``);
    a key-bound token needs a DPoP proof for ``GET <link URL>`` signed by that key, bound to
    that token (``ath``), fresh, and never seen before.
    """

    def __init__(self, link_url: str, *, now: Callable[[], float] = time.time) -> None:
        self._url = link_url
        self._now = now
        self._replay = ReplayCache()

    def __call__(self, token: str, proof: str) -> None:
        """Raises: ProofError."""
        jkt = confirmation_of(token)
        if jkt is None:
            return
        found = verify_proof(
            proof, method="GET", url=self._url, now=self._now(), replay=self._replay, token=token
        )
        if found != jkt:
            raise ProofError("DPoP proof signed by another key than the token is bound to")
