"""MQTT for third parties: a Mosquitto broker whose users the core issues, and a bridge.

* :mod:`cloud.mqtt.topics`, :mod:`cloud.mqtt.senml` and :mod:`cloud.mqtt.dynsec` are sans-IO:
  topic design, SenML JSON/CBOR payloads, and the dynamic-security file and commands.
* :mod:`cloud.mqtt.broker` writes the broker's configuration into the core home.
* :mod:`cloud.mqtt.control` talks to the running broker's dynamic-security plugin;
  :mod:`cloud.mqtt.credentials` issues and revokes tenant credentials through it.
* :mod:`cloud.mqtt.bridge` is the bridge process (asyncio, see docs/decisions/mqtt-bridge.md)
  with its durable :mod:`cloud.mqtt.inbox`.
* :mod:`cloud.mqtt.rest` and :mod:`cloud.mqtt.cli` are the operator's entry points.
"""
