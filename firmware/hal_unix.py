"""HAL for the unix port of MicroPython: the UART is a tty device path (a pty in tests).

Same interface as hal_board.BoardHal (hal.Hal), so main.py runs unchanged on a board and on a PC. The boot
counter lives in a file, as on a board's flash file system.
"""

import select
import time

from hal import Hal


class UnixHal(Hal):
    """UART over a tty path, monotonic uptime from ticks_ms, boot counter in a file."""

    def __init__(self, uart_path: str, state_path: str) -> None:
        self.uart = open(uart_path, "r+b")
        self.poller = select.poll()
        self.poller.register(self.uart, select.POLLIN)
        self.state_path = state_path
        self._last = time.ticks_ms()
        self._uptime = 0

    def uptime_ms(self) -> int:
        """Milliseconds since start; ticks_ms wraps, the sum of ticks_diff steps does not."""
        now = time.ticks_ms()
        self._uptime += time.ticks_diff(now, self._last)
        self._last = now
        return self._uptime

    def write(self, data: bytes) -> None:
        """Send bytes on the UART (blocking until the kernel has taken them)."""
        self.uart.write(data)

    def read(self) -> bytes:
        """Whatever bytes are waiting, without blocking (b"" if none)."""
        out = b""
        # One byte at a time: a blocking read(n) on the unix port waits for all n bytes.
        while len(out) < 256 and self.poller.poll(0):
            out += self.uart.read(1)
        return out

    def wait(self, ms: int) -> None:
        """Sleep up to ms milliseconds, returning early when UART input arrives."""
        self.poller.poll(max(0, ms))

    def next_boot(self) -> int:
        """Increment and return the persistent boot counter (1 on first start)."""
        boot = read_counter(self.state_path) + 1
        with open(self.state_path, "w") as f:
            f.write(str(boot))
        return boot


def read_counter(path: str) -> int:
    """The number stored in path, 0 when it is missing or unreadable."""
    try:
        with open(path) as f:
            return int(f.read().strip() or "0")
    except (OSError, ValueError):
        return 0
