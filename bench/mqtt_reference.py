"""The reference transport: Mosquitto forwarding the same CBOR batches (MQTT QoS 1).

``bench/throughput.py`` starts a private Mosquitto (generated config, TLS with the core
home's certificate, one password per client, no persistence: the broker only forwards),
then one subscriber process and one publisher process of this module:

* ``publish``: publishes the given batch payloads round-robin as QoS 1 messages on
  ``gw/<n>/batch`` for the run's duration, as fast as the broker's PUBACKs allow (paho's
  in-flight window), each with an MQTT v5 user property ``stamp`` (publish time, ns).
* ``subscribe``: one QoS 1 subscriber on ``gw/+/batch``; prints one JSON line a second
  with the events received (messages x events per batch) and their latency histogram
  (publish → delivery), then a final line.

It measures the broker path only; it stores nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators.fleet import LatencyHistogram


def _client(name: str, password: str, ca_file: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.username_pw_set(name, password)
    client.tls_set(ca_certs=ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def publish(args: argparse.Namespace) -> int:
    payloads = [p.read_bytes() for p in sorted(Path(args.batches).glob("*.cbor"))]
    client = _client("publisher", args.password, args.ca)
    client.max_inflight_messages_set(args.inflight)
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    end = time.monotonic() + args.duration
    sent = 0
    try:
        while time.monotonic() < end:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = ("stamp", str(time.time_ns()))
            info = client.publish(
                f"gw/{sent % 64}/batch", payloads[sent % len(payloads)], 1, False, properties
            )
            # Waiting for the broker's PUBACK when the window is full is what QoS 1 means.
            while info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                time.sleep(0.0005)
                info = client.publish(
                    f"gw/{sent % 64}/batch", payloads[sent % len(payloads)], 1, False, properties
                )
            sent += 1
            while len(client._out_messages) > args.inflight * 2:  # bounded local queue
                time.sleep(0.0005)
    finally:
        client.loop_stop()
        client.disconnect()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _emit({"kind": "published", "messages": sent, "cpu_s": usage.ru_utime + usage.ru_stime})
    return 0


def subscribe(args: argparse.Namespace) -> int:
    lock = threading.Lock()
    state: dict[str, Any] = {"events": 0, "hist": LatencyHistogram(), "total": 0}
    subscribed = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        now = time.time_ns()
        stamp = dict(getattr(message.properties, "UserProperty", [])).get("stamp")
        with lock:
            state["events"] += args.events_per_batch
            state["total"] += args.events_per_batch
            if stamp is not None:
                state["hist"].add((now - int(stamp)) / 1000, args.events_per_batch)

    client = _client("subscriber", args.password, args.ca)
    client.on_message = on_message
    client.on_subscribe = lambda *_a: subscribed.set()
    client.connect("127.0.0.1", args.port)
    client.subscribe("gw/+/batch", qos=1)
    client.loop_start()
    subscribed.wait(10)
    _emit({"kind": "subscribed"})
    started = time.monotonic()
    idle = 0
    while idle < args.idle_s:
        time.sleep(1)
        with lock:
            events, state["events"] = state["events"], 0
            hist, state["hist"] = state["hist"], LatencyHistogram()
        idle = idle + 1 if events == 0 and state["total"] else 0
        _emit(
            {
                "kind": "tick",
                "t": round(time.monotonic() - started, 3),
                "acked": events,
                "latency": hist.to_json(),
            }
        )
    client.loop_stop()
    client.disconnect()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _emit({"kind": "done", "events": state["total"], "cpu_s": usage.ru_utime + usage.ru_stime})
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_reference")
    parser.add_argument("role", choices=["publish", "subscribe"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--batches", default="", help="folder of *.cbor payloads (publish)")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--inflight", type=int, default=20, help="QoS 1 messages in flight")
    parser.add_argument("--events-per-batch", type=int, default=500)
    parser.add_argument("--idle-s", type=int, default=3, help="subscriber: stop after idle s")
    args = parser.parse_args(argv)
    # The password comes on stdin, never on the command line (visible in ps).
    args.password = sys.stdin.readline().strip()
    return publish(args) if args.role == "publish" else subscribe(args)


if __name__ == "__main__":
    raise SystemExit(main())
