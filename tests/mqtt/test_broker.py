"""A real Mosquitto set up by the core: who may connect, publish and subscribe.

MQTT 5.0 reason codes checked here: 0x87 (135) Not authorized (§2.4), 0x86 (134) bad user
name or password (CONNACK), 0x95 (149) Packet too large.
"""

from __future__ import annotations

import gc
import json
import ssl
import subprocess
import time
from typing import TYPE_CHECKING

import aiomqtt
import paho.mqtt.client as paho
import pytest
import trio
from paho.mqtt.enums import CallbackAPIVersion

from cloud.mqtt import dynsec
from cloud.mqtt.broker import BrokerPaths
from cloud.mqtt.credentials import list_credentials, revoke_credential
from tests.mqtt.clients import CLIENT_TIMEOUT_S, client, connect_error, in_asyncio, tls_context
from tests.support import TENANT, require_program

if TYPE_CHECKING:
    from tests.mqtt.conftest import Broker

NOT_AUTHORIZED = 0x87
PACKET_TOO_LARGE = 0x95


async def test_setup_leaves_only_the_core_admin(broker: Broker) -> None:
    document = json.loads(BrokerPaths(broker.home).dynsec.read_text())
    assert [c["username"] for c in document["clients"]] == ["assetbook-core"]
    assert [r["rolename"] for r in document["roles"]] == ["assetbook-core"]
    assert document["groups"] == []
    assert not any(document["defaultACLAccess"].values())
    admin_topics = {a["topic"] for a in document["roles"][0]["acls"]}
    assert admin_topics == {"$CONTROL/dynamic-security/#"}
    config = BrokerPaths(broker.home).config.read_text()
    assert "allow_anonymous false" in config
    # Every listener is TLS: as many certfile lines as listeners, and no default listener.
    assert config.count("\nlistener ") == config.count("\ncertfile ") == 2
    assert config.count("tls_version tlsv1.2") == 2


def test_password_hash_matches_mosquitto_ctrl() -> None:
    # Published by `mosquitto_ctrl dynsec init` (Mosquitto 2.0.11) for password "secret".
    salt = "YDbiwO4trT181Fh1"
    expected = (
        "1woPoLHLsq+Aqfc9LlRUmey0Ms+A5lCVYjvqtuFfRpkHAb0BZzKF+k1x3sOJN1IoLu6Zl+PMXyH2msm5cOI3bw=="
    )
    import base64

    assert dynsec.hash_password("secret", base64.b64decode(salt))["password"] == expected


@pytest.mark.parametrize("transport", ["tcp", "websockets"])
async def test_credential_pubsub_over_tls_and_wss(broker: Broker, transport: str) -> None:
    issued = await broker.credential("app", publish=("up/+",), subscribe=("up/#",))
    assert len(issued.token) >= 22  # >= 128 bits in base64url
    username = issued.credential.username

    async def exchange() -> bytes:
        async with client(broker, username, issued.token, transport=transport) as c:  # type: ignore[arg-type]
            await c.subscribe("t/acme/up/#", qos=1)
            await c.publish("t/acme/up/dev-1", b"hello", qos=1)
            async for message in c.messages:
                return bytes(message.payload)
        raise AssertionError("no message")

    assert await in_asyncio(exchange) == b"hello"


async def test_mosquitto_pub_and_sub_over_tls(broker: Broker) -> None:
    pub = require_program("mosquitto_pub")
    sub = require_program("mosquitto_sub")
    # Two users: the client id is the username, so one user's pub would replace its sub.
    reader = await broker.credential("reader", subscribe=("up/+",))
    writer = await broker.credential("writer", publish=("up/+",))
    base = ["-h", "localhost", "-p", str(broker.settings.tls_port), "--cafile", broker.ca]
    base += ["-V", "mqttv5"]
    sub_args = [*base, "-u", reader.credential.username, "-P", reader.token]
    pub_args = [*base, "-u", writer.credential.username, "-P", writer.token]
    async with trio.open_nursery() as nursery:
        received: list[bytes] = []

        async def subscriber() -> None:
            result = await trio.run_process(
                [sub, *sub_args, "-t", "t/acme/up/+", "-C", "1", "-W", "10", "-q", "1"],
                capture_stdout=True,
            )
            received.append(result.stdout)

        nursery.start_soon(subscriber)
        # Publish until the subscriber (connecting meanwhile) has its message; retained
        # messages would make this simpler but are not what the test is about.
        with trio.fail_after(CLIENT_TIMEOUT_S):
            while not received:
                await trio.run_process(
                    [pub, *pub_args, "-t", "t/acme/up/d1", "-m", "21.5", "-q", "1"]
                )
                await trio.sleep(0.1)
    assert received == [b"21.5\n"]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
# paho leaves the socket of a refused attempt to the garbage collector; collected below.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_refused_connections(broker: Broker) -> None:
    issued = await broker.credential("ok", publish=("up/+",))
    user = issued.credential.username

    async def attempts() -> dict[str, object]:
        return {
            "wrong token": await connect_error(client(broker, user, issued.token + "x")),
            "unknown user": await connect_error(client(broker, "acme.nobody", issued.token)),
            "anonymous": await connect_error(client(broker, None, None)),
            "plain tcp": await connect_error(client(broker, user, issued.token, plain=True)),
            "tls 1.1": await connect_error(
                client(
                    broker,
                    user,
                    issued.token,
                    context=tls_context(broker, maximum=ssl.TLSVersion.TLSv1_1),
                )
            ),
            "tls 1.2": await connect_error(
                client(
                    broker,
                    user,
                    issued.token,
                    context=tls_context(broker, maximum=ssl.TLSVersion.TLSv1_2),
                )
            ),
        }

    errors = await in_asyncio(attempts)
    gc.collect()  # finalise the refused sockets while this test's filters apply
    assert errors.pop("tls 1.2") is None  # the same client setup works at TLS 1.2
    for what, error in errors.items():
        assert isinstance(error, aiomqtt.MqttError), what
    for what in ("wrong token", "unknown user", "anonymous"):
        assert "authori" in str(errors[what]).lower() or "password" in str(errors[what]).lower()


async def test_revoking_disconnects_and_refuses(broker: Broker) -> None:
    issued = await broker.credential("gone", publish=("up/+",), subscribe=("up/+",))
    user = issued.credential.username
    connected = trio.Event()
    outcome: list[object] = []

    async def live_session() -> None:
        async with client(broker, user, issued.token) as c:
            await c.subscribe("t/acme/up/+", qos=1)
            trio.from_thread.run_sync(connected.set)
            try:
                async for _ in c.messages:
                    pass
                outcome.append("messages ended")
            except aiomqtt.MqttError as exc:
                outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(in_asyncio, live_session)
        with trio.fail_after(CLIENT_TIMEOUT_S):
            await connected.wait()
        await trio.to_thread.run_sync(revoke_credential, broker.home, TENANT, "gone")
    assert outcome and isinstance(outcome[0], aiomqtt.MqttError | str)
    assert isinstance(
        await in_asyncio(lambda: connect_error(client(broker, user, issued.token))),
        aiomqtt.MqttError,
    )
    [listed] = list_credentials(broker.home, TENANT)
    assert listed.revoked


async def test_outside_topics_and_other_tenants_are_denied(broker: Broker) -> None:
    issued = await broker.credential("narrow", publish=("up/dev-1",), subscribe=("ev/#",))
    user = issued.credential.username

    async def probe() -> tuple[list[int], list[int]]:
        async with client(broker, user, issued.token) as c:
            granted: list[int] = []
            for pattern in ("t/acme/ev/#", "t/acme/up/+", "t/other/ev/#", "#", "$SYS/#"):
                codes = await c.subscribe(pattern, qos=1)
                code = codes[0]
                granted.append(code if isinstance(code, int) else int(code.value))
            return granted, []

    granted, _ = await in_asyncio(probe)
    assert granted[0] == 1  # its own pattern: granted at QoS 1
    assert granted[1:] == [NOT_AUTHORIZED] * 4


async def test_denied_publish_reason_code(broker: Broker) -> None:
    pub = require_program("mosquitto_pub")
    issued = await broker.credential("pubber", publish=("up/dev-1",))
    common = ["-h", "localhost", "-p", str(broker.settings.tls_port), "--cafile", broker.ca]
    common += ["-u", issued.credential.username, "-P", issued.token, "-V", "mqttv5", "-q", "1"]
    common += ["-d", "-m", "1"]

    async def puback(topic: str) -> str:
        result = await trio.run_process(
            [pub, *common, "-t", topic], capture_stdout=True, stderr=subprocess.STDOUT
        )
        # mosquitto_pub exits 0 even when refused: the PUBACK's reason code tells.
        assert result.returncode == 0
        line = next(x for x in result.stdout.decode().splitlines() if "PUBACK" in x)
        return line

    # 0x10 "no matching subscribers" is a success code too (MQTT 5.0 §3.4.2.1).
    allowed = await puback("t/acme/up/dev-1")
    assert "RC:0)" in allowed or "RC:16)" in allowed
    for topic in ("t/acme/up/dev-2", "t/other/up/dev-1", "t/acme/ev/x/y"):
        assert f"RC:{NOT_AUTHORIZED}" in await puback(topic), topic


async def test_client_id_cannot_kick_another_user(broker: Broker) -> None:
    first = await broker.credential("first", publish=("up/+",), subscribe=("up/+",))
    second = await broker.credential("second", publish=("up/+",))

    async def scenario() -> bytes:
        async with client(broker, first.credential.username, first.token) as a:
            await a.subscribe("t/acme/up/+", qos=1)
            # The second user claims the first one's client id (its username).
            async with client(
                broker, second.credential.username, second.token, identifier="acme.first"
            ) as b:
                await b.publish("t/acme/up/dev", b"still here", qos=1)
            async for message in a.messages:  # `a` was not kicked off: it gets the message
                return bytes(message.payload)
        raise AssertionError("no message")

    assert await in_asyncio(scenario) == b"still here"


async def test_oversized_packet_refused_by_the_broker(broker: Broker) -> None:
    # paho (under aiomqtt) does not enforce the broker's announced maximum, so the packet
    # reaches Mosquitto, which must refuse it itself: DISCONNECT with 0x95.
    issued = await broker.credential("big", publish=("up/+",))
    reasons: list[int] = []

    def send() -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.username_pw_set(issued.credential.username, issued.token)
        c.tls_set_context(tls_context(broker))
        c.on_disconnect = lambda _c, _u, _f, reason, _p: reasons.append(reason.value)
        c.on_connect = lambda c, _u, _f, _r, _p: c.publish(
            "t/acme/up/d", b"x" * (broker.settings.max_packet_bytes + 1), qos=1
        )
        c.connect("localhost", broker.settings.tls_port)
        c.loop_start()
        try:
            deadline = time.monotonic() + CLIENT_TIMEOUT_S
            while not reasons and time.monotonic() < deadline:
                time.sleep(0.02)  # paho's thread reports the disconnect; nothing to await
        finally:
            c.loop_stop()
            c.disconnect()

    await trio.to_thread.run_sync(send)
    assert reasons[:1] == [PACKET_TOO_LARGE]

    # Nothing else is affected: the same user connects and publishes again.
    async def again() -> None:
        async with client(broker, issued.credential.username, issued.token) as c:
            await c.publish("t/acme/up/d", b"small", qos=1)

    await in_asyncio(again)
