"""Passkeys (WebAuthn Level 3): register them for a user, and log in with one.

Contract:

* The ceremonies themselves (CBOR attestation and assertion parsing, signature checks, RP id
  hash, origin, user presence and verification flags) are the ``webauthn`` library's; this
  module keeps the credentials, chooses the options, and turns every refusal into our own
  errors: :class:`~cloud.identity.errors.LoginFailed` at login (one answer, the reason for
  the log only) and :class:`~cloud.errors.InvalidInput` at registration.
* The caller supplies and keeps the challenge (32 random bytes from :func:`new_challenge`)
  between the two halves of a ceremony, server side, and uses it once.
* Logins use discoverable credentials (the browser offers the passkeys it holds for the RP
  id, no user name typed) and require user verification (WebAuthn L3 §5.8.6), so a passkey
  is a complete multi-factor method: the session is opened with login method ``passkey``,
  the one a tenant's ``min_method = "passkey"`` asks for (:mod:`cloud.identity.roles`).
* A credential belongs to one user of one tenant; a passkey of another tenant is refused
  like an unknown one. A sign count that goes backwards (a cloned authenticator, L3
  §6.1.1) is refused. Disabled and locked accounts are refused.

Not done here: HTTP and browsers (the console), challenge storage.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import webauthn
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from cloud.errors import InvalidInput, NotFound
from cloud.identity.errors import LoginFailed
from cloud.identity.roles import LoginMethod

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from cloud.identity.sessions import SessionManager, Tokens
    from cloud.identity.store import IdentityStore

CHALLENGE_BYTES: Final = 32
MAX_PASSKEYS_PER_USER: Final = 10
_SCHEMA: Final = """CREATE TABLE IF NOT EXISTS identity_passkeys (
    credential_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user_id TEXT NOT NULL,
    public_key BLOB NOT NULL, sign_count INTEGER NOT NULL, name TEXT NOT NULL,
    created_at REAL NOT NULL, last_used_at REAL)"""


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who the passkeys are for: the RP id (a host name) and the exact web origin."""

    rp_id: str
    origin: str
    name: str = "AssetBook"


@dataclass(frozen=True, slots=True)
class Passkey:
    credential_id: str  # base64url, as browsers report it
    tenant: str
    user_id: str
    public_key: bytes
    sign_count: int
    name: str
    created_at: float
    last_used_at: float | None


def new_challenge() -> bytes:
    """A fresh ceremony challenge (L3 §13.4.3: at least 16 random bytes)."""
    return secrets.token_bytes(CHALLENGE_BYTES)


class PasskeyStore:
    """The ``identity_passkeys`` table in the core database."""

    def __init__(self, db_path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db_path, check_same_thread=False, timeout=10.0)
        with self._lock, self._conn:
            self._conn.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add(self, key: Passkey) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO identity_passkeys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key.credential_id, key.tenant, key.user_id, key.public_key, key.sign_count,
                 key.name, key.created_at, key.last_used_at),
            )  # fmt: skip

    def get(self, credential_id: str) -> Passkey:
        """Raises: NotFound."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM identity_passkeys WHERE credential_id = ?", (credential_id,)
            ).fetchone()
        if row is None:
            raise NotFound("no such passkey")
        return Passkey(*row)

    def of_user(self, tenant: str, user_id: str) -> list[Passkey]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM identity_passkeys WHERE tenant = ? AND user_id = ? "
                "ORDER BY created_at",
                (tenant, user_id),
            ).fetchall()
        return [Passkey(*row) for row in rows]

    def used(self, credential_id: str, sign_count: int, now: float) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE identity_passkeys SET sign_count = ?, last_used_at = ? "
                "WHERE credential_id = ?",
                (sign_count, now, credential_id),
            )

    def remove(self, tenant: str, user_id: str, credential_id: str) -> None:
        """Raises: NotFound (also for another user's or tenant's passkey)."""
        with self._lock, self._conn:
            cursor = self._conn.execute(
                "DELETE FROM identity_passkeys WHERE tenant = ? AND user_id = ? "
                "AND credential_id = ?",
                (tenant, user_id, credential_id),
            )
        if cursor.rowcount == 0:
            raise NotFound("no such passkey")


class PasskeyService:
    """Registration and login ceremonies over :class:`PasskeyStore`."""

    def __init__(
        self,
        keys: PasskeyStore,
        users: IdentityStore,
        sessions: SessionManager,
        party: RelyingParty,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.users = users
        self.sessions = sessions
        self.party = party
        self._now = now

    def registration_options(self, tenant: str, user_id: str, challenge: bytes) -> str:
        """The JSON ``PublicKeyCredentialCreationOptions`` for a signed-in user."""
        user = self.users.user(tenant, user_id)
        existing = self.keys.of_user(tenant, user_id)
        options = webauthn.generate_registration_options(
            rp_id=self.party.rp_id,
            rp_name=self.party.name,
            user_id=user.user_id.encode(),
            user_name=user.email,
            user_display_name=user.name,
            challenge=challenge,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            # One passkey per authenticator: the browser refuses to make a second (L3 §5.4).
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(k.credential_id))
                for k in existing
            ],
        )
        return webauthn.options_to_json(options)

    def register(
        self, tenant: str, user_id: str, challenge: bytes, response: str, name: str
    ) -> Passkey:
        """Check the browser's attestation response and keep the credential.

        Raises:
            InvalidInput: the response does not verify, the name is bad, or too many passkeys.
        """
        name = name.strip()
        if not 0 < len(name) <= 64 or not name.isprintable():
            raise InvalidInput("passkey name must be 1..64 printable characters")
        user = self.users.user(tenant, user_id)
        if len(self.keys.of_user(tenant, user_id)) >= MAX_PASSKEYS_PER_USER:
            raise InvalidInput(f"at most {MAX_PASSKEYS_PER_USER} passkeys per user")
        try:
            verified = webauthn.verify_registration_response(
                credential=_json(response),
                expected_challenge=challenge,
                expected_rp_id=self.party.rp_id,
                expected_origin=self.party.origin,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput("the passkey could not be verified") from exc
        key = Passkey(
            bytes_to_base64url(verified.credential_id), user.tenant, user.user_id,
            verified.credential_public_key, verified.sign_count, name, self._now(), None,
        )  # fmt: skip
        self.keys.add(key)
        return key

    def login_options(self, challenge: bytes) -> str:
        """The JSON ``PublicKeyCredentialRequestOptions`` (discoverable credentials)."""
        options = webauthn.generate_authentication_options(
            rp_id=self.party.rp_id,
            challenge=challenge,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return webauthn.options_to_json(options)

    def login(self, tenant: str, challenge: bytes, response: str) -> Tokens:
        """Check an assertion and open a ``passkey`` session.

        Raises:
            LoginFailed: unknown or another tenant's credential, bad signature, replayed
                challenge, cloned authenticator, disabled or locked account.
        """
        try:
            data = _json(response)
            key = self.keys.get(str(data["id"]))
            verified = webauthn.verify_authentication_response(
                credential=data,
                expected_challenge=challenge,
                expected_rp_id=self.party.rp_id,
                expected_origin=self.party.origin,
                credential_public_key=key.public_key,
                credential_current_sign_count=key.sign_count,
                require_user_verification=True,
            )
        except (NotFound, InvalidInput, KeyError, TypeError, ValueError) as exc:
            raise LoginFailed("unknown_passkey") from exc
        except WebAuthnException as exc:
            raise LoginFailed("bad_assertion") from exc
        if key.tenant != tenant:
            raise LoginFailed("unknown_passkey")
        user = self.users.user_by_id(key.user_id)
        now = self._now()
        if user.disabled:
            raise LoginFailed("disabled")
        if user.lock.locked(now):
            raise LoginFailed("locked")
        self.keys.used(key.credential_id, verified.new_sign_count, now)
        return self.sessions.start(user, LoginMethod.PASSKEY)


def _json(text: str) -> dict[str, object]:
    if not isinstance(text, str) or len(text) > 64 * 1024:
        raise InvalidInput("response too large")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("response is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInput("response is not a JSON object")
    return data
