"""Helpers for lifecycle tests against an in-process core: boot folders and waits."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from cloud.enrolment import Enrolment
from cloud.fleet.store import FleetStore
from cloud.home import CoreHome
from cloud.registry import Registry
from cloud.tokens import TokenIssuer
from gateway.enrol import write_boot_folder
from tests.support import TENANT


def prepare_boot(
    home: CoreHome, boot: Path, gateway_id: str, *, lifetime_s: int = 3600, age_s: float = 0
) -> None:
    """What ``assetbook gateway prepare-boot`` writes; ``age_s`` makes the code that old."""
    with Registry(home.db_path) as registry:
        enrolment = Enrolment(home, registry, TokenIssuer(home), now=lambda: time.time() - age_s)
        try:
            info = enrolment.create_code(TENANT, gateway_id, lifetime_s)
        finally:
            enrolment.close()
    document = {
        "tenant": info.tenant,
        "gateway_id": info.gateway_id,
        "code": info.code,
        "expires_at": info.expires_at,
        "link_url": info.link_url,
        "rest_url": info.rest_url,
        "release_key": info.release_key,
    }
    write_boot_folder(boot, document, info.ca_pem)


async def wait_reported(
    home: CoreHome, gateway_id: str, key: str, value: object, timeout_s: float = 20
) -> dict[str, Any]:
    """Wait until the core's fleet store holds ``key == value`` for the gateway."""
    with FleetStore(home.db_path) as store, trio.fail_after(timeout_s):
        while True:
            reported, _at = store.reported(TENANT, gateway_id)
            if reported.get(key) == value:
                return reported
            await trio.sleep(0.1)  # the core writes the store from its agent task
