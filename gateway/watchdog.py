"""The gateway's watchdog: tell systemd we are alive only while every part makes progress.

A process can be running and doing nothing (a driver stuck in a read, a writer stuck on a
locked disk, an uplink stuck in a half-open connection). systemd's watchdog
(``WatchdogSec=``, systemd.service(5)) restarts a service that stops sending ``WATCHDOG=1``;
this module sends it only while every registered *part* has made progress recently, so a
stalled part stops the heartbeat and systemd restarts the gateway.

Two layers:

* :class:`ProgressBook` (sans-IO): parts, their stall limits and when each last moved. A part
  moves by :meth:`~ProgressBook.tick`; a part with nothing to do says so with
  :meth:`~ProgressBook.idle` and is never stalled while idle; a part that is polled from
  outside reports a *signature* (its counters) through :meth:`~ProgressBook.observe`, and a
  changed signature counts as progress. :meth:`~ProgressBook.check` names every stalled part.
  It reads no clock: every call takes ``now`` in seconds.
* :class:`Watchdog` (Trio shell): runs the probes, checks the book, and sends ``READY=1``,
  ``WATCHDOG=1`` and ``STATUS=`` datagrams to ``$NOTIFY_SOCKET`` (sd_notify(3)'s protocol: a
  newline-separated ``KEY=VALUE`` list in one datagram on a Unix socket; a leading ``@`` means
  the abstract namespace). No libsystemd is needed.

It does not restart anything itself (systemd does), does not decide what counts as progress
for a part (the caller's probe or tick does), and sends nothing when ``$NOTIFY_SOCKET`` is not
set (not started by systemd).
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

    from drivers.base import Driver
    from gateway.outbox import AsyncOutbox
    from gateway.uplink import Uplink

log = logging.getLogger(__name__)

#: How often the parts are checked when systemd asks for no watchdog (for STATUS and health).
DEFAULT_CHECK_INTERVAL_S: Final = 5.0
#: Longest STATUS= text sent; systemd shows it in ``systemctl status``.
MAX_STATUS_CHARS: Final = 200

Probe = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Stall:
    """One part that has not moved for longer than its limit.

    Attributes:
        part: the part's name, e.g. ``outbox`` or ``driver/gps-1``.
        quiet_s: seconds since it last moved.
        limit_s: the longest it may go without moving.
    """

    part: str
    quiet_s: float
    limit_s: float


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of one check: every stalled part, in registration order."""

    stalled: tuple[Stall, ...]

    @property
    def healthy(self) -> bool:
        return not self.stalled

    @property
    def parts(self) -> tuple[str, ...]:
        """The names of the stalled parts."""
        return tuple(s.part for s in self.stalled)

    def status(self) -> str:
        """A one-line status for systemd (``STATUS=``)."""
        if self.healthy:
            return "running; all parts making progress"
        parts = ", ".join(f"{s.part} (quiet {s.quiet_s:.0f} s)" for s in self.stalled)
        return f"stalled: {parts}"[:MAX_STATUS_CHARS]

    def report(self) -> dict[str, Any]:
        """The watchdog's part of the gateway's health report."""
        return {
            "healthy": self.healthy,
            "stalled": [
                {"part": s.part, "quiet_s": round(s.quiet_s, 3), "limit_s": s.limit_s}
                for s in self.stalled
            ],
        }


@dataclass(slots=True)
class _Part:
    limit_s: float
    last_move: float
    idle: bool = False
    signature: Hashable = None


class ProgressBook:
    """Which parts exist, how long each may stay quiet, and when each last moved (sans-IO)."""

    def __init__(self) -> None:
        self._parts: dict[str, _Part] = {}

    def register(self, part: str, limit_s: float, now: float) -> None:
        """Add ``part``; it counts as having moved at ``now``.

        Raises:
            ValueError: ``limit_s`` is not positive, or ``part`` is already registered.
        """
        if limit_s <= 0:
            raise ValueError(f"stall limit of {part} must be positive, got {limit_s}")
        if part in self._parts:
            raise ValueError(f"part {part} is already registered")
        self._parts[part] = _Part(limit_s, now)

    def tick(self, part: str, now: float) -> None:
        """``part`` made progress at ``now`` (and is busy: it may stall from here on)."""
        entry = self._parts[part]
        entry.last_move = now
        entry.idle = False

    def idle(self, part: str, now: float) -> None:
        """``part`` has nothing to do: it cannot stall until its next :meth:`tick`."""
        entry = self._parts[part]
        entry.last_move = now
        entry.idle = True

    def observe(self, part: str, signature: Hashable, now: float, *, has_work: bool) -> None:
        """Poll a part from outside: a changed ``signature`` (its counters) is progress.

        Args:
            part: the part's name.
            signature: anything that changes whenever the part does work.
            now: the time of the observation.
            has_work: whether the part is expected to move; without work it is idle.
        """
        entry = self._parts[part]
        if signature != entry.signature:
            entry.signature = signature
            self.tick(part, now)
        if not has_work:
            self.idle(part, now)
        elif entry.idle:
            # Work just appeared: the quiet time starts now, not when it went idle.
            self.tick(part, now)

    def check(self, now: float) -> Verdict:
        """Every part that is busy and has not moved within its limit."""
        stalled = tuple(
            Stall(name, now - p.last_move, p.limit_s)
            for name, p in self._parts.items()
            if not p.idle and now - p.last_move > p.limit_s
        )
        return Verdict(stalled)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self._parts)


def notify_message(**fields: str) -> bytes:
    """Encode an sd_notify(3) datagram: one ``KEY=VALUE`` per line, in the order given.

    Newlines inside a value would start a new assignment, so they are replaced by spaces.
    """
    lines = [f"{key}={value.replace(chr(10), ' ')}" for key, value in fields.items()]
    return ("\n".join(lines) + "\n").encode()


def notify_address(env: Mapping[str, str]) -> str | None:
    """The socket address in ``$NOTIFY_SOCKET``, or ``None`` when not run by systemd.

    A leading ``@`` names a socket in the abstract namespace (sd_notify(3)), which Python
    spells with a leading NUL byte.
    """
    path = env.get("NOTIFY_SOCKET", "")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings, or ``None`` when systemd wants none.

    systemd sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``: the pid it expects pings from)
    when ``WatchdogSec=`` is set; sd_watchdog_enabled(3) advises pinging at half the period.
    """
    usec = env.get("WATCHDOG_USEC", "")
    expected_pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if expected_pid and expected_pid != str(pid):
        return None
    return int(usec) / 1e6 / 2


class Notifier:
    """Sends sd_notify datagrams to one address; does nothing without an address."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.sent = 0
        self._socket: trio.socket.SocketType | None = None
        self._warned = False

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(notify_address(os.environ))

    async def send(self, **fields: str) -> None:
        """Send one datagram; a failure is logged once and otherwise ignored.

        Ignoring it is safe: if systemd expects pings and they do not arrive, it restarts us.
        """
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            await self._socket.sendto(notify_message(**fields), self.address)
            self.sent += 1
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %r: %s", self.address, exc)
                self._warned = True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class CountingRandom(random.Random):
    """A jitter source that counts its draws, so a backoff loop's turns can be observed.

    The uplink draws once per reconnect attempt (``gateway.uplink.backoff_delay``); a growing
    count shows the watchdog that an offline uplink is honestly retrying, not hung.
    """

    draws: int = 0

    def uniform(self, a: float, b: float) -> float:
        self.draws += 1
        return super().uniform(a, b)


class Watchdog:
    """Checks a :class:`ProgressBook` periodically and keeps systemd informed.

    Args:
        notifier: where READY/WATCHDOG/STATUS go.
        interval_s: seconds between checks (and pings); ``None`` means systemd wants no
            pings, and the book is still checked every :data:`DEFAULT_CHECK_INTERVAL_S`.
        limits: how long the gateway's parts may stay quiet (:func:`watch_gateway`).
    """

    def __init__(
        self, notifier: Notifier, interval_s: float | None, limits: StallLimits | None = None
    ) -> None:
        self.book = ProgressBook()
        self.limits = limits or StallLimits()
        self.notifier = notifier
        self.pinging = interval_s is not None
        self.interval_s = interval_s if interval_s is not None else DEFAULT_CHECK_INTERVAL_S
        self.verdict = Verdict(())
        self.pings = 0
        self._probes: list[Probe] = []

    @classmethod
    def from_environment(cls) -> Watchdog:
        interval = watchdog_interval(os.environ, os.getpid())
        return cls(Notifier.from_environment(), interval)

    def register(self, part: str, limit_s: float) -> None:
        self.book.register(part, limit_s, trio.current_time())

    def tick(self, part: str) -> None:
        self.book.tick(part, trio.current_time())

    def idle(self, part: str) -> None:
        self.book.idle(part, trio.current_time())

    def add_probe(self, probe: Probe) -> None:
        """Run ``probe(now)`` before every check (to :meth:`ProgressBook.observe` a part)."""
        self._probes.append(probe)

    async def check(self) -> Verdict:
        """Run the probes, check the book, ping systemd if every part is moving."""
        now = trio.current_time()
        for probe in self._probes:
            await probe(now)
        verdict = self.book.check(now)
        fields: dict[str, str] = {}
        if verdict.healthy and self.pinging:
            fields["WATCHDOG"] = "1"
        if verdict.parts != self.verdict.parts:
            fields["STATUS"] = verdict.status()
            _log_change(verdict)
        self.verdict = verdict
        if fields:
            await self.notifier.send(**fields)
            self.pings += "WATCHDOG" in fields
        return verdict

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Say READY=1, then check every ``interval_s`` until cancelled."""
        await self.notifier.send(READY="1", STATUS=self.verdict.status())
        task_status.started()
        try:
            while True:
                await self.check()
                await trio.sleep(self.interval_s)
        finally:
            with trio.CancelScope(shield=True):
                await self.notifier.send(STOPPING="1", STATUS="stopping")
            self.notifier.close()


def _log_change(verdict: Verdict) -> None:
    if verdict.healthy:
        log.info("watchdog: every part is moving again")
    else:
        log.error("watchdog: %s; systemd heartbeat withheld", verdict.status())


# --- the gateway's parts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StallLimits:
    """How long each kind of gateway part may stay quiet while it has work.

    Attributes:
        driver_s: a driver that neither produces, refuses nor retries anything for this long
            is stalled; a GPS talks every second and a broken port is retried at least every
            ~36 s (``drivers.gps``).
        outbox_s: the longest one append (one fsync'd SQLite transaction) may take.
        uplink_s: the uplink must send, get an ack, or turn its reconnect loop this often
            while it has work (at least twice its worst reconnect attempt is allowed).
    """

    driver_s: float = 120.0
    outbox_s: float = 60.0
    uplink_s: float = 120.0


def watch_gateway(
    watchdog: Watchdog,
    drivers: Sequence[Driver],
    uplink: Uplink,
    outbox: AsyncOutbox,
    jitter: CountingRandom,
) -> None:
    """Register the gateway's parts: ``outbox`` (ticked by the writer), ``driver/<name>`` and
    ``uplink`` (both polled through their health counters).

    ``jitter`` must be the uplink's random source, so that its reconnect attempts show.
    """
    from gateway.uplink import LinkState

    limits = watchdog.limits
    watchdog.register("outbox", limits.outbox_s)
    watchdog.idle("outbox")
    for driver in drivers:
        watchdog.register(f"driver/{driver.name}", limits.driver_s)
    settings = uplink.settings
    worst_attempt = settings.reconnect_max_s + settings.open_timeout_s
    watchdog.register("uplink", max(limits.uplink_s, 2 * worst_attempt))

    async def probe_drivers(now: float) -> None:
        for driver in drivers:
            h = driver.health
            # Any frame, refusal or retry is progress: a quiet device is not a hung driver
            # unless even its retries stop.
            errors = sum(h.errors_by_kind.values())
            signature = (h.samples, h.frames, h.bad_frames, h.skipped_bytes, h.restarts, errors)
            watchdog.book.observe(f"driver/{driver.name}", signature, now, has_work=True)

    async def probe_uplink(now: float) -> None:
        h = uplink.health
        online = h.state is LinkState.ONLINE
        # Online with an empty outbox there is nothing to move; offline, retrying is the work.
        has_work = not online or await outbox.depth() > 0
        signature = (h.state, h.connects, h.batches_sent, h.events_acked, jitter.draws)
        watchdog.book.observe("uplink", signature, now, has_work=has_work)

    watchdog.add_probe(probe_drivers)
    watchdog.add_probe(probe_uplink)
