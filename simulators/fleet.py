"""Fleet load generator: many simulated gateways, each with several sensors, on real links.

``python -m simulators.fleet PLAN.json --part K --of P`` runs the gateways ``K, K+P, ...`` of
the plan in this process; ``bench/throughput.py`` starts P such processes. Every gateway
opens its own WSS connection (TLS verified against the plan's CA) with its own core-issued
token in the ``Authorization`` header, says ``Hello``, and streams ``Batch`` messages built
by the real :class:`protocol.session.UplinkSession` (so the real encoder, flow control and
ack checks run). One Trio process multiplexes many links: a link costs a few tasks and a
TLS connection, so a handful of processes hold thousands of gateways on two cores.

Outbox. A simulated gateway keeps its unacknowledged events in memory, not in a SQLite
outbox: a durable outbox per link would make the generator, not the core, the thing being
measured (the real gateway's outbox is measured by ``bench/ingest.py``). An event's *entry*
time is its ``wall_ns`` stamp; its latency ends when the cumulative ack covering it arrives.

Output. One JSON object per line on stdout: ``connected`` once every link of this part is
up, ``measuring`` when the plan's warm-up is over and the measured window starts, ``tick``
once a second (events acknowledged in that second, their latency histogram, whether the
second lies in the measured window and, if so, which one), then ``done`` with each
gateway's last generated and last acknowledged seq, and this process's CPU time and peak
memory. A gateway that fails writes ``{"kind": "error", ...}`` and the process exits
non-zero. It does not reconnect: a broken link in a benchmark is a result to report.

Hold mode (``FleetPlan.mode == "hold"``, used by ``bench/links.py``). Each gateway connects
(at most ``handshakes`` TLS handshakes at once per process, started at most
``handshake_rate`` per second), says ``Hello``, then stays connected and sends one small
batch every ``trickle_s`` seconds, its first one at a point of that period set by its id so the
fleet does not send in lockstep. It emits ``progress`` once a second and ``connected`` once
every link of the part is up, and holds until a line arrives on stdin. Then every link
still open sends a ping and waits for its pong and for the acks of everything it sent, and
``held`` reports how many links were open and fully acknowledged, how many the core
closed (by close code), the handshake latency histogram and this process's CPU time and
memory. A link closed early is counted, not raised: in this mode it is the result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import ssl
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.trio.client import ClientConnection, connect

from protocol import limits
from protocol.events import ClockSource, Event, Reading
from protocol.messages import Command, Scalar
from protocol.session import Acked, UplinkSession, Welcomed

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

SOFTWARE: Final = "assetbook-fleet/0.1.0"
#: TLS handshakes one fleet process runs at once.
MAX_HANDSHAKES: Final = 16
#: Histogram resolution: bucket ``b`` holds latencies in [1.02**b, 1.02**(b+1)) µs, so any
#: percentile read back is within 2 % of the true sample.
_GROWTH: Final = 1.02
_LOG_GROWTH: Final = math.log(_GROWTH)


class LatencyHistogram:
    """Counts of latencies in logarithmic buckets; mergeable across processes (sans-IO)."""

    __slots__ = ("counts",)

    def __init__(self, counts: dict[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, latency_us: float, count: int = 1) -> None:
        bucket = int(math.log(max(latency_us, 1.0)) / _LOG_GROWTH)
        self.counts[bucket] = self.counts.get(bucket, 0) + count

    def merge(self, other: LatencyHistogram) -> None:
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def percentile_ms(self, fraction: float) -> float:
        """Nearest-rank percentile in ms (the bucket's upper edge); 0.0 when empty."""
        total = self.total
        if total == 0:
            return 0.0
        rank = math.ceil(fraction * total)
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return round(_GROWTH ** (bucket + 1) / 1000, 3)
        raise AssertionError("unreachable: rank <= total")  # pragma: no cover

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> LatencyHistogram:
        return cls({int(k): v for k, v in data.items()})


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """Everything a fleet process needs; written by the benchmark as JSON.

    Attributes:
        url: the core's link URL (``wss://…/link``).
        ca_file: the CA that signed the core's certificate.
        gateways: ``[gateway_id, token]`` pairs.
        sensors: sensors per gateway; events rotate over them.
        rate_per_gateway: offered events/s per gateway; 0 offers as fast as acks allow.
        batch_max_events: most events per batch.
        max_inflight_events: most unacknowledged events per link (a bound on queueing).
        warmup_s: load offered before the measured window (caches, imports, JIT-free
            warm-up of the core's first batches); its acks are not counted.
        duration_s: how long the measured window lasts; then the fleet drains and reports.
        mode: ``"load"`` (offer load, the throughput benchmark) or ``"hold"`` (hold idle
            links with a trickle of events, the links benchmark).
        handshakes: TLS + WebSocket handshakes one process runs at once.
        handshake_rate: handshakes one process starts per second at most; 0 is unpaced.
        trickle_s: in hold mode, seconds between a link's small batches.
        trickle_events: in hold mode, events per small batch.
        answer_commands: in hold mode, answer the core's commands (``status``) as a gateway
            does; without answers the core's fleet agent waits on one command per link.
    """

    url: str
    ca_file: str
    gateways: list[tuple[str, str]]
    sensors: int = 4
    rate_per_gateway: float = 0.0
    batch_max_events: int = 500
    max_inflight_events: int = 2_000
    warmup_s: float = 2.0
    duration_s: float = 10.0
    mode: str = "load"
    handshakes: int = MAX_HANDSHAKES
    handshake_rate: float = 0.0
    trickle_s: float = 60.0
    trickle_events: int = 2
    answer_commands: bool = True

    def write(self, path: Path) -> None:
        # The plan holds tokens: readable by the owner only.
        path.touch(mode=0o600)
        path.write_text(json.dumps(_as_dict(self)))

    @classmethod
    def read(cls, path: Path) -> FleetPlan:
        data = json.loads(path.read_text())
        data["gateways"] = [tuple(pair) for pair in data["gateways"]]
        return cls(**data)


def _as_dict(plan: FleetPlan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in plan.__slots__}


def sensor_readings(variants: int = 100) -> list[tuple[Reading, ...]]:
    """The readings a simulated sensor cycles through (readings are immutable, so shared)."""
    return [
        (Reading("temperature", "Cel", 20 + n / 10), Reading("humidity", "%RH", 40.5))
        for n in range(variants)
    ]


@dataclass
class SimGateway:
    """One simulated gateway: generate, send in batches, account for acks."""

    gateway_id: str
    token: str = field(repr=False)
    plan: FleetPlan
    stats: FleetStats
    seq: int = 0
    acked: int = 0
    _groups: deque[tuple[int, int, int]] = field(default_factory=deque)  # last seq, n, stamp
    _pending: deque[Event] = field(default_factory=deque)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def run(
        self, ssl_context: ssl.SSLContext, stop: trio.Event, handshakes: trio.Semaphore
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            # A bounded number of TLS handshakes at once: a thousand simultaneous ones made
            # a CPU-starved core time out all of them (docs/performance.md).
            async with handshakes:
                connection = await stack.enter_async_context(self._connect(ssl_context))
                session = UplinkSession(self.gateway_id, SOFTWARE, os.urandom(16))
                await connection.send(session.hello(self.seq + 1))
                welcomed = session.receive(_binary(await connection.recv()))
            if not isinstance(welcomed, Welcomed):
                raise RuntimeError(f"{self.gateway_id}: core refused: {welcomed}")
            self.seq = self.acked = welcomed.acked_seq
            self.stats.connected += 1
            if self.stats.connected == self.stats.expected:
                self.stats.all_connected.set()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive, connection, session)
                if self.plan.rate_per_gateway > 0:
                    nursery.start_soon(self._produce, stop)
                await self._send(connection, session, stop)
                # Drained: everything generated is acknowledged.
                nursery.cancel_scope.cancel()

    async def hold(
        self,
        ssl_context: ssl.SSLContext,
        release: trio.Event,
        handshakes: trio.Semaphore,
        hold: HoldStats,
    ) -> None:
        """Hold one link open with a trickle of events until ``release``; count the outcome.

        ``handshakes`` is held by the caller and released here once Welcome arrived.
        """
        started = trio.current_time()
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    connection = await stack.enter_async_context(self._connect(ssl_context))
                    session = UplinkSession(self.gateway_id, SOFTWARE, os.urandom(16))
                    await connection.send(session.hello(self.seq + 1))
                    welcomed = session.receive(_binary(await connection.recv()))
                finally:
                    handshakes.release()
                if not isinstance(welcomed, Welcomed):
                    raise RuntimeError(f"{self.gateway_id}: core refused: {welcomed}")
                hold.handshake.add((trio.current_time() - started) * 1e6)
                self.seq = self.acked = welcomed.acked_seq
                self.stats.connected += 1
                if self.stats.connected == self.stats.expected:
                    self.stats.all_connected.set()
                closed: list[ConnectionClosed] = []
                answered = False
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._receive_or_note, connection, session, closed, nursery)
                    try:
                        await self._trickle(connection, session, release)
                        # Still open (a ping answered) and every event sent acknowledged.
                        # No new batch: 10,000 of them at once would measure a burst.
                        with trio.move_on_after(HOLD_FINAL_ACK_S):
                            pong = await connection.ping()
                            await pong.wait()
                            while self.acked < self.seq:
                                await self._changed.wait()
                            answered = True
                    except ConnectionClosed as exc:
                        closed.append(exc)
                    nursery.cancel_scope.cancel()
                if closed:
                    code = closed[0].rcvd.code if closed[0].rcvd is not None else None
                    hold.closed[str(code)] = hold.closed.get(str(code), 0) + 1
                elif not answered:
                    hold.unacked += 1
                else:
                    hold.held += 1
        except (
            ConnectionClosed,
            InvalidHandshake,
            OSError,
            trio.TooSlowError,
            trio.BrokenResourceError,
        ) as exc:
            hold.failed[type(exc).__name__] = hold.failed.get(type(exc).__name__, 0) + 1

    async def _receive_or_note(
        self,
        connection: ClientConnection,
        session: UplinkSession,
        closed: list[ConnectionClosed],
        nursery: trio.Nursery,
    ) -> None:
        try:
            await self._receive(connection, session)
        except ConnectionClosed as exc:
            closed.append(exc)
            nursery.cancel_scope.cancel()

    async def _trickle(
        self, connection: ClientConnection, session: UplinkSession, release: trio.Event
    ) -> None:
        period = self.plan.trickle_s
        # A random phase, so links that connected together do not send together.
        with trio.move_on_after(period * (hash(self.gateway_id) % 1000) / 1000):
            await release.wait()
        while not release.is_set():
            await self._send_events(connection, session, self.plan.trickle_events)
            with trio.move_on_after(period):
                await release.wait()

    async def _send_events(
        self, connection: ClientConnection, session: UplinkSession, count: int
    ) -> None:
        events = tuple(self._make(count, time.time_ns(), time.monotonic_ns()))
        await connection.send(session.batch(events))

    def _connect(
        self, ssl_context: ssl.SSLContext
    ) -> AbstractAsyncContextManager[ClientConnection]:
        return connect(
            self.plan.url,
            ssl=ssl_context,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            subprotocols=[limits.SUBPROTOCOL],  # type: ignore[list-item]
            compression=None,
            max_size=limits.MAX_MESSAGE_BYTES,
            open_timeout=60,
            ping_interval=None,  # a benchmark link is never idle long enough to need one
            user_agent_header=SOFTWARE,
        )

    def _make(self, count: int, stamp_ns: int, mono_ns: int) -> list[Event]:
        readings = _READINGS
        sensors = self.plan.sensors
        first = self.seq + 1
        self.seq += count
        self._groups.append((self.seq, count, stamp_ns))
        return [
            Event(
                seq,
                f"sensor-{seq % sensors}",
                _BOOT_ID,
                mono_ns,
                stamp_ns,
                ClockSource.NTP,
                readings[seq % len(readings)],
            )
            for seq in range(first, self.seq + 1)
        ]

    async def _produce(self, stop: trio.Event) -> None:
        """Offer ``rate_per_gateway`` events/s, stamped when they enter the outbox."""
        rate = self.plan.rate_per_gateway
        tick = min(1.0, max(0.05, 50 / rate))
        start = trio.current_time()
        made = 0
        # Spread the gateways' ticks so a large fleet does not wake in lockstep.
        await trio.sleep(tick * (hash(self.gateway_id) % 1000) / 1000)
        while not stop.is_set():
            due = int((trio.current_time() - start) * rate) - made
            if due > 0:
                self._pending.extend(self._make(due, time.time_ns(), time.monotonic_ns()))
                made += due
                self._wake()
            await trio.sleep(tick)
        self._wake()

    async def _send(
        self, connection: ClientConnection, session: UplinkSession, stop: trio.Event
    ) -> None:
        plan = self.plan
        while True:
            room = min(session.send_window(), plan.max_inflight_events - session.inflight_events)
            room = min(room, plan.batch_max_events)
            if plan.rate_per_gateway == 0 and not stop.is_set() and room > 0:
                self._pending.extend(self._make(room, time.time_ns(), time.monotonic_ns()))
            if self._pending and room > 0:
                take = min(room, len(self._pending))
                events = tuple(self._pending.popleft() for _ in range(take))
                await connection.send(session.batch(events))
                continue
            if stop.is_set() and not self._pending and self.acked >= self.seq:
                return
            changed = self._changed
            with trio.move_on_after(1):
                await changed.wait()

    async def _receive(self, connection: ClientConnection, session: UplinkSession) -> None:
        stats = self.stats
        while True:
            message = session.receive(_binary(await connection.recv()))
            if isinstance(message, Command) and self.plan.mode == "hold":
                if not self.plan.answer_commands:
                    continue
                # The core asks every new link for its status (then about every 5 min, and
                # after 1, 2, 4 s while a change is in flight); a held link answers as a
                # gateway with its configuration untouched would.
                await connection.send(session.result(message.command_id, *_answer(message)))
                continue
            if not isinstance(message, Acked):
                continue
            now = time.time_ns()
            groups = self._groups
            acked = message.acked_seq
            counted = 0
            while groups and groups[0][0] <= acked:
                _, count, stamp = groups.popleft()
                stats.latency.add((now - stamp) / 1000, count)
                counted += count
            if groups and self.acked < acked:
                # A partial group: acks are cumulative, so count only the covered part.
                last, count, stamp = groups[0]
                part = acked - (last - count)
                if part > 0:
                    groups[0] = (last, count - part, stamp)
                    stats.latency.add((now - stamp) / 1000, part)
                    counted += part
            self.acked = acked
            stats.acked += counted
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


#: In hold mode, how long a link waits at the end for its ping's pong and its last acks.
HOLD_FINAL_ACK_S: Final = 60.0
_READINGS: Final = sensor_readings()
#: One boot id for the whole simulated fleet: the store keys events by (gateway, seq).
_BOOT_ID: Final = bytes(range(16))


@dataclass
class FleetStats:
    expected: int = 0
    connected: int = 0
    all_connected: trio.Event = field(default_factory=trio.Event)
    measuring: bool = False
    window_started: float = field(default_factory=lambda: time.monotonic() + 3600.0)
    acked: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass
class HoldStats:
    """What hold mode counts in one process."""

    held: int = 0  # open at the end, every event acknowledged
    unacked: int = 0  # open at the end, but a ping or an ack did not come back in time
    closed: dict[str, int] = field(default_factory=dict)  # closed early, by close code
    failed: dict[str, int] = field(default_factory=dict)  # handshake failed, by error
    handshake: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def ended(self) -> int:
        return self.held + self.unacked + sum(self.closed.values()) + sum(self.failed.values())


def _answer(command: Command) -> tuple[bool, dict[str, Scalar]]:
    if command.name == "status":
        return True, {
            "config_version": 0,
            "config_pending": 0,
            "refused_version": 0,
            "refused_reason": "",
        }
    return False, {"error": f"unknown command {command.name}"}


def _binary(data: str | bytes) -> bytes:
    if isinstance(data, str):
        raise RuntimeError("the core sent a text frame")
    return data


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _report_ticks(stats: FleetStats, stop: trio.Event) -> None:
    last = 0
    second = 0  # ticks sent inside the measured window
    deadline = trio.current_time()
    while True:
        # On fixed deadlines: a late wake-up shortens the next wait instead of shifting every
        # later tick, so each tick covers one second and the n-th one of the window is its
        # n-th second, in every process alike.
        deadline += 1.0
        await trio.sleep_until(deadline)
        latency, stats.latency = stats.latency, LatencyHistogram()
        measuring = stats.measuring and not stop.is_set()
        second = second + 1 if measuring else second
        _emit(
            {
                "kind": "tick",
                # Seconds into the measured window (negative before it starts).
                "t": round(time.monotonic() - stats.window_started, 3),
                "second": second,
                "connected": stats.connected,
                "acked": stats.acked - last,
                "measuring": measuring,
                "latency": latency.to_json(),
            }
        )
        last = stats.acked


async def run_part(plan: FleetPlan, part: int, of: int) -> None:
    """Run this process's share of the fleet, offer load for the plan's duration, drain."""
    ssl_context = ssl.create_default_context(cafile=plan.ca_file)
    stats = FleetStats()
    stop = trio.Event()
    gateways = [
        SimGateway(gateway_id, token, plan, stats) for gateway_id, token in plan.gateways[part::of]
    ]
    stats.expected = len(gateways)
    if not gateways:
        stats.all_connected.set()
    async with trio.open_nursery() as outer:
        outer.start_soon(_report_ticks, stats, stop)
        async with trio.open_nursery() as nursery:
            handshakes = trio.Semaphore(MAX_HANDSHAKES)
            for gateway in gateways:
                nursery.start_soon(gateway.run, ssl_context, stop, handshakes)
            # Load is offered for duration_s once every link of this part is up.
            # Handshakes are bounded (MAX_HANDSHAKES at once), so a large part takes longer.
            with trio.fail_after(max(120.0, len(gateways) / 2)):
                await stats.all_connected.wait()
            _emit({"kind": "connected", "links": len(gateways)})
            await trio.sleep(plan.warmup_s)
            stats.measuring = True
            stats.window_started = time.monotonic()
            _emit({"kind": "measuring"})
            await trio.sleep(plan.duration_s)
            stop.set()
            for gateway in gateways:
                gateway._wake()
        outer.cancel_scope.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _emit(
        {
            "kind": "done",
            "gateways": {g.gateway_id: [g.seq, g.acked] for g in gateways},
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_kib": usage.ru_maxrss,
        }
    )


async def run_hold(plan: FleetPlan, part: int, of: int) -> None:
    """Hold this process's share of the links until a line (or EOF) arrives on stdin."""
    raise_open_files_limit()
    ssl_context = ssl.create_default_context(cafile=plan.ca_file)
    stats = FleetStats()
    hold = HoldStats()
    release = trio.Event()
    gateways = [
        SimGateway(gateway_id, token, plan, stats) for gateway_id, token in plan.gateways[part::of]
    ]
    stats.expected = len(gateways)
    async with trio.open_nursery() as outer:
        outer.start_soon(_report_progress, stats, hold, release)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_release_on_stdin, release)
            handshakes = trio.Semaphore(plan.handshakes)
            pause = 1 / plan.handshake_rate if plan.handshake_rate > 0 else 0.0
            for gateway in gateways:
                await handshakes.acquire()  # released by the link once Welcome arrived
                nursery.start_soon(gateway.hold, ssl_context, release, handshakes, hold)
                if pause:
                    await trio.sleep(pause)
        outer.cancel_scope.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _emit(
        {
            "kind": "held",
            "links": len(gateways),
            "held": hold.held,
            "unacked": hold.unacked,
            "closed": hold.closed,
            "failed": hold.failed,
            "events_sent": sum(g.seq for g in gateways),
            "events_acked": sum(g.acked for g in gateways),
            "handshake": hold.handshake.to_json(),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_kib": usage.ru_maxrss,
        }
    )


async def _release_on_stdin(release: trio.Event) -> None:
    # A line or EOF (the benchmark went away) ends the hold.
    await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    release.set()


async def _report_progress(stats: FleetStats, hold: HoldStats, release: trio.Event) -> None:
    announced = False
    while True:
        _emit(
            {
                "kind": "progress",
                "connected": stats.connected,
                "closed": sum(hold.closed.values()),
                "failed": sum(hold.failed.values()),
                "acked": stats.acked,
            }
        )
        settled = stats.connected + sum(hold.failed.values()) >= stats.expected
        if settled and not announced:
            announced = True
            _emit({"kind": "connected", "links": stats.connected})
        await trio.sleep(1)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the new limit.

    A process holding thousands of links needs a descriptor per link; many systems start
    processes with a soft limit of 1,024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            # RLIM_INFINITY is refused for this limit on Linux: fall back to a large number.
            target = hard if hard != resource.RLIM_INFINITY else 1 << 20
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.fleet",
        description="Run a share of a simulated gateway fleet against a core (JSON lines out).",
    )
    parser.add_argument("plan", type=Path, help="the fleet plan (JSON, written by the bench)")
    parser.add_argument("--part", type=int, default=0, help="which share to run (0)")
    parser.add_argument("--of", type=int, default=1, help="how many shares there are (1)")
    args = parser.parse_args(argv)
    plan = FleetPlan.read(args.plan)
    try:
        trio.run(run_hold if plan.mode == "hold" else run_part, plan, args.part, args.of)
    except Exception as exc:  # reported, not hidden: the bench counts it as a failed run
        while isinstance(exc, ExceptionGroup):
            exc = exc.exceptions[0]  # the first failure says what went wrong
        _emit({"kind": "error", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
