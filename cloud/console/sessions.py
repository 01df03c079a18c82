"""Console sessions: what an opaque cookie id stands for, kept in the core's memory.

Contract:

* A console session wraps one identity session (:mod:`cloud.identity.sessions`): it holds
  that session's access and refresh tokens server side, so the browser never sees a token;
  the cookie carries only a random id.
* Each console session has its own CSRF token and may hold short-lived, single-use WebSocket
  tickets (:data:`TICKET_LIFETIME_S`).
* Sessions are dropped at logout, when their identity session ends (the caller finds out
  when a token check or refresh fails), and after :data:`IDLE_LIFETIME_S` without use.
* Pre-login state (the TOTP ticket, a passkey challenge, the login form's CSRF token) lives
  in separate, shorter-lived entries.

Not done here: cookies and HTTP (the routes), checking tokens (the caller). The store is per
process: a core restart signs every console user out, which is the safe direction.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from cloud.console.security import new_secret, same_secret

if TYPE_CHECKING:
    from collections.abc import Callable

IDLE_LIFETIME_S: Final = 30 * 60
PRELOGIN_LIFETIME_S: Final = 5 * 60
TICKET_LIFETIME_S: Final = 30
MAX_ENTRIES: Final = 50_000


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    sid: str = field(repr=False)
    tenant: str
    user_id: str
    session_id: str  # the identity session
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: float
    csrf: str = field(repr=False)
    last_seen: float


@dataclass(frozen=True, slots=True)
class PreLogin:
    """State between the steps of a login (never a session: grants nothing)."""

    pid: str = field(repr=False)
    csrf: str = field(repr=False)
    created_at: float
    tenant: str = ""
    ticket: str | None = field(default=None, repr=False)  # the identity TOTP ticket
    enrol: bool = False
    challenge: bytes | None = field(default=None, repr=False)  # a passkey challenge


class ConsoleSessions:
    """Thread-safe in-memory tables of console sessions, pre-logins and tickets."""

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._sessions: dict[str, ConsoleSession] = {}
        self._pre: dict[str, PreLogin] = {}
        self._tickets: dict[str, tuple[str, float]] = {}

    def open(
        self, tenant: str, user_id: str, session_id: str, access: str, refresh: str, ttl: int
    ) -> ConsoleSession:
        now = self._now()
        session = ConsoleSession(
            new_secret(), tenant, user_id, session_id, access, refresh, now + ttl,
            new_secret(), now,
        )  # fmt: skip
        with self._lock:
            self._prune(now)
            self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> ConsoleSession | None:
        """The live session for a cookie value, touched; ``None`` when unknown or idle."""
        if not sid:
            return None
        now = self._now()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            if now - session.last_seen > IDLE_LIFETIME_S:
                del self._sessions[sid]
                return None
            session = replace(session, last_seen=now)
            self._sessions[sid] = session
            return session

    def alive(self, sid: str) -> bool:
        with self._lock:
            return sid in self._sessions

    def rotate(self, sid: str, access: str, refresh: str, ttl: int) -> ConsoleSession | None:
        now = self._now()
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return None
            session = replace(
                session, access_token=access, refresh_token=refresh, access_expires_at=now + ttl
            )
            self._sessions[sid] = session
            return session

    def close(self, sid: str) -> ConsoleSession | None:
        with self._lock:
            self._tickets = {k: v for k, v in self._tickets.items() if v[0] != sid}
            return self._sessions.pop(sid, None)

    def close_identity_sessions(self, session_ids: set[str]) -> None:
        """Drop console sessions whose identity session was ended elsewhere."""
        with self._lock:
            for sid in [s.sid for s in self._sessions.values() if s.session_id in session_ids]:
                del self._sessions[sid]

    # --- pre-login --------------------------------------------------------------------------

    def prelogin(self, pid: str | None) -> PreLogin:
        """The pre-login state for a cookie value, or a fresh one."""
        now = self._now()
        with self._lock:
            current = self._pre.get(pid or "")
            if current is not None and now - current.created_at <= PRELOGIN_LIFETIME_S:
                return current
            self._prune(now)
            fresh = PreLogin(new_secret(), new_secret(), now)
            self._pre[fresh.pid] = fresh
            return fresh

    def update_prelogin(self, state: PreLogin) -> None:
        with self._lock:
            if state.pid in self._pre:
                self._pre[state.pid] = state

    def end_prelogin(self, pid: str) -> None:
        with self._lock:
            self._pre.pop(pid, None)

    # --- WebSocket tickets ------------------------------------------------------------------

    def ticket(self, sid: str) -> str:
        value = new_secret()
        with self._lock:
            self._tickets[value] = (sid, self._now() + TICKET_LIFETIME_S)
        return value

    def redeem(self, value: str, sid: str | None) -> ConsoleSession | None:
        """Spend a ticket; the session it was issued to (which must be ``sid``) or ``None``."""
        with self._lock:
            entry = self._tickets.pop(value, None) if isinstance(value, str) else None
            if entry is None or sid is None or self._now() > entry[1]:
                return None
            if not same_secret(entry[0], sid):
                return None
            return self._sessions.get(entry[0])

    def _prune(self, now: float) -> None:
        if len(self._sessions) + len(self._pre) < MAX_ENTRIES:
            return
        self._sessions = {
            k: s for k, s in self._sessions.items() if now - s.last_seen <= IDLE_LIFETIME_S
        }
        self._pre = {
            k: p for k, p in self._pre.items() if now - p.created_at <= PRELOGIN_LIFETIME_S
        }
        self._tickets = {k: v for k, v in self._tickets.items() if v[1] >= now}
