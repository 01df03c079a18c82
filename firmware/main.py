"""Node firmware entry point: sample sensors, queue, and speak the node protocol on a UART.

On a board, main.py runs at boot with the defaults below. On the unix port (tests, the
node simulator) it takes options::

    micropython main.py --uart PATH --state FILE [--node-id ID] [--period-ms N]
                        [--count N] [--capacity N] [--batch N] [--resend-ms N]

``--count N`` takes N samples, then exits once all are acknowledged (printing
``all acked``); -1 (the default) samples forever. Progress lines on stdout (``boot N``,
``acked SEQ``, ``dropped N``) let a test or a person follow the node.
"""

import sys

import nodeproto
import sensors
from hal import Hal
from node import Node

FIRMWARE = "assetbook-node/0.1"
DEFAULTS = {
    "--node-id": "node-1",
    "--period-ms": "1000",
    "--count": "-1",
    "--capacity": "48",
    "--batch": "12",
    "--resend-ms": "1000",
    "--uart": "",
    "--state": "boot_count",
}


def options(argv: list[str]) -> dict[str, str]:
    """--key value pairs over DEFAULTS (no argparse on MicroPython)."""
    opts = dict(DEFAULTS)
    for i in range(0, len(argv) - 1, 2):
        if argv[i] not in opts:
            raise ValueError("unknown option " + argv[i])
        opts[argv[i]] = argv[i + 1]
    return opts


def make_hal(opts: dict[str, str]) -> Hal:
    """The unix HAL when a --uart path is given, else the board HAL."""
    # Imported here: hal_board needs the machine module, which the unix port lacks.
    if opts["--uart"]:
        import hal_unix

        return hal_unix.UnixHal(opts["--uart"], opts["--state"])
    import hal_board

    return hal_board.BoardHal()


def run(hal: Hal, node: Node, count: int, period_ms: int) -> None:
    """The main loop: sample on schedule, read acks, send due frames."""
    deframer = nodeproto.Deframer()
    hal.write(node.hello(FIRMWARE))
    taken = 0
    next_sample = hal.uptime_ms()
    while count < 0 or taken < count or node.queue:
        now = hal.uptime_ms()
        if (count < 0 or taken < count) and now >= next_sample:
            for name, unit, value in sensors.read(taken):
                if not node.add(now, name, unit, value):
                    print("dropped", node.dropped)
            taken += 1
            next_sample += period_ms
        for payload in deframer.feed(hal.read()):
            if node.on_payload(payload):
                print("acked", node.acked)
        frame = node.due(now)
        if frame is not None:
            hal.write(frame)
        hal.wait(min(next_sample - hal.uptime_ms(), 50))
    print("all acked", node.acked)


def main(argv: list[str]) -> None:
    """Start the node: bump the boot counter, say hello, run."""
    opts = options(argv)
    hal = make_hal(opts)
    boot = hal.next_boot()
    print("boot", boot)
    node = Node(
        opts["--node-id"],
        boot,
        capacity=int(opts["--capacity"]),
        batch=int(opts["--batch"]),
        resend_ms=int(opts["--resend-ms"]),
    )
    run(hal, node, int(opts["--count"]), int(opts["--period-ms"]))


main(sys.argv[1:])
