"""The logging module is its own process with its own token: started and stopped while the core
runs, it writes every event it may see as JSON records (seed: "Enabling full system logging is
as easy as just starting the Logging module"), and the access log goes on without it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest
import trio

from cloud.home import CoreHome
from cloud.pki import client_ssl_context
from cloud.registry import Registry
from tests.cloud.test_link import make_events, open_link, say_hello, send_batch
from tests.e2e.processes import spawn
from tests.support import TENANT, RunningCore

pytestmark = pytest.mark.slow


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _send(core: RunningCore, first: int, count: int) -> None:
    async with open_link(core, core.gateway_token("gw-1")) as gateway:
        await say_hello(gateway, "gw-1")
        await send_batch(gateway, make_events(first, count))


async def test_start_and_stop_while_the_core_runs(core: RunningCore, core_home: CoreHome) -> None:
    out = core_home.logs_dir / "module.jsonl"
    args = ["assetbook", "logging", "run", "--home", str(core_home.root), "--tenant", TENANT]
    async with spawn("logging", [*args, "--out", str(out)]) as module:
        await module.wait_for(r"logging module ready")
        await _send(core, 1, 3)
        # The events arrive asynchronously: poll the module's own output file briefly.
        with trio.fail_after(20):
            while len([r for r in _records(out) if r["kind"] == "event"]) < 3:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert await module.stop(signal.SIGTERM) == 0
    records = _records(out)
    events = [r for r in records if r["kind"] == "event"]
    assert [(r["gateway"], r["device"], r["seq"]) for r in events] == [
        ("gw-1", "dev-1", 1),
        ("gw-1", "dev-1", 2),
        ("gw-1", "dev-1", 3),
    ]
    assert events[0]["readings"] == [{"n": "temperature", "u": "Cel", "v": 20.1}]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "module.started"
    assert kinds[-1] == "module.stopped"
    assert "module.subscribed" in kinds
    assert oct(out.stat().st_mode & 0o777) == "0o600"

    # The core kept running without the module: events are stored, the access log goes on.
    await _send(core, 4, 2)
    async with httpx.AsyncClient(verify=client_ssl_context(core_home.ca_cert)) as http:
        page = await http.get(
            f"{core.rest_url}/api/v1/events",
            headers={"Authorization": f"Bearer {core.api_token()}"},
        )
    assert [e["seq"] for e in page.json()["events"]] == [1, 2, 3, 4, 5]
    access = [json.loads(line) for line in core_home.access_log.read_text().splitlines()]
    opened = [r for r in access if r["event"] == "link.open" and r["principal"] == "logging"]
    closed = [r for r in access if r["event"] == "link.closed" and r["principal"] == "logging"]
    assert (len(opened), len(closed)) == (1, 1)
    # Its token was revoked when it stopped: no live credential is left behind.
    with Registry(core_home.db_path) as registry:
        module_tokens = [t for t in registry.list_tokens(TENANT) if t.subject == "logging"]
    assert module_tokens
    assert all(t.revoked_at is not None for t in module_tokens)
    # And it starts again while the core runs.
    async with spawn("logging", [*args, "--out", str(out)]) as again:
        await again.wait_for(r"logging module ready")
        assert await again.stop(signal.SIGTERM) == 0
    assert [r["kind"] for r in _records(out)].count("module.started") == 2
