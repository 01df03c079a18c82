"""Who is on the other end of a link or a REST call, and what it may do.

A :class:`Principal` is built from a verified token. Topic permissions are MQTT-style
patterns (``/``-separated levels, ``+`` for one level, ``#`` for the rest) *relative to the
principal's tenant*: the router keys every subscription and delivery by tenant first, so no
pattern can ever reach another tenant's events. Event topics are
``gw/<gateway-id>/<device-id>``.

This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PrincipalKind(StrEnum):
    GATEWAY = "gateway"
    MODULE = "module"
    API = "api"
    USER = "user"  # a person, through a login session (cloud.identity)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        kind: gateway, module, or third-party API token.
        id: the gateway id, module id or API token name.
        tenant: the tenant everything it does is confined to.
        token_id: the ``jti`` of the token it presented (for revocation and the access log).
        publish: topic patterns it may publish to.
        subscribe: topic patterns it may subscribe to.
        scopes: REST scopes (e.g. ``events:read``).
    """

    kind: PrincipalKind
    id: str
    tenant: str
    token_id: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    def may_publish(self, topic: str) -> bool:
        return any(topic_matches(p, topic) for p in self.publish)

    def may_subscribe(self, pattern: str) -> bool:
        """True if every topic ``pattern`` can match is covered by one granted pattern."""
        return any(pattern_covers(p, pattern) for p in self.subscribe)


def event_topic(gateway: str, device: str) -> str:
    """The topic an event from ``device`` behind ``gateway`` is published on."""
    return f"gw/{gateway}/{device}"


def valid_pattern(pattern: str) -> bool:
    """MQTT §4.7.1 rules: ``#`` only as the whole last level, ``+`` only as a whole level."""
    if not pattern or len(pattern) > 256:
        return False
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether the concrete ``topic`` matches ``pattern``."""
    p_levels = pattern.split("/")
    t_levels = topic.split("/")
    for i, p in enumerate(p_levels):
        if p == "#":
            return True
        if i >= len(t_levels):
            return False
        if p != "+" and p != t_levels[i]:
            return False
    return len(p_levels) == len(t_levels)


def pattern_covers(granted: str, requested: str) -> bool:
    """Whether every topic matched by ``requested`` is also matched by ``granted``."""
    g_levels = granted.split("/")
    r_levels = requested.split("/")
    for i, g in enumerate(g_levels):
        if g == "#":
            return True
        if i >= len(r_levels):
            return False
        r = r_levels[i]
        if r == "#":
            return False
        if g == "+":
            continue
        if r == "+" or r != g:
            return False
    return len(g_levels) == len(r_levels)
