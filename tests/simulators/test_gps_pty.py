"""End to end over a real pty: GPS simulator → pyserial adapter → NmeaGpsDriver → samples."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from drivers.base import Sample
from drivers.gps import NmeaGpsDriver
from protocol.events import ClockSource
from simulators.gps import DEFAULT_ROUTE, Faults, GpsScript, Route, main, run_gps_simulator
from simulators.pty import PtyPair, link_stable_path, open_pty_pair

# 23:59:53 UTC: the run crosses midnight, and fix 7 (00:00:00) has its RMC truncated when
# truncate_every=4, so a GGA must take yesterday's date and roll it forward.
START_NS = int(dt.datetime(2024, 5, 1, 23, 59, 53, tzinfo=dt.UTC).timestamp()) * 10**9


def as_record(sample: Sample) -> dict[str, object]:
    return {
        "time_ns": sample.device_time_ns,
        "readings": [[r.name, r.unit, r.value] for r in sample.readings],
    }


def assert_matches(samples: list[Sample], expected: list[dict[str, object]]) -> None:
    assert len(samples) == len(expected)
    for sample, want in zip(samples, expected, strict=True):
        got = as_record(sample)
        assert got["time_ns"] == want["time_ns"]
        assert sample.device_clock is (None if want["time_ns"] is None else ClockSource.GPS)
        for (name, unit, value), (w_name, w_unit, w_value) in zip(
            got["readings"],
            want["readings"],
            strict=True,  # type: ignore[call-overload]
        ):
            assert (name, unit, type(value)) == (w_name, w_unit, type(w_value))
            # Only floating-point rounding may differ: the wire values are exact.
            assert math.isclose(value, w_value, rel_tol=1e-12, abs_tol=1e-12), name


async def simulate(pair: PtyPair, script: GpsScript, count: int) -> list[dict[str, object]]:
    record = io.StringIO()
    async with trio.lowlevel.FdStream(os.dup(pair.master_fd)) as stream:
        await run_gps_simulator(stream, script, rate_hz=400, count=count, record=record)
    return [json.loads(line) for line in record.getvalue().splitlines()]


async def receive(channel: trio.MemoryReceiveChannel[Sample], n: int) -> list[Sample]:
    return [await channel.receive() for _ in range(n)]


@pytest.mark.parametrize(
    "faults", [Faults(), Faults(garbage_every=3, truncate_every=4, corrupt_every=5, seed=7)]
)
async def test_samples_equal_the_simulator_record(faults: Faults) -> None:
    # 31 fixes: the last fix is clean, so every fault precedes the last sample.
    script = GpsScript(Route(DEFAULT_ROUTE, 5.0), START_NS, 10**9, faults)
    send, samples_in = trio.open_memory_channel[Sample](math.inf)
    pair = open_pty_pair()
    try:
        driver = NmeaGpsDriver("gps", "gps-1", pair.slave_path, backoff_s=0.01)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run, send)
                lines = await simulate(pair, script, count=31)
                expected = [line for line in lines if line["type"] == "sample"]
                samples = await receive(samples_in, len(expected))
                nursery.cancel_scope.cancel()
    finally:
        pair.close()

    assert_matches(samples, expected)
    assert all(s.device == "gps-1" for s in samples)
    faults_seen = [line for line in lines if line["type"] == "fault"]
    n_truncated = sum(1 for f in faults_seen if f["fault"] == "truncated")
    n_corrupt = sum(1 for f in faults_seen if f["fault"] == "corrupt")
    garbage = sum(int(f["bytes"]) for f in faults_seen if f["fault"] == "garbage")  # type: ignore[call-overload]
    health = driver.health
    assert health.samples == len(expected)
    assert health.frames == 2 * 31 - n_truncated - n_corrupt
    assert health.bad_frames == n_truncated + n_corrupt
    assert health.skipped_bytes == garbage
    expected_kinds = {"truncated": n_truncated, "checksum": n_corrupt}
    assert health.errors_by_kind == {k: v for k, v in expected_kinds.items() if v}
    assert health.restarts == 0
    if faults.truncate_every:
        assert n_truncated and n_corrupt and garbage  # the faulty run really injected faults


async def test_unplug_and_replug_behind_the_same_path(tmp_path: Path) -> None:
    link = os.path.join(tmp_path, "gps0")
    send, samples_in = trio.open_memory_channel[Sample](math.inf)
    first = open_pty_pair()
    second: PtyPair | None = None
    link_stable_path(link, first.slave_path)
    driver = NmeaGpsDriver("gps", "gps-1", link, backoff_s=0.01, max_backoff_s=0.05)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(driver.run, send)
                script = GpsScript(Route(DEFAULT_ROUTE, 5.0), START_NS, 10**9)
                lines = await simulate(first, script, count=3)
                assert_matches(await receive(samples_in, 6), lines)

                first.close()  # unplug: the driver's port breaks
                second = open_pty_pair()
                link_stable_path(link, second.slave_path)
                await driver.wait_open(2)

                script = GpsScript(Route(DEFAULT_ROUTE, 5.0), START_NS + 10 * 10**9, 10**9)
                lines = await simulate(second, script, count=3)
                assert_matches(await receive(samples_in, 6), lines)
                nursery.cancel_scope.cancel()
    finally:
        first.close()
        if second is not None:
            second.close()
    assert driver.health.restarts == 1
    assert driver.health.errors_by_kind.get("serial", 0) >= 1
    assert driver.health.samples == 12


def test_cli_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--count", "--rate", "--start-time", "--step", "--record", "--link"):
        assert option in out
    for option in ("--garbage-every", "--truncate-every", "--corrupt-every"):
        assert option in out


@pytest.mark.parametrize("argv", [["--step", "0.005"], ["--start-time", "yesterday"]])
def test_cli_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def read_lines(fd: int, n: int) -> bytes:
    """Read from ``fd`` until ``n`` line ends arrived (select bounds each wait to 5 s)."""
    data = b""
    while data.count(b"\n") < n:
        readable, _, _ = select.select([fd], [], [], 5)
        assert readable, f"no data from the simulator after {data!r}"
        data += os.read(fd, 4096)
    return data


def test_cli_prints_pty_links_it_and_exits_on_sigterm(tmp_path: Path) -> None:
    link, record = tmp_path / "gps-link", tmp_path / "record.jsonl"
    argv = [sys.executable, "-m", "simulators.gps", "--count", "2", "--rate", "50"]
    argv += ["--start-time", "2024-05-01T12:00:00Z", "--record", str(record), "--link", str(link)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("GPS simulator on /dev/")
        path = line.removeprefix("GPS simulator on ").strip()
        assert os.path.realpath(link) == os.path.realpath(path)
        # A plain open (unlike pyserial) keeps what the simulator already buffered.
        fd = os.open(link, os.O_RDONLY | os.O_NOCTTY)
        try:
            wire = read_lines(fd, 4)  # RMC + GGA for two fixes
        finally:
            os.close(fd)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert wire.startswith(b"$GPRMC,120000.00,A,")
    assert not os.path.lexists(link)
    # Fix 0's record was written before fix 1 went out, and we saw fix 1.
    first = json.loads(record.read_text(encoding="utf-8").splitlines()[0])
    assert first["sentence"] == "RMC"
    assert first["time_ns"] == int(dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC).timestamp()) * 10**9
