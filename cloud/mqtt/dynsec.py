"""Mosquitto's dynamic-security plugin: the initial file and the runtime commands.

Contract:

* :func:`initial_file` returns the plugin's JSON configuration holding exactly one client, the
  core's admin (allowed only ``$CONTROL/dynamic-security/#``), no groups, and default access
  denied for everything: no broad default role and no demo client exist after setup.
* :func:`hash_password` reproduces Mosquitto 2.0's stored form (PBKDF2-HMAC-SHA512, 101
  iterations, 12-byte salt, both base64; checked against ``mosquitto_ctrl dynsec init``). That
  hashing is weak, which is why every MQTT secret the core issues is a random token of at
  least 128 bits and never a person's password.
* The ``*_command`` functions build the JSON commands sent to ``$CONTROL/dynamic-security/v1``
  (mosquitto.org/documentation/dynamic-security/); :func:`parse_response` checks the answer.

Pure: no I/O, no clock; the salt is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cloud.mqtt.errors import ControlRefused, MqttError

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ITERATIONS = 101
SALT_BYTES = 12


@dataclass(frozen=True, slots=True)
class Acl:
    """One dynsec ACL entry (``acltype``: publishClientSend, subscribePattern, ...)."""

    acltype: str
    topic: str
    allow: bool = True

    def as_json(self) -> dict[str, Any]:
        return {"acltype": self.acltype, "topic": self.topic, "allow": self.allow}


def hash_password(password: str, salt: bytes) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields of a dynsec client."""
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": ITERATIONS,
    }


def admin_acls() -> tuple[Acl, ...]:
    control = "$CONTROL/dynamic-security/#"
    return (
        Acl("publishClientSend", control),
        Acl("publishClientReceive", control),
        Acl("subscribePattern", control),
        Acl("unsubscribePattern", control),
    )


def initial_file(admin_user: str, admin_password: str, salt: bytes) -> dict[str, Any]:
    """The plugin's configuration file right after setup (see the module docstring)."""
    return {
        "defaultACLAccess": {
            # Deny by default in all four directions; every grant is a named role.
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": False,
        },
        "clients": [
            {
                "username": admin_user,
                "textName": "AssetBook core (dynamic-security admin)",
                **hash_password(admin_password, salt),
                "roles": [{"rolename": admin_user}],
            }
        ],
        "groups": [],
        "roles": [{"rolename": admin_user, "acls": [a.as_json() for a in admin_acls()]}],
    }


def tenant_acls(publish: tuple[str, ...], subscribe: tuple[str, ...]) -> tuple[Acl, ...]:
    """ACLs for absolute topic patterns: send on ``publish``; subscribe to and receive
    ``subscribe`` (receive is denied by default, so it is granted explicitly)."""
    acls = [Acl("publishClientSend", p) for p in publish]
    for pattern in subscribe:
        acls += [
            Acl("subscribePattern", pattern),
            Acl("publishClientReceive", pattern),
            Acl("unsubscribePattern", pattern),
        ]
    return tuple(acls)


def create_role_command(rolename: str, acls: tuple[Acl, ...]) -> dict[str, Any]:
    return {"command": "createRole", "rolename": rolename, "acls": [a.as_json() for a in acls]}


def create_client_command(username: str, password: str, rolename: str) -> dict[str, Any]:
    return {
        "command": "createClient",
        "username": username,
        "password": password,
        "roles": [{"rolename": rolename}],
    }


def disable_client_command(username: str) -> dict[str, Any]:
    # The plugin also disconnects every live session of this username (verified in tests).
    return {"command": "disableClient", "username": username}


def delete_role_command(rolename: str) -> dict[str, Any]:
    return {"command": "deleteRole", "rolename": rolename}


def encode_commands(commands: list[dict[str, Any]]) -> bytes:
    return json.dumps({"commands": commands}).encode()


def parse_response(payload: bytes, commands: list[dict[str, Any]]) -> bool:
    """Check the plugin's answer to ``commands`` (each with its ``correlationData``).

    Returns:
        False if the answer is for another admin's request (every admin connection sees
        every answer), True if it is ours and every command succeeded.

    Raises:
        ControlRefused: a command failed (the first failure).
        MqttError: the answer is not the plugin's JSON.
    """
    try:
        answer = json.loads(payload)
        responses = answer["responses"]
    except (ValueError, KeyError, TypeError):
        raise MqttError("the broker's dynamic-security answer is malformed") from None
    if not isinstance(responses, list) or not all(isinstance(r, dict) for r in responses):
        raise MqttError("the broker's dynamic-security answer is malformed")
    ours = [c.get("correlationData") for c in commands]
    if [r.get("correlationData") for r in responses] != ours:
        return False
    for sent, got in zip(commands, responses, strict=True):
        if "error" in got:
            raise ControlRefused(sent["command"], str(got["error"]))
    return True
