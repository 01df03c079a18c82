"""Account lockout (per account, growing), reset of a locked account, per-address throttle."""

from __future__ import annotations

from cloud.identity.lockout import LockState, record_failure, record_success, take
from cloud.identity.roles import LoginSettings
from cloud.identity.runtime import Identity
from tests.security.conftest import PASSWORD, Inbox, add_user, client, login, reset_code
from tests.support import RunningCore

SETTINGS = LoginSettings(lockout_threshold=3, lockout_window_s=600, lockout_base_s=60)


def test_threshold_failures_within_window_lock_and_locks_grow() -> None:
    state = LockState()
    for t in (0.0, 1.0):
        state = record_failure(state, SETTINGS, t)
        assert not state.locked(t)
    state = record_failure(state, SETTINGS, 2.0)
    assert state.locked(2.0) and state.locked_until == 62.0
    assert not state.locked(62.0)
    for t in (70.0, 71.0, 72.0):
        state = record_failure(state, SETTINGS, t)
    assert state.locked_until == 72.0 + 120.0  # the second lock lasts twice as long
    assert record_success(state) == LockState()


def test_failures_outside_the_window_do_not_add_up() -> None:
    state = LockState()
    for t in (0.0, 1.0, 700.0, 701.0):
        state = record_failure(state, SETTINGS, t)
    assert not state.locked(701.0)


def test_lock_length_is_capped() -> None:
    settings = LoginSettings(lockout_threshold=1, lockout_base_s=60, lockout_max_s=3600)
    state = LockState()
    now = 0.0
    for _ in range(40):
        state = record_failure(state, settings, now)
        now = state.locked_until
    assert state.locked_until - state.window_start == 3600


def test_address_bucket_refuses_past_burst_and_refills() -> None:
    bucket = None
    for _ in range(3):
        bucket, retry = take(bucket, 0.0, burst=3, rate_per_s=1.0)
        assert retry == 0
    bucket, retry = take(bucket, 0.0, burst=3, rate_per_s=1.0)
    assert retry >= 1
    _, retry = take(bucket, 1.0, burst=3, rate_per_s=1.0)
    assert retry == 0


async def test_account_locks_across_addresses_and_others_are_unaffected(
    secure_core: RunningCore, identity: Identity, inbox: Inbox
) -> None:
    from cloud.identity.policy import PasswordPolicy

    identity.service.set_settings("acme", PasswordPolicy(), SETTINGS)
    add_user(identity, "target@example.test")
    add_user(identity, "bystander@example.test")
    # Failures from three different source addresses count against the one account.
    for source in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
        async with client(secure_core, source) as http:
            assert (await login(http, "target@example.test", "Nope-nope-123!")).status_code == 401
    async with client(secure_core, "127.0.0.24") as http:
        refused = await login(http, "target@example.test")  # the right password
        other = await login(http, "bystander@example.test")
    assert refused.status_code == 401
    assert other.status_code == 200
    notice = await inbox.wait_for("target@example.test", "locked")
    assert PASSWORD not in notice.get_content()


async def test_password_reset_works_for_a_locked_account(
    secure_core: RunningCore, identity: Identity, inbox: Inbox
) -> None:
    from cloud.identity.policy import PasswordPolicy

    identity.service.set_settings("acme", PasswordPolicy(), SETTINGS)
    add_user(identity, "locked@example.test")
    async with client(secure_core, "127.0.0.25") as http:
        for _ in range(3):
            await login(http, "locked@example.test", "Nope-nope-123!")
        assert (await login(http, "locked@example.test")).status_code == 401
        await http.post(
            "/api/v1/auth/password-reset", json={"tenant": "acme", "email": "locked@example.test"}
        )
        code = reset_code(await inbox.wait_for("locked@example.test", "password reset"))
        new_password = "Fresh#Quokka-2931"
        confirmed = await http.post(
            "/api/v1/auth/password-reset/confirm",
            json={"code": code, "new_password": new_password},
        )
        assert confirmed.status_code == 200, confirmed.text
        assert (await login(http, "locked@example.test", new_password)).status_code == 200


async def test_one_address_is_throttled(secure_core: RunningCore, identity: Identity) -> None:
    from cloud.identity.service import ADDRESS_BURST

    async with client(secure_core, "127.0.0.26") as http:
        statuses = [
            (await login(http, f"spray{i}@example.test")).status_code
            for i in range(ADDRESS_BURST + 3)
        ]
        throttled = await login(http, "spray@example.test")
    assert statuses[:ADDRESS_BURST] == [401] * ADDRESS_BURST
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["error"] == "too_many_attempts"
    async with client(secure_core, "127.0.0.27") as http:  # another address is not affected
        assert (await login(http, "spray@example.test")).status_code == 401
