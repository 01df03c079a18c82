"""Account lockout and per-address throttling, as pure state transitions.

Account lockout (OWASP Authentication Cheat Sheet, "Account Lockout"; ASVS 4.0.3 §2.2.1):
failures are counted per account, whatever address they come from. ``threshold`` failures
within ``window_s`` lock the account for ``base_s * 2**(locks-1)`` seconds, capped at
``max_s``: each lock after the first lasts twice as long. A success resets the failure
count; the lock count is reset only by a successful login or a password reset.

Per-address throttling is a token bucket per address (``burst`` attempts, refilled at
``rate_per_s``), kept in memory: it slows one source spraying many accounts, while the
account rule stops many sources aiming at one account.

Contract: every function takes ``now`` and returns a new value; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cloud.identity.roles import LoginSettings


@dataclass(frozen=True, slots=True)
class LockState:
    failures: int = 0
    window_start: float = 0.0
    locks: int = 0
    locked_until: float = 0.0

    def locked(self, now: float) -> bool:
        return now < self.locked_until


def record_failure(state: LockState, settings: LoginSettings, now: float) -> LockState:
    """The state after one more failure at ``now`` (may start a lock)."""
    if state.locked(now):
        return state  # attempts during a lock are refused anyway and do not extend it
    if now - state.window_start > settings.lockout_window_s:
        state = replace(state, failures=0, window_start=now)
    state = replace(state, failures=state.failures + 1)
    if state.failures < settings.lockout_threshold:
        return state
    locks = state.locks + 1
    duration = min(settings.lockout_base_s * 2 ** min(locks - 1, 30), settings.lockout_max_s)
    return LockState(failures=0, window_start=now, locks=locks, locked_until=now + duration)


def record_success(state: LockState) -> LockState:
    """A successful login clears everything."""
    return LockState()


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    updated: float


def take(
    bucket: Bucket | None, now: float, *, burst: int, rate_per_s: float
) -> tuple[Bucket, float]:
    """Take one attempt from an address's bucket.

    Returns:
        ``(new_bucket, retry_after_s)``; ``retry_after_s`` is 0 when the attempt is allowed.
    """
    if bucket is None:
        bucket = Bucket(float(burst), now)
    tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate_per_s)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), max(1.0, math.ceil((1.0 - tokens) / rate_per_s))
