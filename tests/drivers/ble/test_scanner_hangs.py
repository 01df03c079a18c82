"""The ble-adverts driver when bleak hangs in starting or stopping the scan.

The asyncio bridge gives a cancelled caller whose task ignores its cancellation (a D-Bus call
BlueZ never answers) :class:`~drivers.ble.bridge.TaskAbandoned` after its grace period. Here
the driver's bleak calls are fakes that keep that contract in Trio alone, and the bridge is a
stand-in with no thread, so the virtual clock jumps the stop timeout and the grace exactly.
What is checked: an abandoned call is counted as ``adapter`` and never replaces what was under
way, so a stall still restarts the scan and a cancelled driver still ends cancelled.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NoReturn, Self

import pytest
import trio

from drivers.base import Sample
from drivers.ble import scanner
from drivers.ble.bridge import CANCEL_GRACE_S, TaskAbandoned
from drivers.ble.scanner import STOP_TIMEOUT_S, make_driver

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import trio.testing

    from drivers.ble.advert import Advert

STALL_S = 2.0


class FakeBridge:
    """Stands in for the asyncio thread: the fake bleak calls never hand it a coroutine."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def __aenter__(self) -> Self:
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):  # as the real exit: shielded
            await trio.lowlevel.checkpoint()


async def hang_as_the_bridge_reports_it() -> NoReturn:
    """What ``AsyncioThread.run`` does for a task that ignores its cancellation."""
    try:
        await trio.sleep_forever()
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await trio.sleep(CANCEL_GRACE_S)
        raise TaskAbandoned(
            f"ble-bleak: a cancelled asyncio task did not finish within {CANCEL_GRACE_S:g} s"
        ) from None


class FakeBleak:
    """Replaces the driver's ``_start`` and ``_stop``; the calls numbered in ``hang_*`` hang."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        *,
        hang_starts: Collection[int] = (),
        hang_stops: Collection[int] = (),
    ) -> None:
        self.hang_starts = hang_starts
        self.hang_stops = hang_stops
        self.starts: list[float] = []  # Trio times of each call
        self.stops: list[float] = []
        self.start_hanging = trio.Event()
        self.stop_hanging = trio.Event()
        monkeypatch.setattr(scanner, "AsyncioThread", FakeBridge)
        monkeypatch.setattr(scanner, "_start", self.start)
        monkeypatch.setattr(scanner, "_stop", self.stop)

    async def start(
        self, bridge: object, adapter: str, on_report: Callable[[Advert], None]
    ) -> object:
        self.starts.append(trio.current_time())
        if len(self.starts) in self.hang_starts:
            self.start_hanging.set()
            await hang_as_the_bridge_reports_it()
        await trio.lowlevel.checkpoint()
        return f"scanner-{len(self.starts)}"

    async def stop(self, bridge: object, scanner: object) -> None:
        self.stops.append(trio.current_time())
        if len(self.stops) in self.hang_stops:
            self.stop_hanging.set()
            await hang_as_the_bridge_reports_it()
        await trio.lowlevel.checkpoint()


def table(*, expect_adverts: bool) -> dict[str, object]:
    return {
        "kind": "ble-adverts",
        "name": "ble",
        "stall_s": STALL_S,
        "backoff_s": 0.1,
        "expect_adverts": expect_adverts,
    }


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == scanner.__name__ and r.levelno == logging.WARNING
    ]


async def test_a_stall_whose_stop_hangs_still_restarts_the_scan(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bleak = FakeBleak(monkeypatch, hang_stops={1})
    driver = make_driver(table(expect_adverts=True))
    send, _receive = trio.open_memory_channel[Sample](10)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run, send)
            await driver.wait_scanning(2)
            nursery.cancel_scope.cancel()

    health = driver.health
    assert health.errors_by_kind == {"adapter": 1, "stalled": 1}
    assert health.restarts == 1
    assert len(bleak.starts) == 2
    assert len(bleak.stops) == 2  # the hung one, then the one at the end of the test
    # The stop had its timeout, then the bridge its grace, before the scan was restarted.
    first, second = bleak.starts
    assert second - first >= STALL_S + STOP_TIMEOUT_S + CANCEL_GRACE_S
    assert warnings(caplog) == [
        "ble: stopping the scan on hci0 hung and was abandoned: ble-bleak: a cancelled"
        " asyncio task did not finish within 10 s",
        "ble: no advert for 2 s on hci0; restarting the scan",
    ]


@pytest.mark.parametrize("stalled", [False, True], ids=["at-shutdown", "after-a-stall"])
async def test_cancelling_while_the_stop_hangs_ends_the_driver_cancelled(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, stalled: bool
) -> None:
    bleak = FakeBleak(monkeypatch, hang_stops={1})
    driver = make_driver(table(expect_adverts=stalled))
    send, _receive = trio.open_memory_channel[Sample](10)
    with trio.fail_after(120):
        # The nursery exits without an error only if the driver ended with the cancellation.
        async with trio.open_nursery() as nursery:
            await nursery.start(driver.run, send)
            if stalled:
                await bleak.stop_hanging.wait()  # the watchdog is stopping the scan
            nursery.cancel_scope.cancel()

    assert bleak.stop_hanging.is_set()
    expected = {"adapter": 1, "stalled": 1} if stalled else {"adapter": 1}
    assert driver.health.errors_by_kind == expected
    assert len(bleak.starts) == 1  # cancelled: no restart
    assert len(bleak.stops) == 1


async def test_cancelling_while_the_start_hangs_ends_the_driver_cancelled(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    bleak = FakeBleak(monkeypatch, hang_starts={1})
    driver = make_driver(table(expect_adverts=False))
    send, _receive = trio.open_memory_channel[Sample](10)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run, send)
            await bleak.start_hanging.wait()
            nursery.cancel_scope.cancel()

    assert driver.health.errors_by_kind == {"adapter": 1}
    assert driver.health.last_error is not None
    assert driver.health.last_error.startswith("starting the scan on hci0 hung and was abandoned")
    assert len(bleak.starts) == 1
    assert bleak.stops == []  # no scan was started, so none is stopped
