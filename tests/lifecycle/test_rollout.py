"""Updates through the core: publish, staged rollout, download with the key-bound credential,
install, restart into the new version, and the outcome reported back."""

from __future__ import annotations

from pathlib import Path

import trio

from cloud.fleet.bundle import load_or_create_release_key
from cloud.fleet.releases import publish
from cloud.fleet.store import FleetStore, in_rollout
from gateway.enrol import enrol
from gateway.remote_config import ManagedGateway
from gateway.update import RESTART_EXIT, InstallRoot, install
from tests.lifecycle.bundles import make_bundle
from tests.lifecycle.lifecycle_support import prepare_boot, wait_reported
from tests.support import TENANT, RunningCore


def test_raising_the_percentage_only_adds_gateways() -> None:
    ids = [f"gw-{n}" for n in range(400)]
    previous: set[str] = set()
    for percent in (0, 10, 50, 100):
        chosen = {g for g in ids if in_rollout(g, "2.0", percent)}
        assert previous <= chosen
        assert abs(len(chosen) - 4 * percent) <= 40  # roughly the asked share
        previous = chosen
    assert previous == set(ids)


async def test_a_rollout_installs_the_release_and_the_gateway_reports_it(
    core: RunningCore, tmp_path: Path
) -> None:
    key = load_or_create_release_key(core.home)
    root = InstallRoot(tmp_path / "opt")
    root.path.mkdir()
    install(root, make_bundle(tmp_path, key, "1.0", "pass"), key.public_key())
    with FleetStore(core.home.db_path) as store:
        publish(core.home, store, make_bundle(tmp_path, key, "1.1", "pass"))
    prepare_boot(core.home, tmp_path / "boot", "gw-1")
    config = await enrol(tmp_path / "boot", tmp_path / "gw")

    first = ManagedGateway(config, install_root=root.path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run, trio.Event())
            await wait_reported(core.home, "gw-1", "software_version", "1.0")
            with FleetStore(core.home.db_path) as store:
                store.start_rollout(TENANT, "1.1", 0, force=False)  # nobody yet
            await trio.sleep(1.5)  # two agent rounds: nothing may happen at 0 %
            assert root.current_version() == "1.0"
            with FleetStore(core.home.db_path) as store:
                store.start_rollout(TENANT, "1.1", 100, force=False)
    # run() returned by itself: the update is installed and the process asks for a restart.
    assert first.exit_code == RESTART_EXIT
    assert root.current_version() == "1.1"
    assert root.read_json(root.trial)["to"] == "1.1"

    second = ManagedGateway(config, install_root=root.path)  # what the launcher starts next
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(second.run, stop)
        reported = await wait_reported(core.home, "gw-1", "software_version", "1.1")
        with trio.fail_after(15):
            await second.link_up.wait()  # the new version confirmed itself
        stop.set()
    # "running" once confirmed; the status may have been taken just before the confirmation.
    assert reported["update_state"] in ("installed", "running")
    assert reported["update_version"] == "1.1"
    assert root.read_json(root.state)["update_state"] == "running"
