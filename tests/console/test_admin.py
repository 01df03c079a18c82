"""Browser tests: administering the tenant, tokens, tenants and the audit log; the CSP and
the CSRF and Origin checks."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from cloud.pki import client_ssl_context
from tests.console.conftest import HOSTILE, Console

pytestmark = pytest.mark.slow


def test_users_and_roles(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/users")
    admin.get_by_label("Name").fill(HOSTILE[:60])
    admin.get_by_label("Email").fill("new.operator@acme.test")
    admin.get_by_label("Role", exact=True).select_option("operator")
    admin.get_by_role("button", name="Add user").click()
    admin.wait_for_url("**/console/users")
    row = admin.locator("#users tr", has_text="new.operator@acme.test")
    assert row.locator("td").nth(0).inner_text() == HOSTILE[:60]  # shown as text
    assert admin.evaluate("window.pwned") is None
    row.get_by_role("combobox").select_option("tenant_admin")
    row.get_by_role("button", name="Set role").click()
    admin.wait_for_url("**/console/users")
    assert row.locator("td").nth(2).inner_text() == "tenant_admin"
    row.get_by_role("button", name="Disable").click()
    assert row.locator("td").nth(3).inner_text() == "disabled"


def test_tenant_settings(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/settings")
    # The current values are shown: the seed preset's, as no test has changed them.
    assert admin.get_by_label("Preset").input_value() == "seed"
    assert admin.get_by_label("Maximum length").input_value() == "128"
    assert admin.get_by_label("Length of that run").input_value() == "3"
    assert admin.get_by_label("Refuse passwords sharing a run").is_checked()
    try:
        admin.get_by_label("Preset").select_option("nist")
        admin.get_by_label("Minimum length").fill("16")
        admin.get_by_label("Failed attempts before lockout").fill("7")
        admin.get_by_role("button", name="Save").click()
        assert admin.locator("#settings-saved").is_visible()
        admin.goto(console.url + "/console/settings")  # a fresh GET, not a re-post
        assert admin.get_by_label("Preset").input_value() == "nist"
        assert admin.get_by_label("Minimum length").input_value() == "16"
        assert admin.get_by_label("Failed attempts before lockout").input_value() == "7"
        admin.get_by_label("Minimum length").fill("3")  # below what any preset allows
        admin.get_by_role("button", name="Save").click()
        assert admin.locator("#settings-error").inner_text() == (
            "Not saved: check the marked setting."
        )
        assert "min_length must be 8..64" in admin.locator("#min_length-error").inner_text()
        assert admin.get_by_label("Minimum length").get_attribute("aria-invalid") == "true"
        assert admin.get_by_label("Minimum length").input_value() == "3"  # as typed
        admin.get_by_label("Minimum length").fill("16")
        admin.get_by_label("Maximum length").fill("63")  # 800-63B: at least 64 accepted
        admin.get_by_role("button", name="Save").click()
        assert "max_length must be 64..1024" in admin.locator("#max_length-error").inner_text()
        admin.goto(console.url + "/console/settings")  # nothing refused was stored
        assert admin.get_by_label("Minimum length").input_value() == "16"
        assert admin.get_by_label("Maximum length").input_value() == "128"

        # The seed preset, tuned: 12 characters, no special character, runs of 5.
        admin.get_by_label("Preset").select_option("seed")
        admin.get_by_label("Minimum length").fill("12")
        admin.get_by_label("Maximum length").fill("80")
        admin.get_by_label("Require a special character").uncheck()
        admin.get_by_label("Length of that run").fill("5")
        admin.get_by_role("button", name="Save").click()
        assert admin.locator("#settings-saved").is_visible()
        admin.goto(console.url + "/console/settings")  # a fresh GET, not a re-post
        assert admin.get_by_label("Preset").input_value() == "seed"
        assert admin.get_by_label("Minimum length").input_value() == "12"
        assert admin.get_by_label("Maximum length").input_value() == "80"
        assert not admin.get_by_label("Require a special character").is_checked()
        assert admin.get_by_label("Length of that run").input_value() == "5"
        assert admin.get_by_label("Require a digit").is_checked()

        # The console's own user creation applies the new settings.
        admin.goto(console.url + "/console/users")
        error = _add_user(admin, "settings.probe@acme.test", "Zq7wn4Kp2x")
        assert error.endswith("refused: too_short")  # 10 < 12
        error = _add_user(admin, "settings.probe@acme.test", "Zq7wn4Kp2x" + "w" * 71)
        assert error.endswith("refused: too_long")  # 81 > 80
        # Contains "prob" (4 < 5) and no special character: both allowed now.
        assert _add_user(admin, "settings.probe@acme.test", "Zq7wn4Kp2xprob") == ""
        assert admin.locator("#users", has_text="settings.probe@acme.test").count() == 1
    finally:
        # Put the defaults back for the other tests.
        admin.goto(console.url + "/console/settings")
        admin.get_by_label("Preset").select_option("seed")
        admin.get_by_label("Minimum length").fill("8")
        admin.get_by_label("Maximum length").fill("128")
        admin.get_by_label("Require a special character").check()
        admin.get_by_label("Length of that run").fill("3")
        admin.get_by_label("Failed attempts before lockout").fill("5")
        admin.get_by_role("button", name="Save").click()
        assert admin.locator("#settings-saved").is_visible()


def _add_user(admin: Any, email: str, password: str) -> str:
    """Add a user on the users page; the page's error ("" when the user was added)."""
    admin.get_by_label("Name").fill("Settings Probe")
    admin.get_by_label("Email").fill(email)
    admin.get_by_label("Role", exact=True).select_option("viewer")
    admin.get_by_label("Initial password").fill(password)
    with admin.expect_navigation():  # refused or not, the post answers with a page
        admin.get_by_role("button", name="Add user").click()
    error = admin.locator("p.error")
    return str(error.inner_text()) if error.count() else ""


def test_issue_and_revoke_an_api_token(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/tokens")
    admin.get_by_label("Name").fill("grafana")
    admin.get_by_label("events:read").check()
    admin.get_by_role("button", name="Issue").click()
    token = admin.locator("#issued-token").inner_text()
    assert token.startswith("eyJ") and token.count(".") == 2
    # The token works against the REST API, then stops working once revoked.
    assert _get_events(console, token) == 200
    admin.goto(console.url + "/console/tokens")
    assert "eyJ" not in admin.content()  # shown once only
    admin.locator("#tokens tr[data-token=grafana]").get_by_role("button", name="Revoke").click()
    admin.wait_for_url("**/console/tokens")
    assert admin.locator("#tokens tr[data-token=grafana] td").nth(3).inner_text() == "revoked"
    assert _get_events(console, token) == 401


def test_platform_admin_creates_a_tenant(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/tenants")
    admin.get_by_label("New tenant").fill("umbrella")
    admin.get_by_role("button", name="Create").click()
    admin.wait_for_url("**/console/tenants")
    assert "umbrella" in admin.locator("#tenants").all_inner_texts()[0].split("\n")


def test_audit_log_filters(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/devices")
    admin.goto(console.url + "/console/audit?event=http.request&text=%2Fconsole%2Fdevices")
    rows = admin.locator("#audit tbody tr")
    assert rows.count() >= 1
    for text in rows.all_inner_texts():
        assert "http.request" in text and "/console/devices" in text
    assert "globex" not in admin.locator("#audit").inner_text()  # only this tenant's lines


def test_csp_blocks_injected_inline_script(admin: Any, console: Console) -> None:
    messages: list[str] = []
    admin.on("console", lambda m: messages.append(m.text))
    answer = admin.goto(console.url + "/console/devices")
    assert answer is not None
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert answer.headers["cache-control"] == "no-store"
    admin.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.pwned = 3"; document.body.appendChild(s); }"""
    )
    admin.wait_for_timeout(200)  # the violation is reported asynchronously
    assert admin.evaluate("window.pwned") is None
    assert any("Content Security Policy" in m for m in messages), messages
    # The browser also reports the violation to the core, which logs it.
    deadline = time.monotonic() + 10
    while "console.csp_violation" not in console.home.access_log.read_text():
        assert time.monotonic() < deadline, "no CSP report reached the access log"
        time.sleep(0.05)  # the report is sent in the background by the browser


def test_state_changes_need_the_csrf_token_and_our_origin(admin: Any, console: Console) -> None:
    admin.goto(console.url + "/console/tenants")
    # A same-origin post without the token, and one with a foreign Origin, are refused.
    cookies = {c["name"]: c["value"] for c in admin.context.cookies()}
    csrf = admin.locator("meta[name=csrf-token]").get_attribute("content")
    with _client(console, cookies) as client:
        no_token = client.post("/console/tenants", data={"name": "csrf-a"},
                               headers={"Origin": console.url})  # fmt: skip
        foreign = client.post("/console/tenants", data={"name": "csrf-b", "csrf": csrf},
                              headers={"Origin": "https://evil.example"})  # fmt: skip
        no_origin = client.post("/console/tenants", data={"name": "csrf-c", "csrf": csrf})
    assert no_token.status_code == foreign.status_code == no_origin.status_code == 403
    admin.reload()
    names = admin.locator("#tenants").inner_text()
    assert "csrf-a" not in names and "csrf-b" not in names and "csrf-c" not in names


def _client(console: Console, cookies: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=console.url, verify=client_ssl_context(console.home.ca_cert),
                        cookies=cookies)  # fmt: skip


def _get_events(console: Console, token: str) -> int:
    with _client(console) as client:
        return client.get(
            "/api/v1/events", headers={"Authorization": f"Bearer {token}"}
        ).status_code
