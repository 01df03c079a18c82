"""Simulated Modbus RTU slaves on a pty: several slave ids on one bus, registers that change.

Every slave has the same register map, with values that depend on its id and on a tick
that advances every ``--step-s`` seconds (so a tester can predict and check them):

======== ========= ======= ======================================== ==========================
function address  type    value                                    suggested point
======== ========= ======= ======================================== ==========================
4        0-1      float32 230 + (tick mod 8) / 2, high word first  voltage, V
4        2        int16   (tick mod 50) - 25 + 200 (tenths)        temp, Cel, scale 0.1
3        10-11    uint32  1000 * slave + tick, low word first      energy, Wh-count
3        20       uint16  the slave id                             id
======== ========= ======= ======================================== ==========================

Other addresses give exception 2 (illegal data address), other functions exception 1
(Modbus Application Protocol V1.1b3 §7). Requests are parsed and replies built with
pymodbus's PDU classes and RTU CRC. A request is recognised as 8 bytes with a good CRC for
one of our slaves (functions 3 and 4 only); bytes that are not one are skipped one by one.

Faults: ``--noise-every N`` sends 1-16 random bytes after every Nth reply (between
transactions); ``--corrupt-every N`` flips a byte of every Nth reply; ``--truncate-every
N`` sends only half of every Nth reply; ``--mute SLAVE --mute-after N`` makes a slave stop
answering after N requests (for ``--mute-for`` seconds, or for good); ``--unplug-after N
--unplug-for S`` closes the pty after N replies and links a new one at the same path S
seconds later. Progress lines on stdout: ``ready PATH``, ``fault ...``, ``unplugged``,
``replugged``, ``muted``, ``unmuted``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import trio
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse

from simulators.pty import PtyPair, link_stable_path, open_pty_pair

if TYPE_CHECKING:
    from collections.abc import Sequence

REQUEST_BYTES: Final = 8
ILLEGAL_FUNCTION: Final = 1
ILLEGAL_ADDRESS: Final = 2


def register_values(slave: int, function: int, tick: int) -> dict[int, int]:
    """The registers of ``slave`` for ``function`` at ``tick`` (see the module docstring)."""
    if function == 4:
        high, low = struct.unpack(">HH", struct.pack(">f", 230 + (tick % 8) / 2))
        return {0: high, 1: low, 2: ((tick % 50) - 25 + 200) & 0xFFFF}
    energy = 1000 * slave + tick
    return {10: energy & 0xFFFF, 11: energy >> 16, 20: slave}


def reply_for(request: bytes, tick: int) -> bytes:
    """The reply frame to a well-formed read request (CRC already checked)."""
    slave = request[0]
    pdu = DecodePDU(is_server=True).decode(request[1:-2])
    response: ModbusPDU
    if pdu is None or pdu.function_code not in (3, 4):
        response = ExceptionResponse(request[1], ILLEGAL_FUNCTION, device_id=slave)
    else:
        table = register_values(slave, pdu.function_code, tick)
        wanted = range(pdu.address, pdu.address + pdu.count)
        if all(a in table for a in wanted):
            cls = (
                ReadHoldingRegistersResponse
                if pdu.function_code == 3
                else ReadInputRegistersResponse
            )
            response = cls(registers=[table[a] for a in wanted], dev_id=slave)
        else:
            response = ExceptionResponse(pdu.function_code, ILLEGAL_ADDRESS, device_id=slave)
    return bytes(FramerRTU(DecodePDU(is_server=True)).buildFrame(response))


def take_request(buffer: bytearray, slaves: frozenset[int]) -> tuple[bytes | None, int]:
    """The next request for one of ``slaves`` in ``buffer`` (consumed), and bytes skipped."""
    skipped = 0
    while len(buffer) >= REQUEST_BYTES:
        candidate = bytes(buffer[:REQUEST_BYTES])
        crc = FramerRTU.compute_CRC(candidate[:-2]).to_bytes(2, "big")
        if candidate[0] in slaves and candidate[1] in (3, 4) and crc == candidate[-2:]:
            del buffer[:REQUEST_BYTES]
            return candidate, skipped
        del buffer[:1]
        skipped += 1
    return None, skipped


@dataclass
class Faults:
    """Fault injection settings (0 = never)."""

    noise_every: int = 0
    corrupt_every: int = 0
    truncate_every: int = 0
    mute_slave: int = 0
    mute_after: int = 0
    mute_for_s: float = 0.0  # 0 = for good
    unplug_after: int = 0
    unplug_for_s: float = 1.0
    seed: int = 0


class SlaveBus:
    """The slaves' side of one pty (see the module docstring)."""

    def __init__(self, link: str, slaves: frozenset[int], step_s: float, faults: Faults) -> None:
        self.link = link
        self.slaves = slaves
        self.step_s = step_s
        self.faults = faults
        self.replies = 0
        self.requests_by_slave: dict[int, int] = dict.fromkeys(slaves, 0)
        self.muted_until: float | None = None
        self.rng = random.Random(faults.seed)  # noqa: S311 - test noise, not crypto
        self.pair = self._plug()
        self._start = trio.current_time()

    def _plug(self) -> PtyPair:
        pair = open_pty_pair()
        link_stable_path(self.link, pair.slave_path)
        return pair

    def tick(self) -> int:
        """Register tick: whole steps since start (0 forever when step_s is 0)."""
        if self.step_s <= 0:
            return 0
        return int((trio.current_time() - self._start) / self.step_s)

    async def serve(self) -> None:
        buffer = bytearray()
        while True:
            fd = self.pair.master_fd
            try:
                await trio.lowlevel.wait_readable(fd)
                data = os.read(fd, 1024)
            except (OSError, trio.ClosedResourceError):
                await trio.sleep(0.01)  # unplugged: the replug opens a new pty
                continue
            buffer += data
            while True:
                request, _skipped = take_request(buffer, self.slaves)
                if request is None:
                    break
                await self._answer(request)

    async def _answer(self, request: bytes) -> None:
        slave = request[0]
        self.requests_by_slave[slave] += 1
        if self._muted(slave):
            return
        frame = reply_for(request, self.tick())
        self.replies += 1
        n, f = self.replies, self.faults
        if _due(f.corrupt_every, n):
            i = self.rng.randrange(len(frame))
            frame = frame[:i] + bytes([frame[i] ^ 0x01]) + frame[i + 1 :]
            say("fault corrupt")
        if _due(f.truncate_every, n):
            frame = frame[: len(frame) // 2]
            say("fault truncate")
        os.write(self.pair.master_fd, frame)
        if _due(f.noise_every, n):
            os.write(self.pair.master_fd, bytes(self.rng.randbytes(self.rng.randint(1, 16))))
            say("fault noise")
        if f.unplug_after and n == f.unplug_after:
            await self._unplug()

    def _muted(self, slave: int) -> bool:
        f = self.faults
        if slave != f.mute_slave or self.requests_by_slave[slave] <= f.mute_after:
            return False
        now = trio.current_time()
        if self.muted_until is None:
            self.muted_until = now + f.mute_for_s if f.mute_for_s else float("inf")
            say(f"muted {slave}")
        if now < self.muted_until:
            return True
        if self.muted_until != -1.0:
            self.muted_until = -1.0  # unmuted for good
            say(f"unmuted {slave}")
        return False

    async def _unplug(self) -> None:
        trio.lowlevel.notify_closing(self.pair.master_fd)
        self.pair.close()
        say("unplugged")
        await trio.sleep(self.faults.unplug_for_s)
        self.pair = self._plug()
        say("replugged")


def _due(every: int, n: int) -> bool:
    return every > 0 and n % every == 0


def say(line: str) -> None:
    """A progress line on stdout, flushed (tests wait on these)."""
    print(line, flush=True)


async def run_modbus_simulator(
    link: str,
    slaves: frozenset[int],
    step_s: float,
    faults: Faults,
    *,
    task_status: trio.TaskStatus[SlaveBus] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the slaves on a pty linked at ``link`` until cancelled."""
    bus = SlaveBus(link, slaves, step_s, faults)
    try:
        say(f"ready {link}")
        task_status.started(bus)
        await bus.serve()
    finally:
        bus.pair.close()


def _slaves(text: str) -> frozenset[int]:
    try:
        ids = frozenset(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,2,3") from None
    if not ids or not all(1 <= i <= 247 for i in ids):
        raise argparse.ArgumentTypeError("slave ids are 1-247")
    return ids


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m simulators.modbus`` command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.modbus",
        description="Modbus RTU slaves on a pty, with registers that change and faults.",
    )
    parser.add_argument("--link", required=True, help="stable path (symlink) for the gateway")
    parser.add_argument("--slaves", type=_slaves, default=frozenset({1}), help="e.g. 1,2,3")
    parser.add_argument("--step-s", type=float, default=1.0, help="register tick period")
    parser.add_argument("--noise-every", type=int, default=0, metavar="N")
    parser.add_argument("--corrupt-every", type=int, default=0, metavar="N")
    parser.add_argument("--truncate-every", type=int, default=0, metavar="N")
    parser.add_argument("--mute", type=int, default=0, metavar="SLAVE")
    parser.add_argument("--mute-after", type=int, default=0, metavar="REQUESTS")
    parser.add_argument("--mute-for", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--unplug-after", type=int, default=0, metavar="REPLIES")
    parser.add_argument("--unplug-for", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; returns 0."""
    args = build_parser().parse_args(argv)
    faults = Faults(
        noise_every=args.noise_every,
        corrupt_every=args.corrupt_every,
        truncate_every=args.truncate_every,
        mute_slave=args.mute,
        mute_after=args.mute_after,
        mute_for_s=args.mute_for,
        unplug_after=args.unplug_after,
        unplug_for_s=args.unplug_for,
        seed=args.seed,
    )

    async def _main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_modbus_simulator, args.link, args.slaves, args.step_s, faults)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

    trio.run(_main)
    return 0


if __name__ == "__main__":
    sys.exit(main())
