"""One owner per RS-485 port: a Trio shell that runs Modbus RTU transactions one at a time.

Modbus RTU is master/slave and half duplex (Modbus over Serial Line V1.02 §2.1): one
request on the wire, then its reply or a timeout, then the next. :class:`ModbusBus` owns
the port; any number of device pollers call :meth:`ModbusBus.transact`, which queues them
on a fair :class:`trio.Lock` (first come, first served), so several slaves share one bus
and a slow one cannot starve the others for longer than its own timeout.

Timing (§2.5.1.1): frames are separated by at least 3.5 character times of silence. A
character is 11 bits (start, 8 data, parity or a second stop bit, stop); above 19200 baud
the spec fixes the gap at 1.75 ms. Before each request the bus waits until that long has
passed since the last byte it sent or received. After a timeout or a damaged reply it also
waits for the line to go quiet and discards what arrives (a late reply must not be taken
for the next one), counting those bytes as skipped.

Errors: a reply that does not decode raises :class:`~drivers.errors.DecodeError`; a slave
that does not answer in time raises :class:`ModbusTimeout`; a port that fails raises
:class:`~drivers.errors.SerialBroken` and is reopened by :meth:`ModbusBus.serve` with
backoff and jitter (:class:`~drivers.serial_port.Reopener`). Nothing here decides what to
poll (see :mod:`drivers.modbus.driver`).
"""

from __future__ import annotations

import errno
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import serial
import trio

from drivers.errors import DriverError, SerialBroken
from drivers.modbus.rtu import ReplyReader, encode_request
from drivers.serial_port import Reopener, SerialPort

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.base import DriverHealth
    from drivers.modbus.rtu import ReadRequest, Reply

log = logging.getLogger(__name__)

BITS_PER_CHAR: Final = 11
FIXED_GAP_S: Final = 0.00175  # §2.5.1.1, above 19200 baud
QUIET_S: Final = 0.02  # silence that ends a drain after an error
MAX_DRAIN_S: Final = 0.5
PARITIES: Final = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


class ModbusTimeout(DriverError, TimeoutError):
    """A slave did not complete its reply within the timeout."""


def frame_gap_s(baudrate: int) -> float:
    """The 3.5-character silence between frames at ``baudrate`` (§2.5.1.1)."""
    if baudrate > 19200:
        return FIXED_GAP_S
    return 3.5 * BITS_PER_CHAR / baudrate


@asynccontextmanager
async def open_rs485(
    path: str, baudrate: int, parity: str = "E", stopbits: int = 1
) -> AsyncIterator[SerialPort]:
    """Open ``path`` 8 data bits with ``parity`` and ``stopbits`` as a :class:`SerialPort`.

    Raises:
        SerialBroken: the port cannot be opened or configured.
    """

    def _open() -> serial.Serial:
        try:
            return serial.Serial(
                path,
                baudrate=baudrate,
                parity=PARITIES[parity],
                stopbits=stopbits,
                timeout=0,
                write_timeout=0,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SerialBroken(errno.EIO, f"cannot open {path}: {exc}") from exc

    port = SerialPort(await trio.to_thread.run_sync(_open), path)
    try:
        yield port
    finally:
        await port.aclose()


class ModbusBus:
    """The single owner of one RS-485 port (see the module docstring)."""

    def __init__(
        self,
        path: str,
        baudrate: int,
        health: DriverHealth,
        *,
        parity: str = "E",
        stopbits: int = 1,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.path = path
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.health = health
        self.gap_s = frame_gap_s(baudrate)
        self.transactions = 0
        self._reopener = Reopener(
            path, health, log, backoff_s=backoff_s, max_backoff_s=max_backoff_s
        )
        self._lock = trio.Lock()
        self._port: SerialPort | None = None
        self._opened = trio.Event()  # set (and replaced) each time a port opens
        self._broken = trio.Event()
        self._last_activity = -1.0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the port, and reopen it whenever a transaction reports it broken."""
        await self._reopener.run(
            lambda: open_rs485(self.path, self.baudrate, self.parity, self.stopbits),
            self._hold,
            task_status=task_status,
        )

    async def transact(self, request: ReadRequest, timeout_s: float) -> Reply:
        """Send ``request`` when the bus is free and return the slave's reply.

        Raises:
            ModbusTimeout: no complete reply within ``timeout_s``.
            DecodeError: a damaged or unexpected reply.
            SerialBroken: the port failed (it will be reopened).
        """
        frame = encode_request(request)
        async with self._lock:
            while self._port is None:
                await self._opened.wait()
            port = self._port
            try:
                return await self._exchange(port, frame, request, timeout_s)
            except (SerialBroken, trio.ClosedResourceError) as exc:
                self.health.count_error("serial", f"{self.path}: {exc}")
                self._mark_broken()
                if isinstance(exc, SerialBroken):
                    raise
                raise SerialBroken(errno.EIO, f"{self.path} was closed") from exc
            except (ModbusTimeout, ValueError):
                try:
                    await self._drain(port)
                except (SerialBroken, trio.ClosedResourceError):
                    self._mark_broken()
                raise
            finally:
                self.transactions += 1
                self._last_activity = trio.current_time()

    async def _exchange(
        self, port: SerialPort, frame: bytes, request: ReadRequest, timeout_s: float
    ) -> Reply:
        await trio.sleep_until(self._last_activity + self.gap_s)
        await port.send_all(frame)
        reader = ReplyReader(request)
        with trio.move_on_after(timeout_s):
            while True:
                reply = reader.feed(await port.receive_some(256))
                if reply is not None:
                    self.health.skipped_bytes += reader.extra
                    await self._drain(port, quiet_s=self.gap_s)
                    return reply
        got = len(reader.received)
        raise ModbusTimeout(f"slave {request.slave}: {got} reply bytes in {timeout_s:.3f} s")

    async def _drain(self, port: SerialPort, quiet_s: float = QUIET_S) -> None:
        # Read until the line has been quiet for quiet_s (bounded), discarding it all. After a
        # good reply quiet_s is the frame gap, which §2.5.1.1 requires to pass anyway.
        with trio.move_on_after(MAX_DRAIN_S):
            while True:
                with trio.move_on_after(max(quiet_s, self.gap_s)) as quiet:
                    data = await port.receive_some(256)
                    self.health.skipped_bytes += len(data)
                if quiet.cancelled_caught:
                    return

    def _mark_broken(self) -> None:
        # Before the lock is released: the next request must wait for the reopened port.
        self._port = None
        self._broken.set()

    async def _hold(self, port: SerialPort) -> None:
        # Lend the port to transactions until one of them reports it broken; returning makes
        # the Reopener close it and reopen after its backoff.
        log.info("%s: opened at %d baud", self.path, self.baudrate)
        self._port = port
        self._opened.set()
        self._opened = trio.Event()
        try:
            await self._broken.wait()
        finally:
            self._port = None
            self._broken = trio.Event()
