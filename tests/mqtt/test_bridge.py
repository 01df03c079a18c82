"""The bridge between MQTT and the core, with a real core, Mosquitto and bridge process.

Readings go in over MQTT (SenML JSON and CBOR), are stored exactly once and read back over
REST; core events come out on MQTT; bad payloads are refused with a reason; a broker restart
and a stopped bridge lose nothing published at QoS 1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import cbor2
import httpx
import trio

from cloud.mqtt.credentials import IssuedCredential
from tests.e2e.processes import Process, spawn
from tests.mqtt.clients import CLIENT_TIMEOUT_S, client, in_asyncio

if TYPE_CHECKING:
    from tests.mqtt.conftest import Broker
    from tests.support import RunningCore


@asynccontextmanager
async def bridge(core: RunningCore) -> AsyncIterator[Process]:
    args = ["assetbook", "mqtt", "bridge", "--home", str(core.home.root), "--tenant", "acme"]
    async with spawn("bridge", args) as process:
        await process.wait_for(r"bridge: mqtt up")
        await process.wait_for(r"bridge: subscribed to core events")
        yield process
        await process.stop()


async def publish(broker: Broker, issued: IssuedCredential, items: list[tuple[str, bytes]]) -> None:
    async def send() -> None:
        async with client(broker, issued.credential.username, issued.token) as c:
            for topic, payload in items:
                await c.publish(topic, payload, qos=1)

    await in_asyncio(send)


async def stored_events(core: RunningCore, token: str, expect: int) -> list[dict[str, Any]]:
    """The tenant's stored events, once at least ``expect`` are there (polls REST)."""
    async with httpx.AsyncClient(
        base_url=core.rest_url,
        verify=tls_context_for(core),
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        with trio.fail_after(CLIENT_TIMEOUT_S * 2):
            while True:
                answer = await http.get("/api/v1/events", params={"limit": 1000})
                assert answer.status_code == 200, answer.text
                events: list[dict[str, Any]] = answer.json()["events"]
                if len(events) >= expect:
                    return events
                await trio.sleep(0.05)  # the bridge is another process; poll its result


def tls_context_for(core: RunningCore) -> Any:
    import ssl

    return ssl.create_default_context(cafile=str(core.home.ca_cert))


def reading(value: float) -> bytes:
    return json.dumps([{"n": "temp", "u": "Cel", "v": value}]).encode()


async def test_readings_in_events_out_and_refusals(core: RunningCore, broker: Broker) -> None:
    app = await broker.credential("app", publish=("up/+",), subscribe=("ev/#", "rejected/#"))
    async with bridge(core):
        got: list[tuple[str, Any]] = []
        ready = trio.Event()

        async def listen() -> None:
            async with client(broker, app.credential.username, app.token) as c:
                await c.subscribe("t/acme/ev/#", qos=1)
                await c.subscribe("t/acme/rejected/#", qos=1)
                trio.from_thread.run_sync(ready.set)
                async for message in c.messages:
                    got.append((message.topic.value, json.loads(message.payload)))
                    if len(got) == 3:
                        return

        writer = await broker.credential("writer", publish=("up/+",))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_asyncio, listen)
            with trio.fail_after(CLIENT_TIMEOUT_S):
                await ready.wait()
            cbor_pack = cbor2.dumps([{-2: "plc/", 0: "pressure", 1: "Pa", 2: 101325}])
            await publish(
                broker,
                writer,
                [
                    ("t/acme/up/probe-1", reading(21.5)),
                    ("t/acme/up/probe-1", b'[{"n": "temp", "v": }]'),
                    ("t/acme/up/plc-2", cbor_pack),
                ],
            )
        events = await stored_events(core, core.api_token(), 2)
    by_topic = dict(got)
    assert by_topic["t/acme/rejected/probe-1"]["error"] == "invalid_payload"
    assert "malformed SenML JSON" in by_topic["t/acme/rejected/probe-1"]["reason"]
    assert by_topic["t/acme/ev/mqtt-bridge/probe-1"][0]["v"] == 21.5
    assert by_topic["t/acme/ev/mqtt-bridge/plc-2"][0]["n"] == "plc/pressure"
    assert by_topic["t/acme/ev/mqtt-bridge/plc-2"][0]["bn"] == "mqtt-bridge/plc-2/"
    assert [(e["gateway"], e["device"], e["readings"]) for e in events] == [
        ("mqtt-bridge", "probe-1", [{"n": "temp", "u": "Cel", "v": 21.5}]),
        ("mqtt-bridge", "plc-2", [{"n": "plc/pressure", "u": "Pa", "v": 101325}]),
    ]


async def test_nothing_lost_or_doubled_across_broker_and_bridge_restarts(
    core: RunningCore, broker: Broker
) -> None:
    writer = await broker.credential("writer", publish=("up/+",))
    values = iter(range(1, 1000))

    def batch(n: int) -> list[tuple[str, bytes]]:
        return [("t/acme/up/probe", reading(next(values))) for _ in range(n)]

    async with bridge(core) as first:
        await publish(broker, writer, batch(5))
        await broker.stop()
        await broker.start()
        # The bridge reconnects to the restarted broker and resubscribes.
        await first.wait_for(r"bridge: mqtt up", after=len(first.lines))
        await publish(broker, writer, batch(5))
    # Bridge stopped: the broker queues these for the bridge's persistent session ...
    await publish(broker, writer, batch(5))
    # ... and keeps them across its own restart.
    await broker.stop()
    await broker.start()
    async with bridge(core):
        await publish(broker, writer, batch(5))
        events = await stored_events(core, core.api_token(), 20)
    seen = sorted(e["readings"][0]["v"] for e in events)
    assert seen == list(range(1, 21))
