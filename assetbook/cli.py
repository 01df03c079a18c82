"""The ``assetbook`` command line: one command, a subcommand per task.

Every subcommand has ``--help``. Errors are one line on stderr that says what to do next, with
exit status 2 for a usage or input problem and 1 for a failure at run time. Secrets are never
taken as command-line arguments (other users can read them in the process list): tokens are
read from files or the ``ASSETBOOK_TOKEN`` environment variable, and a newly issued token is
printed once, to stdout only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from assetbook import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _home_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("ASSETBOOK_HOME", "assetbook-home")),
        help="the core's home directory (default: $ASSETBOOK_HOME or ./assetbook-home)",
    )


def _duration(text: str) -> int:
    """'90s', '15m', '12h', '30d' → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30d, 12h)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assetbook",
        description="AssetBook: IoT gateway and cloud core. "
        "Start with `assetbook core init`, then `assetbook core run`.",
    )
    parser.add_argument("--version", action="version", version=f"assetbook {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # core
    core = sub.add_parser("core", help="initialise and run the cloud core")
    core_sub = core.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = core_sub.add_parser(
        "init", help="create a core home: CA, TLS certificate, signing key, database"
    )
    _home_arg(init)
    init.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help="a name or address the certificate covers (repeatable; default: localhost, "
        "127.0.0.1, ::1)",
    )
    init.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    init.add_argument("--link-port", type=int, default=8444, help="WSS link port (8444)")
    init.add_argument("--rest-port", type=int, default=8443, help="HTTPS REST port (8443)")
    init.add_argument("--force", action="store_true", help="replace an existing home")
    init.set_defaults(handler=_core_init)
    run = core_sub.add_parser("run", help="serve the link (WSS) and the REST API (HTTPS)")
    _home_arg(run)
    run.set_defaults(handler=_core_run)

    # tenant
    tenant = sub.add_parser("tenant", help="create and list tenants")
    tenant_sub = tenant.add_subparsers(dest="action", required=True, metavar="ACTION")
    t_create = tenant_sub.add_parser("create", help="create a tenant")
    _home_arg(t_create)
    t_create.add_argument("name", help="tenant name: lowercase letters, digits, hyphens")
    t_create.set_defaults(handler=_tenant_create)
    t_list = tenant_sub.add_parser("list", help="list tenants")
    _home_arg(t_list)
    t_list.set_defaults(handler=_tenant_list)

    # gateway
    gateway = sub.add_parser("gateway", help="provision, list and run gateways")
    gw_sub = gateway.add_subparsers(dest="action", required=True, metavar="ACTION")
    g_create = gw_sub.add_parser(
        "create",
        help="register a gateway and write its ready-to-use config folder "
        "(gateway.toml, its token, the CA to trust)",
    )
    _home_arg(g_create)
    g_create.add_argument("--tenant", required=True, help="the gateway's tenant")
    g_create.add_argument("--id", required=True, dest="gateway_id", help="the gateway id")
    g_create.add_argument(
        "--out", type=Path, required=True, help="folder to write the gateway's config into"
    )
    g_create.add_argument(
        "--gps-port",
        help="add an NMEA GPS sensor on this serial port (e.g. /dev/ttyUSB0)",
    )
    g_create.set_defaults(handler=_gateway_create)
    g_list = gw_sub.add_parser("list", help="list a tenant's gateways")
    _home_arg(g_list)
    g_list.add_argument("--tenant", required=True)
    g_list.set_defaults(handler=_gateway_list)
    g_run = gw_sub.add_parser("run", help="run a gateway from its config file")
    g_run.add_argument("--config", type=Path, required=True, help="the gateway.toml to run")
    g_run.set_defaults(handler=_gateway_run)

    # token
    token = sub.add_parser("token", help="issue and revoke REST API tokens")
    tok_sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    k_create = tok_sub.add_parser(
        "create", help="issue a scoped REST API token; it is printed once"
    )
    _home_arg(k_create)
    k_create.add_argument("--tenant", required=True)
    k_create.add_argument("--name", required=True, help="what the token is for, e.g. grafana")
    k_create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        required=True,
        help="a REST scope such as events:read (repeatable)",
    )
    k_create.add_argument(
        "--lifetime", type=_duration, default=_duration("30d"), help="e.g. 12h, 30d (30d)"
    )
    k_create.add_argument(
        "--out", type=Path, help="write the token to this file (mode 0600) instead of stdout"
    )
    k_create.set_defaults(handler=_token_create)
    k_revoke = tok_sub.add_parser("revoke", help="revoke a token by its id (jti)")
    _home_arg(k_revoke)
    k_revoke.add_argument("jti")
    k_revoke.set_defaults(handler=_token_revoke)

    # events
    events = sub.add_parser("events", help="read stored events over the REST API")
    events.add_argument("--url", default="https://localhost:8443", help="the core's REST URL")
    events.add_argument("--ca", type=Path, help="CA certificate to trust (the core's tls/ca.pem)")
    events.add_argument(
        "--token-file", type=Path, help="file holding the API token (or set ASSETBOOK_TOKEN)"
    )
    events.add_argument("--device")
    events.add_argument("--gateway")
    events.add_argument("--limit", type=int, default=100)
    events.add_argument("--all", action="store_true", help="follow every page")
    events.set_defaults(handler=_events)

    # simulators and demo
    sim = sub.add_parser("sim", help="run a device simulator")
    sim_sub = sim.add_subparsers(dest="device", required=True, metavar="DEVICE")
    # The simulator parses its own options (see `assetbook sim gps --help`).
    gps = sim_sub.add_parser("gps", help="NMEA 0183 GPS on a pty", add_help=False)
    gps.set_defaults(handler=_sim_gps, forwards_options=True)

    demo = sub.add_parser(
        "demo", help="run a whole system here: core, simulated GPS, gateway; Ctrl-C stops it"
    )
    demo.add_argument(
        "--dir", type=Path, default=Path("demo-home"), help="where the demo keeps its files"
    )
    demo.add_argument("--rate", type=float, default=2.0, help="GPS fixes per second")
    demo.set_defaults(handler=_demo)
    return parser


# --- core ---------------------------------------------------------------------------------


def _core_init(args: argparse.Namespace) -> int:
    from cloud.home import DEFAULT_HOSTS, init_home

    hosts = tuple(args.hosts) if args.hosts else DEFAULT_HOSTS
    home = init_home(
        args.home,
        hosts=hosts,
        listen_host=args.listen,
        link_port=args.link_port,
        rest_port=args.rest_port,
        force=args.force,
    )
    print(f"core home ready in {home.root}")
    print(f"  CA to give gateways and API clients: {home.ca_cert}")
    print(f"next: assetbook core run --home {args.home}")
    return 0


def _core_run(args: argparse.Namespace) -> int:
    from cloud.app import serve_core

    home = _home(args.home)

    async def main(stop: trio.Event) -> None:
        async def announce(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            endpoints = await nursery.start(serve_core, home, stop)
            print(f"core ready: link {endpoints.link_url}  REST {endpoints.rest_url}", flush=True)
            task_status.started()

        async with trio.open_nursery() as nursery:
            await nursery.start(announce)

    _run_until_signal(main)
    print("core stopped", flush=True)
    return 0


# --- tenants, gateways, tokens ------------------------------------------------------------


def _home(path: Path) -> Any:
    """The core home at ``path``, which must have been initialised."""
    from cloud.home import CoreHome

    home = CoreHome(path)
    if not home.config_path.exists():
        raise _UsageError(
            f"{path} is not a core home: create one with `assetbook core init --home {path}` "
            "or point --home (or $ASSETBOOK_HOME) at an existing one"
        )
    return home


def _tenant_create(args: argparse.Namespace) -> int:
    from cloud.registry import Registry

    with Registry(_home(args.home).db_path) as registry:
        tenant = registry.create_tenant(args.name)
    print(f"tenant {tenant.name} created")
    return 0


def _tenant_list(args: argparse.Namespace) -> int:
    from cloud.registry import Registry

    with Registry(_home(args.home).db_path) as registry:
        for tenant in registry.list_tenants():
            print(tenant.name)
    return 0


def _gateway_create(args: argparse.Namespace) -> int:
    from cloud.registry import issue_gateway_credentials
    from gateway.config import write_config

    home = _home(args.home)
    credentials = issue_gateway_credentials(home, args.tenant, args.gateway_id)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    (out / "ca.pem").write_bytes(credentials.ca_pem)
    token_path = out / "gateway.token"
    _write_secret(token_path, credentials.token)
    sensors: list[dict[str, Any]] = []
    if args.gps_port:
        sensors.append(
            {"kind": "nmea-gps", "name": "gps-1", "device": "gps-1", "port": args.gps_port}
        )
    write_config(
        out / "gateway.toml",
        gateway_id=args.gateway_id,
        tenant=args.tenant,
        url=credentials.link_url,
        token_file=token_path.name,
        ca_file="ca.pem",
        data_dir="./data",
        sensors=sensors,
    )
    print(f"gateway {args.gateway_id} registered in tenant {args.tenant}")
    print(f"  config: {out / 'gateway.toml'} (token in {token_path}, mode 0600)")
    print(f"  token id: {credentials.token_id}")
    print(f"next: assetbook gateway run --config {out / 'gateway.toml'}")
    return 0


def _gateway_list(args: argparse.Namespace) -> int:
    from cloud.registry import Registry

    with Registry(_home(args.home).db_path) as registry:
        for gw in registry.list_gateways(args.tenant):
            state = "revoked" if gw.revoked else "active"
            seen = _when(gw.last_seen) if gw.last_seen else "never connected"
            print(f"{gw.gateway_id}\t{state}\t{seen}")
    return 0


def _gateway_run(args: argparse.Namespace) -> int:
    from gateway.app import Gateway
    from gateway.config import load_config

    config = load_config(args.config)
    logging.getLogger().setLevel(config.gateway.log_level.upper())
    for warning in config.warnings:
        logging.getLogger("gateway").warning("%s", warning)
    gateway = Gateway(config)

    async def main(stop: trio.Event) -> None:
        async def announce(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            await nursery.start(gateway.run, stop)
            print(f"gateway {config.gateway.id} running; uplink {config.uplink.url}", flush=True)
            task_status.started()

        async with trio.open_nursery() as nursery:
            await nursery.start(announce)

    _run_until_signal(main)
    print("gateway stopped", flush=True)
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from cloud.registry import issue_api_token

    token, claims = issue_api_token(
        _home(args.home), args.tenant, args.name, args.scopes, args.lifetime
    )
    print(f"token id {claims['jti']}, scopes {' '.join(args.scopes)}", file=sys.stderr)
    if args.out:
        _write_secret(args.out, token)
        print(f"token written to {args.out} (mode 0600); it is not shown again", file=sys.stderr)
    else:
        print("the token follows; it is not shown again", file=sys.stderr)
        print(token)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from cloud.registry import Registry

    with Registry(_home(args.home).db_path) as registry:
        registry.revoke_token(args.jti)
    print(f"token {args.jti} revoked")
    return 0


# --- events -------------------------------------------------------------------------------


def _events(args: argparse.Namespace) -> int:
    import httpx

    token = _read_token(args.token_file)
    verify: Any = str(args.ca) if args.ca else True
    params: dict[str, Any] = {"limit": args.limit}
    for key in ("device", "gateway"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.url, verify=verify, headers=headers, timeout=30) as client:
        while True:
            try:
                response = client.get("/api/v1/events", params=params)
            except httpx.HTTPError as exc:
                print(
                    f"error: cannot reach the core at {args.url}: {exc}. Is `assetbook core "
                    "run` running, and is --ca the core's tls/ca.pem?",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            if response.status_code != 200:
                body = response.json() if response.content else {}
                print(
                    f"error: HTTP {response.status_code}: {body.get('message', response.text)}",
                    file=sys.stderr,
                )
                return EXIT_FAILURE
            page = response.json()
            for event in page["events"]:
                print(json.dumps(event, sort_keys=True))
            if not args.all or not page["next_cursor"]:
                return 0
            params["cursor"] = page["next_cursor"]


def _read_token(path: Path | None) -> str:
    if path is not None:
        return path.read_text().strip()
    token = os.environ.get("ASSETBOOK_TOKEN", "").strip()
    if not token:
        raise _UsageError("give --token-file FILE or set ASSETBOOK_TOKEN")
    return token


# --- simulators and demo ------------------------------------------------------------------


def _sim_gps(args: argparse.Namespace) -> int:
    from simulators.gps import main as gps_main

    return gps_main(args.extra)


def _demo(args: argparse.Namespace) -> int:
    from assetbook.demo import run_demo

    return run_demo(args.dir, rate=args.rate)


# --- plumbing -----------------------------------------------------------------------------


def _when(timestamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


class _UsageError(Exception):
    pass


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    os.chmod(path, 0o600)


def _run_until_signal(main: Callable[[trio.Event], Any]) -> None:
    """Run ``main(stop)``; SIGINT or SIGTERM sets ``stop`` for an orderly shutdown."""

    async def runner() -> None:
        stop = trio.Event()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for _ in signals:
                        stop.set()

                nursery.start_soon(watch)
                await main(stop)
                nursery.cancel_scope.cancel()

    trio.run(runner)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "forwards_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    from cloud.errors import CloudError
    from drivers.errors import DriverError
    from gateway.errors import GatewayError

    try:
        result: int = args.handler(args)
    except Exception as exc:
        # Errors raised inside Trio nurseries arrive wrapped in exception groups.
        error = _first_leaf(exc)
        if isinstance(error, _UsageError | CloudError | GatewayError | DriverError):
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        if isinstance(error, OSError):
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILURE
        raise
    return result


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
