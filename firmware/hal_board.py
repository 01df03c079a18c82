"""HAL for a board (ESP32 or RP2040): machine.UART and the flash file system.

Pins and UART number are board wiring, given to the constructor; the defaults suit an
ESP32 DevKit (UART1 on GPIO17 TX / GPIO16 RX). Not exercised by the test suite (there is
no board in CI); it type-checks against the MicroPython stubs.
"""

import time

from hal import Hal

from machine import UART, Pin


class BoardHal(Hal):
    """machine.UART on the given pins; boot counter in a flash file."""

    def __init__(
        self, baudrate: int = 115200, uart_id: int = 1, tx: int = 17, rx: int = 16
    ) -> None:
        self.uart = UART(uart_id, baudrate=baudrate, tx=Pin(tx), rx=Pin(rx))
        self.state_path = "boot_count"
        self._last = time.ticks_ms()
        self._uptime = 0

    def uptime_ms(self) -> int:
        """Milliseconds since start (wrap-safe, see hal_unix)."""
        now = time.ticks_ms()
        self._uptime += time.ticks_diff(now, self._last)
        self._last = now
        return self._uptime

    def write(self, data: bytes) -> None:
        """Send bytes on the UART."""
        self.uart.write(data)

    def read(self) -> bytes:
        """Whatever bytes are waiting, without blocking."""
        if not self.uart.any():
            return b""
        data = self.uart.read()
        return data if data else b""

    def wait(self, ms: int) -> None:
        """Sleep ms milliseconds (the UART buffers input meanwhile)."""
        time.sleep_ms(max(0, ms))

    def next_boot(self) -> int:
        """Increment and return the boot counter kept in flash."""
        try:
            with open(self.state_path) as f:
                boot = int(f.read().strip() or "0") + 1
        except (OSError, ValueError):
            boot = 1
        with open(self.state_path, "w") as f:
            f.write(str(boot))
        return boot
