"""Fixtures for the console's browser tests: one core (in a thread) and one Chromium.

The core runs in its own thread with its own Trio run, because Playwright's sync API drives
the browser from the test thread. Data is set up before the core starts: tenants, users,
stored events (written through the real SQLite event store) and an SMTP inbox (aiosmtpd).
Chromium is Debian's (``apt-get install chromium``): the tests skip locally without it and
fail under CI=true (``tests.support.require_program``). It trusts the core's development
certificate through ``--ignore-certificate-errors-spki-list`` (pinning the server key), so
the page is a secure context without certificate errors, which WebAuthn requires.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud.accesslog import AccessLog
from cloud.home import CoreHome, init_home
from cloud.identity.policy import make_policy
from cloud.identity.roles import LoginMethod, LoginSettings, Role
from cloud.identity.runtime import open_identity
from cloud.registry import Registry
from cloud.storage.sqlite import open_sqlite_store
from cloud.tokens import TokenIssuer
from protocol.events import ClockSource, Event, Reading
from tests.security.conftest import Inbox, _configure_smtp
from tests.support import free_port, require_program

PASSWORD = "Zq9#vortex-Blimp42!"
OTHER = "globex"
PASSKEY_ONLY = "hooli"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USERS = {
    # key: (tenant, email, role)
    "admin": ("acme", "admin@acme.test", Role.PLATFORM_ADMIN),
    "viewer": ("acme", "viewer@acme.test", Role.VIEWER),
    "totp": ("acme", "totp@acme.test", Role.OPERATOR),
    "passkey": ("acme", "passkey@acme.test", Role.OPERATOR),
    "locked": ("acme", "locked@acme.test", Role.VIEWER),
    "reset": ("acme", "reset@acme.test", Role.VIEWER),
    "enrol": (OTHER, "enrol@globex.test", Role.VIEWER),  # globex requires TOTP
}


@dataclass
class Console:
    home: CoreHome
    url: str
    inbox: Inbox


def _events(device: str, count: int, readings: Any, start_seq: int) -> list[Event]:
    base = time.time_ns() - count * 60_000_000_000
    return [
        Event(start_seq + i, device, bytes(16), i * 1_000_000, base + i * 60_000_000_000,
              ClockSource.NTP, readings(i))
        for i in range(count)
    ]  # fmt: skip


def _seed_events(home: CoreHome) -> None:
    gps = _events(
        "gps-1", 20, lambda i: (Reading("lat", "lat", 59.33 + i * 0.001),
                                Reading("lon", "lon", 18.06 + (i % 7) * 0.002)), 1,
    )  # fmt: skip
    temp = _events("temp-1", 30, lambda i: (Reading("temperature", "Cel", 20.0 + i / 10),), 100)
    hostile = _events(HOSTILE, 2, lambda i: (Reading("note", "", HOSTILE),), 200)
    report = (
        Reading("interval", "s", 3600.0),
        Reading("link/state", "", "online"),
        Reading("outbox/depth", "count", 0),
        Reading("link/connects", "count", 1),
        Reading("link/disconnects", "count", 0),
    )
    health = _events("_health", 1, lambda i: report, 300)
    secret = _events("secret-dev", 3, lambda i: (Reading("temperature", "Cel", 1.0),), 1)

    async def store_all() -> None:
        async with open_sqlite_store(home.db_dir / "events.sqlite") as store:
            now = time.time_ns()
            await store.store_batch("acme", "gw-1", [*gps, *temp, *hostile, *health], now)
            await store.store_batch(OTHER, "gw-9", secret, now)

    trio.run(store_all)


def _seed_identity(home: CoreHome) -> None:
    with Registry(home.db_path) as registry:
        registry.create_tenant("acme")
        registry.create_tenant(OTHER)
        registry.create_tenant(PASSKEY_ONLY)
        registry.create_gateway("acme", "gw-1")
        registry.create_gateway(OTHER, "gw-9")
        identity = open_identity(
            home, registry, TokenIssuer(home), AccessLog(home.logs_dir / "setup.jsonl")
        )
        try:
            for tenant, email, role in USERS.values():
                identity.service.create_user(tenant, email, email.split("@")[0], role, PASSWORD)
            policy = make_policy("seed")
            identity.service.set_settings(OTHER, policy, LoginSettings(LoginMethod.PASSWORD_TOTP))
            identity.service.set_settings(PASSKEY_ONLY, policy, LoginSettings(LoginMethod.PASSKEY))
        finally:
            identity.store.close()


def spki_pin(cert_path: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a certificate, Chromium's pin format."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_program("chromium")


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[Console]:
    """A core with seeded data, serving in a thread for the whole browser session."""
    from aiosmtpd.controller import Controller

    from cloud.app import serve_core

    home = init_home(
        tmp_path_factory.mktemp("console") / "core", link_port=free_port(),
        rest_port=free_port(), hosts=("localhost",),
    )  # fmt: skip
    _seed_identity(home)
    _seed_events(home)
    inbox = Inbox(port=free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    _configure_smtp(home, inbox.port)
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def run() -> None:
        stop = trio.Event()
        holder["stop"], holder["token"] = stop, trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(serve_core, home, stop)
            holder["url"] = endpoints.rest_url
            started.set()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    assert started.wait(30), "the core did not start"
    try:
        yield Console(home, holder["url"], inbox)
    finally:
        trio.from_thread.run_sync(holder["stop"].set, trio_token=holder["token"])
        thread.join(10)
        controller.stop()


@pytest.fixture(scope="package")
def browser(console: Console, chromium: str) -> Iterator[Any]:
    """One Chromium for the console tests.

    Package scope, not session: Playwright's sync API keeps an asyncio loop marked as running
    on the main thread while it is open, and ``asyncio.run`` refuses to start under it; so it
    closes when the last console test is done, before any other test module runs.
    """
    from playwright.sync_api import sync_playwright

    pin = spki_pin(console.home.server_cert)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={pin}"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; a screenshot at the end."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if not page.is_closed():
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def login(page: Any, console: Console, who: str, password: str = PASSWORD) -> None:
    tenant, email, _ = USERS[who]
    page.goto(console.url + "/console/login")
    page.get_by_label("Tenant").fill(tenant)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


@pytest.fixture(scope="package")
def admin_state(browser: Any, console: Console) -> dict[str, Any]:
    """The cookies of one admin sign-in, shared by the tests that only need to be signed in
    (each sign-in costs an Argon2 verification and a token from the per-address bucket)."""
    context = browser.new_context()
    page = context.new_page()
    login(page, console, "admin")
    page.wait_for_url("**/console/")
    state: dict[str, Any] = context.storage_state()
    context.close()
    return state


@pytest.fixture
def admin(
    browser: Any, admin_state: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A page signed in as the platform admin of ``acme``."""
    context = browser.new_context(
        storage_state=admin_state, viewport={"width": 1200, "height": 800}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
