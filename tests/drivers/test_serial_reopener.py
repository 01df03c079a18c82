"""The reopen loop every serial driver shares (drivers.serial_port.Reopener).

The loop logic (backoff doubling to its cap, reset after an open, restarts, started once,
on_broken only after SerialBroken) is checked with an opener that does no I/O under Trio's
autojump clock, so the delays are exact up to the documented ±20 % jitter. The last test
runs the real opener against a path that appears later, the way a udev link comes back.
"""

from __future__ import annotations

import errno
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from drivers.base import DriverHealth
from drivers.errors import SerialBroken
from drivers.serial_port import Reopener, SerialPort, open_serial_port
from simulators.pty import open_pty_pair

LOG = logging.getLogger(__name__)
BACKOFF_S = 1.0
MAX_BACKOFF_S = 4.0


class FlakyOpener:
    """Opens a fake port; the attempts listed in ``fail`` raise SerialBroken instead."""

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail
        self.attempts: list[float] = []  # trio.current_time() of every attempt

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[str]:
        self.attempts.append(trio.current_time())
        attempt = len(self.attempts)
        await trio.lowlevel.checkpoint()
        if attempt in self.fail:
            raise SerialBroken(errno.ENOENT, f"attempt {attempt}: no such device")
        yield f"port-{attempt}"


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def within_jitter(gap: float, delay: float) -> bool:
    return 0.8 * delay <= gap <= 1.2 * delay


async def test_backoff_doubles_to_its_cap_and_resets_after_an_open(
    autojump_clock: trio.testing.MockClock,
) -> None:
    health = DriverHealth()
    reopener = Reopener("test", health, LOG, backoff_s=BACKOFF_S, max_backoff_s=MAX_BACKOFF_S)
    opener = FlakyOpener(fail={1, 2, 3, 4})
    used: list[str] = []
    broken_calls: list[int] = []

    async def use(port: str) -> None:
        used.append(port)
        if len(used) == 1:
            raise SerialBroken(errno.EIO, "unplugged")  # the driver's read failed
        if len(used) == 2:
            return  # the driver decided the port is broken (as the Modbus bus does)
        await trio.sleep_forever()

    run = partial(
        reopener.run, opener, use, on_broken=lambda: broken_calls.append(len(opener.attempts))
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(run)
            # started() came with the first successful open, not before.
            assert used == ["port-5"]
            assert reopener.opens == 1
            assert health.restarts == 0
            await reopener.wait_open(3)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    assert used == ["port-5", "port-6", "port-7"]
    assert health.restarts == 2
    # Four failed opens plus the SerialBroken raised by use(); a use() that returns is
    # the driver's own verdict and was counted by the driver, not here.
    assert health.errors_by_kind["serial"] == 5
    assert broken_calls == [1, 2, 3, 4, 5]
    delays = gaps(opener.attempts)
    expected = [1.0, 2.0, 4.0, 4.0, 1.0, 1.0]  # doubling, capped, then reset by each open
    assert len(delays) == len(expected)
    assert all(within_jitter(g, d) for g, d in zip(delays, expected, strict=True)), delays


async def test_other_errors_end_the_loop(autojump_clock: trio.testing.MockClock) -> None:
    reopener = Reopener("test", DriverHealth(), LOG, backoff_s=0.1, max_backoff_s=1.0)

    async def use(port: str) -> None:
        raise ValueError(f"bug while using {port}")

    with trio.fail_after(5), pytest.raises(ValueError, match="bug while using port-1"):
        await reopener.run(FlakyOpener(fail=set()), use)
    assert reopener.opens == 1


async def test_real_port_that_appears_later_is_opened(tmp_path: Path) -> None:
    pair = open_pty_pair()
    link = tmp_path / "gps.tty"
    health = DriverHealth()
    reopener = Reopener("test", health, LOG, backoff_s=0.01, max_backoff_s=0.02)
    attempts = 0

    def open_port() -> AbstractAsyncContextManager[SerialPort]:
        nonlocal attempts
        attempts += 1
        if attempts == 3:  # the device is plugged in after two failed opens
            link.symlink_to(pair.slave_path)
        return open_serial_port(str(link))

    opened: list[str] = []

    async def use(port: SerialPort) -> None:
        opened.append(port.path)
        await trio.sleep_forever()

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(reopener.run, open_port, use))
                nursery.cancel_scope.cancel()
    finally:
        pair.close()
    assert opened == [str(link)]
    assert attempts == 3
    assert health.errors_by_kind["serial"] == 2
    assert "cannot open" in (health.last_error or "")
