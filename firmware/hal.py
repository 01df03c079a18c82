"""The hardware abstraction the firmware runs on: one UART, an uptime clock, a boot counter.

hal_board.BoardHal implements it with machine.UART on a board; hal_unix.UnixHal with a tty
path on the unix port of MicroPython (tests). Nothing else in the firmware touches
hardware, so the same node logic runs in both places.
"""


class Hal:
    """Interface; every method is overridden."""

    def uptime_ms(self) -> int:
        """Milliseconds since start; never wraps (a sum of ticks_diff steps)."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send bytes on the UART."""
        raise NotImplementedError

    def read(self) -> bytes:
        """Whatever bytes are waiting, without blocking (b"" if none)."""
        raise NotImplementedError

    def wait(self, ms: int) -> None:
        """Sleep up to ms milliseconds (may return early when input arrives)."""
        raise NotImplementedError

    def next_boot(self) -> int:
        """Increment and return the persistent boot counter (1 on first start)."""
        raise NotImplementedError
