"""SQLite tables for identity (prefix ``identity_``) in the core database.

Contract: :class:`IdentityStore` is synchronous; every public method is one transaction under
a lock, so it may be called from worker threads. It stores only what a copy of the database
may reveal: sealed hashes (never passwords, personnummer or their plain Argon2 strings), a
keyed index for personnummer lookups, SHA-256 digests of high-entropy opaque tokens (refresh,
reset, MFA tickets), keyed MACs of recovery codes, and the sealed TOTP secret. It makes no
security decision itself (:mod:`.service` and :mod:`.sessions` do).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloud.errors import Conflict, NotFound
from cloud.identity.lockout import LockState
from cloud.identity.policy import PasswordPolicy, policy_from_dict
from cloud.identity.roles import LoginMethod, LoginSettings, Role, login_settings_from_dict

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS identity_users (
        user_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, email TEXT NOT NULL,
        name TEXT NOT NULL, role TEXT NOT NULL, created_at REAL NOT NULL, disabled_at REAL,
        password TEXT, password_changed_at REAL,
        pnr TEXT, pnr_index TEXT,
        totp_secret TEXT, totp_enabled INTEGER NOT NULL DEFAULT 0,
        totp_last_step INTEGER NOT NULL DEFAULT -1,
        failures INTEGER NOT NULL DEFAULT 0, window_start REAL NOT NULL DEFAULT 0,
        locks INTEGER NOT NULL DEFAULT 0, locked_until REAL NOT NULL DEFAULT 0,
        UNIQUE (tenant, email))""",
    "CREATE INDEX IF NOT EXISTS identity_users_pnr ON identity_users (tenant, pnr_index)",
    """CREATE TABLE IF NOT EXISTS identity_tenant_settings (
        tenant TEXT PRIMARY KEY, policy TEXT NOT NULL, login TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS identity_recovery_codes (
        user_id TEXT NOT NULL, code_mac TEXT NOT NULL, used_at REAL,
        PRIMARY KEY (user_id, code_mac))""",
    """CREATE TABLE IF NOT EXISTS identity_sessions (
        session_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user_id TEXT NOT NULL,
        method TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
        revoked_at REAL, revoke_reason TEXT)""",
    """CREATE TABLE IF NOT EXISTS identity_refresh_tokens (
        digest TEXT PRIMARY KEY, session_id TEXT NOT NULL, issued_at REAL NOT NULL,
        expires_at REAL NOT NULL, used_at REAL)""",
    """CREATE TABLE IF NOT EXISTS identity_session_tokens (
        jti TEXT PRIMARY KEY, session_id TEXT NOT NULL, audience TEXT NOT NULL,
        expires_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS identity_one_time (
        digest TEXT PRIMARY KEY, purpose TEXT NOT NULL, user_id TEXT NOT NULL,
        expires_at REAL NOT NULL, used_at REAL, failures INTEGER NOT NULL DEFAULT 0)""",
)


@dataclass(frozen=True, slots=True)
class User:
    """A user row. Sealed fields are opaque here; never send them to a client."""

    user_id: str
    tenant: str
    email: str
    name: str
    role: Role
    created_at: float
    disabled_at: float | None
    password: str | None
    password_changed_at: float | None
    pnr: str | None
    pnr_index: str | None
    totp_secret: str | None
    totp_enabled: bool
    totp_last_step: int
    lock: LockState

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    tenant: str
    user_id: str
    method: LoginMethod
    created_at: float
    expires_at: float
    revoked_at: float | None

    def active_at(self, now: float) -> bool:
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class OneTime:
    """A single-use secret (reset token, MFA ticket), known only by its digest."""

    digest: str
    purpose: str
    user_id: str
    expires_at: float
    used_at: float | None
    failures: int


# Every SQL string below is built only from these constants and "?" placeholders (never from
# input), which is why the S608 warnings are silenced where they appear.
_USER_COLUMNS = (
    "user_id, tenant, email, name, role, created_at, disabled_at, password, "
    "password_changed_at, pnr, pnr_index, totp_secret, totp_enabled, totp_last_step, "
    "failures, window_start, locks, locked_until"
)


class IdentityStore:
    """The identity tables in ``db_path`` (the core database)."""

    def __init__(self, db_path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db_path, check_same_thread=False, timeout=10.0)
        with self._tx() as db:
            for statement in _SCHEMA:
                db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._conn:
            yield self._conn

    # --- users ------------------------------------------------------------------------------

    def insert_user(self, user: User) -> None:
        """Raises: Conflict (email taken in the tenant)."""
        lock = user.lock
        row = (
            user.user_id, user.tenant, user.email, user.name, user.role.value,
            user.created_at, user.disabled_at, user.password, user.password_changed_at,
            user.pnr, user.pnr_index, user.totp_secret, int(user.totp_enabled),
            user.totp_last_step, lock.failures, lock.window_start, lock.locks, lock.locked_until,
        )  # fmt: skip
        with self._tx() as db:
            try:
                db.execute(f"INSERT INTO identity_users ({_USER_COLUMNS}) VALUES ({_q(18)})", row)  # noqa: S608  # nosec B608
            except sqlite3.IntegrityError as exc:
                raise Conflict("a user with this email exists in the tenant") from exc

    def user(self, tenant: str, user_id: str) -> User:
        """Raises: NotFound (also for another tenant's user: same answer)."""
        return self._one("tenant = ? AND user_id = ?", (tenant, user_id))

    def user_by_email(self, tenant: str, email: str) -> User:
        return self._one("tenant = ? AND email = ?", (tenant, email))

    def user_by_id(self, user_id: str) -> User:
        return self._one("user_id = ?", (user_id,))

    def users_by_pnr_index(self, tenant: str, candidates: list[str]) -> list[User]:
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_USER_COLUMNS} FROM identity_users WHERE tenant = ? "  # noqa: S608  # nosec B608
                f"AND pnr_index IN ({_q(len(candidates))})",
                (tenant, *candidates),
            ).fetchall()
        return [_user(r) for r in rows]

    def list_users(self, tenant: str) -> list[User]:
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_USER_COLUMNS} FROM identity_users WHERE tenant = ? ORDER BY email",  # noqa: S608  # nosec B608
                (tenant,),
            ).fetchall()
        return [_user(r) for r in rows]

    def all_users(self) -> list[User]:
        with self._tx() as db:
            rows = db.execute(f"SELECT {_USER_COLUMNS} FROM identity_users").fetchall()  # noqa: S608  # nosec B608
        return [_user(r) for r in rows]

    def update_user(self, user_id: str, **fields: Any) -> None:
        """Set columns of one user (names are checked against the schema).

        Raises:
            NotFound: no such user.
        """
        allowed = set(_USER_COLUMNS.split(", ")) - {"user_id", "tenant"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"bad user fields {sorted(fields)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE identity_users SET {assignments} WHERE user_id = ?",  # noqa: S608  # nosec B608
                (*fields.values(), user_id),
            )
            if cur.rowcount == 0:
                raise NotFound("no such user")

    def set_lock(self, user_id: str, lock: LockState) -> None:
        self.update_user(
            user_id,
            failures=lock.failures,
            window_start=lock.window_start,
            locks=lock.locks,
            locked_until=lock.locked_until,
        )

    def claim_totp_step(self, user_id: str, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) was used already."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE identity_users SET totp_last_step = ? "
                "WHERE user_id = ? AND totp_last_step < ?",
                (step, user_id, step),
            )
            return cur.rowcount == 1

    def _one(self, where: str, params: tuple[Any, ...]) -> User:
        with self._tx() as db:
            row = db.execute(
                f"SELECT {_USER_COLUMNS} FROM identity_users WHERE {where}",  # noqa: S608  # nosec B608
                params,
            ).fetchone()
        if row is None:
            raise NotFound("no such user")
        return _user(row)

    # --- tenant settings --------------------------------------------------------------------

    def tenant_settings(self, tenant: str) -> tuple[PasswordPolicy, LoginSettings]:
        """The tenant's settings, or the defaults if it never set any."""
        with self._tx() as db:
            row = db.execute(
                "SELECT policy, login FROM identity_tenant_settings WHERE tenant = ?", (tenant,)
            ).fetchone()
        if row is None:
            return PasswordPolicy(), LoginSettings()
        return policy_from_dict(json.loads(row[0])), login_settings_from_dict(json.loads(row[1]))

    def set_tenant_settings(
        self, tenant: str, policy: PasswordPolicy, login: LoginSettings
    ) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO identity_tenant_settings VALUES (?, ?, ?)",
                (tenant, json.dumps(policy.to_dict()), json.dumps(login.to_dict())),
            )

    # --- recovery codes ---------------------------------------------------------------------

    def replace_recovery_codes(self, user_id: str, macs: list[str]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM identity_recovery_codes WHERE user_id = ?", (user_id,))
            db.executemany(
                "INSERT INTO identity_recovery_codes VALUES (?, ?, NULL)",
                [(user_id, m) for m in macs],
            )

    def use_recovery_code(self, user_id: str, mac: str, now: float) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE identity_recovery_codes SET used_at = ? "
                "WHERE user_id = ? AND code_mac = ? AND used_at IS NULL",
                (now, user_id, mac),
            )
            return cur.rowcount == 1

    # --- one-time secrets -------------------------------------------------------------------

    def insert_one_time(self, item: OneTime) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO identity_one_time VALUES (?, ?, ?, ?, NULL, 0)",
                (item.digest, item.purpose, item.user_id, item.expires_at),
            )

    def one_time(self, digest: str, purpose: str) -> OneTime:
        """Raises: NotFound."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM identity_one_time WHERE digest = ? AND purpose = ?",
                (digest, purpose),
            ).fetchone()
        if row is None:
            raise NotFound("no such one-time secret")
        return OneTime(*row)

    def use_one_time(self, digest: str, now: float) -> bool:
        """Mark used; False if it was used already (single use under concurrency)."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE identity_one_time SET used_at = ? WHERE digest = ? AND used_at IS NULL",
                (now, digest),
            )
            return cur.rowcount == 1

    def fail_one_time(self, digest: str) -> int:
        with self._tx() as db:
            db.execute(
                "UPDATE identity_one_time SET failures = failures + 1 WHERE digest = ?", (digest,)
            )
            row = db.execute(
                "SELECT failures FROM identity_one_time WHERE digest = ?", (digest,)
            ).fetchone()
        return int(row[0]) if row else 0

    def expire_one_time_for(self, user_id: str, purpose: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE identity_one_time SET used_at = ? "
                "WHERE user_id = ? AND purpose = ? AND used_at IS NULL",
                (now, user_id, purpose),
            )

    # --- sessions ---------------------------------------------------------------------------

    def insert_session(self, session: Session) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO identity_sessions VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    session.session_id,
                    session.tenant,
                    session.user_id,
                    session.method.value,
                    session.created_at,
                    session.expires_at,
                ),
            )

    def session(self, session_id: str) -> Session:
        """Raises: NotFound."""
        with self._tx() as db:
            row = db.execute(
                "SELECT session_id, tenant, user_id, method, created_at, expires_at, revoked_at "
                "FROM identity_sessions WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        if row is None:
            raise NotFound("no such session")
        return Session(row[0], row[1], row[2], LoginMethod(row[3]), *row[4:])

    def active_sessions(self, user_id: str, now: float) -> list[Session]:
        """A user's sessions that have not ended, newest first (the console lists them)."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT session_id, tenant, user_id, method, created_at, expires_at, revoked_at "
                "FROM identity_sessions WHERE user_id = ? AND revoked_at IS NULL "
                "AND expires_at > ? ORDER BY created_at DESC",
                (user_id, now),
            ).fetchall()
        return [Session(r[0], r[1], r[2], LoginMethod(r[3]), *r[4:]) for r in rows]

    def revoke_sessions(self, where: str, param: str, now: float, reason: str) -> list[str]:
        """Revoke the active sessions selected by ``where`` (a fixed column name); ids back."""
        if where not in ("session_id", "user_id"):
            raise ValueError(where)
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT session_id FROM identity_sessions "  # noqa: S608  # nosec B608
                    f"WHERE {where} = ? AND revoked_at IS NULL",
                    (param,),
                )
            ]
            db.executemany(
                "UPDATE identity_sessions SET revoked_at = ?, revoke_reason = ? "
                "WHERE session_id = ?",
                [(now, reason, i) for i in ids],
            )
        return ids

    def insert_refresh(self, digest: str, session_id: str, now: float, expires: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO identity_refresh_tokens VALUES (?, ?, ?, ?, NULL)",
                (digest, session_id, now, expires),
            )

    def use_refresh(self, digest: str, now: float) -> tuple[str, float, bool]:
        """Mark a refresh token used: ``(session_id, expires_at, was_unused)``.

        Raises:
            NotFound: no such token.
        """
        with self._tx() as db:
            row = db.execute(
                "SELECT session_id, expires_at, used_at FROM identity_refresh_tokens "
                "WHERE digest = ?",
                (digest,),
            ).fetchone()
            if row is None:
                raise NotFound("no such refresh token")
            if row[2] is None:
                db.execute(
                    "UPDATE identity_refresh_tokens SET used_at = ? WHERE digest = ?",
                    (now, digest),
                )
        return row[0], row[1], row[2] is None

    def add_session_token(self, jti: str, session_id: str, audience: str, expires: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO identity_session_tokens VALUES (?, ?, ?, ?)",
                (jti, session_id, audience, expires),
            )

    def session_of_token(self, jti: str) -> str:
        """Raises: NotFound (the token is not a user session's)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT session_id FROM identity_session_tokens WHERE jti = ?", (jti,)
            ).fetchone()
        if row is None:
            raise NotFound("not a session token")
        return str(row[0])

    def session_tokens(self, session_ids: list[str], now: float) -> list[str]:
        """The unexpired token ids issued to these sessions."""
        with self._tx() as db:
            rows = db.execute(
                f"SELECT jti FROM identity_session_tokens WHERE expires_at >= ? "  # noqa: S608  # nosec B608
                f"AND session_id IN ({_q(len(session_ids))})",
                (now, *session_ids),
            ).fetchall()
        return [r[0] for r in rows]


def _q(n: int) -> str:
    return ", ".join("?" * n)


def _user(row: tuple[Any, ...]) -> User:
    r = row
    return User(
        r[0], r[1], r[2], r[3], Role(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], r[11],
        bool(r[12]), r[13], LockState(r[14], r[15], r[16], r[17]),
    )  # fmt: skip
