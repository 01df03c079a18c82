"""The fleet agent at scale: event-driven reconciliation and batched status reports.

The agent runs against the real fleet store, registry and enrolment tables of a core home and
real ``CommandHub`` calls; each link's far end is an in-memory gateway that decodes the
command bytes with the protocol codec and answers the way ``gateway.remote_config`` does.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pytest
import trio
import trio.testing

from cloud.enrolment import Enrolment
from cloud.fleet.agent import CommandHub, FleetAgent
from cloud.fleet.store import FleetStore
from cloud.principal import Principal, PrincipalKind
from cloud.registry import Registry
from cloud.tokens import TokenIssuer
from protocol import codec
from protocol.messages import Command, Result
from protocol.session import CoreSession
from tests.support import TENANT

if TYPE_CHECKING:
    from collections.abc import Mapping

    from websockets.trio.server import ServerConnection

    from cloud.home import CoreHome
    from protocol.messages import Scalar

WAIT_S = 10.0


class CountingStore(FleetStore):
    """The real store, counting calls and the transactions that write reports.

    A test can also hold the next report write (``hold_writes``: it waits, on its worker
    thread, until the event is set), make writes fail (``fail_writes``), and see when a
    ``reported`` read begins (``read_started``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self.reports_written = 0
        self.written = trio.Event()  # set after every report transaction
        self.hold_writes: threading.Event | None = None
        self.write_held = trio.Event()
        self.fail_writes = False
        self.read_started = trio.Event()
        self._token = trio.lowlevel.current_trio_token()

    def desired_config(self, tenant: str, gateway_id: str) -> Any:
        self.calls["desired_config"] += 1
        return super().desired_config(tenant, gateway_id)

    def reported(self, tenant: str, gateway_id: str) -> Any:
        self.calls["reported"] += 1
        self._token.run_sync_soon(self.read_started.set)
        return super().reported(tenant, gateway_id)

    def rollout(self, tenant: str) -> Any:
        self.calls["rollout"] += 1
        return super().rollout(tenant)

    def changes_since(self, seq: int) -> Any:
        self.calls["changes_since"] += 1
        return super().changes_since(seq)

    def record_reports(self, reports: Mapping[tuple[str, str], dict[str, Any]]) -> None:
        if self.fail_writes:
            raise sqlite3.OperationalError("disk I/O error")
        hold, self.hold_writes = self.hold_writes, None
        if hold is not None:  # on a worker thread: wait there, the event loop goes on
            self._token.run_sync_soon(self.write_held.set)
            hold.wait(WAIT_S)
        super().record_reports(reports)
        self.calls["record_reports"] += 1
        self.reports_written += len(reports)
        self._token.run_sync_soon(self._wrote)

    def _wrote(self) -> None:
        self.written.set()  # whichever event the test waits on now

    async def wait_reports(self, count: int) -> None:
        while self.reports_written < count:
            self.written = trio.Event()
            await self.written.wait()

    def per_link_reads(self) -> int:
        return sum(self.calls[n] for n in ("desired_config", "reported", "rollout"))


@dataclass(eq=False)
class MemoryGateway:
    """A link's far end: answers commands like ``gateway.remote_config.ManagedGateway``."""

    hub: CommandHub
    principal: Principal
    config_version: int = 0
    refuse: bool = False  # refuses every configuration, as one with a bad sensor table
    received: list[Command] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    async def send(self, data: bytes) -> None:
        command = codec.decode(data)
        assert isinstance(command, Command)
        self.received.append(command)
        detail: dict[str, Scalar] = {}
        if command.name == "status":
            detail = {"config_version": self.config_version, "config_pending": 0}
        elif command.name == "configure" and self.refuse:
            detail = {"error": "sensor 'tank' has no driver"}
            self.hub.resolve(self.principal, Result(command.command_id, False, detail))
            self.arrived.set()
            return
        elif command.name == "configure":
            version = command.args["version"]
            assert isinstance(version, int)
            self.config_version = version  # applied at once: no probation here
            detail = {"config_pending": version}
        self.hub.resolve(self.principal, Result(command.command_id, True, detail))
        self.arrived.set()

    async def wait_for(self, name: str) -> Command:
        with trio.fail_after(WAIT_S):
            while True:
                for command in self.received:
                    if command.name == name:
                        return command
                self.arrived = trio.Event()
                await self.arrived.wait()

    def count(self, name: str) -> int:
        return sum(1 for c in self.received if c.name == name)


@dataclass
class Harness:
    hub: CommandHub
    store: CountingStore
    agent: FleetAgent
    home: CoreHome

    def connect(self, gateway_id: str, *, refuse: bool = False) -> MemoryGateway:
        principal = Principal(PrincipalKind.GATEWAY, gateway_id, TENANT, f"jti-{gateway_id}")
        gateway = MemoryGateway(self.hub, principal, refuse=refuse)
        connection = cast("ServerConnection", gateway)
        self.hub.attach(principal, CoreSession(gateway_id), connection)
        return gateway

    def disconnect(self, gateway: MemoryGateway) -> None:
        self.hub.detach(gateway.principal, cast("ServerConnection", gateway))


@pytest.fixture
def sweep_every_s() -> float:
    return 3600.0  # only the in-process signal can wake the agent, unless a test says so


@pytest.fixture
def flush_every_s() -> float:
    return 0.5


@contextlib.asynccontextmanager
async def running_agent(
    core_home: CoreHome, *, sweep_every_s: float, flush_every_s: float
) -> AsyncIterator[Harness]:
    """An agent on the real stores; it is cancelled (and writes what it buffered) on exit."""
    store = CountingStore(core_home.db_path)
    with Registry(core_home.db_path) as registry, store:
        enrolment = Enrolment(core_home, registry, TokenIssuer(core_home))
        hub = CommandHub()
        agent = FleetAgent(
            hub,
            store,
            registry,
            enrolment,
            "https://localhost:1",
            sweep_every_s=sweep_every_s,
            status_every_s=3600.0,
            flush_every_s=flush_every_s,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.run)
                yield Harness(hub, store, agent, core_home)
                nursery.cancel_scope.cancel()
        finally:
            enrolment.close()


@pytest.fixture
async def harness(
    core_home: CoreHome, sweep_every_s: float, flush_every_s: float
) -> AsyncIterator[Harness]:
    async with running_agent(
        core_home, sweep_every_s=sweep_every_s, flush_every_s=flush_every_s
    ) as harness:
        yield harness


def stored_report(home: CoreHome, gateway_id: str) -> dict[str, Any]:
    with FleetStore(home.db_path) as reader:  # what the CLI and REST read
        return reader.reported(TENANT, gateway_id)[0]


async def test_a_configuration_set_while_connected_reaches_the_gateway_at_once(
    harness: Harness,
) -> None:
    gateway = harness.connect("gw-1")
    await gateway.wait_for("status")
    # The hour-long sweep cannot deliver it: the store's own change signal must.
    version = harness.store.set_config(TENANT, "gw-1", {"log_level": "debug"}).version
    command = await gateway.wait_for("configure")
    assert command.args["version"] == version
    assert gateway.config_version == version


@pytest.mark.parametrize("sweep_every_s", [0.1])
async def test_a_change_made_by_another_connection_is_found_by_the_sweep(
    harness: Harness,
) -> None:
    gateway = harness.connect("gw-1")
    await gateway.wait_for("status")
    with FleetStore(harness.home.db_path) as other:  # as the CLI does, from its own process
        version = other.set_config(TENANT, "gw-1", {"log_level": "warning"}).version
    command = await gateway.wait_for("configure")
    assert command.args["version"] == version


async def test_status_reports_of_many_links_are_written_in_few_transactions(
    harness: Harness,
) -> None:
    gateways = [harness.connect(f"gw-{n}") for n in range(100)]
    with trio.fail_after(WAIT_S):
        await harness.store.wait_reports(100)
    assert all(g.count("status") == 1 for g in gateways)
    # 100 first answers spread over a second, flushed every 0.5 s: a few commits, not 100.
    assert harness.store.calls["record_reports"] <= 5
    with FleetStore(harness.home.db_path) as reader:  # what the CLI and REST read
        reported, at = reader.reported(TENANT, "gw-99")
    assert reported == {"config_version": 0, "config_pending": 0}
    assert at is not None


@pytest.mark.parametrize("sweep_every_s", [0.05])
async def test_an_idle_fleet_costs_no_per_link_store_reads(harness: Harness) -> None:
    gateways = [harness.connect(f"gw-{n}") for n in range(50)]
    with trio.fail_after(WAIT_S):
        await harness.store.wait_reports(50)
    settled = harness.store.per_link_reads()
    sweeps = harness.store.calls["changes_since"]
    await trio.sleep(0.5)  # about ten sweeps with nothing changed
    assert harness.store.calls["changes_since"] > sweeps  # the sweep did run
    assert harness.store.per_link_reads() == settled
    assert all(g.count("status") == 1 for g in gateways)
    # One gateway's change costs that gateway's reads, not the fleet's.
    harness.store.set_config(TENANT, "gw-7", {"log_level": "info"})
    await gateways[7].wait_for("configure")
    assert harness.store.per_link_reads() - settled <= 6
    assert all(g.count("configure") == 0 for g in gateways if g is not gateways[7])


def test_the_change_log_tells_a_reader_that_fell_behind(core_home: CoreHome) -> None:
    with FleetStore(core_home.db_path) as store:
        start = store.latest_change()
        store.set_config(TENANT, "gw-1", {"log_level": "info"})
        newest, changes = store.changes_since(start)
        assert changes == [(TENANT, "gw-1")]
        assert store.changes_since(newest) == (newest, [])
        with store._tx() as db:  # what pruning leaves after CHANGE_LOG_ROWS more changes
            db.execute("DELETE FROM fleet_changes")
        store.set_config(TENANT, "gw-2", {"log_level": "info"})
        assert store.changes_since(start)[1] is None


@pytest.mark.parametrize("flush_every_s", [3600.0])
async def test_a_refusal_is_written_at_once_not_at_the_next_flush(harness: Harness) -> None:
    gateway = harness.connect("gw-1", refuse=True)
    await gateway.wait_for("status")
    version = harness.store.set_config(TENANT, "gw-1", {"log_level": "debug"}).version
    await gateway.wait_for("configure")
    # An hour-long flush period: only the prompt write of a command's outcome gets it there,
    # so a core restarted now would not send the refused configuration again.
    with trio.fail_after(WAIT_S):
        await harness.store.wait_reports(1)
    assert stored_report(harness.home, "gw-1")["refused_version"] == version


async def test_a_reconnect_while_a_refusal_is_being_written_does_not_repeat_it(
    harness: Harness,
) -> None:
    first = harness.connect("gw-1", refuse=True)
    await first.wait_for("status")
    with trio.fail_after(WAIT_S):
        await harness.store.wait_reports(1)
    release = harness.store.hold_writes = threading.Event()
    try:
        version = harness.store.set_config(TENANT, "gw-1", {"log_level": "debug"}).version
        await first.wait_for("configure")
        with trio.fail_after(WAIT_S):
            await harness.store.write_held.wait()  # the refusal is not in the store yet
        harness.disconnect(first)
        second = harness.connect("gw-1", refuse=True)
        # A rollout that does not cover it makes the agent look at the new link at once.
        harness.store.add_release("9.9.9", "0" * 64, 1)
        harness.store.start_rollout(TENANT, "9.9.9", 0, force=False)
        await trio.testing.wait_all_tasks_blocked()
    finally:
        release.set()
    await second.wait_for("status")
    # The status answer is written at the next flush, half a second on; the rest of the
    # pass (the configure decision) takes milliseconds and its reads are served first.
    with trio.fail_after(WAIT_S):
        await harness.store.wait_reports(harness.store.reports_written + 1)
    assert second.count("configure") == 0
    assert stored_report(harness.home, "gw-1")["refused_version"] == version


async def test_a_database_locked_by_another_process_does_not_stall_the_event_loop(
    harness: Harness,
) -> None:
    cli = sqlite3.connect(harness.home.db_path, isolation_level=None)
    try:
        cli.execute("BEGIN EXCLUSIVE")  # as a CLI write would, for up to the busy timeout
        gateway = harness.connect("gw-1")
        with trio.fail_after(WAIT_S):
            await harness.store.read_started.wait()
        # The agent's read now waits for the lock on a worker thread; this task still runs.
        started = trio.current_time()
        await trio.sleep(0.05)
        assert trio.current_time() - started < 1.0
        assert gateway.count("status") == 0
    finally:
        cli.execute("ROLLBACK")
        cli.close()
    await gateway.wait_for("status")


async def test_links_that_come_and_go_do_not_pile_up_in_the_timers(harness: Harness) -> None:
    for n in range(500):
        harness.disconnect(harness.connect(f"gw-{n}"))
    stays = harness.connect("gw-stays")
    await trio.testing.wait_all_tasks_blocked()
    timers = harness.agent._timers  # each entry holds its link until due, a second away
    assert len(timers) <= 2 * harness.hub.link_count() + 64
    assert any(live.principal.id == "gw-stays" for _due, _n, live in timers)
    await stays.wait_for("status")


async def test_a_failed_write_at_shutdown_is_logged_not_raised(
    core_home: CoreHome, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_agent(core_home, sweep_every_s=3600.0, flush_every_s=3600.0) as harness:
        gateway = harness.connect("gw-1")
        await gateway.wait_for("status")
        await trio.testing.wait_all_tasks_blocked()  # the answer is buffered, not written
        harness.store.fail_writes = True
    assert any(
        r.levelno == logging.ERROR and "fleet reports of 1 gateways lost" in r.getMessage()
        for r in caplog.records
    )
