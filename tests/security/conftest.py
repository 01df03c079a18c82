"""Fixtures for the security tests: a core with a local SMTP server, users, HTTPS clients.

The SMTP server is aiosmtpd's ``Controller`` (a real SMTP server on loopback, in its own
thread); the core sends to it through ``[smtp]`` in ``config.toml``.
"""

from __future__ import annotations

import email
import email.policy
import re
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import tomli_w
import trio
from aiosmtpd.controller import Controller

from cloud.accesslog import AccessLog
from cloud.home import CoreHome
from cloud.identity.roles import Role
from cloud.identity.runtime import Identity, open_identity
from cloud.pki import client_ssl_context
from cloud.registry import Registry
from cloud.tokens import TokenIssuer
from tests.support import TENANT, RunningCore, free_port

PASSWORD = "Zq9#vortex-Blimp42!"  # meets the seed preset for the users below


@dataclass
class Inbox:
    """Messages the local SMTP server received."""

    port: int = 0
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    async def wait_for(self, to: str, subject_part: str) -> email.message.EmailMessage:
        # The mail arrives from another thread; poll briefly under a deadline.
        with trio.fail_after(10):
            while True:
                with self.lock:
                    for message in self.messages:
                        if message["To"] == to and subject_part in message["Subject"]:
                            return message
                await trio.sleep(0.02)

    def to(self, address: str) -> list[email.message.EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


def reset_code(message: email.message.EmailMessage) -> str:
    body = message.get_content()
    match = re.search(r"^ {4}([A-Za-z0-9_-]{20,})", body, re.MULTILINE)
    assert match, body
    return match.group(1)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox(port=free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


def _configure_smtp(home: CoreHome, port: int) -> None:
    # Plain SMTP on loopback: the test server has no certificate.
    data = tomllib.loads(home.config_path.read_text())
    data["smtp"] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "AssetBook <no-reply@example.test>",
        "starttls": False,
    }
    home.config_path.write_text(tomli_w.dumps(data))


@pytest.fixture
async def secure_core(
    core_home: CoreHome, inbox: Inbox, nursery: trio.Nursery
) -> AsyncIterator[RunningCore]:
    """The in-process core, mailing to ``inbox``."""
    from cloud.app import serve_core

    _configure_smtp(core_home, inbox.port)
    stop = trio.Event()
    endpoints = await nursery.start(serve_core, core_home, stop)
    yield RunningCore(core_home, endpoints.link_url, endpoints.rest_url, stop)
    stop.set()


@pytest.fixture
def identity(core_home: CoreHome) -> Iterator[Identity]:
    """The identity service on the same home, for setting up users directly."""
    registry = Registry(core_home.db_path)
    found = open_identity(
        core_home, registry, TokenIssuer(core_home), AccessLog(core_home.logs_dir / "t.jsonl")
    )
    try:
        yield found
    finally:
        found.store.close()
        registry.close()


def add_user(
    identity: Identity,
    email_address: str,
    role: Role = Role.VIEWER,
    *,
    tenant: str = TENANT,
    password: str | None = PASSWORD,
    name: str = "Test User",
    pnr: str | None = None,
) -> str:
    user = identity.service.create_user(tenant, email_address, name, role, password, pnr)
    return user.user_id


def client(core: RunningCore, source: str = "127.0.0.1") -> httpx.AsyncClient:
    """An HTTPS client trusting the core's CA, connecting from ``source`` (a loopback
    address: each test may use its own so per-address throttling does not couple tests)."""
    transport = httpx.AsyncHTTPTransport(
        verify=client_ssl_context(core.home.ca_cert), local_address=source
    )
    return httpx.AsyncClient(base_url=core.rest_url, transport=transport, timeout=30)


async def login(
    http: httpx.AsyncClient, email_address: str, password: str = PASSWORD, tenant: str = TENANT
) -> httpx.Response:
    return await http.post(
        "/api/v1/auth/login", json={"tenant": tenant, "email": email_address, "password": password}
    )


async def tokens(
    http: httpx.AsyncClient, email_address: str, password: str = PASSWORD, tenant: str = TENANT
) -> dict[str, Any]:
    response = await login(http, email_address, password, tenant)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["second_factor"] == "none"
    result: dict[str, Any] = body["tokens"]
    return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
