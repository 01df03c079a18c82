"""Helpers shared by tests: free ports, required programs, a handle on a running core."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from cloud.home import CoreHome
from cloud.registry import issue_api_token, issue_gateway_credentials

if TYPE_CHECKING:
    from protocol.messages import Message

TENANT = "acme"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_program(name: str) -> str:
    """The path of ``name``; skip locally when missing, fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (see README: Requirements)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class RunningCore:
    home: CoreHome
    link_url: str
    rest_url: str
    stop: trio.Event

    def gateway_token(self, gateway_id: str, tenant: str = TENANT) -> str:
        return issue_gateway_credentials(self.home, tenant, gateway_id).token

    def api_token(self, scopes: tuple[str, ...] = ("events:read",), tenant: str = TENANT) -> str:
        token, _claims = issue_api_token(self.home, tenant, "tests", list(scopes), 3600)
        return token


async def receive_skipping_commands(ws: Any) -> Message:
    """The next link message that is not a ``Command``.

    The core asks every connected gateway for its status (cloud.fleet.agent) at moments a
    test does not control; tests that speak the raw protocol as a gateway skip those.
    """
    from protocol import codec
    from protocol.messages import Command

    while True:
        data = await ws.recv()
        assert isinstance(data, bytes)
        message = codec.decode(data)
        if not isinstance(message, Command):
            return message


#: Where Debian installs SoftHSM2's PKCS#11 module, by architecture.
SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


def softhsm_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, pin: str
) -> tuple[str, Path]:
    """An initialised, empty SoftHSM2 token in a private directory under ``tmp_path``.

    Returns the PKCS#11 module's path and a 0600 file holding the user PIN. Skips locally
    when SoftHSM2 is missing, and fails under CI (``require_program``).
    """
    import subprocess

    util = require_program("softhsm2-util")
    module = next((m for m in SOFTHSM_MODULES if Path(m).is_file()), None)
    assert module is not None, "softhsm2-util is installed but libsofthsm2.so was not found"
    tokens = tmp_path / "softhsm" / "tokens"
    tokens.mkdir(parents=True)
    conf = tmp_path / "softhsm" / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    init = [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "9999"]
    subprocess.run(init, check=True, capture_output=True)
    pin_file = tmp_path / "pin"
    pin_file.write_text(pin + "\n")
    pin_file.chmod(0o600)
    return module, pin_file
