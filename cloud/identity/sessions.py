"""Login sessions: short-lived access JWTs, rotating opaque refresh tokens, logout everywhere.

Contract:

* A session is created only by :class:`cloud.identity.service.IdentityService` after every
  factor the tenant requires has been checked; the method used is stored with it and
  checked again on every refresh (a tenant that raises its minimum ends weaker sessions).
* Access tokens are signed by :class:`cloud.tokens.TokenIssuer` (EdDSA, ``typ``, ``aud``,
  ``jti``, ``kid``), live ``ACCESS_LIFETIME_S`` and are recorded in the registry, so a revoked
  ``jti`` is refused by REST and the link until it expires.
* Refresh tokens are 256 random bits, shown once and stored as SHA-256 (a fast hash is
  enough for a secret of that entropy: ASVS 5.0.0 §6.5.2); each use returns a new one, and
  presenting a used one revokes the whole session (RFC 9700 §4.14.2, refresh token rotation).
* :meth:`SessionManager.end` revokes the sessions, every token id issued to them, and calls
  ``on_revoked`` with those ids so the link server can close live WebSockets at once.

Not done here: cookies (the console issue decides how browsers hold tokens).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cloud.errors import AuthCode, AuthError, NotFound
from cloud.identity.errors import LoginFailed, MethodRequired
from cloud.identity.roles import ROLE_SCOPES, ROLE_SUBSCRIBE, satisfies
from cloud.identity.store import Session
from cloud.principal import PrincipalKind
from cloud.tokens import Audience

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from cloud.identity.roles import LoginMethod
    from cloud.identity.store import IdentityStore, User
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer

ACCESS_LIFETIME_S = 10 * 60
LINK_LIFETIME_S = 10 * 60
REFRESH_LIFETIME_S = 8 * 3600
SESSION_LIFETIME_S = 24 * 3600
REFRESH_BYTES = 32  # 256 bits


@dataclass(frozen=True, slots=True)
class Tokens:
    """What a successful login or refresh hands to the client (once)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    session_id: str


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy opaque secret, hex (what the database keeps)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionManager:
    def __init__(
        self,
        store: IdentityStore,
        registry: Registry,
        issuer: TokenIssuer,
        *,
        now: Callable[[], float] = time.time,
        on_revoked: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.issuer = issuer
        self._now = now
        self.on_revoked = on_revoked

    def start(self, user: User, method: LoginMethod) -> Tokens:
        """Open a session for ``user`` (all factors already checked)."""
        now = self._now()
        session = Session(
            "s-" + secrets.token_hex(16), user.tenant, user.user_id, method, now,
            now + SESSION_LIFETIME_S, None,
        )  # fmt: skip
        self.store.insert_session(session)
        return self._tokens(session, user, now)

    def refresh(self, refresh_token: str) -> Tokens:
        """Rotate: the presented token is spent and a new pair is returned.

        Raises:
            LoginFailed: unknown, expired or reused token (reuse ends the session), ended
                session, disabled user.
            MethodRequired: the tenant's minimum is now stronger than the session's method.
        """
        now = self._now()
        try:
            session_id, expires_at, fresh = self.store.use_refresh(digest(refresh_token), now)
        except NotFound:
            raise LoginFailed("unknown_refresh") from None
        if not fresh:
            # A spent token presented again: someone holds a copy. End the family at once.
            self.end_session(session_id, "refresh_reuse")
            raise LoginFailed("refresh_reuse")
        session = self.store.session(session_id)
        if now >= expires_at or not session.active_at(now):
            raise LoginFailed("session_ended")
        user = self.store.user_by_id(session.user_id)
        _, login = self.store.tenant_settings(session.tenant)
        if user.disabled:
            self.end_session(session_id, "user_disabled")
            raise LoginFailed("disabled")
        if not satisfies(session.method, login.min_method):
            self.end_session(session_id, "method_below_minimum")
            raise MethodRequired(login.min_method.value)
        return self._tokens(session, user, now)

    def session_for(self, token_id: str) -> Session:
        """The active session an access token belongs to.

        Raises:
            AuthError: the token is not a session token or the session has ended.
        """
        try:
            session = self.store.session(self.store.session_of_token(token_id))
        except NotFound:
            raise AuthError(AuthCode.INVALID, "not a session token") from None
        if not session.active_at(self._now()):
            raise AuthError(AuthCode.REVOKED, "session ended")
        return session

    def link_token(self, session: Session) -> tuple[str, int]:
        """A link (WSS) token for this session: subscribe-only, closed at logout."""
        user = self.store.user_by_id(session.user_id)
        token, claims = self.issuer.issue(
            audience=Audience.LINK, subject=user.user_id, tenant=user.tenant,
            kind=PrincipalKind.USER, lifetime_s=LINK_LIFETIME_S,
            subscribe=ROLE_SUBSCRIBE[user.role],
        )  # fmt: skip
        self.registry.record_claims(claims)
        self.store.add_session_token(
            claims["jti"], session.session_id, Audience.LINK.value, claims["exp"]
        )
        return token, LINK_LIFETIME_S

    def end_session(self, session_id: str, reason: str) -> list[str]:
        """Log one session out everywhere; returns the token ids revoked."""
        return self._end(self.store.revoke_sessions("session_id", session_id, self._now(), reason))

    def end_user_sessions(self, user_id: str, reason: str) -> list[str]:
        """End every session of a user (password change, disable)."""
        return self._end(self.store.revoke_sessions("user_id", user_id, self._now(), reason))

    def _end(self, session_ids: list[str]) -> list[str]:
        if not session_ids:
            return []
        jtis = self.store.session_tokens(session_ids, self._now() - 60)
        for jti in jtis:
            try:
                self.registry.revoke_token(jti)
            except NotFound:
                continue
        if self.on_revoked is not None and jtis:
            self.on_revoked(jtis)
        return jtis

    def _tokens(self, session: Session, user: User, now: float) -> Tokens:
        access, claims = self.issuer.issue(
            audience=Audience.REST, subject=user.user_id, tenant=user.tenant,
            kind=PrincipalKind.USER, lifetime_s=ACCESS_LIFETIME_S,
            scopes=ROLE_SCOPES[user.role],
        )  # fmt: skip
        self.registry.record_claims(claims)
        self.store.add_session_token(
            claims["jti"], session.session_id, Audience.REST.value, claims["exp"]
        )
        refresh = secrets.token_urlsafe(REFRESH_BYTES)
        expires = min(now + REFRESH_LIFETIME_S, session.expires_at)
        self.store.insert_refresh(digest(refresh), session.session_id, now, expires)
        return Tokens(access, refresh, ACCESS_LIFETIME_S, session.session_id)
