"""Fixtures shared by the whole suite: core homes and an in-process core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from cloud.home import CoreHome, init_home
from cloud.registry import Registry
from tests.support import TENANT, RunningCore, free_port


@pytest.fixture
def core_home(tmp_path: Path) -> CoreHome:
    """A fresh core home on free ports with one tenant, ``acme``."""
    home = init_home(
        tmp_path / "core", link_port=free_port(), rest_port=free_port(), hosts=("localhost",)
    )
    with Registry(home.db_path) as registry:
        registry.create_tenant(TENANT)
    return home


@pytest.fixture
async def core(core_home: CoreHome, nursery: trio.Nursery) -> AsyncIterator[RunningCore]:
    """The core, running in this test's Trio run."""
    from cloud.app import serve_core

    stop = trio.Event()
    endpoints = await nursery.start(serve_core, core_home, stop)
    yield RunningCore(core_home, endpoints.link_url, endpoints.rest_url, stop)
    stop.set()
