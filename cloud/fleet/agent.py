"""The core's side of gateway lifecycle: commands over live links, and reconciliation.

:class:`CommandHub` knows every open link (the link server attaches a link once its
``Welcome`` is sent and detaches it when it ends) and turns a ``Command`` plus the matching
``Result`` into one awaitable call.

:class:`FleetAgent` brings what each connected gateway has towards what the operator asked
for, one step at a time:

1. ``status`` on every new link and every ``status_every_s`` while it lasts: the gateway's
   whole reported state, stored as it came;
2. ``configure`` when a newer desired configuration exists that the gateway has neither
   applied, nor refused, nor is trying out;
3. ``renew_credentials`` when the link token has less than a third of its lifetime left:
   a new token bound to the same device key, sent over the link (no REST round trip);
4. ``update`` when the tenant's rollout covers this gateway and it runs another version
   (never an older one unless the rollout is forced), and that version has not failed there.

It is event-driven, so an idle fleet costs nothing per link: a link is reconciled about a
second after it attaches (status first, as before); when desired state that concerns it
changes (a configuration set for its gateway, a rollout started for its tenant); when its
token reaches the renewal point (computed once per link from the token record); when its
status refresh is due; and ``retry_after_s`` after a command timed out. Changes made
through the core's own store object wake the agent at once; changes made by another process
(the CLI) are found by a sweep every ``sweep_every_s`` that reads only the store's change
log (one indexed read, whatever the number of links). At most ``max_concurrent`` links are
reconciled at once, so a change for a whole tenant does not start one task per gateway.

The status refresh defaults to every 5 minutes, ±25 % so that links that came up together
do not ask together. A gateway's reported state changes only through the commands the agent
sends (their ``Result`` is merged at once) or across a restart (which is a new link, asked
within a second or so). While a change is in flight (``config_pending`` on probation, an update
``downloading`` or ``installed``) the status is asked again after 1, 2, 4, ... s until it
settles, so its outcome shows within seconds. Liveness and counters already reach the core
as ``_health`` events every report interval. The periodic refresh only catches what changes
on the gateway alone, for which minutes are soon enough.

Every answer is merged into the fleet store, which is what the CLI and REST show. Answers are
buffered and written every ``flush_every_s`` in one transaction, so thousands of links cost a
few commits a second. The outcome of a ``configure`` or ``update`` (which only the agent
records: a refusal, the rollout it answered) is written at once instead, so a restart right
after it is unlikely to send the command again. The agent decides from what it last wrote
(kept per link) rather than re-reading it; a link reads the store once, and then sees what
is still buffered or being written on top. It keeps no state of its own that a restart would
lose, beyond when it last asked each link for its status.

Every store, registry and enrolment call runs on a worker thread, one at a time (a capacity
limiter of one), so the event loop never waits for a SQLite lock: not for the agent's own
write, nor for the CLI's, which can hold the database for up to the 10 s busy timeout. A link
whose store read fails with a SQLite error is reconciled again ``retry_after_s`` later, a
failed sweep at the next one, a failed write at the next flush. When the agent stops it
writes what is left on the calling thread; if that fails it logs how many gateways' reports
were lost rather than hide why it stopped.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import math
import random
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar, TypeVarTuple

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
    from cloud.registry import Registry, TokenRecord
    from protocol.messages import Scalar
    from protocol.session import CoreSession

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Reports = dict[tuple[str, str], dict[str, Any]]

COMMAND_TIMEOUT_S: Final = 30.0
#: Renew when less than this share of the token's lifetime is left.
RENEW_FRACTION: Final = 1 / 3
#: The first status is asked about this long after a link comes up (0.5 to 1.5 times).
FIRST_STATUS_S: Final = 1.0
#: First status follow-up after a change started on a gateway (then 2, 4, ... s).
FOLLOW_FIRST_S: Final = 1.0


class NotConnected(CloudError):
    """The gateway has no live link (or lost it before answering)."""


@dataclass(eq=False)
class _Live:
    principal: Principal
    session: CoreSession
    connection: ServerConnection
    pending: dict[int, tuple[trio.Event, list[Result]]] = field(default_factory=dict)
    next_id: int = 1
    attached: bool = True
    # Scheduling, in trio.current_time() seconds.
    status_due: float = -math.inf
    asked: bool = False  # a status was answered on this link
    renew_due: float | None = None  # None: not computed yet; inf: nothing to renew
    retry_due: float = math.inf
    wake_at: float = math.inf  # the timer entry that counts (older heap entries are stale)
    queued: bool = False
    busy: bool = False
    again: bool = False  # asked for while busy: reconcile once more when done
    follow_s: float = 0.0  # current follow-up interval while a change is in flight
    reported: dict[str, Any] | None = None  # what the store holds for it, once read


class CommandHub:
    """Live links by (tenant, gateway id), and command calls over them."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, str], _Live] = {}
        #: Called with each newly attached link (the fleet agent reconciles it).
        self.on_attach: Callable[[_Live], None] | None = None

    def attach(
        self, principal: Principal, session: CoreSession, connection: ServerConnection
    ) -> None:
        live = _Live(principal, session, connection)
        old = self._live.get((principal.tenant, principal.id))
        if old is not None:
            old.attached = False
        self._live[(principal.tenant, principal.id)] = live
        if self.on_attach is not None:
            self.on_attach(live)

    def detach(self, principal: Principal, connection: ServerConnection) -> None:
        key = (principal.tenant, principal.id)
        live = self._live.get(key)
        if live is not None and live.connection is connection:
            del self._live[key]
            live.attached = False
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

    def link_count(self) -> int:
        return len(self._live)

    def find(self, tenant: str, gateway_id: str) -> _Live | None:
        return self._live.get((tenant, gateway_id))

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
        try:
            with trio.fail_after(timeout_s):
                await event.wait()
        finally:
            live.pending.pop(command_id, None)  # unanswered: do not keep the waiter forever
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
    #: How often the store's change log is read for changes made by other processes.
    sweep_every_s: float = 1.0
    #: The status is asked on every new link and refreshed about this often while it lasts.
    status_every_s: float = 300.0
    status_jitter: float = 0.25
    #: A command that timed out is tried again after this long.
    retry_after_s: float = 30.0
    #: Reports are written at most this long after they arrive (one transaction per flush).
    flush_every_s: float = 0.25
    #: Links reconciled at once. A gateway that does not answer holds its slot for up to
    #: COMMAND_TIMEOUT_S, so this is well above what the event loop's own work needs.
    max_concurrent: int = 256
    now: Callable[[], float] = time.time
    _timers: list[tuple[float, int, _Live]] = field(default_factory=list, init=False)
    _timer_n: int = field(default=0, init=False)
    _wake: trio.Event = field(default_factory=trio.Event, init=False)
    _pending: Reports = field(default_factory=dict, init=False)
    _writing: Reports = field(default_factory=dict, init=False)  # the flush in progress
    _flush_wanted: trio.Event = field(default_factory=trio.Event, init=False)
    _flush_now: trio.Event = field(default_factory=trio.Event, init=False)
    _db_limiter: trio.CapacityLimiter = field(
        default_factory=lambda: trio.CapacityLimiter(1), init=False
    )
    _send: trio.MemorySendChannel[_Live] | None = field(default=None, init=False)
    _seq: int = field(default=0, init=False)
    _random: random.Random = field(default_factory=random.Random, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        token = trio.lowlevel.current_trio_token()

        def changed(tenant: str, gateway_id: str | None) -> None:
            # May be called from a worker thread (REST handlers, CLI code in-process).
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._changed, tenant, gateway_id)

        self._seq = await self._db(self.store.latest_change)
        unsubscribe = self.store.subscribe(changed)
        send, receive = trio.open_memory_channel[_Live](math.inf)
        self._send = send
        self.hub.on_attach = self._attached
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(self.max_concurrent):
                    nursery.start_soon(self._worker, receive)
                nursery.start_soon(self._flusher)
                for live in self.hub.links():
                    self._attached(live)
                task_status.started()
                await self._schedule_loop()
        finally:
            self.hub.on_attach = None
            unsubscribe()
            self._flush_at_exit()

    async def _db(self, call: Callable[[*Ts], T], *args: *Ts) -> T:
        """``call(*args)`` on a worker thread, after any other store call has returned."""
        return await trio.to_thread.run_sync(call, *args, limiter=self._db_limiter)

    def _flush_at_exit(self) -> None:
        # The flusher has ended: a write in flight was waited for (worker threads are not
        # abandoned on cancellation), so what is left is unwritten. Write it on this thread.
        left = _merged(self._writing, self._pending)
        self._writing, self._pending = {}, {}
        if not left:
            return
        try:
            self.store.record_reports(left)
        except sqlite3.Error as exc:  # do not hide the exception that is stopping the agent
            log.error("fleet reports of %d gateways lost at shutdown: %s", len(left), exc)

    async def _schedule_loop(self) -> None:
        next_sweep = trio.current_time() + self.sweep_every_s
        while True:
            now = trio.current_time()
            if now >= next_sweep:
                await self._sweep()
                next_sweep = trio.current_time() + self.sweep_every_s
            self._prune_timers()
            while self._timers and self._timers[0][0] <= now:
                due, _n, live = heapq.heappop(self._timers)
                if due == live.wake_at:  # otherwise rescheduled since
                    live.wake_at = math.inf
                    self._enqueue(live)
            deadline = min(next_sweep, self._timers[0][0] if self._timers else math.inf)
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _sweep(self) -> None:
        """Reconcile the links concerned by changes other processes logged in the store."""
        try:
            self._seq, changes = await self._db(self.store.changes_since, self._seq)
        except sqlite3.Error as exc:  # e.g. the CLI held the database past the busy timeout
            log.warning("fleet change log not read, trying again: %s", exc)
            return
        if changes is None:  # fell behind the log: treat everything as changed
            for live in self.hub.links():
                self._enqueue(live)
            return
        for tenant, gateway_id in changes:
            self._changed(tenant, gateway_id)

    def _changed(self, tenant: str, gateway_id: str | None) -> None:
        if gateway_id is not None:
            live = self.hub.find(tenant, gateway_id)
            if live is not None:
                self._enqueue(live)
            return
        for live in self.hub.links():
            if live.principal.tenant == tenant:
                self._enqueue(live)

    def _attached(self, live: _Live) -> None:
        # A second (0.5-1.5 s) after Welcome, as the former once-a-second poll did: the
        # gateway has confirmed a configuration on probation by then (it checks its link
        # every 50 ms), and a reconnect storm's status commands are spread out.
        spread = self._random.uniform(0.5, 1.5)
        live.status_due = trio.current_time() + FIRST_STATUS_S * spread
        self._schedule(live)

    def _enqueue(self, live: _Live) -> None:
        if not live.attached or self._send is None:
            return
        if live.busy:
            live.again = True
        elif not live.queued:
            live.queued = True
            self._send.send_nowait(live)

    def _schedule(self, live: _Live) -> None:
        renew_due = math.inf if live.renew_due is None else live.renew_due
        due = min(live.status_due, live.retry_due, renew_due)
        if due == math.inf or due == live.wake_at:
            return
        live.wake_at = due
        self._timer_n += 1
        heapq.heappush(self._timers, (due, self._timer_n, live))
        self._wake.set()

    def _prune_timers(self) -> None:
        """Drop the entries of ended links and superseded ones once they outnumber the rest.

        An entry keeps its link (connection, session, reported state) alive until it is due,
        minutes away; links that come and go would pile up. Each link has at most one current
        entry, so rebuilding when the heap is twice the link count costs O(1) per push.
        """
        if len(self._timers) <= 2 * self.hub.link_count() + 64:
            return
        self._timers = [t for t in self._timers if t[2].attached and t[0] == t[2].wake_at]
        heapq.heapify(self._timers)

    async def _worker(self, receive: trio.MemoryReceiveChannel[_Live]) -> None:
        async for live in receive:
            live.queued = False
            if not live.attached:
                continue
            live.busy = True
            try:
                acted = await self._reconcile_once(live)
            finally:
                live.busy = False
            if acted or live.again:
                live.again = False
                self._enqueue(live)  # one change at a time: look again for the next
            else:
                self._schedule(live)

    async def _flusher(self) -> None:
        while True:
            await self._flush_wanted.wait()
            # Gather more (one transaction for all), unless a command's outcome is waiting.
            with trio.move_on_after(self.flush_every_s):
                await self._flush_now.wait()
            self._flush_wanted = trio.Event()
            self._flush_now = trio.Event()
            # Kept until the write returns: a link that reads the store meanwhile may not
            # see it yet (see _load).
            self._writing, self._pending = self._pending, {}
            try:
                await self._db(self.store.record_reports, self._writing)
            except sqlite3.Error as exc:  # e.g. locked for longer than the busy timeout
                log.warning("fleet reports not written, retrying: %s", exc)
                self._pending = _merged(self._writing, self._pending)
                self._flush_wanted.set()
            self._writing = {}

    async def _reconcile_once(self, live: _Live) -> bool:
        """One pass over the steps; True when a command changed something."""
        who = live.principal
        try:
            await self._load(live)
            if not live.asked or trio.current_time() >= live.status_due:
                result = await self._call(live, "status", {})
                self._record(live, result.detail)
                live.asked = True
                self._next_status(live)
            live.retry_due = math.inf
            for step in (self._configure, self._renew, self._update):
                if await step(live):
                    # Follow what the command started (probation, download) closely.
                    live.follow_s = FOLLOW_FIRST_S
                    live.status_due = min(live.status_due, trio.current_time() + FOLLOW_FIRST_S)
                    return True
        except (NotConnected, trio.TooSlowError, sqlite3.Error) as exc:
            log.info("gateway %s/%s: %s", who.tenant, who.id, exc)
            live.retry_due = trio.current_time() + self.retry_after_s
        return False

    async def _call(self, live: _Live, name: str, args: dict[str, Scalar]) -> Result:
        who = live.principal
        return await self.hub.call(who.tenant, who.id, name, args)

    def _next_status(self, live: _Live) -> None:
        """Soon (doubling) while a change is in flight on the gateway, else the jittered period."""
        reported = self._reported(live)
        in_flight = bool(reported.get("config_pending")) or reported.get("update_state") in (
            "downloading",
            "installed",
        )
        now = trio.current_time()
        if in_flight and live.follow_s < self.status_every_s:
            live.follow_s = min(self.status_every_s, 2 * live.follow_s or FOLLOW_FIRST_S)
            live.status_due = now + live.follow_s
            return
        live.follow_s = 0.0
        spread = self._random.uniform(1 - self.status_jitter, 1 + self.status_jitter)
        live.status_due = now + self.status_every_s * spread

    def _record(self, live: _Live, detail: dict[str, Scalar], *, now: bool = False) -> None:
        """Merge into the link's view now; into the store at the next flush (``now``: at once)."""
        report: dict[str, Any] = {k: v for k, v in detail.items() if not isinstance(v, bytes)}
        key = (live.principal.tenant, live.principal.id)
        live.reported = {**self._reported(live), **report}
        self._pending[key] = {**self._pending.get(key, {}), **report}
        self._flush_wanted.set()
        if now:
            self._flush_now.set()

    async def _load(self, live: _Live) -> None:
        """Read what the store holds for the link's gateway, once per link."""
        if live.reported is not None:
            return
        key = (live.principal.tenant, live.principal.id)
        stored, _at = await self._db(self.store.reported, *key)
        # The read may have run before a flush that is still in progress or not begun yet
        # committed; both are merged on top, as they will be in the store.
        live.reported = {**stored, **self._writing.get(key, {}), **self._pending.get(key, {})}

    def _reported(self, live: _Live) -> dict[str, Any]:
        """What the store holds for the gateway, plus what is waiting to be written."""
        assert live.reported is not None, "read at the start of each pass (_load)"
        return live.reported

    async def _configure(self, live: _Live) -> bool:
        who = live.principal
        desired = await self._db(self.store.desired_config, who.tenant, who.id)
        reported = self._reported(live)
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
            self._record(live, {"config_pending": desired.version, **result.detail}, now=True)
        else:
            reason = str(result.detail.get("error", "refused"))
            refusal: dict[str, Scalar] = {
                "refused_version": desired.version,
                "refused_reason": reason,
            }
            self._record(live, refusal, now=True)
        return True

    async def _renew(self, live: _Live) -> bool:
        who = live.principal
        if live.renew_due is None:
            live.renew_due = await self._renewal_due(live)
        if trio.current_time() < live.renew_due:
            return False
        credentials = await self._db(self.enrolment.renew, who.tenant, who.id)
        result = await self._call(
            live,
            "renew_credentials",
            # Bytes: text arguments are limited to 256 bytes on the wire, a JWT is longer.
            {"token": credentials.token.encode("ascii"), "expires_at": credentials.expires_at},
        )
        now = trio.current_time()
        live.renew_due = math.inf if result.ok else now + self.retry_after_s
        self._record(live, {"token_expires_at": credentials.expires_at} if result.ok else {})
        return True

    async def _renewal_due(self, live: _Live) -> float:
        """When (trio clock) the link's token reaches the renewal point; inf if never."""
        record = await self._db(self._renewable_token, live.principal)
        if record is None:
            return math.inf  # not an enrolled (key-bound) gateway: nothing to renew here
        lifetime = record.expires_at - record.issued_at
        wall_due = record.expires_at - lifetime * RENEW_FRACTION
        return trio.current_time() + max(0.0, wall_due - self.now())

    def _renewable_token(self, principal: Principal) -> TokenRecord | None:
        """The link token's record if the gateway is enrolled (key-bound). On a worker thread."""
        try:
            record = self.registry.get_token(principal.token_id)
            self.enrolment.enrolled_key(principal.tenant, principal.id)
        except CloudError:
            return None
        return record

    async def _update(self, live: _Live) -> bool:
        who = live.principal
        rollout = await self._db(self.store.rollout, who.tenant)
        if rollout is None or not in_rollout(who.id, rollout.version, rollout.percent):
            return False
        reported = self._reported(live)
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
        release = await self._db(self.store.get_release, rollout.version)
        args: dict[str, Scalar] = {
            "version": release.version,
            "sha256": release.sha256,
            "size": release.size,
            "url": f"{self.rest_url}/api/v1/releases/{release.version}/bundle",
            "force": rollout.force,
        }
        result = await self._call(live, "update", args)
        self._record(
            live,
            {
                "update_version": release.version,
                "update_rollout_at": rollout.created_at,
                **result.detail,
            },
            now=True,
        )
        return True


def config_chunks(data: bytes) -> dict[str, Scalar]:
    """A configuration as ``config.0``, ``config.1``, ... byte arguments.

    Command arguments are CBOR scalars with byte strings of at most ``MAX_BLOB_BYTES`` and at
    most 64 entries (``docs/protocol.md`` §Limits), so larger documents travel in pieces.
    """
    size = limits.MAX_BLOB_BYTES
    return {f"config.{i}": data[at : at + size] for i, at in enumerate(range(0, len(data), size))}


def _merged(first: Reports, then: Reports) -> Reports:
    """Per gateway, ``first``'s report updated with ``then``'s (the newer one)."""
    return {key: {**first.get(key, {}), **then.get(key, {})} for key in {**first, **then}}


def _newer(candidate: str, running: str) -> bool:
    try:
        return parse_version(candidate) > parse_version(running)
    except BundleError:
        return True  # an unversioned gateway (built from source) may take any release
