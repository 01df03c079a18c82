"""The lifecycle commands of ``assetbook``: prepare-boot, gateway run/launch, config, releases.

:func:`add_commands` adds them to the parser built by :mod:`assetbook.cli`; the handlers
follow its rules (one-line errors, secrets never on the command line or in output other than
where they are meant to go).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from assetbook.cli_common import existing_home

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    gw_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    g_run: argparse.ArgumentParser,
    home_arg: Callable[[argparse.ArgumentParser], None],
    duration: Callable[[str], int],
) -> None:
    prep = gw_sub.add_parser(
        "prepare-boot",
        help="write a board's first-boot files (core address, CA, one-time enrolment code) "
        "into its mounted boot folder",
    )
    home_arg(prep)
    prep.add_argument("--tenant", required=True)
    prep.add_argument("--id", required=True, dest="gateway_id")
    prep.add_argument("--boot", type=Path, required=True, help="the mounted boot folder")
    prep.add_argument(
        "--code-lifetime", type=duration, default=duration("72h"), help="e.g. 2h, 3d (72h)"
    )
    prep.set_defaults(handler=_prepare_boot)

    g_run.add_argument("--boot", type=Path, help="boot folder to enrol from on first start")
    g_run.add_argument("--data-dir", type=Path, help="the gateway's own folder (with --boot)")
    g_run.add_argument(
        "--device-key",
        type=Path,
        help="with --boot: a TOML file whose [device_key] section says where to create the "
        "device key (e.g. a PKCS#11 token); default: a file in --data-dir",
    )
    g_run.add_argument("--install-root", type=Path, help="side-by-side install (updates)")
    g_run.set_defaults(handler=_gateway_run)

    launch = gw_sub.add_parser(
        "launch",
        help="start <install-root>/current and roll back a new version that does not come "
        "up healthy; arguments after -- go to the gateway",
    )
    launch.add_argument("--install-root", type=Path, required=True)
    launch.add_argument("--trial", type=float, default=120.0, help="seconds to get healthy")
    launch.set_defaults(handler=_launch, forwards_options=True)

    config = gw_sub.add_parser("config", help="set and show desired configuration")
    config_sub = config.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    c_set = config_sub.add_parser("set", help="store a new desired configuration (JSON file)")
    home_arg(c_set)
    c_set.add_argument("--tenant", required=True)
    c_set.add_argument("--id", required=True, dest="gateway_id")
    c_set.add_argument("file", type=Path, help="JSON: log_level, sensors, uplink, ...")
    c_set.set_defaults(handler=_config_set)
    c_show = config_sub.add_parser(
        "show", help="desired version and what each gateway reports (version, refusals)"
    )
    home_arg(c_show)
    c_show.add_argument("--tenant", required=True)
    c_show.add_argument("--id", dest="gateway_id", help="one gateway (default: all)")
    c_show.set_defaults(handler=_config_show)

    release = sub.add_parser("release", help="build, publish and roll out signed updates")
    rel_sub = release.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = rel_sub.add_parser("build", help="sign a folder into an update bundle")
    home_arg(build)
    build.add_argument("--version", required=True, dest="release_version")
    build.add_argument("--source", type=Path, required=True, help="folder to pack")
    build.add_argument("--entry", default="bin/assetbook-gateway", help="program to start")
    build.add_argument("--out", type=Path, required=True)
    build.set_defaults(handler=_release_build)
    publish = rel_sub.add_parser("publish", help="make a bundle downloadable by gateways")
    home_arg(publish)
    publish.add_argument("bundle", type=Path)
    publish.set_defaults(handler=_release_publish)
    rollout = rel_sub.add_parser(
        "rollout", help="roll a published version out to a percentage of a tenant's gateways"
    )
    home_arg(rollout)
    rollout.add_argument("--tenant", required=True)
    rollout.add_argument("--version", required=True, dest="release_version")
    rollout.add_argument("--percent", type=int, required=True, help="0..100")
    rollout.add_argument("--force", action="store_true", help="allow going backwards")
    rollout.set_defaults(handler=_release_rollout)


def _prepare_boot(args: argparse.Namespace) -> int:
    from cloud.enrolment import Enrolment
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer
    from gateway.enrol import write_boot_folder

    home = existing_home(args.home)
    with Registry(home.db_path) as registry:
        enrolment = Enrolment(home, registry, TokenIssuer(home))
        try:
            info = enrolment.create_code(args.tenant, args.gateway_id, args.code_lifetime)
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
    folder = write_boot_folder(args.boot, document, info.ca_pem)
    print(f"boot files for {args.gateway_id} written to {folder}")
    print(f"  the enrolment code works once, until {_when(info.expires_at)}")
    print("next, on the board: assetbook gateway run --boot <boot folder> --data-dir <folder>")
    return 0


def _gateway_run(args: argparse.Namespace) -> int:
    from assetbook.cli import _run_until_signal, _UsageError
    from gateway.config import load_device_key_config
    from gateway.enrol import enrol
    from gateway.remote_config import ManagedGateway

    if args.config is None and (args.boot is None or args.data_dir is None):
        raise _UsageError("give --config FILE, or --boot FOLDER and --data-dir FOLDER")
    managed: list[ManagedGateway] = []

    async def main(stop: trio.Event) -> None:
        config = args.config
        if config is None:
            device_key = load_device_key_config(args.device_key) if args.device_key else None
            config = await enrol(args.boot, args.data_dir, device_key)
        gateway = ManagedGateway(config, install_root=args.install_root)
        managed.append(gateway)
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run, stop)
            print(f"gateway running from {config}", flush=True)

    _run_until_signal(main)
    print("gateway stopped", flush=True)
    return managed[0].exit_code if managed else 0


def _launch(args: argparse.Namespace) -> int:
    from gateway.update import InstallRoot, launch

    forwarded = [a for a in args.extra if a != "--"]
    return launch(InstallRoot(args.install_root), forwarded, trial_s=args.trial)


def _config_set(args: argparse.Namespace) -> int:
    from cloud.fleet.store import FleetStore
    from cloud.registry import Registry

    home = existing_home(args.home)
    document = json.loads(args.file.read_text())
    with Registry(home.db_path) as registry, FleetStore(home.db_path) as store:
        registry.get_gateway(args.tenant, args.gateway_id)
        desired = store.set_config(args.tenant, args.gateway_id, document)
    print(f"gateway {args.gateway_id}: desired configuration version {desired.version}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    from cloud.fleet.store import FleetStore
    from cloud.registry import Registry

    home = existing_home(args.home)
    with Registry(home.db_path) as registry, FleetStore(home.db_path) as store:
        ids = (
            [args.gateway_id]
            if args.gateway_id
            else [g.gateway_id for g in registry.list_gateways(args.tenant)]
        )
        for gateway_id in ids:
            desired = store.desired_config(args.tenant, gateway_id)
            reported, at = store.reported(args.tenant, gateway_id)
            line: dict[str, Any] = {
                "gateway": gateway_id,
                "desired_version": desired.version if desired else None,
                "reported_at": _when(at) if at else None,
                **reported,
            }
            print(json.dumps(line, sort_keys=True))
    return 0


def _release_build(args: argparse.Namespace) -> int:
    from cloud.fleet.bundle import build_bundle, load_or_create_release_key

    key = load_or_create_release_key(existing_home(args.home))
    manifest = build_bundle(
        args.out, key, version=args.release_version, source=args.source, entry=args.entry
    )
    print(f"bundle {args.out}: version {manifest.version}, {len(manifest.files)} files, signed")
    return 0


def _release_publish(args: argparse.Namespace) -> int:
    from cloud.fleet.releases import publish
    from cloud.fleet.store import FleetStore

    home = existing_home(args.home)
    with FleetStore(home.db_path) as store:
        release = publish(home, store, args.bundle)
    print(f"release {release.version} published (sha256 {release.sha256})")
    return 0


def _release_rollout(args: argparse.Namespace) -> int:
    from cloud.fleet.store import FleetStore

    home = existing_home(args.home)
    with FleetStore(home.db_path) as store:
        rollout = store.start_rollout(
            args.tenant, args.release_version, args.percent, force=args.force
        )
    print(f"rollout of {rollout.version} to {rollout.percent}% of {args.tenant}", file=sys.stderr)
    return 0


def _when(timestamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")
