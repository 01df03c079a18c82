"""Thin Trio adapter over pyserial: a serial port as an async byte stream.

Design: pyserial opens and configures the port (termios, baud rate, raw mode), and is
put in non-blocking mode (``timeout=0``, ``write_timeout=0``). Reads and writes then wait
for readiness with :func:`trio.lowlevel.wait_readable` / :func:`trio.lowlevel.wait_writable`
on the port's file descriptor. We chose this over a worker thread because it keeps
cancellation exact (a cancelled read leaves no thread blocked in ``read()`` holding the
port) and costs no thread per port. It is POSIX-only, like the gateway.

Errors: any pyserial or OS error while opening, reading or writing, and a read that reports
end of file (what a pty or USB adapter does when unplugged), become
:class:`~drivers.errors.SerialBroken` with the original error as ``__cause__``. Using a
port after :meth:`SerialPort.aclose` raises :class:`trio.ClosedResourceError`, as Trio
streams do.

This module does not retry or reopen; that is the driver's job (:mod:`drivers.gps`).
"""

from __future__ import annotations

import contextlib
import errno
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Final

import serial
import trio

from drivers.errors import SerialBroken

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

DEFAULT_MAX_BYTES: Final = 4096


@contextmanager
def _map_errors(what: str, port: str) -> Iterator[None]:
    """Translate pyserial/OS errors at the boundary (style guide: errors §4)."""
    try:
        yield
    except (serial.SerialException, OSError) as exc:
        raise SerialBroken(errno.EIO, f"{what} {port}: {exc}") from exc


class SerialPort(trio.abc.Stream):
    """An open serial port. Create it with :func:`open_serial_port`."""

    def __init__(self, port: serial.Serial, path: str) -> None:
        self._port = port
        self._fd: int = port.fileno()
        self.path = path
        self._closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Wait for and return at least one byte (at most ``max_bytes``).

        Raises:
            SerialBroken: the device failed or went away (a serial port has no clean EOF).
            trio.ClosedResourceError: the port was closed locally.
        """
        size = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
        while True:
            self._check_open()
            await trio.lowlevel.wait_readable(self._fd)
            self._check_open()
            with _map_errors("read from", self.path):
                data: bytes = self._port.read(size)
            if data:
                return data
            # Spurious wake-up (readiness consumed elsewhere): wait again.

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data``, waiting whenever the driver's output buffer is full."""
        view = memoryview(bytes(data))
        while view:
            self._check_open()
            await trio.lowlevel.wait_writable(self._fd)
            self._check_open()
            with _map_errors("write to", self.path):
                written = self._port.write(view)
            view = view[written or 0 :]

    async def wait_send_all_might_not_block(self) -> None:
        """Return when a write is likely to make progress."""
        self._check_open()
        await trio.lowlevel.wait_writable(self._fd)

    async def aclose(self) -> None:
        """Close the port; wakes any task blocked on it with ClosedResourceError."""
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        # Closing a port whose device vanished can fail; there is nothing left to release.
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("serial port was closed")


@asynccontextmanager
async def open_serial_port(path: str, baudrate: int = 9600) -> AsyncIterator[SerialPort]:
    """Open ``path`` at ``baudrate`` 8N1, no flow control, as a :class:`SerialPort`.

    Opening runs in a worker thread: ``open()`` and the termios calls on a USB adapter can
    stall for a while, and must not stall the event loop.

    Note: pyserial discards any input already buffered in the kernel when it opens a port.

    Raises:
        SerialBroken: the port cannot be opened or configured.
    """

    def _open() -> serial.Serial:
        with _map_errors("cannot open", path):
            return serial.Serial(path, baudrate=baudrate, timeout=0, write_timeout=0)

    port = SerialPort(await trio.to_thread.run_sync(_open), path)
    try:
        yield port
    finally:
        await port.aclose()
