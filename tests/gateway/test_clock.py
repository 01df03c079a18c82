"""Tests for the gateway's clocks and the stamping of samples into events."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import pytest

from drivers.base import Sample
from gateway.clock import (
    TIME_ERROR,
    Stamper,
    monotonic_ns,
    read_boot_id,
    system_clock_source,
)
from protocol.events import ClockSource, Reading

BOOT_ID = bytes(range(16))
READINGS = (Reading("temperature", "Cel", 21.5),)


def test_read_boot_id_parses_the_kernel_uuid(tmp_path: Path) -> None:
    text = "7ec07a13-083d-44e0-9ce9-d0e336f44332"
    path = tmp_path / "boot_id"
    path.write_text(text + "\n")
    assert read_boot_id(path) == uuid.UUID(text).bytes


@pytest.mark.parametrize("content", [None, "not-a-uuid", ""], ids=["missing", "garbage", "empty"])
def test_read_boot_id_falls_back_to_random(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "boot_id"
    if content is not None:
        path.write_text(content)
    fresh = iter([b"\x01" * 16, b"\x02" * 16])
    calls: list[int] = []

    def random_bytes(n: int) -> bytes:
        calls.append(n)
        return next(fresh)

    assert read_boot_id(path, random_bytes) == b"\x01" * 16
    assert read_boot_id(path, random_bytes) == b"\x02" * 16
    assert calls == [16, 16]


def test_read_boot_id_is_stable_on_this_machine() -> None:
    first = read_boot_id()
    assert len(first) == 16
    if Path("/proc/sys/kernel/random/boot_id").exists():
        assert read_boot_id() == first


def test_monotonic_ns_does_not_go_backwards() -> None:
    readings = [monotonic_ns() for _ in range(100)]
    assert readings == sorted(readings)
    if hasattr(time, "CLOCK_BOOTTIME"):
        # BOOTTIME is MONOTONIC plus time spent suspended, so a later BOOTTIME read is never
        # below an earlier MONOTONIC one (clock_gettime(2)).
        plain = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        assert monotonic_ns() >= plain


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (0, ClockSource.NTP),
        (1, ClockSource.NTP),
        (4, ClockSource.NTP),
        (TIME_ERROR, ClockSource.NONE),
    ],
    ids=["ok", "ins", "wait", "error"],
)
def test_clock_source_follows_adjtimex(tmp_path: Path, state: int, expected: ClockSource) -> None:
    flag = tmp_path / "synchronized"
    flag.touch()  # ignored: the kernel's answer wins
    assert system_clock_source(lambda: state, flag) is expected


def test_clock_source_falls_back_to_timesyncd_flag(tmp_path: Path) -> None:
    flag = tmp_path / "synchronized"
    assert system_clock_source(lambda: None, flag) is ClockSource.NONE
    flag.touch()
    assert system_clock_source(lambda: None, flag) is ClockSource.NTP


def test_clock_source_on_this_machine_is_a_known_value() -> None:
    assert system_clock_source() in (ClockSource.NONE, ClockSource.NTP)


def make_stamper(source: ClockSource = ClockSource.NTP) -> Stamper:
    mono = itertools.count(5_000, 7)
    wall = itertools.count(1_700_000_000_000_000_000, 11)
    return Stamper(BOOT_ID, mono.__next__, wall.__next__, lambda: source)


def test_stamp_uses_gateway_clocks() -> None:
    event = make_stamper().stamp(Sample("gps-1", READINGS), seq=9)
    assert event.seq == 9
    assert event.device == "gps-1"
    assert event.boot_id == BOOT_ID
    assert event.mono_ns == 5_000
    assert event.wall_ns == 1_700_000_000_000_000_000
    assert event.clock is ClockSource.NTP
    assert event.readings == READINGS


def test_each_stamp_reads_the_clocks_again() -> None:
    stamper = make_stamper()
    first = stamper.stamp(Sample("a", READINGS), 1)
    second = stamper.stamp(Sample("a", READINGS), 2)
    assert second.mono_ns - first.mono_ns == 7
    assert second.wall_ns - first.wall_ns == 11


def test_clock_source_is_asked_at_each_stamp() -> None:
    sources = iter([ClockSource.NONE, ClockSource.NTP])
    stamper = Stamper(BOOT_ID, lambda: 1, lambda: 2, lambda: next(sources))
    assert stamper.stamp(Sample("a", READINGS), 1).clock is ClockSource.NONE
    assert stamper.stamp(Sample("a", READINGS), 2).clock is ClockSource.NTP


def test_device_time_overrides_wall_clock_but_not_monotonic() -> None:
    sample = Sample("gps-1", READINGS, device_time_ns=1_234, device_clock=ClockSource.GPS)
    event = make_stamper(ClockSource.NONE).stamp(sample, 1)
    assert event.wall_ns == 1_234
    assert event.clock is ClockSource.GPS
    assert event.mono_ns == 5_000


def test_device_time_without_source_is_marked_unvouched() -> None:
    event = make_stamper().stamp(Sample("n", READINGS, device_time_ns=1_234), 1)
    assert event.wall_ns == 1_234
    assert event.clock is ClockSource.NONE


def test_device_source_without_time_is_ignored() -> None:
    event = make_stamper().stamp(Sample("n", READINGS, device_clock=ClockSource.GPS), 1)
    assert event.wall_ns == 1_700_000_000_000_000_000
    assert event.clock is ClockSource.NTP


def test_stamper_refuses_a_boot_id_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Stamper(b"short", lambda: 1, lambda: 2, lambda: ClockSource.NONE)


def test_system_stamper_stamps_with_real_clocks() -> None:
    before = time.time_ns()
    event = Stamper.system().stamp(Sample("a", READINGS), 1)
    assert len(event.boot_id) == 16
    assert event.wall_ns >= before
    assert event.mono_ns > 0
