"""Logging in over the real HTTPS API: tokens, generic errors, timing, minimum method."""

from __future__ import annotations

import statistics
import time

import httpx

from cloud.identity.roles import Role
from cloud.identity.runtime import Identity
from tests.security.conftest import PASSWORD, add_user, bearer, client, login, tokens
from tests.support import RunningCore


async def test_login_issues_tokens_that_work_on_rest(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "ann@example.test", Role.VIEWER)
    async with client(secure_core) as http:
        issued = await tokens(http, "ann@example.test")
        me = await http.get("/api/v1/auth/me", headers=bearer(issued["access_token"]))
        events = await http.get("/api/v1/events", headers=bearer(issued["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == "ann@example.test"
    assert "password" not in me.text
    assert events.status_code == 200


def _generic(response: httpx.Response) -> tuple[int, dict[str, object]]:
    body = dict(response.json())
    body.pop("request_id")
    return response.status_code, body


async def _lock(identity: Identity, email_address: str) -> None:
    user = identity.store.user_by_email("acme", email_address)
    from cloud.identity.lockout import LockState

    identity.store.set_lock(user.user_id, LockState(locks=1, locked_until=time.time() + 3600))


async def test_unknown_wrong_locked_disabled_answer_identically(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "wrong@example.test")
    add_user(identity, "locked@example.test")
    disabled = add_user(identity, "off@example.test")
    await _lock(identity, "locked@example.test")
    identity.service.set_disabled("acme", disabled, True)
    async with client(secure_core, "127.0.0.11") as http:
        answers = [
            await login(http, "nobody@example.test"),
            await login(http, "wrong@example.test", "Wrong-pass-123!"),
            await login(http, "locked@example.test"),  # right password, locked account
            await login(http, "off@example.test"),  # right password, disabled account
            await login(http, "wrong@example.test", tenant="no-such-tenant"),
        ]
    shapes = {repr(_generic(a)) for a in answers}
    assert len(shapes) == 1, shapes
    status, body = _generic(answers[0])
    assert status == 401
    assert body == {"error": "login_failed", "message": "sign-in failed"}
    assert all(a.headers["www-authenticate"].startswith("Bearer") for a in answers)


async def test_failure_timing_does_not_reveal_the_cause(
    secure_core: RunningCore, identity: Identity
) -> None:
    """Medians of unknown / wrong / locked / disabled logins stay within a generous bound.

    Without the dummy hash an unknown user answers in about 2 ms against about 60 ms for a
    real verification, far outside the bound; the bound leaves room for a noisy 2-core box.
    """
    add_user(identity, "t-wrong@example.test")
    add_user(identity, "t-locked@example.test")
    disabled = add_user(identity, "t-off@example.test")
    await _lock(identity, "t-locked@example.test")
    identity.service.set_disabled("acme", disabled, True)
    cases = {
        "unknown": ("t-nobody@example.test", PASSWORD),
        "wrong": ("t-wrong@example.test", "Wrong-pass-123!"),
        "locked": ("t-locked@example.test", PASSWORD),
        "disabled": ("t-off@example.test", PASSWORD),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    # Interleaved rounds, each from its own address (the per-address throttle is separate).
    async with client(secure_core, "127.0.0.12") as http:
        await login(http, "warm@example.test")  # the first request pays for TLS set-up
        for _ in range(6):
            for name, (address, password) in cases.items():
                started = time.perf_counter()
                response = await login(http, address, password)
                samples[name].append(time.perf_counter() - started)
                assert response.status_code == 401
    # Lockout would stop "wrong" after 5; the locked path must cost the same anyway.
    medians = {name: statistics.median(values) for name, values in samples.items()}
    reference = medians["wrong"]
    for value in medians.values():
        assert abs(value - reference) < max(0.5 * reference, 0.03), medians


async def test_tenant_requiring_passkey_or_external_refuses_password_login(
    secure_core: RunningCore, identity: Identity
) -> None:
    from cloud.identity.policy import PasswordPolicy
    from cloud.identity.roles import LoginMethod, LoginSettings

    add_user(identity, "bankid@example.test")
    async with client(secure_core, "127.0.0.13") as http:
        for method in (LoginMethod.EXTERNAL, LoginMethod.PASSKEY):
            identity.service.set_settings("acme", PasswordPolicy(), LoginSettings(method))
            response = await login(http, "bankid@example.test")
            assert response.status_code == 403
            assert response.json()["error"] == "login_method_required"
            assert response.json()["required"] == method.value
            assert "tokens" not in response.json()


async def test_oversized_password_is_refused_without_hashing(
    secure_core: RunningCore, identity: Identity
) -> None:
    add_user(identity, "big@example.test")
    async with client(secure_core, "127.0.0.14") as http:
        started = time.perf_counter()
        response = await login(http, "big@example.test", "x" * 1_000_000)
        elapsed = time.perf_counter() - started
    assert response.status_code == 400  # schema: at most 1024 characters
    assert elapsed < 5
