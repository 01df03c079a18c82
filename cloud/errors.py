"""Errors raised by the cloud core.

One root, so a caller can catch everything the core raises on purpose::

    CloudError
    ├── AuthError          a credential was refused; carries a machine-readable ``code``
    ├── NotFound           (also LookupError) a tenant, gateway, module or token does not exist
    ├── Conflict           the thing exists already, or its state forbids the operation
    ├── ConfigError        (also ValueError) the home directory or config.toml is unusable
    └── InvalidInput       (also ValueError) a caller-supplied name, pattern or value is malformed

:class:`AuthError` separates what the core *knows* (``code`` and ``detail``, for the access log)
from what it may *say* (``public_message``, for the wire): the peer learns that a token was
refused and the broad reason, never which key, claim value or library error was involved.

This module defines types only; it does no I/O and maps no foreign exceptions (the modules
that call PyJWT, sqlite3 or ssl translate at their boundary).
"""

from __future__ import annotations

from enum import StrEnum


class CloudError(Exception):
    """Root of every error the cloud core raises on purpose."""


class AuthCode(StrEnum):
    """Why a credential was refused (stable strings: they appear in logs and API errors)."""

    MISSING = "token_missing"
    MALFORMED = "token_malformed"
    INVALID = "token_invalid"
    ALGORITHM_REFUSED = "algorithm_refused"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED = "token_expired"
    NOT_YET_VALID = "token_not_yet_valid"
    REVOKED = "token_revoked"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_TYPE = "wrong_type"
    WRONG_ISSUER = "wrong_issuer"


# What a peer is told. Deliberately coarse: signature, key and algorithm failures all read
# "invalid" so a forger learns nothing about which check caught them (RFC 8725 §3.4 spirit).
_PUBLIC_MESSAGES: dict[AuthCode, str] = {
    AuthCode.MISSING: "authentication required",
    AuthCode.MALFORMED: "invalid token",
    AuthCode.INVALID: "invalid token",
    AuthCode.ALGORITHM_REFUSED: "invalid token",
    AuthCode.UNKNOWN_KEY: "invalid token",
    AuthCode.EXPIRED: "token expired",
    AuthCode.NOT_YET_VALID: "token not yet valid",
    AuthCode.REVOKED: "token revoked",
    AuthCode.WRONG_AUDIENCE: "token not valid for this service",
    AuthCode.WRONG_TYPE: "token not valid for this service",
    AuthCode.WRONG_ISSUER: "invalid token",
}


class AuthError(CloudError):
    """A credential was refused.

    Attributes:
        code: the precise reason, for logs, metrics and tests.
        detail: internal explanation (never sent to the peer; never contains the token).
        public_message: the text that may be sent to the peer.
    """

    def __init__(self, code: AuthCode, detail: str = "") -> None:
        self.code = code
        self.detail = detail
        self.public_message = _PUBLIC_MESSAGES[code]
        super().__init__(f"{code.value}: {detail}" if detail else code.value)


class NotFound(CloudError, LookupError):
    """A tenant, gateway, module or token that the caller named does not exist."""


class Conflict(CloudError):
    """The object exists already, or its current state forbids the operation."""


class ConfigError(CloudError, ValueError):
    """The home directory or its config.toml is missing, incomplete or invalid.

    Attributes:
        key: the dotted config key (e.g. ``listen.link_port``) or path at fault, if any.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class InvalidInput(CloudError, ValueError):
    """A caller-supplied identifier, topic pattern, scope or value is malformed."""
