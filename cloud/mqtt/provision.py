"""A bridge's credentials: a module link token and an MQTT user, kept in the core home.

:func:`bridge_config` returns a ready :class:`~cloud.mqtt.bridge.BridgeConfig` for a tenant,
creating what is missing first: the module ``mqtt-bridge`` and its link token (publish
``gw/mqtt-bridge/#``, subscribe ``gw/#``; re-issued a day before it expires) and the MQTT
user ``bridge:<tenant>`` (subscribe ``t/<tenant>/up/+``, publish ``t/<tenant>/ev/#`` and
``t/<tenant>/rejected/#``), whose token is created through the broker's dynsec control.
Secrets go to ``<home>/mqtt/bridges/<tenant>.json`` (0600) and nowhere else.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from cloud.home import load_config, write_private_file
from cloud.mqtt import control, dynsec, topics
from cloud.mqtt.bridge import MODULE_ID, BridgeConfig
from cloud.mqtt.broker import TOKEN_BYTES, BrokerPaths, load_settings
from cloud.registry import issue_module_token, validate_id

if TYPE_CHECKING:
    from cloud.home import CoreHome

RENEW_BEFORE_S = 24 * 3600


def bridge_username(tenant: str) -> str:
    return f"bridge:{tenant}"


def bridge_config(home: CoreHome, tenant: str) -> BridgeConfig:
    """Provision if needed, then describe the bridge of ``tenant``.

    Raises:
        NotFound: unknown tenant.  ConfigError: broker not set up.
        BrokerUnavailable, ControlRefused: the MQTT user could not be created.
    """
    validate_id(tenant, "tenant name")
    settings = load_settings(home)
    path = BrokerPaths(home).bridges / f"{tenant}.json"
    secrets_: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if "mqtt_token" not in secrets_:
        secrets_["mqtt_token"] = _create_mqtt_user(home, tenant)
        write_private_file(path, json.dumps(secrets_).encode())
    if secrets_.get("link_expires", 0) - RENEW_BEFORE_S < time.time():
        token, claims = issue_module_token(home, tenant, MODULE_ID, [f"gw/{MODULE_ID}/#"], ["gw/#"])
        secrets_ |= {"link_token": token, "link_expires": claims["exp"]}
        write_private_file(path, json.dumps(secrets_).encode())
    return BridgeConfig(
        tenant=tenant,
        inbox_path=BrokerPaths(home).bridges / f"{tenant}.sqlite",
        link_url=load_config(home).link_url,
        link_token=secrets_["link_token"],
        mqtt_host=settings.public_host,
        mqtt_port=settings.tls_port,
        mqtt_username=bridge_username(tenant),
        mqtt_token=secrets_["mqtt_token"],
        ssl_context=control.client_ssl_context(home),
    )


def _create_mqtt_user(home: CoreHome, tenant: str) -> str:
    username = bridge_username(tenant)
    root = topics.tenant_root(tenant)
    acls = dynsec.tenant_acls(
        (f"{root}/{topics.EVENTS}/#", f"{root}/{topics.REJECTED}/#"),
        (topics.readings_filter(tenant),),
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    control.run_commands(
        home,
        [
            dynsec.create_role_command(username, acls),
            dynsec.create_client_command(username, token, username),
        ],
    )
    return token
