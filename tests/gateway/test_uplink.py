"""The uplink against a real in-process core over TLS: draining, acks, renumbering, refusal."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import trio

from cloud.pki import client_ssl_context
from drivers.base import Sample
from gateway.clock import Stamper
from gateway.outbox import open_outbox
from gateway.uplink import LinkState, Uplink, UplinkSettings
from protocol.events import ClockSource, Reading
from tests.support import RunningCore

BOOT = bytes(range(16))


def stamper() -> Stamper:
    ticks = itertools.count(1)
    return Stamper(
        BOOT,
        lambda: next(ticks),
        lambda: 1_700_000_000 * 10**9 + next(ticks),
        lambda: ClockSource.NTP,
    )


def samples(values: range) -> list[Sample]:
    return [Sample("dev-1", (Reading("temperature", "Cel", float(v)),)) for v in values]


def settings(core: RunningCore, token: str) -> UplinkSettings:
    return UplinkSettings(
        url=core.link_url,
        token=token,
        ssl_context=client_ssl_context(core.home.ca_cert),
        gateway_id="gw-1",
        boot_id=BOOT,
        batch_max_delay_s=0,
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
    )


async def wait_acked(uplink: Uplink, seq: int) -> None:
    with trio.fail_after(10):
        while uplink.health.acked_seq < seq:
            await uplink._wait_for_ack()


async def stored_values(core: RunningCore) -> list[tuple[int, float]]:
    async with httpx.AsyncClient(
        base_url=core.rest_url,
        verify=client_ssl_context(core.home.ca_cert),
        headers={"Authorization": f"Bearer {core.api_token()}"},
    ) as client:
        events: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000}
        while True:
            response = await client.get("/api/v1/events", params=params)
            assert response.status_code == 200, response.text
            events.extend(response.json()["events"])
            params["cursor"] = response.json()["next_cursor"]
            if params["cursor"] is None:
                break
    return sorted((e["seq"], e["readings"][0]["v"]) for e in events)


async def test_outbox_drains_to_the_core_and_acked_events_leave(
    core: RunningCore, tmp_path: Path
) -> None:
    async with open_outbox(tmp_path / "outbox.sqlite", stamper()) as outbox:
        await outbox.append(samples(range(1200)))
        uplink = Uplink(settings(core, core.gateway_token("gw-1")), outbox)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uplink.run)
            await wait_acked(uplink, 1200)
            await outbox.append(samples(range(1200, 1300)))
            await wait_acked(uplink, 1300)
            nursery.cancel_scope.cancel()
        assert uplink.health.state is LinkState.ONLINE
        assert await outbox.depth() == 0
    assert await stored_values(core) == [(i + 1, float(i)) for i in range(1300)]


async def test_a_replaced_outbox_continues_after_what_the_core_holds(
    core: RunningCore, tmp_path: Path
) -> None:
    token = core.gateway_token("gw-1")
    async with open_outbox(tmp_path / "first.sqlite", stamper()) as outbox:
        await outbox.append(samples(range(10)))
        uplink = Uplink(settings(core, token), outbox)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uplink.run)
            await wait_acked(uplink, 10)
            nursery.cancel_scope.cancel()
    # The gateway's data directory is lost: a new outbox starts again at seq 1.
    async with open_outbox(tmp_path / "second.sqlite", stamper()) as outbox:
        await outbox.append(samples(range(100, 105)))
        uplink = Uplink(settings(core, token), outbox)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uplink.run)
            await wait_acked(uplink, 15)
            nursery.cancel_scope.cancel()
    stored = await stored_values(core)
    assert stored == [(i + 1, float(i)) for i in range(10)] + [
        (11 + i, float(100 + i)) for i in range(5)
    ]


async def test_a_refused_token_keeps_the_events_and_says_why(
    core: RunningCore, tmp_path: Path
) -> None:
    async with open_outbox(tmp_path / "outbox.sqlite", stamper()) as outbox:
        await outbox.append(samples(range(3)))
        # A long backoff: after the refusal it waits offline instead of trying again, so the
        # state read below cannot be a retry's "connecting".
        refused = replace(settings(core, "not-a-token"), reconnect_min_s=3600, reconnect_max_s=3600)
        uplink = Uplink(refused, outbox)
        went_offline = trio.Event()
        mark_offline = uplink._offline

        def offline_and_tell(reason: str) -> None:  # health has no change event of its own
            mark_offline(reason)
            went_offline.set()

        uplink._offline = offline_and_tell  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uplink.run)
            with trio.fail_after(30):
                await went_offline.wait()
            nursery.cancel_scope.cancel()
        assert uplink.health.state is LinkState.OFFLINE
        assert uplink.health.last_error is not None
        assert "HTTP 401" in uplink.health.last_error
        assert await outbox.depth() == 3


def test_backoff_grows_with_full_jitter_and_is_capped() -> None:
    import random

    from gateway.uplink import backoff_delay

    rng = random.Random(1)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(0.25 <= d <= max(ceiling, 0.25) for d in delays)
        if ceiling > 1:
            assert max(delays) - min(delays) > ceiling / 4  # spread out, not in lockstep
