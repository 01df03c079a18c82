"""Browser tests: signing in and out, second factors, passkeys, reset, sessions, lockout,
and what the browser keeps (cookies, storage, history)."""

from __future__ import annotations

import re
from typing import Any

import pyotp
import pytest

from tests.console.conftest import PASSKEY_ONLY, PASSWORD, USERS, Console, login
from tests.security.conftest import reset_code

pytestmark = pytest.mark.slow
GENERIC = "Sign-in failed."


def test_password_login_lands_on_the_fleet(page: Any, console: Console) -> None:
    login(page, console, "viewer")
    page.wait_for_url("**/console/")
    assert page.get_by_role("heading", name="Gateways").is_visible()
    assert page.locator("#gateways").get_by_text("gw-1").is_visible()
    # A viewer sees no admin navigation and cannot open admin pages.
    assert page.get_by_role("link", name="Users").count() == 0
    page.goto(console.url + "/console/users")
    assert page.locator("#forbidden").is_visible()


def test_lockout_keeps_one_generic_message(page: Any, console: Console) -> None:
    messages = []
    for _ in range(6):  # the default threshold is 5 failures
        login(page, console, "locked", password="wrong-" + PASSWORD)
        messages.append(page.locator("#login-error").inner_text())
    login(page, console, "locked")  # the right password, now locked
    messages.append(page.locator("#login-error").inner_text())
    page.goto(console.url + "/console/login")  # an account that does not exist
    page.get_by_label("Tenant").fill("acme")
    page.get_by_label("Email").fill("nobody@acme.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    messages.append(page.locator("#login-error").inner_text())
    assert set(messages) == {GENERIC}
    assert "/console/login" in page.url
    assert page.context.cookies() == [c for c in page.context.cookies() if "login" in c["name"]]


def test_cookies_and_storage_hold_nothing_sensitive(page: Any, console: Console) -> None:
    login(page, console, "viewer")
    page.wait_for_url("**/console/")
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["__Host-assetbook-console"]
    cookie = cookies[0]
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert "eyJ" not in cookie["value"] and "." not in cookie["value"]  # not a JWT
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    page.goto(console.url + "/console/live")
    page.locator("#live-status[data-state=open]").wait_for()
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert "eyJ" not in page.content()  # no token in the page either


def test_logout_back_button_and_old_cookie_show_nothing(
    page: Any, console: Console, browser: Any
) -> None:
    login(page, console, "viewer")
    page.wait_for_url("**/console/")
    page.goto(console.url + "/console/devices")
    assert page.get_by_text("temp-1").is_visible()
    old = page.context.cookies()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login")
    page.go_back()
    page.wait_for_load_state()
    assert "/console/login" in page.url
    assert "temp-1" not in page.content()
    replay = browser.new_context()
    try:
        replay.add_cookies(old)
        other = replay.new_page()
        answer = other.goto(console.url + "/console/devices")
        assert answer is not None
        assert "/console/login" in other.url
        assert "temp-1" not in other.content()
    finally:
        replay.close()


def test_totp_enrolment_then_login_with_a_recovery_code(page: Any, console: Console) -> None:
    login(page, console, "totp")
    page.wait_for_url("**/console/")
    page.goto(console.url + "/console/account")
    page.get_by_role("button", name="Set up an authenticator app").click()
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) >= 8
    page.get_by_role("button", name="Sign out").click()
    login(page, console, "totp")
    page.wait_for_url("**/console/login/totp")
    page.get_by_label(re.compile("Code from your authenticator")).fill("000000")
    page.get_by_role("button", name="Continue").click()
    assert page.locator("#login-error").inner_text() == GENERIC
    login(page, console, "totp")
    page.get_by_label(re.compile("Code from your authenticator")).fill(codes[0])
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/console/")
    page.goto(console.url + "/console/account")
    assert page.locator("#sessions").get_by_text("password+totp").is_visible()


def test_tenant_that_requires_totp_enrols_at_sign_in(page: Any, console: Console) -> None:
    login(page, console, "enrol")
    page.wait_for_url("**/console/login/totp")
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_label(re.compile("Code from your authenticator")).fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Continue").click()
    assert page.locator("#recovery-codes li").count() >= 8  # shown once, before going on
    page.get_by_role("link", name="Continue to the console").click()
    page.wait_for_url("**/console/")
    page.goto(console.url + "/console/account")
    assert page.locator("#sessions").get_by_text("password+totp").is_visible()


def test_tenant_that_requires_passkeys_refuses_passwords(page: Any, console: Console) -> None:
    page.goto(console.url + "/console/login")
    page.get_by_label("Tenant").fill(PASSKEY_ONLY)
    page.get_by_label("Email").fill("someone@hooli.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    assert page.locator("#login-error").inner_text() == (
        "This tenant requires signing in with passkey."
    )
    assert [c["name"] for c in page.context.cookies()] == ["__Host-assetbook-login"]


def test_passkey_registration_and_login(page: Any, console: Console) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {"options": {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                     "hasUserVerification": True, "isUserVerified": True}},
    )  # fmt: skip
    login(page, console, "passkey")
    page.wait_for_url("**/console/")
    page.goto(console.url + "/console/account")
    page.get_by_label("Name for the new passkey").fill("laptop <b>key</b>")
    page.get_by_role("button", name="Add a passkey").click()
    page.locator("#passkeys .passkey-name").wait_for()
    assert page.locator("#passkeys .passkey-name").inner_text() == "laptop <b>key</b>"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login")
    page.get_by_label("Tenant").fill("acme")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("**/console/")
    page.goto(console.url + "/console/account")
    assert page.locator("#sessions").get_by_text("passkey").first.is_visible()
    # The same passkey offered for another tenant is refused with the generic answer.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("Tenant").fill("globex")
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("**/console/login/passkey")
    assert page.locator("#login-error").inner_text() == GENERIC


def test_password_reset_by_mail(page: Any, console: Console) -> None:
    tenant, email, _ = USERS["reset"]
    page.goto(console.url + "/console/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Tenant").fill(tenant)
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send a reset code").click()
    assert page.locator("#reset-sent").is_visible()
    message = _wait_for_mail(console, email)
    new_password = "Quill#Mango-Brook58"
    page.get_by_label("Reset code").fill(reset_code(message))
    page.get_by_label("New password").fill(new_password)
    page.get_by_role("button", name="Set the new password").click()
    assert "Password changed" in page.locator("#login-error").inner_text()
    login(page, console, "reset", password=new_password)
    page.wait_for_url("**/console/")


def test_end_another_session(page: Any, console: Console, browser: Any) -> None:
    other = browser.new_context()
    try:
        second = other.new_page()
        login(second, console, "viewer")
        second.wait_for_url("**/console/")
        login(page, console, "viewer")
        page.wait_for_url("**/console/")
        page.goto(console.url + "/console/account")
        before = page.locator("#sessions tbody tr").count()
        assert before >= 2
        page.locator("#sessions").get_by_role("button", name="End").first.click()
        page.wait_for_url("**/console/account")
        assert page.locator("#sessions tbody tr").count() == before - 1
        second.goto(console.url + "/console/devices")
        assert "/console/login" in second.url  # that browser's session is over
    finally:
        other.close()


def _wait_for_mail(console: Console, to: str) -> Any:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the mailer runs in the core's thread
        found = [m for m in console.inbox.to(to) if "reset" in m["Subject"]]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError("no reset mail")
