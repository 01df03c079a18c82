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
    from collections.abc import Coroutine, Sequence

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
            await _answer(_command(line, mock, devices), line)
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


async def _answer(command: Coroutine[Any, Any, None], line: str) -> None:
    """Run one fault command; a refusal from the mock is answered, not fatal."""
    # A tester's command that the mock BlueZ refuses (a D-Bus error) must not end the
    # simulator: its private bus would go with it and every device would vanish.
    try:
        await command
    except Exception as exc:
        print(f"error: {line.strip()!r} failed: {exc}", flush=True)


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    def reader() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="ble-sim-stdin", daemon=True).start()


# --- assetbook sim ble-gatt -----------------------------------------------------------------


def parse_gatt_args(argv: Sequence[str]) -> argparse.Namespace:
    from simulators.ble import gatt

    parser = argparse.ArgumentParser(
        prog="assetbook sim ble-gatt",
        description=gatt.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bus", help="use this D-Bus address instead of a private bus")
    parser.add_argument("--count", type=int, default=1, help="how many sensors (1)")
    parser.add_argument(
        "--addresses", help="comma list of sensor addresses (default C0:FF:EE:00:10:01, ...)"
    )
    parser.add_argument("--period", type=float, default=1.0, help="notification period, s (1)")
    parser.add_argument("--commands", action="store_true", help="read fault commands on stdin")
    return parser.parse_args(list(argv))


def gatt_main(argv: Sequence[str] | None = None) -> int:
    """Run the GATT simulator until interrupted (or stdin closes with ``--commands``)."""
    from simulators.ble.gatt import address_of

    args = parse_gatt_args(sys.argv[1:] if argv is None else argv)
    if args.addresses:
        addresses = [a.strip().upper() for a in args.addresses.split(",") if a.strip()]
    else:
        addresses = [address_of(i) for i in range(args.count)]
    if not addresses or len(set(addresses)) != len(addresses) or SCANNER_ADDRESS in addresses:
        print("error: give one or more distinct sensor addresses", file=sys.stderr)
        return 2
    with (
        tempfile.TemporaryDirectory(prefix="ble-gatt-sim-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        address = args.bus
        if address is None:
            address = stack.enter_context(start_private_bus(Path(tmp))).address
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        print(f"DBUS_SYSTEM_BUS_ADDRESS={address}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run_gatt(addresses, args))
    return 0


async def _run_gatt(addresses: list[str], args: argparse.Namespace) -> None:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    from simulators.ble.gatt import run_gatt_peripheral

    mock = await start_mock([SCANNER_ADDRESS, *addresses], 1)
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    sensors: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        for i, address in enumerate(addresses):
            ready = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(
                run_gatt_peripheral(
                    bus, address, i + 1, index=i, period_s=args.period, on_ready=ready.set_result
                )
            )
            tasks.append(task)
            # A sensor that fails to register ends the wait with its error.
            await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            sensors.append(ready.result())
        print("ready", flush=True)
        commands: asyncio.Queue[str | None] = asyncio.Queue()
        if args.commands:
            _read_stdin(asyncio.get_running_loop(), commands)
        while (line := await commands.get()) is not None:
            await _answer(_gatt_command(line, mock, sensors), line)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _gatt_command(line: str, mock: Any, sensors: list[Any]) -> None:
    from simulators.ble.mock import stop_notifications
    from simulators.ble.peripherals import call

    words = line.split()
    index = int(words[1]) if len(words) > 1 and words[1].isdigit() else -1
    sensor = sensors[index] if 0 <= index < len(sensors) else None
    count = int(words[2]) if len(words) > 2 and words[2].isdigit() else None
    match words[:1]:
        case ["stall"]:
            print(f"stalled {stop_notifications(mock)}", flush=True)
        case ["hide"] if sensor is not None:
            await sensor.hide()
            print(f"hidden {index}", flush=True)
        case ["show"] if sensor is not None:
            await sensor.show()
            print(f"shown {index}", flush=True)
        case ["drop"] if sensor is not None:
            device = f"/org/bluez/hci0/dev_{sensor.address.replace(':', '_')}"
            await call(sensor.bus, device, "org.bluez.Device1", "Disconnect", "", [], check=False)
            print(f"dropped {index}", flush=True)
        case ["corrupt"] if sensor is not None and count is not None:
            sensor.corrupt_next = count
            print(f"corrupting {index} {count}", flush=True)
        case ["freeze"] if sensor is not None:
            sensor.freeze()
            print(f"frozen {index}", flush=True)
        case ["thaw"] if sensor is not None:
            sensor.thaw()
            print(f"thawed {index}", flush=True)
        case ["unknown"] if sensor is not None and count is not None:
            sensor.unknown_next = count
            print(f"unknown {index} {count}", flush=True)
        case _:
            print(f"error: unknown command {line.strip()!r}", flush=True)
