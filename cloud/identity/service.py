"""Users and logging in: the synchronous service behind the REST routes and the CLI.

Contract:

* Every method is synchronous and may run in a worker thread (Argon2 is slow on purpose).
* Login refusals are one exception, :class:`LoginFailed`, whatever the cause (unknown user,
  wrong password, locked, disabled, wrong or reused code); its ``reason`` is for the access
  log only. Unknown accounts are hashed against a dummy so timing does not tell them apart,
  and locked or disabled accounts still pay for a full verification.
* Every path that issues a session checks the tenant's minimum login method
  (:func:`cloud.identity.roles.satisfies`).
* Password changes (reset or change) end every session of the user; security changes are
  mailed to the user.
* Tenancy: every lookup is keyed by tenant; another tenant's user is ``NotFound`` exactly
  like a missing one.

Not done here: HTTP (cloud.api), sending mail (cloud.identity.mail), signing (cloud.tokens).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloud.errors import Conflict, InvalidInput, NotFound
from cloud.identity import personnummer, totp
from cloud.identity.errors import LoginFailed, MethodRequired, PolicyViolation, Throttled
from cloud.identity.lockout import Bucket, LockState, record_failure, record_success, take
from cloud.identity.mail import Mail
from cloud.identity.policy import HARD_MAX_LENGTH, check
from cloud.identity.roles import LoginMethod, Role
from cloud.identity.sessions import SessionManager, Tokens, digest
from cloud.identity.store import OneTime, User

if TYPE_CHECKING:
    from collections.abc import Callable

    from cloud.identity.hashing import SecretHasher
    from cloud.identity.policy import PasswordPolicy
    from cloud.identity.roles import LoginSettings
    from cloud.identity.store import IdentityStore
    from cloud.registry import Registry

EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
RESET_LIFETIME_S = 15 * 60
TICKET_LIFETIME_S = 5 * 60
TICKET_MAX_FAILURES = 5
#: Per-address throttle for login, second factor and reset requests.
ADDRESS_BURST = 30
ADDRESS_RATE_PER_S = 0.5


@dataclass(frozen=True, slots=True)
class SecondFactor:
    """The password was right; the client must present a TOTP code (or enrol first)."""

    ticket: str
    enrol: bool


class IdentityService:
    def __init__(
        self,
        store: IdentityStore,
        registry: Registry,
        hasher: SecretHasher,
        sessions: SessionManager,
        *,
        notify: Callable[[Mail], None] = lambda mail: None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.registry = registry
        self.hasher = hasher
        self.keyring = hasher.keyring
        self.sessions = sessions
        self.notify = notify
        self._now = now
        self._buckets: dict[str, Bucket] = {}
        self._bucket_lock = threading.Lock()

    # --- users ------------------------------------------------------------------------------

    def create_user(
        self,
        tenant: str,
        email: str,
        name: str,
        role: Role,
        password: str | None = None,
        pnr: str | None = None,
    ) -> User:
        """Create a user; without a password the account is usable only after a reset.

        Raises:
            NotFound: unknown tenant.  Conflict: email taken.
            InvalidInput / PolicyViolation / InvalidPersonnummer: bad input.
        """
        self.registry.get_tenant(tenant)
        email = _email(email)
        if not isinstance(name, str) or not 0 < len(name) <= 200 or not name.isprintable():
            raise InvalidInput("name must be 1..200 printable characters")
        user_id = "u-" + secrets.token_hex(8)
        sealed_pw = None
        if password is not None:
            self._check_password(tenant, password, email, name)
            sealed_pw = self.hasher.hash(password, _ctx("password", user_id))
        sealed_pnr, pnr_index = self._seal_pnr(tenant, user_id, pnr)
        now = self._now()
        user = User(
            user_id, tenant, email, name, Role(role), now, None, sealed_pw,
            now if sealed_pw else None, sealed_pnr, pnr_index, None, False, -1, LockState(),
        )  # fmt: skip
        self.store.insert_user(user)
        return user

    def set_disabled(self, tenant: str, user_id: str, disabled: bool) -> list[str]:
        """Disable (ending every session) or re-enable a user; returns revoked token ids."""
        user = self.store.user(tenant, user_id)
        self.store.update_user(user.user_id, disabled_at=self._now() if disabled else None)
        return self.sessions.end_user_sessions(user.user_id, "disabled") if disabled else []

    def set_role(self, tenant: str, user_id: str, role: Role) -> list[str]:
        """Change a role; live sessions end so that no token keeps the old scopes."""
        user = self.store.user(tenant, user_id)
        self.store.update_user(user.user_id, role=Role(role).value)
        return self.sessions.end_user_sessions(user.user_id, "role_changed")

    def find_by_personnummer(self, tenant: str, text: str) -> list[User]:
        """Users of ``tenant`` with this number (via the keyed index, never a scan)."""
        canonical = personnummer.parse(text, today=self._today()).canonical
        candidates = self.keyring.index_candidates(canonical, f"pnr:{tenant}")
        return self.store.users_by_pnr_index(tenant, candidates)

    def verify_personnummer(self, user: User, text: str) -> bool:
        if user.pnr is None:
            return False
        canonical = personnummer.parse(text, today=self._today()).canonical
        return self.hasher.verify(user.pnr, canonical, _ctx("pnr", user.user_id))

    def set_settings(self, tenant: str, policy: PasswordPolicy, login: LoginSettings) -> None:
        self.registry.get_tenant(tenant)
        self.store.set_tenant_settings(tenant, policy, login)

    # --- logging in -------------------------------------------------------------------------

    def login(self, tenant: str, email: str, password: str, address: str) -> Tokens | SecondFactor:
        """First factor.

        Raises:
            Throttled: too many attempts from ``address``.
            MethodRequired: the tenant does not allow password logins at all.
            LoginFailed: any refusal (see the module docstring).
        """
        self.throttle(address)
        _, settings = self.store.tenant_settings(tenant)
        if settings.min_method in (LoginMethod.PASSKEY, LoginMethod.EXTERNAL):
            raise MethodRequired(settings.min_method.value)
        if not isinstance(password, str) or len(password) > HARD_MAX_LENGTH:
            raise LoginFailed("oversized_password")
        try:
            user = self.store.user_by_email(tenant, email.strip().casefold())
        except NotFound:
            user = None
        if user is None or user.password is None:
            self.hasher.dummy_verify(password)
            raise LoginFailed("unknown_user" if user is None else "no_password")
        ok = self.hasher.verify(user.password, password, _ctx("password", user.user_id))
        self._refuse_unusable(user)
        if not ok:
            self._failed(user, settings)
            raise LoginFailed("wrong_password")
        self._maybe_upgrade(user, password)
        if user.totp_enabled or settings.min_method is LoginMethod.PASSWORD_TOTP:
            purpose = "mfa" if user.totp_enabled else "mfa-enrol"
            return SecondFactor(
                self._one_time(user, purpose, TICKET_LIFETIME_S), not user.totp_enabled
            )
        self.store.set_lock(user.user_id, record_success(user.lock))
        return self.sessions.start(user, LoginMethod.PASSWORD)

    def second_factor(
        self, ticket: str, address: str, *, code: str | None = None, recovery: str | None = None
    ) -> Tokens:
        """Complete a login with a TOTP code or a recovery code.

        Raises:
            Throttled, LoginFailed.
        """
        self.throttle(address)
        item, user = self._ticket(ticket, "mfa")
        _, settings = self.store.tenant_settings(user.tenant)
        ok = False
        if code is not None and user.totp_secret is not None:
            ok = self._accept_code(user, code)
        elif recovery is not None:
            mac = self.keyring.mac(recovery.strip().upper().encode(), f"recovery:{user.user_id}")
            ok = self.store.use_recovery_code(user.user_id, mac, self._now())
            if ok:
                self.notify(_mail(user, "A recovery code was used to sign in"))
        if not ok:
            self._ticket_failed(item, user, settings)
            raise LoginFailed("wrong_code")
        return self._finish(item, user, LoginMethod.PASSWORD_TOTP)

    def enrol_with_ticket(self, ticket: str, address: str) -> tuple[str, str]:
        """Start TOTP enrolment during a login the tenant requires it for: (secret, URI)."""
        self.throttle(address)
        _, user = self._ticket(ticket, "mfa-enrol")
        return self._begin_totp(user)

    def confirm_with_ticket(self, ticket: str, code: str, address: str) -> tuple[Tokens, list[str]]:
        """Finish enrolment with a first code: the session and the recovery codes (once)."""
        self.throttle(address)
        item, user = self._ticket(ticket, "mfa-enrol")
        _, settings = self.store.tenant_settings(user.tenant)
        if user.totp_secret is None or not self._accept_code(user, code):
            self._ticket_failed(item, user, settings)
            raise LoginFailed("wrong_code")
        codes = self._enable_totp(user)
        return self._finish(item, user, LoginMethod.PASSWORD_TOTP), codes

    def begin_totp(self, tenant: str, user_id: str) -> tuple[str, str]:
        """TOTP enrolment from a signed-in session: (secret, otpauth URI)."""
        return self._begin_totp(self.store.user(tenant, user_id))

    def confirm_totp(self, tenant: str, user_id: str, code: str) -> list[str]:
        """Switch TOTP on with a first valid code; returns fresh recovery codes (shown once).

        Raises:
            LoginFailed: the code is wrong (counts as a failed attempt).
        """
        user = self.store.user(tenant, user_id)
        if user.totp_secret is None or not self._accept_code(user, code):
            _, settings = self.store.tenant_settings(tenant)
            self._failed(user, settings)
            raise LoginFailed("wrong_code")
        return self._enable_totp(user)

    def remove_totp(self, tenant: str, user_id: str, current_password: str) -> None:
        """Switch TOTP off for a signed-in user: the secret and recovery codes are deleted.

        Raises:
            LoginFailed: the current password is wrong (counts as a failure).
            MethodRequired: the tenant's minimum login method is ``password+totp``.
            Conflict: TOTP is not on.
        """
        user = self.store.user(tenant, user_id)
        _, settings = self.store.tenant_settings(tenant)
        if user.password is None or not self.hasher.verify(
            user.password, current_password, _ctx("password", user.user_id)
        ):
            self._failed(user, settings)
            raise LoginFailed("wrong_password")
        if settings.min_method is LoginMethod.PASSWORD_TOTP:
            raise MethodRequired(settings.min_method.value)
        if not user.totp_enabled and user.totp_secret is None:
            raise Conflict("TOTP is not enabled")
        self.store.replace_recovery_codes(user.user_id, [])
        self.store.update_user(user.user_id, totp_secret=None, totp_enabled=0)
        self.notify(_mail(user, "Two-step sign-in (TOTP) was turned off"))

    # --- passwords --------------------------------------------------------------------------

    def request_reset(self, tenant: str, email: str, address: str) -> None:
        """Mail a reset code if the account exists; the caller answers the same either way."""
        self.throttle(address)
        try:
            user = self.store.user_by_email(tenant, email.strip().casefold())
        except NotFound:
            return
        if user.disabled:
            return
        code = self._one_time(user, "reset", RESET_LIFETIME_S)
        minutes = RESET_LIFETIME_S // 60
        body = (
            f"A password reset was requested for your AssetBook account ({tenant}).\n\n"
            f"Reset code (valid {minutes} minutes, usable once):\n\n    {code}\n\n"
            "If you did not ask for this, ignore this mail; your password is unchanged."
        )
        self.notify(Mail(user.email, "AssetBook password reset", body))

    def confirm_reset(self, code: str, new_password: str) -> list[str]:
        """Set a new password with a reset code; ends every session, clears any lock.

        Raises:
            LoginFailed: unknown, expired or used code.  PolicyViolation: weak password (the
                code stays usable so the user can try another password).
        """
        try:
            item = self.store.one_time(digest(code), "reset")
        except NotFound:
            raise LoginFailed("bad_reset_code") from None
        now = self._now()
        if item.used_at is not None or now >= item.expires_at:
            raise LoginFailed("bad_reset_code")
        user = self.store.user_by_id(item.user_id)
        self._check_password(user.tenant, new_password, user.email, user.name)
        if not self.store.use_one_time(item.digest, now):
            raise LoginFailed("bad_reset_code")
        self.store.expire_one_time_for(user.user_id, "reset", now)
        self.store.set_lock(user.user_id, LockState())
        return self._set_password(user, new_password, "Your password was reset")

    def change_password(self, tenant: str, user_id: str, current: str, new: str) -> list[str]:
        """Change the password of a signed-in user; every session (this one too) ends.

        Raises:
            LoginFailed: the current password is wrong (counts as a failure).
            PolicyViolation: the new one is refused.
        """
        user = self.store.user(tenant, user_id)
        if user.password is None or not self.hasher.verify(
            user.password, current, _ctx("password", user.user_id)
        ):
            _, settings = self.store.tenant_settings(tenant)
            self._failed(user, settings)
            raise LoginFailed("wrong_password")
        self._check_password(tenant, new, user.email, user.name)
        return self._set_password(user, new, "Your password was changed")

    def throttle(self, address: str) -> None:
        """Take one attempt from ``address``'s bucket. Raises: Throttled."""
        with self._bucket_lock:
            bucket, retry = take(
                self._buckets.get(address),
                self._now(),
                burst=ADDRESS_BURST,
                rate_per_s=ADDRESS_RATE_PER_S,
            )
            self._buckets[address] = bucket
            if len(self._buckets) > 100_000:  # bound memory under a spoofed-source flood
                self._buckets.clear()
        if retry:
            raise Throttled(int(retry))

    # --- helpers ----------------------------------------------------------------------------

    def _check_password(self, tenant: str, password: str, email: str, name: str) -> None:
        if not isinstance(password, str):
            raise PolicyViolation(("too_short",))
        policy, _ = self.store.tenant_settings(tenant)
        failed = check(policy, password, email=email, name=name, context=(tenant,))
        if failed:
            raise PolicyViolation(failed)

    def _set_password(self, user: User, password: str, subject: str) -> list[str]:
        sealed = self.hasher.hash(password, _ctx("password", user.user_id))
        self.store.update_user(user.user_id, password=sealed, password_changed_at=self._now())
        revoked = self.sessions.end_user_sessions(user.user_id, "password_changed")
        self.notify(_mail(user, subject))
        return revoked

    def _seal_pnr(
        self, tenant: str, user_id: str, pnr: str | None
    ) -> tuple[str | None, str | None]:
        if pnr is None:
            return None, None
        canonical = personnummer.parse(pnr, today=self._today()).canonical
        sealed = self.hasher.hash(canonical, _ctx("pnr", user_id))
        return sealed, self.keyring.index(canonical, f"pnr:{tenant}")

    def _refuse_unusable(self, user: User) -> None:
        if user.disabled:
            raise LoginFailed("disabled")
        if user.lock.locked(self._now()):
            raise LoginFailed("locked")

    def _failed(self, user: User, settings: LoginSettings) -> None:
        lock = record_failure(user.lock, settings, self._now())
        self.store.set_lock(user.user_id, lock)
        if lock.locks > user.lock.locks:
            self.notify(_mail(user, "Your account was locked after failed sign-in attempts"))

    def _maybe_upgrade(self, user: User, password: str) -> None:
        assert user.password is not None
        if self.hasher.needs_update(user.password, _ctx("password", user.user_id)):
            sealed = self.hasher.hash(password, _ctx("password", user.user_id))
            self.store.update_user(user.user_id, password=sealed)

    def _one_time(self, user: User, purpose: str, lifetime_s: int) -> str:
        secret = secrets.token_urlsafe(32)
        expires = self._now() + lifetime_s
        self.store.insert_one_time(OneTime(digest(secret), purpose, user.user_id, expires, None, 0))
        return secret

    def _ticket(self, ticket: str, purpose: str) -> tuple[OneTime, User]:
        try:
            item = self.store.one_time(digest(ticket), purpose)
        except NotFound:
            raise LoginFailed("bad_ticket") from None
        if item.used_at is not None or self._now() >= item.expires_at:
            raise LoginFailed("bad_ticket")
        user = self.store.user_by_id(item.user_id)
        self._refuse_unusable(user)
        return item, user

    def _ticket_failed(self, item: OneTime, user: User, settings: LoginSettings) -> None:
        # Guessing is bounded twice: per ticket, and by the account's lockout counter.
        if self.store.fail_one_time(item.digest) >= TICKET_MAX_FAILURES:
            self.store.use_one_time(item.digest, self._now())
        self._failed(user, settings)

    def _finish(self, item: OneTime, user: User, method: LoginMethod) -> Tokens:
        if not self.store.use_one_time(item.digest, self._now()):
            raise LoginFailed("ticket_reused")
        self.store.set_lock(user.user_id, record_success(user.lock))
        return self.sessions.start(user, method)

    def _begin_totp(self, user: User) -> tuple[str, str]:
        if user.totp_enabled:
            raise Conflict("TOTP is already enabled")
        secret = totp.new_secret()
        sealed = self.keyring.seal(secret.encode(), _ctx("totp", user.user_id))
        self.store.update_user(user.user_id, totp_secret=sealed)
        return secret, totp.provisioning_uri(secret, user.email)

    def _accept_code(self, user: User, code: str) -> bool:
        assert user.totp_secret is not None
        secret = self.keyring.open(user.totp_secret, _ctx("totp", user.user_id)).decode()
        step = totp.matching_step(secret, code, self._now())
        # Single use (RFC 6238 §5.2): a step at or before the last accepted one is refused.
        return step is not None and self.store.claim_totp_step(user.user_id, step)

    def _enable_totp(self, user: User) -> list[str]:
        codes = totp.recovery_codes()
        macs = [self.keyring.mac(c.encode(), f"recovery:{user.user_id}") for c in codes]
        self.store.replace_recovery_codes(user.user_id, macs)
        self.store.update_user(user.user_id, totp_enabled=1)
        self.notify(_mail(user, "Two-step sign-in (TOTP) was turned on"))
        return codes

    def _today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self._now(), tz=dt.UTC).date()


def _ctx(purpose: str, user_id: str) -> str:
    # Associated data for the seal: a value copied to another row or field will not open.
    return f"{purpose}:{user_id}"


def _email(email: str) -> str:
    if not isinstance(email, str) or not EMAIL_RE.fullmatch(email.strip()):
        raise InvalidInput("not an email address")
    return email.strip().casefold()


def _mail(user: User, subject: str) -> Mail:
    body = (
        f"{subject} (account {user.email}, tenant {user.tenant}).\n\n"
        "If this was not you, reset your password and contact your administrator."
    )
    return Mail(user.email, f"AssetBook security notice: {subject}", body)
