"""Password reset by mail: no enumeration, single use, short-lived, sessions end, notices."""

from __future__ import annotations

import time

from cloud.identity.runtime import Identity
from tests.security.conftest import (
    PASSWORD,
    Inbox,
    add_user,
    bearer,
    client,
    login,
    reset_code,
    tokens,
)
from tests.support import RunningCore

NEW = "Fresh#Quokka-2931"


async def _request(http: object, address: str) -> tuple[int, dict[str, object]]:
    import httpx

    assert isinstance(http, httpx.AsyncClient)
    response = await http.post(
        "/api/v1/auth/password-reset", json={"tenant": "acme", "email": address}
    )
    body = dict(response.json())
    return response.status_code, body


async def test_reset_answers_the_same_for_unknown_accounts_and_mails_only_real_ones(
    secure_core: RunningCore, identity: Identity, inbox: Inbox
) -> None:
    add_user(identity, "real@example.test")
    async with client(secure_core, "127.0.0.51") as http:
        real = await _request(http, "real@example.test")
        ghost = await _request(http, "ghost@example.test")
    assert real == ghost
    assert real[0] == 202
    message = await inbox.wait_for("real@example.test", "password reset")
    assert "code" in message.get_content()
    assert inbox.to("ghost@example.test") == []


async def test_reset_code_is_single_use_and_ends_every_session(
    secure_core: RunningCore, identity: Identity, inbox: Inbox
) -> None:
    add_user(identity, "user@example.test")
    async with client(secure_core, "127.0.0.52") as http:
        session = await tokens(http, "user@example.test")
        await _request(http, "user@example.test")
        code = reset_code(await inbox.wait_for("user@example.test", "password reset"))
        weak = await http.post(
            "/api/v1/auth/password-reset/confirm", json={"code": code, "new_password": "short"}
        )
        assert weak.status_code == 400 and "too_short" in weak.json()["rules"]
        ok = await http.post(
            "/api/v1/auth/password-reset/confirm", json={"code": code, "new_password": NEW}
        )
        assert ok.status_code == 200
        again = await http.post(
            "/api/v1/auth/password-reset/confirm", json={"code": code, "new_password": NEW + "x"}
        )
        assert again.status_code == 401
        # The old session is over: its access token and its refresh token are refused.
        me = await http.get("/api/v1/auth/me", headers=bearer(session["access_token"]))
        assert me.status_code == 401
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        assert refreshed.status_code == 401
        assert (await login(http, "user@example.test", PASSWORD)).status_code == 401
        assert (await login(http, "user@example.test", NEW)).status_code == 200
    notice = await inbox.wait_for("user@example.test", "security notice")
    assert NEW not in notice.get_content()


async def test_reset_code_expires(identity: Identity) -> None:
    from cloud.identity.errors import LoginFailed
    from cloud.identity.service import RESET_LIFETIME_S

    user_id = add_user(identity, "late@example.test")
    clock = [time.time()]
    identity.service._now = lambda: clock[0]
    sent: list[str] = []
    identity.service.notify = lambda mail: sent.append(mail.body)
    identity.service.request_reset("acme", "late@example.test", "127.0.0.53")
    code = sent[0].split("\n\n")[2].strip()
    clock[0] += RESET_LIFETIME_S + 1
    try:
        identity.service.confirm_reset(code, NEW)
    except LoginFailed:
        pass
    else:
        raise AssertionError("an expired reset code was accepted")
    user = identity.store.user("acme", user_id)
    assert identity.service.hasher.verify(user.password or "", PASSWORD, f"password:{user_id}")


async def test_password_change_ends_all_sessions_and_notifies(
    secure_core: RunningCore, identity: Identity, inbox: Inbox
) -> None:
    add_user(identity, "changer@example.test")
    async with client(secure_core, "127.0.0.54") as http:
        one = await tokens(http, "changer@example.test")
        two = await tokens(http, "changer@example.test")
        changed = await http.post(
            "/api/v1/auth/password",
            headers=bearer(one["access_token"]),
            json={"current_password": PASSWORD, "new_password": NEW},
        )
        assert changed.status_code == 200, changed.text
        for session in (one, two):
            me = await http.get("/api/v1/auth/me", headers=bearer(session["access_token"]))
            assert me.status_code == 401
    await inbox.wait_for("changer@example.test", "password was changed")
