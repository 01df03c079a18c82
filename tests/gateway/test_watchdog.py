"""The watchdog: the progress book (no I/O), the sd_notify wire format, and a real
``NOTIFY_SOCKET`` that must stop hearing ``WATCHDOG=1`` once a part stalls."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from gateway.watchdog import (
    CountingRandom,
    Notifier,
    ProgressBook,
    Stall,
    Watchdog,
    notify_address,
    notify_message,
    watchdog_interval,
)

# --- the book, driven with plain numbers ------------------------------------------------------


def test_a_busy_part_that_keeps_ticking_is_never_stalled() -> None:
    book = ProgressBook()
    book.register("writer", 10, now=0)
    for now in range(5, 100, 5):
        book.tick("writer", now)
        assert book.check(now + 9.9).healthy


def test_a_busy_part_quiet_past_its_limit_is_named_with_how_long() -> None:
    book = ProgressBook()
    book.register("a", 10, now=0)
    book.register("b", 30, now=0)
    book.tick("a", 5)
    assert book.check(15).healthy  # exactly at the limit is not yet a stall
    verdict = book.check(16)
    assert verdict.stalled == (Stall("a", 11, 10),)
    assert verdict.parts == ("a",)
    assert "a (quiet 11 s)" in verdict.status()
    assert book.check(31).parts == ("a", "b")


def test_an_idle_part_never_stalls_and_its_quiet_time_restarts_with_work() -> None:
    book = ProgressBook()
    book.register("writer", 10, now=0)
    book.idle("writer", 1)
    assert book.check(1_000).healthy
    book.tick("writer", 1_000)  # work arrives
    assert book.check(1_010).healthy
    assert book.check(1_011).parts == ("writer",)


def test_observed_parts_move_only_when_their_signature_changes() -> None:
    book = ProgressBook()
    book.register("uplink", 10, now=0)
    book.observe("uplink", (1, 2), 5, has_work=True)
    book.observe("uplink", (1, 2), 14, has_work=True)
    assert book.check(15).healthy  # moved at 5 (signature changed from nothing)
    assert book.check(16).parts == ("uplink",)
    book.observe("uplink", (1, 3), 16, has_work=True)
    assert book.check(26).healthy


def test_an_observed_part_without_work_is_idle_and_the_clock_restarts_when_work_comes() -> None:
    book = ProgressBook()
    book.register("uplink", 10, now=0)
    book.observe("uplink", "same", 1, has_work=False)
    assert book.check(500).healthy
    book.observe("uplink", "same", 500, has_work=True)
    assert book.check(510).healthy
    assert book.check(511).parts == ("uplink",)


def test_register_refuses_duplicates_and_nonsense_limits() -> None:
    book = ProgressBook()
    book.register("a", 1, now=0)
    with pytest.raises(ValueError, match="already"):
        book.register("a", 1, now=0)
    with pytest.raises(ValueError, match="positive"):
        book.register("b", 0, now=0)
    with pytest.raises(KeyError):
        book.tick("unknown", 1)


def test_report_lists_stalled_parts() -> None:
    book = ProgressBook()
    book.register("driver/gps-1", 2, now=0)
    report = book.check(3.5).report()
    assert report == {
        "healthy": False,
        "stalled": [{"part": "driver/gps-1", "quiet_s": 3.5, "limit_s": 2}],
    }


# --- the wire format and the environment (sd_notify(3), sd_watchdog_enabled(3)) ------------


def test_notify_message_is_newline_separated_assignments() -> None:
    assert notify_message(READY="1", STATUS="up") == b"READY=1\nSTATUS=up\n"
    # A newline inside a value would smuggle in another assignment.
    assert notify_message(STATUS="a\nWATCHDOG=1") == b"STATUS=a WATCHDOG=1\n"


def test_notify_address_handles_paths_abstract_sockets_and_absence() -> None:
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "@abstract/x"}) == "\0abstract/x"
    assert notify_address({"NOTIFY_SOCKET": ""}) is None
    assert notify_address({}) is None


def test_watchdog_interval_is_half_the_period_for_the_right_pid_only() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, pid=7) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid=7) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid=7) is None
    assert watchdog_interval({}, pid=7) is None


def test_counting_random_counts_backoff_draws() -> None:
    rng = CountingRandom(1)
    values = [rng.uniform(0, 1) for _ in range(3)]
    assert rng.draws == 3
    assert all(0 <= v <= 1 for v in values)


# --- a real NOTIFY_SOCKET -------------------------------------------------------------------


class Listener:
    """The systemd side: a Unix datagram socket that collects what it is told."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock

    async def next(self) -> dict[str, str]:
        data = await self.sock.recv(4096)
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    async def until(self, key: str, contains: str = "") -> dict[str, str]:
        with trio.fail_after(10):
            while True:
                message = await self.next()
                if key in message and contains in message[key]:
                    return message


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(str(tmp_path / "notify"))
    with sock:
        yield Listener(sock)


async def test_ready_then_heartbeats_then_silence_once_a_part_stalls(
    listener: Listener, tmp_path: Path
) -> None:
    watchdog = Watchdog(Notifier(str(tmp_path / "notify")), interval_s=0.02)
    watchdog.register("writer", 0.3)
    stalled = trio.Event()

    async def writer() -> None:
        while not stalled.is_set():
            watchdog.tick("writer")
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await nursery.start(watchdog.run)
        assert (await listener.next())["READY"] == "1"
        for _ in range(3):
            assert (await listener.until("WATCHDOG"))["WATCHDOG"] == "1"
        stalled.set()
        message = await listener.until("STATUS", "stalled")
        assert "writer" in message["STATUS"]
        assert "WATCHDOG" not in message
        assert not watchdog.verdict.healthy
        # Absence can only be shown by waiting: ten more checks must bring no heartbeat.
        with trio.move_on_after(0.2):
            while True:
                assert "WATCHDOG" not in await listener.next()
        watchdog.tick("writer")  # the part recovers: heartbeats resume
        assert "all parts" in (await listener.until("STATUS", "running"))["STATUS"]
        await listener.until("WATCHDOG")
        nursery.cancel_scope.cancel()
    assert (await listener.next()) == {"STOPPING": "1", "STATUS": "stopping"}


async def test_no_notify_socket_means_no_datagrams_but_checks_still_run() -> None:
    watchdog = Watchdog(Notifier(None), interval_s=None)
    assert not watchdog.pinging
    watchdog.register("a", 1)
    assert (await watchdog.check()).healthy
    assert watchdog.notifier.sent == 0


async def test_abstract_notify_socket() -> None:
    name = f"\0assetbook-test-{id(object())}"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(name)
    with sock:
        notifier = Notifier(notify_address({"NOTIFY_SOCKET": "@" + name[1:]}))
        await notifier.send(READY="1")
        assert await sock.recv(100) == b"READY=1\n"
        notifier.close()


async def test_a_vanished_socket_is_reported_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    await notifier.send(WATCHDOG="1")
    await notifier.send(WATCHDOG="1")
    notifier.close()
    assert notifier.sent == 0
    assert len([r for r in caplog.records if "cannot notify" in r.message]) == 1
