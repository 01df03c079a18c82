"""The core's side of gateway lifecycle: commands over live links, and reconciliation.

:class:`CommandHub` knows every open link (the link server attaches a link once its
``Welcome`` is sent and detaches it when it ends) and turns a ``Command`` plus the matching
``Result`` into one awaitable call.

:class:`FleetAgent` wakes every ``interval_s`` and, for each connected gateway, brings what the
gateway has towards what the operator asked for, one step at a time:

1. ``status`` on every new link and every ``status_every_s`` while it lasts: the gateway's
   whole reported state, stored as it came;
2. ``configure`` when a newer desired configuration exists that the gateway has neither
   applied, nor refused, nor is trying out;
3. ``renew_credentials`` when the link token has less than a third of its lifetime left:
   a new token bound to the same device key, sent over the link (no REST round trip);
4. ``update`` when the tenant's rollout covers this gateway and it runs another version
   (never an older one unless the rollout is forced), and that version has not failed there.

Every answer is merged into the fleet store, which is what the CLI and REST show. The agent
keeps no state of its own that a restart would lose, beyond when it last asked each link for
its status.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio
from websockets.exceptions import ConnectionClosed

from cloud.errors import CloudError
from cloud.fleet.bundle import BundleError, parse_version
from cloud.fleet.store import in_rollout
from protocol import limits
from protocol.messages import Result

if TYPE_CHECKING:
    from collections.abc import Callable

    from websockets.trio.server import ServerConnection

    from cloud.enrolment import Enrolment
    from cloud.fleet.store import FleetStore
    from cloud.principal import Principal
    from cloud.registry import Registry
    from protocol.messages import Scalar
    from protocol.session import CoreSession

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S: Final = 30.0
#: Renew when less than this share of the token's lifetime is left.
RENEW_FRACTION: Final = 1 / 3


class NotConnected(CloudError):
    """The gateway has no live link (or lost it before answering)."""


@dataclass(eq=False)
class _Live:
    principal: Principal
    session: CoreSession
    connection: ServerConnection
    pending: dict[int, tuple[trio.Event, list[Result]]] = field(default_factory=dict)
    next_id: int = 1
    status_at: float | None = None  # trio.current_time() of the last status answer
    renewed: bool = False
    busy: bool = False


class CommandHub:
    """Live links by (tenant, gateway id), and command calls over them."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, str], _Live] = {}

    def attach(
        self, principal: Principal, session: CoreSession, connection: ServerConnection
    ) -> None:
        self._live[(principal.tenant, principal.id)] = _Live(principal, session, connection)

    def detach(self, principal: Principal, connection: ServerConnection) -> None:
        key = (principal.tenant, principal.id)
        live = self._live.get(key)
        if live is not None and live.connection is connection:
            del self._live[key]
            for event, _slot in live.pending.values():
                event.set()  # an empty slot tells the caller the link went away

    def resolve(self, principal: Principal, result: Result) -> None:
        live = self._live.get((principal.tenant, principal.id))
        waiter = None if live is None else live.pending.pop(result.command_id, None)
        if waiter is not None:
            waiter[1].append(result)
            waiter[0].set()

    def links(self) -> list[_Live]:
        return list(self._live.values())

    async def call(
        self,
        tenant: str,
        gateway_id: str,
        name: str,
        args: dict[str, Scalar],
        *,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> Result:
        """Send a command and wait for its result.

        Raises:
            NotConnected: no live link, or it ended before the answer.
            trio.TooSlowError: no answer within ``timeout_s``.
        """
        live = self._live.get((tenant, gateway_id))
        if live is None:
            raise NotConnected(f"gateway {gateway_id} is not connected")
        command_id = live.next_id
        live.next_id += 1
        event, slot = trio.Event(), list[Result]()
        live.pending[command_id] = (event, slot)
        try:
            await live.connection.send(live.session.command(command_id, name, args))
        except ConnectionClosed as exc:
            raise NotConnected(f"gateway {gateway_id} disconnected") from exc
        with trio.fail_after(timeout_s):
            await event.wait()
        if not slot:
            raise NotConnected(f"gateway {gateway_id} disconnected before answering")
        return slot[0]


@dataclass
class FleetAgent:
    """Reconciles connected gateways with the fleet store (see the module docstring)."""

    hub: CommandHub
    store: FleetStore
    registry: Registry
    enrolment: Enrolment
    rest_url: str
    interval_s: float = 1.0
    #: The status is asked on every new link and refreshed this often while it lasts.
    status_every_s: float = 30.0
    now: Callable[[], float] = time.time

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                for live in self.hub.links():
                    if not live.busy:
                        live.busy = True
                        nursery.start_soon(self._reconcile_once, live)
                await trio.sleep(self.interval_s)

    async def _reconcile_once(self, live: _Live) -> None:
        who = live.principal
        try:
            due = (
                live.status_at is None or trio.current_time() - live.status_at > self.status_every_s
            )
            if due:
                result = await self._call(live, "status", {})
                self._record(who, result.detail)
                live.status_at = trio.current_time()
            for step in (self._configure, self._renew, self._update):
                if await step(live):
                    break  # one change at a time; the next tick continues
        except (NotConnected, trio.TooSlowError) as exc:
            log.info("gateway %s/%s: %s", who.tenant, who.id, exc)
        finally:
            live.busy = False

    async def _call(self, live: _Live, name: str, args: dict[str, Scalar]) -> Result:
        who = live.principal
        return await self.hub.call(who.tenant, who.id, name, args)

    def _record(self, who: Principal, detail: dict[str, Scalar]) -> None:
        report: dict[str, Any] = {k: v for k, v in detail.items() if not isinstance(v, bytes)}
        self.store.record_report(who.tenant, who.id, report)

    async def _configure(self, live: _Live) -> bool:
        who = live.principal
        desired = self.store.desired_config(who.tenant, who.id)
        reported, _at = self.store.reported(who.tenant, who.id)
        if desired is None or desired.version in (
            reported.get("config_version"),
            reported.get("refused_version"),
            reported.get("config_pending"),
        ):
            return False
        if desired.version < int(reported.get("config_version") or 0):
            return False
        args: dict[str, Scalar] = {
            "version": desired.version,
            **config_chunks(json.dumps(desired.document, sort_keys=True).encode("utf-8")),
        }
        result = await self._call(live, "configure", args)
        if result.ok:
            self._record(who, {"config_pending": desired.version, **result.detail})
        else:
            reason = str(result.detail.get("error", "refused"))
            self._record(who, {"refused_version": desired.version, "refused_reason": reason})
        return True

    async def _renew(self, live: _Live) -> bool:
        who = live.principal
        if live.renewed:
            return False
        try:
            record = self.registry.get_token(who.token_id)
            self.enrolment.enrolled_key(who.tenant, who.id)
        except CloudError:
            return False  # not an enrolled (key-bound) gateway: nothing to renew here
        lifetime = record.expires_at - record.issued_at
        if record.expires_at - self.now() > lifetime * RENEW_FRACTION:
            return False
        credentials = self.enrolment.renew(who.tenant, who.id)
        result = await self._call(
            live,
            "renew_credentials",
            # Bytes: text arguments are limited to 256 bytes on the wire, a JWT is longer.
            {"token": credentials.token.encode("ascii"), "expires_at": credentials.expires_at},
        )
        live.renewed = result.ok
        self._record(who, {"token_expires_at": credentials.expires_at} if result.ok else {})
        return True

    async def _update(self, live: _Live) -> bool:
        who = live.principal
        rollout = self.store.rollout(who.tenant)
        if rollout is None or not in_rollout(who.id, rollout.version, rollout.percent):
            return False
        reported, _at = self.store.reported(who.tenant, who.id)
        if "software_version" not in reported:
            return False  # runs without an install root: it cannot take updates
        running = str(reported["software_version"])
        if rollout.version in (running, reported.get("update_failed_version")):
            return False
        if reported.get("update_version") == rollout.version and (
            reported.get("update_state") in ("downloading", "installed")
            # A refusal is retried only when the operator starts the rollout again.
            or reported.get("update_rollout_at") == rollout.created_at
        ):
            return False
        if not rollout.force and not _newer(rollout.version, running):
            return False
        release = self.store.get_release(rollout.version)
        args: dict[str, Scalar] = {
            "version": release.version,
            "sha256": release.sha256,
            "size": release.size,
            "url": f"{self.rest_url}/api/v1/releases/{release.version}/bundle",
            "force": rollout.force,
        }
        result = await self._call(live, "update", args)
        self._record(
            who,
            {
                "update_version": release.version,
                "update_rollout_at": rollout.created_at,
                **result.detail,
            },
        )
        return True


def config_chunks(data: bytes) -> dict[str, Scalar]:
    """A configuration as ``config.0``, ``config.1``, ... byte arguments.

    Command arguments are CBOR scalars with byte strings of at most ``MAX_BLOB_BYTES`` and at
    most 64 entries (``docs/protocol.md`` §Limits), so larger documents travel in pieces.
    """
    size = limits.MAX_BLOB_BYTES
    return {f"config.{i}": data[at : at + size] for i, at in enumerate(range(0, len(data), size))}


def _newer(candidate: str, running: str) -> bool:
    try:
        return parse_version(candidate) > parse_version(running)
    except BundleError:
        return True  # an unversioned gateway (built from source) may take any release
