"""Tests for the gateway's clocks and the stamping of samples into events."""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from gateway.clock import EventFields

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


def stamp(stamper: Stamper, sample: Sample) -> EventFields:
    [fields] = stamper.stamp_fields([sample])
    return fields


def test_stamp_uses_gateway_clocks() -> None:
    device, boot_id, mono, wall, clock, readings = stamp(make_stamper(), Sample("gps-1", READINGS))
    assert device == "gps-1"
    assert boot_id == BOOT_ID
    assert mono == 5_000
    assert wall == 1_700_000_000_000_000_000
    assert clock is ClockSource.NTP
    assert readings == READINGS


def test_each_sample_reads_the_clocks_again() -> None:
    first, second = make_stamper().stamp_fields([Sample("a", READINGS), Sample("b", READINGS)])
    assert second[2] - first[2] == 7
    assert second[3] - first[3] == 11


def test_clock_source_is_asked_once_per_batch() -> None:
    asked: list[ClockSource] = []
    sources = iter([ClockSource.NONE, ClockSource.NTP])

    def source() -> ClockSource:
        asked.append(next(sources))
        return asked[-1]

    stamper = Stamper(BOOT_ID, lambda: 1, lambda: 2, source)
    batch = [Sample("a", READINGS), Sample("b", READINGS)]
    assert [f[4] for f in stamper.stamp_fields(batch)] == [ClockSource.NONE] * 2
    # The next batch asks again: NTP may have synchronised in between.
    assert [f[4] for f in stamper.stamp_fields(batch)] == [ClockSource.NTP] * 2
    assert len(asked) == 2


def test_clock_source_is_not_asked_when_every_sample_has_its_own_time() -> None:
    def source() -> ClockSource:
        raise AssertionError("asked")

    stamper = Stamper(BOOT_ID, lambda: 1, lambda: 2, source)
    sample = Sample("gps-1", READINGS, device_time_ns=5, device_clock=ClockSource.GPS)
    assert stamp(stamper, sample)[4] is ClockSource.GPS


def test_device_time_overrides_wall_clock_but_not_monotonic() -> None:
    sample = Sample("gps-1", READINGS, device_time_ns=1_234, device_clock=ClockSource.GPS)
    _, _, mono, wall, clock, _ = stamp(make_stamper(ClockSource.NONE), sample)
    assert wall == 1_234
    assert clock is ClockSource.GPS
    assert mono == 5_000


def test_device_time_without_source_is_marked_unvouched() -> None:
    _, _, _, wall, clock, _ = stamp(make_stamper(), Sample("n", READINGS, device_time_ns=1_234))
    assert wall == 1_234
    assert clock is ClockSource.NONE


def test_device_source_without_time_is_ignored() -> None:
    sample = Sample("n", READINGS, device_clock=ClockSource.GPS)
    _, _, _, wall, clock, _ = stamp(make_stamper(), sample)
    assert wall == 1_700_000_000_000_000_000
    assert clock is ClockSource.NTP


def test_stamper_refuses_a_boot_id_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Stamper(b"short", lambda: 1, lambda: 2, lambda: ClockSource.NONE)


def test_system_stamper_stamps_with_real_clocks() -> None:
    before = time.time_ns()
    _, boot_id, mono, wall, clock, _ = stamp(Stamper.system(), Sample("a", READINGS))
    assert len(boot_id) == 16
    assert wall >= before
    assert mono > 0
    assert clock in (ClockSource.NONE, ClockSource.NTP)
