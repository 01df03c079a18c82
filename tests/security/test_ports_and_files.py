"""A running core and gateway listen on exactly their configured ports, and no file they
write holds a password, token or private key in readable form, except the key files meant to
hold keys (the seed's "unnecessary open ports" and "critical data in files" cases).

Everything runs as real processes set up with the ``assetbook`` command, and the secrets the
test hands them (an API token, a gateway token, a user's password, refresh and access tokens
from a login) are then searched for in every byte of every file under their directories.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.pki import client_ssl_context
from tests.e2e.processes import spawn
from tests.support import free_port

pytestmark = pytest.mark.slow

PASSWORD = "Zq9#vortex-Blimp42!"
#: Files whose job is to hold a key or credential, relative to the directory scanned.
KEY_FILES = re.compile(r"^(tls/[^/]+\.key|keys/.+|gateway\.token|mqtt/admin\.json)$")
PRIVATE_KEY_PEM = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def assetbook(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "assetbook", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def listening_ports(pid: int) -> set[tuple[str, int]]:
    """(protocol, port) of every listening TCP and bound UDP socket the process holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            listening = state == "0A" if table.startswith("tcp") else True
            if inode in inodes and listening:
                found.add((table.rstrip("6"), int(local.rsplit(":", 1)[1], 16)))
    return found


def readable_secrets(root: Path, secrets: dict[str, bytes]) -> list[str]:
    """Every (file, what) where a secret or a key-shaped string is readable outside key files."""
    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if KEY_FILES.match(relative):
            continue
        data = path.read_bytes()
        problems += [f"{relative}: {name}" for name, value in secrets.items() if value in data]
        if PRIVATE_KEY_PEM.search(data):
            problems.append(f"{relative}: a PEM private key")
        if JWT.search(data):
            problems.append(f"{relative}: a JWT")
    return problems


async def test_core_and_gateway_expose_only_their_ports_and_no_readable_secrets(
    tmp_path: Path,
) -> None:
    home = tmp_path / "core"
    ports = {"link": free_port(), "rest": free_port(), "http": free_port()}
    assetbook(
        "core", "init", "--home", str(home), "--host", "localhost",
        "--link-port", str(ports["link"]), "--rest-port", str(ports["rest"]),
        "--http-port", str(ports["http"]),
    )  # fmt: skip
    assetbook("tenant", "create", "acme", "--home", str(home))
    assetbook(
        "user", "create", "--home", str(home), "--tenant", "acme", "--email", "ann@example.se",
        "--name", "Ann Admin", "--role", "tenant_admin", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    gateway_dir = tmp_path / "gw-1"
    assetbook(
        "gateway", "create", "--home", str(home), "--tenant", "acme", "--id", "gw-1",
        "--out", str(gateway_dir),
    )  # fmt: skip
    api_token = assetbook(
        "token", "create", "--home", str(home), "--tenant", "acme", "--name", "probe",
        "--scope", "events:read",
    ).strip()  # fmt: skip
    secrets: dict[str, bytes] = {
        "the API token": api_token.encode(),
        "the gateway token": (gateway_dir / "gateway.token").read_text().strip().encode(),
        "the user's password": PASSWORD.encode(),
    }
    rest = f"https://localhost:{ports['rest']}"
    async with spawn("core", ["assetbook", "core", "run", "--home", str(home)]) as core:
        await core.wait_for("core ready")
        async with spawn(
            "gateway",
            ["assetbook", "gateway", "run", "--config", str(gateway_dir / "gateway.toml")],
        ) as gateway:
            await gateway.wait_for("link up")
            tokens = await _use_the_api(rest, home, api_token)
            secrets["an access token"] = tokens["access_token"].encode()
            secrets["a refresh token"] = tokens["refresh_token"].encode()
            secrets["a spent refresh token"] = tokens["old_refresh"].encode()
            core_ports = listening_ports(core.process.pid)
            gateway_ports = listening_ports(gateway.process.pid)
            assert await gateway.stop(signal.SIGTERM) == 0
        assert await core.stop(signal.SIGTERM) == 0
    assert core_ports == {("tcp", ports["link"]), ("tcp", ports["rest"]), ("tcp", ports["http"])}
    assert gateway_ports == set()
    assert readable_secrets(home, secrets) == []
    assert readable_secrets(gateway_dir, secrets) == []


async def _use_the_api(rest: str, home: Path, api_token: str) -> dict[str, Any]:
    """Log in, refresh, read events: every kind of secret passes through the core."""
    async with httpx.AsyncClient(
        base_url=rest, verify=client_ssl_context(home / "tls" / "ca.pem")
    ) as http:
        login = await http.post(
            "/api/v1/auth/login",
            json={"tenant": "acme", "email": "ann@example.se", "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
        tokens: dict[str, Any] = login.json()["tokens"]
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        events = await http.get("/api/v1/events", headers={"Authorization": f"Bearer {api_token}"})
        assert events.status_code == 200
        return {**refreshed.json(), "old_refresh": tokens["refresh_token"]}
