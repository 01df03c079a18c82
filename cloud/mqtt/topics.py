"""The MQTT topic design: every tenant owns the subtree ``t/<tenant>/``.

Topics (levels separated by ``/``, MQTT 5.0 §4.7)::

    t/<tenant>/up/<device>                  readings INTO the core (SenML JSON or CBOR)
    t/<tenant>/ev/<gateway>/<device>        events OUT of the core (SenML JSON), one per event
    t/<tenant>/rejected/<device>            why a reading on up/<device> was refused (JSON)

A credential's permissions are patterns *relative to its tenant's subtree* (``up/+``,
``ev/#``); :func:`absolute_pattern` anchors them under ``t/<tenant>/``, so no pattern can
name another tenant's topics, ``$SYS`` or ``$CONTROL``.

Pure functions; no I/O.
"""

from __future__ import annotations

import re

from cloud.errors import InvalidInput
from cloud.principal import valid_pattern

ROOT = "t"
UP = "up"
EVENTS = "ev"
REJECTED = "rejected"
#: A device or gateway id as it may appear in one topic level.
LEVEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAX_PATTERN_CHARS = 200


def tenant_root(tenant: str) -> str:
    return f"{ROOT}/{tenant}"


def absolute_pattern(tenant: str, relative: str) -> str:
    """Anchor a credential's pattern under the tenant's subtree.

    Raises:
        InvalidInput: not a valid MQTT pattern, too long, or an empty level / ``$`` start.
    """
    if (
        not isinstance(relative, str)
        or len(relative) > MAX_PATTERN_CHARS
        or relative.startswith(("/", "$"))
        or "" in relative.split("/")
        or "\x00" in relative
        or not valid_pattern(relative)
    ):
        raise InvalidInput(
            f"invalid topic pattern {relative!r}: relative to t/<tenant>/, e.g. up/+ or ev/#"
        )
    return f"{tenant_root(tenant)}/{relative}"


def reading_topic(tenant: str, device: str) -> str:
    return f"{tenant_root(tenant)}/{UP}/{device}"


def readings_filter(tenant: str) -> str:
    """What the bridge subscribes to: every reading topic of the tenant."""
    return f"{tenant_root(tenant)}/{UP}/+"


def event_topic(tenant: str, gateway: str, device: str) -> str | None:
    """Where a core event is published, or ``None`` if an id cannot be one topic level."""
    if not (LEVEL_RE.fullmatch(gateway) and LEVEL_RE.fullmatch(device)):
        return None
    return f"{tenant_root(tenant)}/{EVENTS}/{gateway}/{device}"


def rejected_topic(tenant: str, device: str) -> str:
    return f"{tenant_root(tenant)}/{REJECTED}/{device}"


def device_of(tenant: str, topic: str) -> str | None:
    """The device of a reading topic ``t/<tenant>/up/<device>``, or ``None``."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[:3] != [ROOT, tenant, UP]:
        return None
    return parts[3] if LEVEL_RE.fullmatch(parts[3]) else None
