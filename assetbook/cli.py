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
from assetbook.cli_common import add_home_argument, existing_home

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _duration(text: str) -> int:
    """'90s', '15m', '12h', '30d' → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return int(text[:-1]) * units[text[-1]]
        return int(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30d, 12h)") from None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``assetbook`` parser: every command, or only the one named ``command``.

    ``main`` builds only the command it runs: every command's parser imports the core's
    command modules (``cloud.mqtt.cli``, ``cloud.modules.cli``, and with them ``asyncio``),
    which a gateway (``gateway run``) would keep in memory for as long as it runs
    (docs/performance.md, "Gateway memory"). A ``command`` that names no command builds
    them all, so that the usage error lists every command.
    """

    def wanted(*names: str) -> bool:
        return command is None or command in names

    parser = argparse.ArgumentParser(
        prog="assetbook",
        description="AssetBook: IoT gateway and cloud core. "
        "Start with `assetbook core init`, then `assetbook core run`.",
    )
    parser.add_argument("--version", action="version", version=f"assetbook {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `assetbook --help` lists them.
    if wanted("core"):
        _add_core_commands(sub)
    if wanted("tenant"):
        _add_tenant_commands(sub)
    if wanted("gateway", "release"):
        gw_sub, g_run = _add_gateway_commands(sub)
    if wanted("token"):
        _add_token_commands(sub)
    if wanted("user"):
        _add_user_commands(sub)
    if wanted("gateway", "release"):
        from cloud.fleet.cli import add_commands as add_lifecycle_commands

        # prepare-boot, run (with enrolment and remote configuration), launch, config, release
        add_lifecycle_commands(sub, gw_sub, g_run, add_home_argument, _duration)
    if wanted("events"):
        _add_events_command(sub)
    if wanted("sim", "demo"):
        _add_sim_and_demo_commands(sub)
    if wanted("mqtt"):
        from cloud.mqtt.cli import add_parser as add_mqtt_parser

        add_mqtt_parser(sub)
    if wanted("logging", "access-log"):
        from cloud.modules.cli import add_parser as add_module_parsers

        add_module_parsers(sub)  # logging module, access-log verification
    if command is not None and command not in sub.choices:
        return build_parser()
    return parser


def _add_core_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    core = sub.add_parser("core", help="initialise and run the cloud core")
    core_sub = core.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = core_sub.add_parser(
        "init", help="create a core home: CA, TLS certificate, signing key, database"
    )
    add_home_argument(init)
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
    init.add_argument(
        "--http-port",
        type=int,
        default=8080,
        help="plain-HTTP port that redirects browsers to HTTPS and refuses API calls "
        "(8080; 0 turns it off)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing home")
    init.set_defaults(handler=_core_init)
    run = core_sub.add_parser("run", help="serve the link (WSS) and the REST API (HTTPS)")
    add_home_argument(run)
    run.set_defaults(handler=_core_run)
    _add_core_rotate_command(core_sub)


def _add_tenant_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenant = sub.add_parser("tenant", help="create and list tenants")
    tenant_sub = tenant.add_subparsers(dest="action", required=True, metavar="ACTION")
    t_create = tenant_sub.add_parser("create", help="create a tenant")
    add_home_argument(t_create)
    t_create.add_argument("name", help="tenant name: lowercase letters, digits, hyphens")
    t_create.set_defaults(handler=_tenant_create)
    t_list = tenant_sub.add_parser("list", help="list tenants")
    add_home_argument(t_list)
    t_list.set_defaults(handler=_tenant_list)
    _add_tenant_policy_command(tenant_sub)


def _add_gateway_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> tuple[argparse._SubParsersAction[argparse.ArgumentParser], argparse.ArgumentParser]:
    """``gateway create``, ``list`` and ``run`` (``cloud.fleet.cli`` adds the rest)."""
    gateway = sub.add_parser("gateway", help="provision, list and run gateways")
    gw_sub = gateway.add_subparsers(dest="action", required=True, metavar="ACTION")
    g_create = gw_sub.add_parser(
        "create",
        help="register a gateway and write its ready-to-use config folder "
        "(gateway.toml, its token, the CA to trust)",
    )
    add_home_argument(g_create)
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
    add_home_argument(g_list)
    g_list.add_argument("--tenant", required=True)
    g_list.set_defaults(handler=_gateway_list)
    g_run = gw_sub.add_parser(
        "run", help="run a gateway from its config file, or enrol it from a boot folder"
    )
    g_run.add_argument("--config", type=Path, help="the gateway.toml to run")
    return gw_sub, g_run


def _add_token_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="issue and revoke REST API tokens")
    tok_sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    k_create = tok_sub.add_parser(
        "create", help="issue a scoped REST API token; it is printed once"
    )
    add_home_argument(k_create)
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
    add_home_argument(k_revoke)
    k_revoke.add_argument("jti")
    k_revoke.set_defaults(handler=_token_revoke)


def _add_events_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_sim_and_demo_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser("sim", help="run a device simulator")
    sim_sub = sim.add_subparsers(dest="device", required=True, metavar="DEVICE")
    # Each simulator parses its own options (see `assetbook sim gps --help`).
    for name, (module, help_text) in SIMULATORS.items():
        device = sim_sub.add_parser(name, help=help_text, add_help=False)
        device.set_defaults(handler=_simulate, simulator=module, forwards_options=True)

    demo = sub.add_parser(
        "demo", help="run a whole system here: core, a simulated site, gateway; Ctrl-C stops it"
    )
    demo.add_argument(
        "--dir", type=Path, default=Path("demo-home"), help="where the demo keeps its files"
    )
    demo.add_argument("--rate", type=float, help="GPS fixes per second (default: the scenario's)")
    demo.add_argument(
        "--scenario", type=Path, help="site scenario file (default: the shipped site.toml)"
    )
    demo.set_defaults(handler=_demo)


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
        http_port=args.http_port,
    )
    print(f"core home ready in {home.root}")
    print(f"  CA to give gateways and API clients: {home.ca_cert}")
    print(f"next: assetbook core run --home {args.home}")
    return 0


def _core_run(args: argparse.Namespace) -> int:
    from cloud.app import serve_core

    home = existing_home(args.home)

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


def _tenant_create(args: argparse.Namespace) -> int:
    from cloud.registry import Registry

    with Registry(existing_home(args.home).db_path) as registry:
        tenant = registry.create_tenant(args.name)
    print(f"tenant {tenant.name} created")
    return 0


def _tenant_list(args: argparse.Namespace) -> int:
    from cloud.registry import Registry

    with Registry(existing_home(args.home).db_path) as registry:
        for tenant in registry.list_tenants():
            print(tenant.name)
    return 0


def _gateway_create(args: argparse.Namespace) -> int:
    from cloud.registry import issue_gateway_credentials
    from gateway.config import write_config

    home = existing_home(args.home)
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

    with Registry(existing_home(args.home).db_path) as registry:
        for gw in registry.list_gateways(args.tenant):
            state = "revoked" if gw.revoked else "active"
            seen = _when(gw.last_seen) if gw.last_seen else "never connected"
            print(f"{gw.gateway_id}\t{state}\t{seen}")
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from cloud.registry import issue_api_token

    token, claims = issue_api_token(
        existing_home(args.home), args.tenant, args.name, args.scopes, args.lifetime
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

    with Registry(existing_home(args.home).db_path) as registry:
        registry.revoke_token(args.jti)
    print(f"token {args.jti} revoked")
    return 0


# --- users and tenant policy (cloud.identity) ---------------------------------------------


def _add_user_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="create, list, disable and enable users")
    user_sub = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    u_create = user_sub.add_parser(
        "create",
        help="create a user; the password is read from a file or stdin, never the command "
        "line (without one the user sets it through a password reset)",
    )
    add_home_argument(u_create)
    u_create.add_argument("--tenant", required=True)
    u_create.add_argument("--email", required=True)
    u_create.add_argument("--name", required=True, help="the person's name")
    u_create.add_argument(
        "--role",
        default="viewer",
        choices=["viewer", "operator", "tenant_admin", "platform_admin"],
        help="(viewer)",
    )
    source = u_create.add_mutually_exclusive_group()
    source.add_argument("--password-file", type=Path, help="read the password from this file")
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    u_create.set_defaults(handler=_user_create)
    u_list = user_sub.add_parser("list", help="list a tenant's users (no secrets are shown)")
    add_home_argument(u_list)
    u_list.add_argument("--tenant", required=True)
    u_list.set_defaults(handler=_user_list)
    for action, helptext in (
        ("disable", "disable a user and end every session (its tokens are refused at once)"),
        ("enable", "enable a disabled user"),
    ):
        parser = user_sub.add_parser(action, help=helptext)
        add_home_argument(parser)
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--id", required=True, dest="user_id", help="the user id (u-...)")
        parser.set_defaults(handler=_user_disable, disable=action == "disable")


def _add_tenant_policy_command(
    tenant_sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    policy = tenant_sub.add_parser(
        "set-policy", help="choose and tune a tenant's password policy and login settings"
    )
    add_home_argument(policy)
    policy.add_argument("name", help="the tenant")
    policy.add_argument("--preset", choices=["seed", "nist"], help="start from this preset")
    policy.add_argument("--min-length", type=int, help="minimum password length (8..64)")
    policy.add_argument("--max-length", type=int, help="maximum password length (64..1024)")
    policy.add_argument(
        "--min-method",
        choices=["password", "password+totp", "passkey", "external"],
        help="weakest login method the tenant accepts",
    )
    policy.add_argument("--lockout-threshold", type=int, help="failures before a lock (1..100)")
    policy.add_argument("--lockout-window", type=_duration, help="window failures count in")
    policy.add_argument("--lockout-base", type=_duration, help="first lock's length")
    policy.add_argument("--show", action="store_true", help="only print the current settings")
    policy.set_defaults(handler=_tenant_set_policy)


def _add_core_rotate_command(
    core_sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    rotate = core_sub.add_parser(
        "rotate-secrets-key",
        help="add a new secrets-key version and re-seal every stored secret under it",
    )
    add_home_argument(rotate)
    rotate.set_defaults(handler=_core_rotate_secrets)


def _identity(home_path: Path) -> Any:
    from cloud.accesslog import open_access_log
    from cloud.home import CoreHome
    from cloud.identity.runtime import open_identity
    from cloud.registry import Registry
    from cloud.tokens import TokenIssuer

    home = CoreHome(home_path)
    registry = Registry(home.db_path)
    return open_identity(home, registry, TokenIssuer(home), open_access_log(home))


def _user_create(args: argparse.Namespace) -> int:
    password = None
    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").rstrip("\n")
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    identity = _identity(args.home)
    user = identity.service.create_user(args.tenant, args.email, args.name, args.role, password)
    print(f"user {user.user_id} ({user.email}, {user.role.value}) created in {args.tenant}")
    if password is None:
        print("no password set: the user sets one with a password reset", file=sys.stderr)
    return 0


def _user_list(args: argparse.Namespace) -> int:
    identity = _identity(args.home)
    identity.service.registry.get_tenant(args.tenant)
    for user in identity.store.list_users(args.tenant):
        state = "disabled" if user.disabled else "active"
        mfa = "totp" if user.totp_enabled else "-"
        print(f"{user.user_id}\t{user.email}\t{user.role.value}\t{state}\t{mfa}")
    return 0


def _user_disable(args: argparse.Namespace) -> int:
    identity = _identity(args.home)
    identity.service.set_disabled(args.tenant, args.user_id, args.disable)
    print(f"user {args.user_id} {'disabled' if args.disable else 'enabled'}")
    return 0


def _tenant_set_policy(args: argparse.Namespace) -> int:
    from cloud.identity.policy import make_policy
    from cloud.identity.roles import login_settings_from_dict

    identity = _identity(args.home)
    identity.service.registry.get_tenant(args.name)
    policy, login = identity.store.tenant_settings(args.name)
    if not args.show:
        values = policy.to_dict()
        preset = args.preset or values.pop("preset")
        if args.preset:
            values = {}
        for key in ("min_length", "max_length"):
            if getattr(args, key) is not None:
                values[key] = getattr(args, key)
        policy = make_policy(preset, **{k: v for k, v in values.items() if k != "preset"})
        login_values = login.to_dict()
        for key, arg in (
            ("min_method", "min_method"),
            ("lockout_threshold", "lockout_threshold"),
            ("lockout_window_s", "lockout_window"),
            ("lockout_base_s", "lockout_base"),
        ):
            if getattr(args, arg) is not None:
                login_values[key] = getattr(args, arg)
        login = login_settings_from_dict(login_values)
        identity.service.set_settings(args.name, policy, login)
    print(json.dumps({"password_policy": policy.to_dict(), "login": login.to_dict()}, indent=2))
    return 0


def _core_rotate_secrets(args: argparse.Namespace) -> int:
    from cloud.home import CoreHome
    from cloud.identity.keyring import add_key_version, load_keyring
    from cloud.identity.rotation import rewrap

    home = CoreHome(args.home)
    version = add_key_version(home.secrets_key)
    identity = _identity(args.home)
    report = rewrap(identity.store, load_keyring(home.secrets_key))
    print(f"secrets key version {version} active; {report.resealed} values re-sealed")
    if report.old_indexes:
        print(
            f"{report.old_indexes} personnummer indexes remain on older versions; keep those "
            "versions until the numbers are entered again (docs/security.md, Key rotation)"
        )
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


#: ``assetbook sim NAME`` runs ``main(argv)`` of the module.
SIMULATORS: dict[str, tuple[str, str]] = {
    "gps": ("simulators.gps", "NMEA 0183 GPS receiver on a pty"),
    "ble": ("simulators.ble", "BLE peripherals (BTHome, Ruuvi, beacons) on a private D-Bus"),
    "ble-gatt": ("simulators.ble.gatt", "BLE GATT sensors (Environmental Sensing) that notify"),
    "modbus": ("simulators.modbus", "Modbus RTU slaves with changing registers on a pty"),
    "node": ("simulators.node", "our MicroPython node firmware, run by micropython, on a pty"),
    "site": ("simulators.site", "a whole site from a scenario file: every simulator it lists"),
}


def _simulate(args: argparse.Namespace) -> int:
    import importlib

    status: int = importlib.import_module(args.simulator).main(args.extra)
    return status


def _demo(args: argparse.Namespace) -> int:
    from assetbook.demo import run_demo

    return run_demo(args.dir, rate=args.rate, scenario=args.scenario)


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
    words = sys.argv[1:] if argv is None else argv
    # The top-level options take no value: the first other word is the command.
    parser = build_parser(next((word for word in words if not word.startswith("-")), None))
    args, extra = parser.parse_known_args(words)
    if extra and not getattr(args, "forwards_options", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    del parser  # garbage from here on; `gateway run` would hold it for months
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
