"""Wiring of the fleet parts into a running core (:func:`open_fleet`, :func:`serve_fleet`).

:func:`open_fleet` opens the fleet store and the enrolment tables next to the registry and
builds what the link server (``proof``, ``hub``) and the REST app (``api``) take.
:func:`serve_fleet` runs the reconciling agent until cancelled and then closes the stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from cloud.api.fleet import FleetApi
from cloud.enrolment import Enrolment, LinkProof
from cloud.fleet.agent import CommandHub, FleetAgent
from cloud.fleet.store import FleetStore
from cloud.home import load_config

if TYPE_CHECKING:
    from cloud.accesslog import AccessLog
    from cloud.home import CoreHome
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer


@dataclass
class Fleet:
    hub: CommandHub
    proof: LinkProof
    api: FleetApi
    agent: FleetAgent


def open_fleet(
    home: CoreHome, registry: Registry, issuer: TokenIssuer, access_log: AccessLog
) -> Fleet:
    config = load_config(home)
    store = FleetStore(home.db_path)
    enrolment = Enrolment(home, registry, issuer)
    hub = CommandHub()
    api = FleetApi(
        home, store, enrolment, registry, issuer, access_log, config.rest_url, config.link_url
    )
    agent = FleetAgent(hub, store, registry, enrolment, config.rest_url)
    return Fleet(hub, LinkProof(config.link_url), api, agent)


async def serve_fleet(
    fleet: Fleet, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    try:
        await fleet.agent.run(task_status=task_status)
    finally:
        fleet.api.store.close()
        fleet.api.enrolment.close()
