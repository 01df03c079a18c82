"""Send commands to the running broker's dynamic-security plugin as the core's admin.

The admin username and token live only in ``<home>/mqtt/admin.json`` (0600): the core is the
only holder. :func:`run_commands` connects over the TLS listener (verifying the core's CA),
subscribes to ``$CONTROL/dynamic-security/v1/response``, publishes the commands with a fresh
``correlationData`` and waits for the matching answer.

It is synchronous (paho-mqtt's own network loop, on a background thread, for one request):
the CLI calls it directly, the Trio core through ``trio.to_thread.run_sync``. It keeps no
connection open between calls and never logs the admin token.
"""

from __future__ import annotations

import queue
import secrets
import ssl
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from cloud.mqtt import dynsec
from cloud.mqtt.broker import load_settings, read_admin
from cloud.mqtt.errors import BrokerUnavailable

if TYPE_CHECKING:
    from cloud.home import CoreHome

CONTROL_TIMEOUT_S = 10.0


def client_ssl_context(home: CoreHome) -> ssl.SSLContext:
    """TLS 1.2+ client context trusting only the core's CA."""
    context = ssl.create_default_context(cafile=str(home.ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def run_commands(home: CoreHome, commands: list[dict[str, Any]]) -> None:
    """Run dynsec ``commands`` in one request.

    Raises:
        BrokerUnavailable: cannot connect, login refused, or no answer in time.
        ControlRefused: the plugin refused a command.
    """
    settings = load_settings(home)
    username, token = read_admin(home)
    correlation = secrets.token_hex(8)
    commands = [{**c, "correlationData": correlation} for c in commands]
    answers: queue.Queue[bytes | str] = queue.Queue()

    def on_connect(
        client: paho.Client, _u: object, _f: object, reason: Any, _p: object = None
    ) -> None:
        if reason.is_failure:
            answers.put(f"admin login refused: {reason}")
            return
        client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)

    def on_subscribe(client: paho.Client, *_args: object) -> None:
        client.publish(dynsec.CONTROL_TOPIC, dynsec.encode_commands(commands), qos=1)

    def on_disconnect(_c: paho.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        # Another admin request connecting at the same moment takes over the client id.
        answers.put(f"the broker closed the admin connection: {reason}")

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        answers.put(bytes(message.payload))

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=username,
        protocol=paho.MQTTv5,
        reconnect_on_failure=False,
    )
    client.username_pw_set(username, token)
    client.tls_set_context(client_ssl_context(home))
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    host = settings.public_host
    try:
        client.connect(host, settings.tls_port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise BrokerUnavailable(
            f"cannot reach the broker at {host}:{settings.tls_port}: {exc}"
        ) from None
    client.loop_start()
    try:
        _await_answer(answers, commands)
    finally:
        client.on_disconnect = None
        client.disconnect()
        client.loop_stop()


def _await_answer(answers: queue.Queue[bytes | str], commands: list[dict[str, Any]]) -> None:
    while True:
        try:
            answer = answers.get(timeout=CONTROL_TIMEOUT_S)
        except queue.Empty:
            raise BrokerUnavailable("the broker did not answer the dynsec request") from None
        if isinstance(answer, str):
            raise BrokerUnavailable(answer)
        if dynsec.parse_response(answer, commands):
            return
