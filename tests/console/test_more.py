"""Operator tasks added to the console: MQTT credentials, switching TOTP off, and a phone-width
layout check. The rule for switching TOTP off is also tested on the identity service itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest

from cloud.accesslog import AccessLog
from cloud.errors import Conflict
from cloud.home import CoreHome
from cloud.identity.errors import LoginFailed, MethodRequired
from cloud.identity.mail import Mail
from cloud.identity.policy import make_policy
from cloud.identity.roles import LoginMethod, LoginSettings, Role
from cloud.identity.runtime import Identity, open_identity
from cloud.registry import Registry
from cloud.tokens import TokenIssuer
from tests.console.conftest import ARTIFACTS, PASSWORD, Console

TENANT = "acme"  # the tenant tests/conftest.py's core_home creates


@pytest.fixture
def service_identity(core_home: CoreHome) -> Iterator[tuple[Identity, list[Mail]]]:
    """The identity service on a fresh home, with its security notices captured."""
    registry = Registry(core_home.db_path)
    found = open_identity(
        core_home, registry, TokenIssuer(core_home), AccessLog(core_home.logs_dir / "t.jsonl")
    )
    sent: list[Mail] = []
    found.service.notify = sent.append
    try:
        yield found, sent
    finally:
        found.store.close()
        registry.close()


def _with_totp(identity: Identity, email: str) -> tuple[str, list[str]]:
    user = identity.service.create_user(TENANT, email, "Ada", Role.OPERATOR, PASSWORD)
    secret, _ = identity.service.begin_totp(TENANT, user.user_id)
    codes = identity.service.confirm_totp(TENANT, user.user_id, pyotp.TOTP(secret).now())
    return user.user_id, codes


def test_remove_totp_needs_the_password_and_clears_secret_and_codes(
    service_identity: tuple[Identity, list[Mail]],
) -> None:
    identity, sent = service_identity
    user_id, codes = _with_totp(identity, "ada@acme.test")
    with pytest.raises(LoginFailed):
        identity.service.remove_totp(TENANT, user_id, "not-the-password")
    assert identity.store.user(TENANT, user_id).totp_enabled
    assert identity.store.user(TENANT, user_id).lock.failures == 1

    identity.service.remove_totp(TENANT, user_id, PASSWORD)
    user = identity.store.user(TENANT, user_id)
    assert not user.totp_enabled and user.totp_secret is None
    mac = identity.service.keyring.mac(codes[0].encode(), f"recovery:{user_id}")
    assert not identity.store.use_recovery_code(user_id, mac, time.time())
    assert sent[-1].to == "ada@acme.test" and "turned off" in sent[-1].subject
    with pytest.raises(Conflict):
        identity.service.remove_totp(TENANT, user_id, PASSWORD)


def test_remove_totp_is_refused_when_the_tenant_requires_it(
    service_identity: tuple[Identity, list[Mail]],
) -> None:
    identity, sent = service_identity
    user_id, _ = _with_totp(identity, "bob@acme.test")
    identity.service.set_settings(
        TENANT, make_policy("seed"), LoginSettings(LoginMethod.PASSWORD_TOTP)
    )
    notices = len(sent)
    with pytest.raises(MethodRequired):
        identity.service.remove_totp(TENANT, user_id, PASSWORD)
    user = identity.store.user(TENANT, user_id)
    assert user.totp_enabled and user.totp_secret is not None
    assert len(sent) == notices


@pytest.mark.slow
def test_switch_totp_off_in_the_console(page: Any, console: Console) -> None:
    email = "mfa.off@acme.test"
    with Registry(console.home.db_path) as registry:
        setup = open_identity(
            console.home, registry, TokenIssuer(console.home),
            AccessLog(console.home.logs_dir / "setup.jsonl"),
        )  # fmt: skip
        try:
            setup.service.create_user("acme", email, "mfa-off", Role.VIEWER, PASSWORD)
        finally:
            setup.store.close()
    page.goto(console.url + "/console/login")
    page.get_by_label("Tenant").fill("acme")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/console/")
    page.goto(console.url + "/console/account")
    page.get_by_role("button", name="Set up an authenticator app").click()
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    page.goto(console.url + "/console/account")
    assert page.locator("#totp-on").is_visible()

    page.get_by_label("Current password").fill("Wrong#Password-123")
    page.get_by_role("button", name="Turn off two-step sign-in").click()
    assert "wrong password" in page.get_by_role("alert").inner_text()
    assert page.locator("#totp-on").is_visible()

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_role("button", name="Turn off two-step sign-in").click()
    page.wait_for_url("**/console/account")
    assert page.get_by_role("button", name="Set up an authenticator app").is_visible()
    deadline = time.monotonic() + 10
    while not [m for m in console.inbox.to(email) if "turned off" in m["Subject"]]:
        assert time.monotonic() < deadline, "no security notice"
        time.sleep(0.05)  # the mailer runs in the core's thread; nothing to await here


@pytest.mark.slow
def test_mqtt_page_says_when_the_broker_is_not_set_up(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/")
    admin.get_by_role("navigation").get_by_role("link", name="MQTT").click()
    admin.wait_for_url("**/console/mqtt")
    assert "not set up on this core" in admin.locator("#mqtt-not-set-up").inner_text()
    assert admin.get_by_role("button", name="Issue").count() == 0


@pytest.mark.slow
def test_issue_and_revoke_an_mqtt_credential(
    admin: Any, console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Mosquitto in this core: the broker's control channel is replaced by a recorder.
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr("cloud.console.mqtt.broker_ready", lambda home: True)
    monkeypatch.setattr(
        "cloud.mqtt.control.run_commands", lambda home, commands: sent.extend(commands)
    )
    admin.goto(console.url + "/console/mqtt")
    admin.get_by_label("Name").fill("line-3")
    admin.get_by_label("Publish patterns").fill("up/+")
    admin.get_by_label("Subscribe patterns").fill("ev/#, cmd/line-3")
    admin.get_by_role("button", name="Issue").click()
    token = admin.locator("#issued-mqtt-token").inner_text()
    assert len(token) >= 43
    row = admin.locator("#mqtt-credentials tr[data-credential=line-3]")
    assert row.locator("td").nth(0).inner_text() == "acme.line-3"
    assert row.locator("td").nth(1).inner_text() == "t/acme/up/+"
    assert row.locator("td").nth(2).inner_text() == "t/acme/ev/#, t/acme/cmd/line-3"
    assert [c["command"] for c in sent] == ["createRole", "createClient"]
    admin.reload()
    assert admin.locator("#issued-mqtt-token").count() == 0  # shown once

    admin.get_by_label("Name").fill("line-3")
    admin.get_by_label("Publish patterns").fill("up/+")
    admin.get_by_role("button", name="Issue").click()
    assert "exists" in admin.locator("#mqtt-error").inner_text()

    row.get_by_role("button", name="Revoke").click()
    admin.wait_for_url("**/console/mqtt")
    assert row.locator("td.state").inner_text() == "revoked"
    assert sent[-1] == {"command": "disableClient", "username": "acme.line-3"}


def _overflow(page: Any) -> bool:
    return bool(
        page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    )


@pytest.mark.slow
def test_phone_width_fleet_and_device_pages(
    browser: Any, admin_state: dict[str, Any], console: Console
) -> None:
    context = browser.new_context(
        storage_state=admin_state, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        for name, path in (("fleet", "/console/"), ("device", "/console/devices/gw-1/gps-1")):
            page.goto(console.url + path)
            page.locator("main h1").wait_for()
            page.screenshot(path=str(ARTIFACTS / f"phone-{name}.png"), full_page=True)
            assert not _overflow(page), f"the {name} page scrolls sideways at 390 px"

        links = page.get_by_role("navigation", name="Main").get_by_role("link")
        nav = [text.strip() for text in links.all_inner_texts()]
        assert nav[:3] == ["Gateways", "Devices", "Live"] and nav[-1] == "Account"
        reached: list[str] = []
        for _ in range(len(nav) + 1):  # the skip link, then every link of the navigation
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        assert reached == ["Skip to content", *nav]
        page.keyboard.press("Enter")  # the focused link works from the keyboard
        page.wait_for_url("**/console/account")
    finally:
        context.close()
