"""Errors of the MQTT part of the core, under the core's root :class:`~cloud.errors.CloudError`::

    CloudError
    └── MqttError
        ├── BrokerUnavailable   the broker cannot be reached or did not answer in time
        ├── ControlRefused      the dynamic-security plugin refused a command (``command``)
        └── PayloadError        (also ValueError) an MQTT payload is not an acceptable reading

This module defines types only.
"""

from __future__ import annotations

from cloud.errors import CloudError


class MqttError(CloudError):
    """Root of the errors raised by :mod:`cloud.mqtt`."""


class BrokerUnavailable(MqttError):
    """The broker could not be reached, refused the admin login, or did not answer."""


class ControlRefused(MqttError):
    """The dynamic-security plugin answered a command with an error.

    Attributes:
        command: the dynsec command name (e.g. ``createClient``).
        reason: the plugin's error text.
    """

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"broker refused {command}: {reason}")


class PayloadError(MqttError, ValueError):
    """An MQTT payload was refused; ``reason`` is safe to publish back to the tenant."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
