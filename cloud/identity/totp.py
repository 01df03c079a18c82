"""TOTP (RFC 6238) with pyotp, and recovery codes.

Contract: pure apart from randomness in :func:`new_secret` and :func:`recovery_codes`; the
time is passed in. :func:`matching_step` returns the time step a code belongs to (so the
caller can refuse a step already used) and accepts one step of clock drift either way
(RFC 6238 §5.2 recommends at most one step of network delay).
"""

from __future__ import annotations

import hmac
import secrets

import pyotp

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODES = 10
ISSUER = "AssetBook"
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud safely


def new_secret() -> str:
    """A 160-bit base32 secret (RFC 4226 §4: at least 128 bits, 160 recommended)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def code_at(secret: str, when: float) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).at(int(when))


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` is valid for around ``now``, or None."""
    if not isinstance(code, str) or len(code) != DIGITS or not code.isdigit():
        return None
    current = int(now // STEP_S)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Compare every candidate, in constant time, so timing does not reveal which matched.
        if hmac.compare_digest(code_at(secret, step * STEP_S), code):
            found = step
    return found


def recovery_codes() -> list[str]:
    """Ten single-use codes of 12 characters (60 bits each)."""
    return ["".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12)) for _ in range(10)]
