"""Smoke test of the soak benchmark and its bench-only synthetic sensor.

The real-process test runs a core process and a gateway process for a few seconds and
asserts correctness only — samples were recorded for both processes, and every seq the
gateway's outbox issued is stored exactly once — never memory or speed.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio

from bench import soak
from bench.soak_process import SyntheticLoadDriver, make_driver, parse_rate
from drivers.base import Sample
from drivers.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.slow
async def test_short_soak_samples_both_processes_and_loses_nothing(tmp_path: Path) -> None:
    argv = "--rate 300 --duration 1.5 --interval 0.25 --sensors 2 --no-record"
    args = soak.build_parser().parse_args(argv.split())
    result = await soak.run(args, tmp_path)
    in_soak = [s for s in result["samples"] if s["phase"] == "soak"]
    assert len(in_soak) >= 3
    for sample in in_soak:
        for process in ("core", "gateway"):
            assert sample[process]["rss_kib"] >= sample[process]["rss_anon_kib"] > 0
            assert sample[process]["fds"] > 0
            assert sample[process]["threads"] >= 1
        assert "events.sqlite" in sample["core"]["files"]
        assert "outbox.sqlite" in sample["gateway"]["files"]
    assert result["core"]["slope_kib_per_min"] is not None
    assert result["gateway"]["anon_slope_kib_per_min"] is not None
    assert result["gateway"]["rss_end_kib"] > 0
    store = result["store"]
    # 300 events/s for at least 1.5 s (the run waits for health reports around it).
    assert store["issued"] >= 450
    assert store["stored"] == store["issued"]
    assert store["lost"] == 0
    assert store["doubled"] == 0
    assert store["unexpected"] == 0


def test_slope_is_least_squares_in_kib_per_minute() -> None:
    # 2 KiB per second with noise that cancels out: 120 KiB per minute.
    points = [(float(t), 1000 + 2.0 * t + (3 if t % 2 else -3)) for t in range(0, 60)]
    assert soak.slope_kib_per_min(points) == pytest.approx(120.0, abs=1.0)
    assert soak.slope_kib_per_min([(0.0, 5.0), (30.0, 5.0)]) == 0.0
    assert soak.slope_kib_per_min([(0.0, 5.0)]) is None


def test_store_check_counts_gaps_duplicates_and_strangers(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (tenant TEXT, gateway TEXT, seq INTEGER)")
        rows = [(soak.TENANT, soak.GATEWAY_ID, s) for s in (1, 2, 2, 4, 7)]
        rows.append((soak.TENANT, "another", 3))
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
    # Issued 1..6, seq 5 dropped on purpose: 3 and 6 are lost, 2 doubled, 7 never issued.
    found = soak.check_store(db, issued=6, dropped=1)
    assert found == {"issued": 6, "stored": 5, "lost": 1, "doubled": 1, "unexpected": 1}


def test_rate_file_syntax() -> None:
    assert parse_rate("max\n") == 0.0
    assert parse_rate("pause") is None
    assert parse_rate("") is None
    assert parse_rate(" 12.5 ") == 12.5
    with pytest.raises(ValueError, match="negative"):
        parse_rate("-1")
    with pytest.raises(ValueError, match="could not convert"):
        parse_rate("fast")


def test_make_driver_refuses_a_bad_table(tmp_path: Path) -> None:
    table = {"kind": "bench-synthetic", "name": "s", "device": "d", "rate_file": "r"}
    assert make_driver(table).rate_file.name == "r"
    with pytest.raises(ConfigError):
        make_driver({**table, "speed": 3})
    with pytest.raises(ConfigError):
        make_driver({**table, "device": ""})


async def test_driver_offers_the_rate_in_its_file(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    del autojump_clock  # virtual time: the schedule is exact, not subject to machine load
    rate_file = tmp_path / "rate"
    rate_file.write_text("200")
    driver = SyntheticLoadDriver("s", "dev", rate_file)
    send, receive = trio.open_memory_channel[Sample](100_000)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        await trio.sleep(10)
        paced = driver.health.samples
        rate_file.write_text("pause")
        await trio.sleep(1)  # the file is read every 0.5 s
        paused = driver.health.samples
        await trio.sleep(5)
        assert driver.health.samples == paused
        nursery.cancel_scope.cancel()
    # 200/s for 10 s, read at 0.5 s polls and sent in 10 ms ticks: within one tick's worth.
    assert 1995 <= paced <= 2000
    first = receive.receive_nowait()
    assert first.device == "dev"
    assert [r.name for r in first.readings] == ["temperature", "humidity"]


async def test_missing_rate_file_pauses_and_is_counted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    del autojump_clock
    driver = SyntheticLoadDriver("s", "dev", tmp_path / "absent")
    send, _receive = trio.open_memory_channel[Sample](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run, send)
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert driver.health.samples == 0
    assert driver.health.errors_by_kind["rate_file"] >= 3
