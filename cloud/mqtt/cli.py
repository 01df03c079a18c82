"""``assetbook mqtt ...``: set up and run the broker, issue credentials, run a bridge.

:func:`add_parser` registers the subcommands on the main CLI; the handlers follow the main
CLI's rules (one-line errors, tokens printed once to stdout, never taken as arguments).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assetbook.cli_common import add_home_argument, existing_home
from cloud.errors import ConfigError

if TYPE_CHECKING:
    import argparse


def add_parser(sub: Any) -> None:
    """Add ``mqtt`` and its actions to the main parser's subparsers."""
    mqtt = sub.add_parser("mqtt", help="MQTT broker (Mosquitto), credentials and the bridge")
    actions = mqtt.add_subparsers(dest="action", required=True, metavar="ACTION")

    setup = actions.add_parser("setup", help="write the broker config and dynsec file")
    add_home_argument(setup)
    setup.add_argument("--listen", default="127.0.0.1", help="address the broker binds")
    setup.add_argument("--public-host", default="localhost", help="host clients connect to")
    setup.add_argument("--tls-port", type=int, default=8883, help="MQTT over TLS (8883)")
    setup.add_argument("--wss-port", type=int, default=8884, help="MQTT over WSS (8884)")
    setup.add_argument("--max-connections", type=int, default=1000)
    setup.add_argument("--max-packet-bytes", type=int, default=65536)
    setup.add_argument("--max-queued-messages", type=int, default=1000)
    setup.add_argument("--force", action="store_true", help="replace (drops every MQTT user)")
    setup.set_defaults(handler=_setup)

    broker = actions.add_parser("broker", help="run Mosquitto with the generated config")
    add_home_argument(broker)
    broker.set_defaults(handler=_broker)

    cred = actions.add_parser("credential", help="create, revoke and list MQTT credentials")
    cred_actions = cred.add_subparsers(dest="cred_action", required=True, metavar="ACTION")
    create = cred_actions.add_parser("create", help="issue a username and token (shown once)")
    add_home_argument(create)
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", required=True, help="credential name, e.g. line-3-sensors")
    create.add_argument(
        "--publish", action="append", default=[], help="pattern under t/<tenant>/, e.g. up/+"
    )
    create.add_argument(
        "--subscribe", action="append", default=[], help="pattern under t/<tenant>/, e.g. ev/#"
    )
    create.add_argument("--out", type=Path, help="write the token to this file (0600)")
    create.set_defaults(handler=_create)
    revoke = cred_actions.add_parser("revoke", help="disable and disconnect a credential")
    add_home_argument(revoke)
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(handler=_revoke)
    listing = cred_actions.add_parser("list", help="list a tenant's credentials")
    add_home_argument(listing)
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(handler=_list)

    bridge = actions.add_parser("bridge", help="run the MQTT bridge of one tenant")
    add_home_argument(bridge)
    bridge.add_argument("--tenant", required=True)
    bridge.set_defaults(handler=_bridge)


def _setup(args: argparse.Namespace) -> int:
    from cloud.mqtt.broker import BrokerSettings, setup_broker

    settings = BrokerSettings(
        host=args.listen,
        public_host=args.public_host,
        tls_port=args.tls_port,
        wss_port=args.wss_port,
        max_connections=args.max_connections,
        max_packet_bytes=args.max_packet_bytes,
        max_queued_messages=args.max_queued_messages,
    )
    paths = setup_broker(existing_home(args.home), settings, force=args.force)
    print(f"broker configured in {paths.root}")
    print(f"next: assetbook mqtt broker --home {args.home}")
    return 0


def _broker(args: argparse.Namespace) -> int:
    from cloud.mqtt.broker import BrokerPaths, load_settings

    home = existing_home(args.home)
    settings = load_settings(home)
    program = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )
    if program is None:
        raise ConfigError("mosquitto is not installed (apt-get install mosquitto)")
    print(
        f"broker: mqtts://{settings.public_host}:{settings.tls_port}  "
        f"wss://{settings.public_host}:{settings.wss_port}",
        flush=True,
    )
    os.execv(program, [program, "-c", str(BrokerPaths(home).config)])  # noqa: S606
    return 1  # not reached


def _create(args: argparse.Namespace) -> int:
    from cloud.mqtt.credentials import create_credential

    issued = create_credential(
        existing_home(args.home), args.tenant, args.name, args.publish, args.subscribe
    )
    c = issued.credential
    print(f"username {c.username}", file=sys.stderr)
    print(f"  publish   {' '.join(c.publish) or '-'}", file=sys.stderr)
    print(f"  subscribe {' '.join(c.subscribe) or '-'}", file=sys.stderr)
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(issued.token + "\n")
        print(f"token written to {args.out} (mode 0600); it is not shown again", file=sys.stderr)
    else:
        print("the token follows; it is not shown again", file=sys.stderr)
        print(issued.token)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from cloud.mqtt.credentials import revoke_credential

    credential = revoke_credential(existing_home(args.home), args.tenant, args.name)
    print(f"{credential.username} revoked and disconnected")
    return 0


def _list(args: argparse.Namespace) -> int:
    from cloud.mqtt.credentials import list_credentials

    for c in list_credentials(existing_home(args.home), args.tenant):
        created = datetime.fromtimestamp(c.created_at, tz=UTC).strftime("%Y-%m-%d %H:%M")
        state = "revoked" if c.revoked else "active"
        print(
            f"{c.username:30} {state:8} created {created}  "
            f"pub {' '.join(c.publish) or '-'}  sub {' '.join(c.subscribe) or '-'}"
        )
    return 0


def _bridge(args: argparse.Namespace) -> int:
    from cloud.mqtt.bridge import Bridge
    from cloud.mqtt.provision import bridge_config

    config = bridge_config(existing_home(args.home), args.tenant)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await Bridge(config).run()

    print(f"bridge for tenant {args.tenant} starting", flush=True)
    asyncio.run(main())
    print("bridge stopped", flush=True)
    return 0
