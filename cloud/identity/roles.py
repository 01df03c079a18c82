"""Roles, the REST scopes each grants, and tenants' login settings (pure values).

Roles are cumulative: ``viewer`` < ``operator`` < ``tenant_admin`` < ``platform_admin``. A
user's access token carries exactly the scopes of its role; :mod:`cloud.rest` checks a route's
scope, and every query is keyed by the token's tenant. ``platform:admin`` (create and list
tenants) is the only scope that reaches beyond a tenant.

Login methods are ordered by strength so that a tenant's minimum can be compared with what a
path provides. ``passkey`` sessions come from :mod:`cloud.identity.passkeys`; ``external``
(e.g. BankID) is a setting with no path that provides it yet. A tenant that requires either
cannot log in with a password at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from cloud.errors import InvalidInput


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    TENANT_ADMIN = "tenant_admin"
    PLATFORM_ADMIN = "platform_admin"


_VIEWER = ("account:self", "events:read", "gateways:read")
_OPERATOR = (*_VIEWER, "gateways:write", "modules:write")
_TENANT_ADMIN = (*_OPERATOR, "users:read", "users:write", "tenant:admin", "tokens:write")
ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _OPERATOR,
    Role.TENANT_ADMIN: _TENANT_ADMIN,
    Role.PLATFORM_ADMIN: (*_TENANT_ADMIN, "platform:admin"),
}
#: Scopes a tenant admin may put into a third-party API token (never user or token admin).
API_TOKEN_SCOPES = frozenset({"events:read", "gateways:read"})
#: Topics a user's link token may subscribe to, by role (tenant-relative; cloud.principal).
ROLE_SUBSCRIBE: dict[Role, tuple[str, ...]] = dict.fromkeys(Role, ("gw/#",))


class LoginMethod(StrEnum):  # names of methods, not secrets (S105 below)
    PASSWORD = "password"  # noqa: S105
    PASSWORD_TOTP = "password+totp"  # noqa: S105
    PASSKEY = "passkey"
    EXTERNAL = "external"


STRENGTH = {
    LoginMethod.PASSWORD: 1,
    LoginMethod.PASSWORD_TOTP: 2,
    LoginMethod.PASSKEY: 3,
    LoginMethod.EXTERNAL: 3,
}


def satisfies(used: LoginMethod, minimum: LoginMethod) -> bool:
    """Whether a session made with ``used`` meets a tenant minimum of ``minimum``."""
    if minimum in (LoginMethod.PASSKEY, LoginMethod.EXTERNAL):
        return used == minimum  # a specific authenticator, not merely "strong enough"
    return STRENGTH[used] >= STRENGTH[minimum]


@dataclass(frozen=True, slots=True)
class LoginSettings:
    """A tenant's login settings (besides its password policy)."""

    min_method: LoginMethod = LoginMethod.PASSWORD
    lockout_threshold: int = 5
    lockout_window_s: int = 15 * 60
    lockout_base_s: int = 5 * 60
    lockout_max_s: int = 24 * 3600

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["min_method"] = self.min_method.value
        return data


def login_settings_from_dict(data: dict[str, Any]) -> LoginSettings:
    """Validated :class:`LoginSettings` (unknown keys and bad ranges are refused).

    Raises:
        InvalidInput: with the offending setting.
    """
    known = set(LoginSettings().to_dict())
    if set(data) - known:
        raise InvalidInput(f"unknown login settings {sorted(set(data) - known)}")
    values = {**LoginSettings().to_dict(), **data}
    try:
        method = LoginMethod(values.pop("min_method"))
    except ValueError as exc:
        raise InvalidInput(f"min_method must be one of {[m.value for m in LoginMethod]}") from exc
    # ASVS 4.0.3 §2.2.1: at most 100 failed attempts per hour on one account.
    ranges = {
        "lockout_threshold": (1, 100),
        "lockout_window_s": (60, 24 * 3600),
        "lockout_base_s": (1, 24 * 3600),
        "lockout_max_s": (60, 30 * 24 * 3600),
    }
    for name, (low, high) in ranges.items():
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidInput(f"{name} must be an integer in {low}..{high}")
    return LoginSettings(min_method=method, **values)
