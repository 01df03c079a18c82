"""The MQTT bridge: one process per tenant joining the broker and the core's event bus.

* **MQTT → core.** Subscribes (QoS 1, persistent session, manual PUBACK) to
  ``t/<tenant>/up/+``. Each message is parsed as SenML (:mod:`cloud.mqtt.senml`), validated
  with the link codec, stored in the durable :class:`~cloud.mqtt.inbox.Inbox` and only then
  acknowledged to the broker. A refused payload is acknowledged too (resending it cannot
  help) and its reason is published on ``t/<tenant>/rejected/<device>``.
* **Inbox → core.** A link client (the sans-IO :class:`protocol.session.UplinkSession` over
  ``websockets``' asyncio client) sends inbox events in batches as module ``mqtt-bridge`` and
  drops them from the inbox when the core's cumulative ack says they are stored.
* **Core → MQTT.** The same link subscribes to ``gw/#`` and publishes each live event as
  SenML JSON on ``t/<tenant>/ev/<gateway>/<device>`` (QoS 1). Live delivery is best effort:
  an event arriving while the broker is away is not replayed (the REST API has history).

Both connections reconnect with capped, jittered backoff; the broker keeps the bridge's
session (subscription and queued QoS 1 messages) while it is away.

This is an asyncio program, not Trio: aiomqtt is asyncio-only and the bridge runs in its own
process (docs/decisions/mqtt-bridge.md). It reads ``<home>/mqtt/bridges/<tenant>.json`` and
never logs a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cloud.mqtt import topics
from cloud.mqtt.errors import PayloadError
from cloud.mqtt.inbox import Inbox
from cloud.mqtt.senml import event_json, parse_pack, to_event
from gateway.clock import monotonic_ns, read_boot_id, system_clock_source, wall_ns
from protocol import limits
from protocol.errors import ProtocolError
from protocol.messages import Deliver, Subscribed
from protocol.session import Acked, PeerError, UplinkSession, Welcomed

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    import paho.mqtt.client as paho

    from protocol.events import Event

log = logging.getLogger(__name__)

MODULE_ID = "mqtt-bridge"
SOFTWARE = "assetbook-mqtt-bridge/0.1.0"
#: How long the broker keeps the bridge's session (and queued QoS 1 messages) while away.
SESSION_EXPIRY_S = 7 * 24 * 3600
RECONNECT_MIN_S = 0.2
RECONNECT_MAX_S = 10.0
BATCH_MAX_EVENTS = 500


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    tenant: str
    inbox_path: Path
    link_url: str
    link_token: str = field(repr=False)
    mqtt_host: str
    mqtt_port: int
    mqtt_username: str
    mqtt_token: str = field(repr=False)
    ssl_context: ssl.SSLContext


@dataclass
class BridgeStatistics:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    forwarded: int = 0
    not_forwarded: int = 0


class _Client(aiomqtt.Client):
    """aiomqtt's client, remembering each incoming packet's DUP flag (aiomqtt drops it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dup_flags: dict[int, bool] = {}
        # PUBACK only once the message is on disk (paho's manual-ack mode).
        self._client.manual_ack_set(True)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.dup_flags[message.mid] = bool(message.dup)
        super()._on_message(client, userdata, message)

    def puback(self, message: aiomqtt.Message) -> None:
        self.dup_flags.pop(message.mid, None)
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)


class Bridge:
    """Runs both halves until cancelled (see the module docstring)."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.stats = BridgeStatistics()
        self._inbox = Inbox(config.inbox_path)
        self._lock = asyncio.Lock()  # one inbox call at a time (one sqlite connection)
        self._boot_id = read_boot_id()
        self._appended = asyncio.Event()
        self._mqtt: _Client | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._forever("mqtt", self._mqtt_once))
                group.create_task(self._forever("link", self._link_once))
        finally:
            self._inbox.close()

    async def _inbox_call(self, fn: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(fn, *args)

    async def _forever(self, name: str, once: Any) -> None:
        attempt = 0
        while True:
            try:
                await once()
                attempt = 0
            except (aiomqtt.MqttError, OSError, InvalidHandshake, ConnectionClosed) as exc:
                log.warning("bridge: %s down: %s", name, exc)
            except ProtocolError as exc:
                log.warning("bridge: %s protocol error: %s", name, exc)
            # A cancellation (SIGTERM) that arrived while a client was closing can surface
            # as that client's own error (aiomqtt's disconnect, a WebSocket close) instead of
            # CancelledError; retrying then would keep the bridge running after it was told
            # to stop. The task still counts the request, so honour it here.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            attempt += 1
            ceiling = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(attempt, 16))
            await asyncio.sleep(self._rng.uniform(RECONNECT_MIN_S / 2, ceiling))

    # --- MQTT side -----------------------------------------------------------------------

    async def _mqtt_once(self) -> None:
        c = self.config
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        async with _Client(
            c.mqtt_host,
            c.mqtt_port,
            username=c.mqtt_username,
            password=c.mqtt_token,
            identifier=c.mqtt_username,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=c.ssl_context,
            clean_start=False,  # keep the session: the broker queues QoS 1 while we are away
            properties=properties,
        ) as client:
            await client.subscribe(topics.readings_filter(c.tenant), qos=1)
            self._mqtt = client
            print(f"bridge: mqtt up, subscribed to {topics.readings_filter(c.tenant)}", flush=True)
            try:
                async for message in client.messages:
                    await self._take(client, message)
            finally:
                self._mqtt = None

    async def _take(self, client: _Client, message: aiomqtt.Message) -> None:
        self.stats.received += 1
        tenant = self.config.tenant
        device = topics.device_of(tenant, message.topic.value)
        payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
        digest = hashlib.sha256(message.topic.value.encode() + b"\x00" + payload).digest()
        dup = client.dup_flags.get(message.mid, False)
        if device is None:
            client.puback(message)  # not a reading topic: the ACL should have stopped it
            return
        if dup and await self._inbox_call(self._inbox.seen, message.mid, digest):
            self.stats.duplicates += 1
            client.puback(message)
            return
        try:
            pack = parse_pack(payload)
            event = await self._inbox_call(
                self._inbox.append, self._builder(pack, device), message.mid, digest
            )
        except PayloadError as exc:
            self.stats.rejected += 1
            client.puback(message)
            await self._reject(client, device, exc.reason)
            return
        client.puback(message)
        self.stats.stored += 1
        log.debug("bridge: stored seq %d from %s", event.seq, device)
        self._appended.set()

    def _builder(self, pack: Any, device: str) -> Any:
        boot_id, mono, now, clock = self._boot_id, monotonic_ns(), wall_ns(), system_clock_source()

        def build(seq: int) -> Event:
            return to_event(
                pack,
                seq=seq,
                device=device,
                boot_id=boot_id,
                mono_ns=mono,
                received_ns=now,
                clock=clock,
            )

        return build

    async def _reject(self, client: _Client, device: str, reason: str) -> None:
        log.info("bridge: refused a reading from %s: %s", device, reason)
        body = json.dumps({"error": "invalid_payload", "reason": reason}).encode()
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(topics.rejected_topic(self.config.tenant, device), body, qos=1)

    # --- link side -----------------------------------------------------------------------

    async def _link_once(self) -> None:
        c = self.config
        async with connect(
            c.link_url,
            ssl=c.ssl_context,
            additional_headers={"Authorization": f"Bearer {c.link_token}"},
            subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
            compression=None,
            max_size=limits.MAX_MESSAGE_BYTES,
            open_timeout=10,
            user_agent_header=SOFTWARE,
        ) as connection:
            session = UplinkSession(MODULE_ID, SOFTWARE, self._boot_id)
            await connection.send(session.hello(await self._inbox_call(self._inbox.resume_from)))
            welcome = session.receive(_binary(await asyncio.wait_for(connection.recv(), 10)))
            if not isinstance(welcome, Welcomed):
                raise ProtocolError(f"core refused the session: {welcome}")
            await self._inbox_call(self._inbox.ack, welcome.acked_seq)
            _request, subscribe = session.subscribe(("gw/#",))
            await connection.send(subscribe)
            print(f"bridge: link up, core holds seq {welcome.acked_seq}", flush=True)
            async with asyncio.TaskGroup() as group:
                acked = asyncio.Event()
                group.create_task(self._link_receive(connection, session, acked))
                await self._link_send(connection, session, acked)

    async def _link_send(
        self, connection: ClientConnection, session: UplinkSession, acked: asyncio.Event
    ) -> None:
        while True:
            window = min(session.send_window(), BATCH_MAX_EVENTS)
            if window == 0:
                acked.clear()
                await acked.wait()
                continue
            self._appended.clear()
            events = await self._inbox_call(self._inbox.read_after, session.last_sent_seq, window)
            if not events:
                await self._appended.wait()
                continue
            await connection.send(session.batch(tuple(events)))

    async def _link_receive(
        self, connection: ClientConnection, session: UplinkSession, acked: asyncio.Event
    ) -> None:
        while True:
            match session.receive(_binary(await connection.recv())):
                case Acked(acked_seq, _released):
                    await self._inbox_call(self._inbox.ack, acked_seq)
                    acked.set()
                case Deliver(items):
                    for item in items:
                        await self._forward(item.gateway, item.event)
                case Subscribed(_request, patterns):
                    print(f"bridge: subscribed to core events {' '.join(patterns)}", flush=True)
                case PeerError(code, reason, _request):
                    log.warning("bridge: core reported %s: %s", code.name, reason)
                case _:
                    acked.set()  # flow control may have changed

    async def _forward(self, gateway: str, event: Event) -> None:
        topic = topics.event_topic(self.config.tenant, gateway, event.device)
        client = self._mqtt
        if topic is None or client is None:
            self.stats.not_forwarded += 1
            return
        try:
            await client.publish(topic, event_json(gateway, event), qos=1)
            self.stats.forwarded += 1
        except aiomqtt.MqttError:
            self.stats.not_forwarded += 1


def _binary(data: str | bytes) -> bytes:
    if isinstance(data, str):
        raise ProtocolError("the core sent a text frame")
    return data
