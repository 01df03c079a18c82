"""Errors raised by the identity package (all under :class:`cloud.errors.CloudError`)::

    CloudError
    ├── LoginFailed          one generic refusal for unknown user, wrong password, locked,
    │                        disabled or wrong second factor: callers must not tell them apart
    ├── Throttled            too many attempts from one address; ``retry_after_s``
    ├── MethodRequired       the tenant's minimum login method is not met on this path
    ├── SecretKeyError       (also ConfigError) the outside key is missing, unreadable or too open
    ├── SealError            a sealed value does not open under the keys we hold
    ├── PolicyViolation      (also InvalidInput) a password breaks named policy rules
    └── InvalidPersonnummer  (also InvalidInput) not a valid Swedish personal identity number

This module defines types only; it does no I/O.
"""

from __future__ import annotations

from cloud.errors import CloudError, ConfigError, InvalidInput


class LoginFailed(CloudError):
    """Credentials refused. ``reason`` is for the access log only, never for the client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Throttled(CloudError):
    """Too many attempts from one address in a short time."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"retry after {retry_after_s} s")


class MethodRequired(CloudError):
    """The tenant requires a stronger login method than this path provides."""

    def __init__(self, required: str) -> None:
        self.required = required
        super().__init__(f"this tenant requires the login method {required}")


class SecretKeyError(ConfigError):
    """The secrets key (outside the database) cannot be used; the core must not start."""


class SealError(CloudError):
    """A sealed value is malformed, names an unknown key version or fails authentication."""


class PolicyViolation(InvalidInput):
    """A password was refused; ``rules`` names every rule it broke (stable identifiers)."""

    def __init__(self, rules: tuple[str, ...]) -> None:
        self.rules = rules
        super().__init__("password refused: " + ", ".join(rules))


class InvalidPersonnummer(InvalidInput):
    """Not a valid personnummer (format, date or Luhn check digit)."""
