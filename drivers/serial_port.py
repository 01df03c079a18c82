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

Reopening: :class:`Reopener` is the one open → use → reopen-with-backoff loop every serial
driver runs (:mod:`drivers.gps`, :mod:`drivers.node.driver`, :mod:`drivers.modbus.bus`).
When the port breaks (unplugged adapter, vanished pty) or cannot be opened, it counts the
failure under the health kind ``serial``, waits with exponential backoff and jitter
(``backoff_s`` doubling up to ``max_backoff_s``, reset once a port opens) and reopens the
same path, so a udev or simulator symlink that comes back is picked up. It calls
``task_status.started()`` the first time the port opens and counts every later open in
``health.restarts``. What a driver does with an open port is the driver's business.
"""

from __future__ import annotations

import contextlib
import errno
import random
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Final, NoReturn, TypeVar

import serial
import trio

from drivers.errors import SerialBroken

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
    from contextlib import AbstractAsyncContextManager

    from drivers.base import DriverHealth

DEFAULT_MAX_BYTES: Final = 4096

PortT = TypeVar("PortT")


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


class Reopener:
    """Keeps one serial port open for a driver, reopening it after it breaks.

    Args:
        label: names the port in log lines (the driver name or the port path).
        health: the driver's health; gets ``serial`` errors and ``restarts``.
        logger: the driver's logger, so log lines keep naming the driver's module.
        backoff_s: first delay before reopening; doubles after each failed attempt.
        max_backoff_s: the longest delay between attempts.
    """

    def __init__(
        self,
        label: str,
        health: DriverHealth,
        logger: logging.Logger,
        *,
        backoff_s: float,
        max_backoff_s: float,
    ) -> None:
        self.label = label
        self.health = health
        self.opens = 0
        self._log = logger
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._opened = trio.Event()  # set (and replaced) each time a port opens

    async def run(
        self,
        open_port: Callable[[], AbstractAsyncContextManager[PortT]],
        use: Callable[[PortT], Awaitable[object]],
        *,
        on_broken: Callable[[], object] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Open a port with ``open_port()`` and await ``use(port)``, forever.

        The port is whatever ``open_port()`` yields (a :class:`SerialPort` in the drivers).

        ``use`` returning (the driver decided the port is broken) or raising
        :class:`~drivers.errors.SerialBroken` closes the port and starts the backoff;
        ``on_broken()`` runs after each ``SerialBroken`` (e.g. to reset a framer). Any
        other exception ends the loop.
        """
        delay = self._backoff_s
        while True:
            try:
                async with open_port() as port:
                    self._on_open(task_status)
                    delay = self._backoff_s
                    await use(port)
            except SerialBroken as exc:
                self._log.warning("%s: %s; reopening in about %.1f s", self.label, exc, delay)
                self.health.count_error("serial", str(exc))
                if on_broken is not None:
                    on_broken()
            # Jitter keeps many gateways on one flaky hub from retrying in lockstep.
            await trio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - not crypto
            delay = min(delay * 2, self._max_backoff_s)

    async def wait_open(self, opens: int = 1) -> None:
        """Wait until a port has been opened at least ``opens`` times in total."""
        while self.opens < opens:
            await self._opened.wait()

    def _on_open(self, task_status: trio.TaskStatus[None]) -> None:
        if self.opens == 0:
            task_status.started()
        else:
            self.health.restarts += 1
        self.opens += 1
        self._opened.set()
        self._opened = trio.Event()
