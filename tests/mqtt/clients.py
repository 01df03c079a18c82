"""Real MQTT clients for tests: aiomqtt (asyncio, run in a worker thread) and the
mosquitto_pub / mosquitto_sub programs."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import aiomqtt
import trio

if TYPE_CHECKING:
    from tests.mqtt.conftest import Broker

T = TypeVar("T")
#: How long one client exchange may take before the test fails.
CLIENT_TIMEOUT_S = 10.0


def tls_context(broker: Broker, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=broker.ca)
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = maximum
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client at least offer old TLS
    return context


def client(
    broker: Broker,
    username: str | None,
    token: str | None,
    *,
    transport: Literal["tcp", "websockets"] = "tcp",
    identifier: str | None = None,
    context: ssl.SSLContext | None = None,
    plain: bool = False,
) -> aiomqtt.Client:
    port = broker.settings.wss_port if transport == "websockets" else broker.settings.tls_port
    return aiomqtt.Client(
        "localhost",
        port,
        username=username,
        password=token,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        transport=transport,
        tls_context=None if plain else (context or tls_context(broker)),
        timeout=CLIENT_TIMEOUT_S,
    )


async def in_asyncio(make: Callable[[], Awaitable[T]]) -> T:
    """Run an asyncio coroutine (aiomqtt) in a worker thread of this Trio test."""

    async def bounded() -> T:
        return await asyncio.wait_for(make(), CLIENT_TIMEOUT_S * 2)

    return await trio.to_thread.run_sync(asyncio.run, bounded())


async def connect_error(c: aiomqtt.Client) -> Any:
    """The error a connection attempt ends with (``None`` if it connected)."""
    try:
        async with c:
            return None
    except aiomqtt.MqttError as exc:
        return exc
