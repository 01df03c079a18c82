"""The fleet agent at scale: event-driven reconciliation and batched status reports.

The agent runs against the real fleet store, registry and enrolment tables of a core home and
real ``CommandHub`` calls; each link's far end is an in-memory gateway that decodes the
command bytes with the protocol codec and answers the way ``gateway.remote_config`` does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pytest
import trio

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
    """The real store, counting calls and the transactions that write reports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self.reports_written = 0
        self.written = trio.Event()  # set after every report transaction
        self._token = trio.lowlevel.current_trio_token()

    def desired_config(self, tenant: str, gateway_id: str) -> Any:
        self.calls["desired_config"] += 1
        return super().desired_config(tenant, gateway_id)

    def reported(self, tenant: str, gateway_id: str) -> Any:
        self.calls["reported"] += 1
        return super().reported(tenant, gateway_id)

    def rollout(self, tenant: str) -> Any:
        self.calls["rollout"] += 1
        return super().rollout(tenant)

    def changes_since(self, seq: int) -> Any:
        self.calls["changes_since"] += 1
        return super().changes_since(seq)

    def record_reports(self, reports: Mapping[tuple[str, str], dict[str, Any]]) -> None:
        super().record_reports(reports)  # on a worker thread
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
    received: list[Command] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    async def send(self, data: bytes) -> None:
        command = codec.decode(data)
        assert isinstance(command, Command)
        self.received.append(command)
        detail: dict[str, Scalar] = {}
        if command.name == "status":
            detail = {"config_version": self.config_version, "config_pending": 0}
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

    def connect(self, gateway_id: str) -> MemoryGateway:
        principal = Principal(PrincipalKind.GATEWAY, gateway_id, TENANT, f"jti-{gateway_id}")
        gateway = MemoryGateway(self.hub, principal)
        connection = cast("ServerConnection", gateway)
        self.hub.attach(principal, CoreSession(gateway_id), connection)
        return gateway


@pytest.fixture
def sweep_every_s() -> float:
    return 3600.0  # only the in-process signal can wake the agent, unless a test says so


@pytest.fixture
async def harness(core_home: CoreHome, sweep_every_s: float) -> AsyncIterator[Harness]:
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
            flush_every_s=0.5,
        )
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.run)
                yield Harness(hub, store, agent, core_home)
                nursery.cancel_scope.cancel()  # the agent writes what it buffered, then ends
        finally:
            enrolment.close()


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
