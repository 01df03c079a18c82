"""TOTP: enrolment, single-use codes, rate-limited guessing, recovery codes, tenant minimum."""

from __future__ import annotations

import time

from cloud.identity import totp
from cloud.identity.policy import PasswordPolicy
from cloud.identity.roles import LoginMethod, LoginSettings
from cloud.identity.runtime import Identity
from tests.security.conftest import Inbox, add_user, bearer, client, login, tokens
from tests.support import RunningCore


def test_matching_step_accepts_one_step_of_drift_only() -> None:
    secret = totp.new_secret()
    now = 1_800_000_000.0
    step = int(now // 30)
    assert totp.matching_step(secret, totp.code_at(secret, now), now) == step
    assert totp.matching_step(secret, totp.code_at(secret, now - 30), now) == step - 1
    assert totp.matching_step(secret, totp.code_at(secret, now - 90), now) is None
    assert totp.matching_step(secret, "12345", now) is None
    assert totp.matching_step(secret, "abcdef", now) is None


async def test_enrol_then_login_needs_a_code_once(
    secure_core: RunningCore, identity: Identity, inbox: Inbox
) -> None:
    add_user(identity, "mfa@example.test")
    async with client(secure_core, "127.0.0.41") as http:
        access = bearer((await tokens(http, "mfa@example.test"))["access_token"])
        setup = (await http.post("/api/v1/auth/totp", headers=access)).json()
        assert setup["otpauth_uri"].startswith("otpauth://totp/")
        now = time.time()
        first = totp.code_at(setup["secret"], now)
        confirmed = await http.post(
            "/api/v1/auth/totp/confirm", headers=access, json={"code": first}
        )
        assert confirmed.status_code == 200, confirmed.text
        recovery = confirmed.json()["recovery_codes"]
        assert len(recovery) == 10
        await inbox.wait_for("mfa@example.test", "TOTP")

        step = await login(http, "mfa@example.test")
        assert step.json()["second_factor"] == "totp" and step.json()["tokens"] is None
        ticket = step.json()["ticket"]
        # The code used for enrolment (same time step) is spent: single use.
        reused = await http.post("/api/v1/auth/login/totp", json={"ticket": ticket, "code": first})
        assert reused.status_code == 401
        by_recovery = await http.post(
            "/api/v1/auth/login/totp", json={"ticket": ticket, "recovery_code": recovery[0]}
        )
        assert by_recovery.status_code == 200, by_recovery.text
        # The ticket and the recovery code are both single use.
        again = await http.post(
            "/api/v1/auth/login/totp", json={"ticket": ticket, "recovery_code": recovery[1]}
        )
        assert again.status_code == 401
        ticket2 = (await login(http, "mfa@example.test")).json()["ticket"]
        spent = await http.post(
            "/api/v1/auth/login/totp", json={"ticket": ticket2, "recovery_code": recovery[0]}
        )
        assert spent.status_code == 401


async def test_guessing_codes_locks_the_account(
    secure_core: RunningCore, identity: Identity
) -> None:
    identity.service.set_settings(
        "acme", PasswordPolicy(), LoginSettings(lockout_threshold=3, lockout_base_s=600)
    )
    user_id = add_user(identity, "guess@example.test")
    secret, _ = identity.service.begin_totp("acme", user_id)
    identity.service.confirm_totp("acme", user_id, totp.code_at(secret, time.time() - 30))
    async with client(secure_core, "127.0.0.42") as http:
        ticket = (await login(http, "guess@example.test")).json()["ticket"]
        for guess in ("000000", "111111", "222222"):
            wrong = await http.post(
                "/api/v1/auth/login/totp", json={"ticket": ticket, "code": guess}
            )
            assert wrong.status_code == 401
        # Locked now: even the right password and a fresh valid code are refused.
        assert (await login(http, "guess@example.test")).status_code == 401
        right = await http.post(
            "/api/v1/auth/login/totp",
            json={"ticket": ticket, "code": totp.code_at(secret, time.time())},
        )
        assert right.status_code == 401


async def test_tenant_minimum_totp_forces_enrolment_before_any_session(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "forced@example.test")
    async with client(secure_core, "127.0.0.43") as http:
        old = await tokens(http, "forced@example.test")  # a password-only session from before
        identity.service.set_settings(
            "acme", PasswordPolicy(), LoginSettings(min_method=LoginMethod.PASSWORD_TOTP)
        )
        step = (await login(http, "forced@example.test")).json()
        assert step["second_factor"] == "totp_enrolment" and step["tokens"] is None
        # The weaker session cannot be refreshed any more, nor mint API tokens.
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]}
        )
        assert refreshed.status_code == 403
        assert refreshed.json()["required"] == "password+totp"
        setup = await http.post(
            "/api/v1/auth/login/totp-enrolment", json={"ticket": step["ticket"]}
        )
        secret = setup.json()["secret"]
        done = await http.post(
            "/api/v1/auth/login/totp-enrolment/confirm",
            json={"ticket": step["ticket"], "code": totp.code_at(secret, time.time())},
        )
        assert done.status_code == 200, done.text
        me = await http.get(
            "/api/v1/auth/me", headers=bearer(done.json()["tokens"]["access_token"])
        )
        assert me.json()["totp_enabled"] is True
