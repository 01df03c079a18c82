"""``assetbook logging run`` and ``assetbook access-log verify``.

:func:`add_parser` registers both on the main CLI; the handlers follow its rules (one-line
errors, exit 2 for usage problems and 1 for failures, tokens never on the command line or in
output).

``logging run`` issues the module a fresh link token from the home (the operator running it
has the home, like every ``assetbook`` admin command), keeps it in memory only, and revokes it
when the module stops, so a stopped module leaves no live credential behind.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from assetbook.cli_common import add_home_argument, existing_home

if TYPE_CHECKING:
    import argparse

EXIT_BROKEN = 1


def add_parser(sub: Any) -> None:
    """Add ``logging`` and ``access-log`` to the main parser's subparsers."""
    logging_cmd = sub.add_parser("logging", help="the logging module (its own process)")
    logging_actions = logging_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = logging_actions.add_parser(
        "run", help="connect to the running core and log every event the module may see"
    )
    add_home_argument(run)
    run.add_argument("--tenant", required=True, help="the tenant whose events are logged")
    run.add_argument("--module-id", default="logging", help="the module's id (default: logging)")
    run.add_argument(
        "--subscribe",
        action="append",
        default=[],
        help="topic pattern to log (repeatable; default: # = everything in the tenant)",
    )
    run.add_argument(
        "--out", type=Path, help="output file (default: <home>/logs/logging-<tenant>.jsonl)"
    )
    run.set_defaults(handler=_logging_run)

    access = sub.add_parser("access-log", help="check the tamper-evident access log")
    access_actions = access.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = access_actions.add_parser(
        "verify",
        help="check the hash chain through rotated files; exit 0 if intact, 1 at the first "
        "broken line",
    )
    add_home_argument(verify)
    verify.set_defaults(handler=_access_log_verify)


def _access_log_verify(args: argparse.Namespace) -> int:
    from cloud.accesslog import load_chain_key, verify_log
    from cloud.auditchain import ChainBroken

    home = existing_home(args.home)
    key = load_chain_key(home)
    try:
        report = verify_log(home.access_log, key)
    except ChainBroken as exc:
        print(f"access log BROKEN at {exc.where}: {exc.reason}")
        return EXIT_BROKEN
    start = (
        "from the first record"
        if report.starts_at_genesis
        else (f"from record {report.first_seq} (older files were removed)")
    )
    print(f"access log ok: {report.records} records, chain intact {start} to {report.last.seq}")
    return 0


def _logging_run(args: argparse.Namespace) -> int:
    from cloud.home import load_config
    from cloud.modules.logging_module import LoggingModuleConfig, run_logging_module
    from cloud.pki import client_ssl_context
    from cloud.registry import Registry, issue_module_token

    home = existing_home(args.home)
    patterns = tuple(args.subscribe) or ("#",)
    token, claims = issue_module_token(home, args.tenant, args.module_id, [], list(patterns))
    out = args.out or home.logs_dir / f"logging-{args.tenant}.jsonl"
    config = LoggingModuleConfig(
        link_url=load_config(home).link_url,
        ssl_context=client_ssl_context(home.ca_cert),
        token=token,
        patterns=patterns,
        out=out,
        module_id=args.module_id,
    )

    async def main() -> None:
        stop = trio.Event()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    async for _ in signals:
                        stop.set()

                nursery.start_soon(watch)
                await nursery.start(run_logging_module, config, stop)
                print(f"logging module ready: {' '.join(patterns)} -> {out}", flush=True)
                await stop.wait()
                nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        with Registry(home.db_path) as registry:  # no live credential outlives the module
            registry.revoke_token(claims["jti"])
    print("logging module stopped", flush=True)
    sys.stdout.flush()
    return 0
