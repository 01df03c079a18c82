"""The ``assetbook sim ble`` command: argument parsing and the asyncio main loop.

See :mod:`simulators.ble` for what it runs and its stdin fault commands. It is an asyncio
program because the mock BlueZ it hosts is one; nothing here runs inside the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulators.ble.bus import start_private_bus
from simulators.ble.mock import start_mock, stop_reporting
from simulators.ble.peripherals import ADDRESSES, KINDS, Peripheral

if TYPE_CHECKING:
    from collections.abc import Sequence

SCANNER_ADDRESS = "00:AB:00:00:00:00"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="assetbook sim ble", description=__doc__)
    parser.add_argument("--bus", help="use this D-Bus address instead of a private bus")
    parser.add_argument(
        "--devices", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}"
    )
    parser.add_argument("--period", type=float, default=1.0, help="advert period, s (1)")
    parser.add_argument("--bthome-key", help="32 hex digits: encrypt BTHome adverts")
    parser.add_argument("--stall-after", type=float, help="stop reporting after S seconds")
    parser.add_argument("--commands", action="store_true", help="read fault commands on stdin")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until interrupted (or stdin closes with ``--commands``)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    kinds = [k for k in args.devices.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        print(f"error: unknown device kind(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    key = bytes.fromhex(args.bthome_key) if args.bthome_key else None
    with tempfile.TemporaryDirectory(prefix="ble-sim-") as tmp, contextlib.ExitStack() as stack:
        address = args.bus
        if address is None:
            address = stack.enter_context(start_private_bus(Path(tmp))).address
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        print(f"DBUS_SYSTEM_BUS_ADDRESS={address}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run(kinds, key, args))
    return 0


async def _run(kinds: list[str], key: bytes | None, args: argparse.Namespace) -> None:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    mock = await start_mock([SCANNER_ADDRESS] + [ADDRESSES[k] for k in kinds], 1)
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    devices = {k: Peripheral(bus, k, i + 1, key) for i, k in enumerate(kinds)}
    for device in devices.values():
        await device.show()
    print("ready", flush=True)
    commands: asyncio.Queue[str | None] = asyncio.Queue()
    if args.commands:
        _read_stdin(asyncio.get_running_loop(), commands)
    loop = asyncio.get_running_loop()
    stall_at = None if args.stall_after is None else loop.time() + args.stall_after
    while True:
        with contextlib.suppress(TimeoutError):
            line = await asyncio.wait_for(commands.get(), args.period)
            if line is None:
                return
            await _command(line, mock, devices)
            continue
        if stall_at is not None and loop.time() >= stall_at:
            stall_at = None
            stop_reporting(mock)
        for device in devices.values():
            await device.step()


async def _command(line: str, mock: Any, devices: dict[str, Peripheral]) -> None:
    words = line.split()
    match words:
        case ["stall"]:
            print(f"stalled {stop_reporting(mock)}", flush=True)
        case ["hide", kind] if kind in devices:
            await devices[kind].hide()
            print(f"hidden {kind}", flush=True)
        case ["show", kind] if kind in devices:
            await devices[kind].show()
            print(f"shown {kind}", flush=True)
        case ["corrupt", kind, count] if kind in devices and count.isdigit():
            devices[kind].corrupt_next = int(count)
            print(f"corrupting {kind} {count}", flush=True)
        case _:
            print(f"error: unknown command {line.strip()!r}", flush=True)


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="ble-sim-stdin", daemon=True).start()
