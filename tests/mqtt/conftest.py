"""Fixtures for MQTT tests: a real Mosquitto on free ports, set up from the core home."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from cloud.home import CoreHome
from cloud.mqtt.broker import BrokerPaths, BrokerSettings, setup_broker
from cloud.mqtt.credentials import IssuedCredential, create_credential
from tests.support import TENANT, free_port, require_program

START_TIMEOUT_S = 10.0


@dataclass
class Broker:
    home: CoreHome
    settings: BrokerSettings
    program: str
    log: Path
    process: trio.Process | None = None

    @property
    def ca(self) -> str:
        return str(self.home.ca_cert)

    async def start(self) -> None:
        out = self.log.open("ab")
        self.process = await trio.lowlevel.open_process(
            [self.program, "-c", str(BrokerPaths(self.home).config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        with trio.fail_after(START_TIMEOUT_S):
            # Polling another process's listening socket; nothing to await on.
            while not _accepts(self.settings.tls_port):
                assert self.process.returncode is None, self.log.read_text()
                await trio.sleep(0.02)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()  # SIGTERM: Mosquitto saves its persistence file
            with trio.fail_after(START_TIMEOUT_S):
                await self.process.wait()

    async def credential(
        self, name: str, publish: tuple[str, ...] = (), subscribe: tuple[str, ...] = ()
    ) -> IssuedCredential:
        """Issue through the real dynsec control path (in a thread: it blocks)."""
        return await trio.to_thread.run_sync(
            create_credential, self.home, TENANT, name, publish, subscribe
        )


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
async def broker(core_home: CoreHome, tmp_path: Path) -> AsyncIterator[Broker]:
    """Mosquitto with the generated config, the core's CA and dynsec, on free ports."""
    program = require_program("mosquitto")
    settings = BrokerSettings(tls_port=free_port(), wss_port=free_port(), max_packet_bytes=16_384)
    setup_broker(core_home, settings)
    handle = Broker(core_home, settings, program, tmp_path / "mosquitto.log")
    await handle.start()
    try:
        yield handle
    finally:
        with trio.CancelScope(shield=True):
            await handle.stop()
