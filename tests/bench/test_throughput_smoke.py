"""Smoke test of the throughput benchmark: a few seconds of a real fleet against a real core.

It asserts correctness only — every event a simulated gateway generated is stored exactly
once, and the side-by-side parts run and count what they moved — never speed.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import trio

from bench import throughput
from simulators.fleet import LatencyHistogram
from tests.support import require_program


@pytest.mark.slow
async def test_fleet_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    args = throughput.build_parser().parse_args(
        [
            "--gateways",
            "3",
            "--processes",
            "2",
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--batch",
            "50",
            "--inflight",
            "200",
            "--skip-half",
            "--skip-reference",
            "--no-record",
        ]
    )
    result = await throughput.run(args, tmp_path)
    store = result["store"]
    generated = sum(seq for seq, _acked in result["store_gateways"].values())
    assert result["max"]["errors"] == []
    assert generated > 0
    assert store["stored"] == generated
    assert store["lost"] == 0
    assert store["doubled"] == 0
    assert store["unexpected"] == 0
    # The core acknowledged events in the measured window, and their latencies were recorded.
    assert result["max"]["durable_events_per_s"] > 0
    assert result["max"]["latency_ms"]["p99"] > 0
    seconds = [point["t"] for point in result["timeline"]["max"]]
    assert seconds == list(range(1, len(seconds) + 1))


async def test_profile_writes_flame_graphs_of_the_core_and_the_fleet(tmp_path: Path) -> None:
    args = throughput.build_parser().parse_args(
        [
            *("--gateways", "2", "--duration", "1.5", "--warmup", "0.5", "--batch", "50"),
            *("--skip-half", "--skip-reference", "--no-record", "--profile", str(tmp_path)),
        ]
    )
    result = await throughput.run(args, tmp_path)
    errors = result["max"]["errors"]
    if errors and "py-spy" in errors[0] and os.environ.get("CI") != "true":
        pytest.skip(f"py-spy cannot profile here: {errors[0]}")  # e.g. ptrace not allowed
    assert errors == []
    for name in ("core-max.svg", "fleet-max.svg"):
        svg = (tmp_path / name).read_text()
        assert svg.startswith("<?xml") and "<svg" in svg
    assert result["store"]["lost"] == result["store"]["doubled"] == 0


def test_a_late_tick_counts_in_its_own_second() -> None:
    """Each part's n-th tick of the window is second n, however late its time stamp."""
    result = throughput.PhaseResult(duration_s=3)
    per_second: dict[int, list[float]] = {}
    window = trio.Event()
    window.set()
    # Part 1 woke 5 ms late for its second tick, past the boundary of the window's second 2.
    stamps = {0: [0.998, 1.998, 2.998], 1: [0.998, 2.003, 2.998]}
    for part, times in stamps.items():
        for second, stamp in enumerate(times, start=1):
            tick = {
                "kind": "tick",
                "t": stamp,
                "second": second,
                "acked": 100 + part,
                "measuring": True,
                "latency": LatencyHistogram().to_json(),
            }
            throughput._absorb(tick, result, per_second, {}, window, 2, os.getpid())
    assert {second: slot[0] for second, slot in per_second.items()} == {1: 201, 2: 201, 3: 201}
    assert result.acked == 603


def test_store_check_counts_gaps_and_duplicates(tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE events (tenant TEXT, gateway TEXT, seq INTEGER)")
        rows = [("bench", "a", s) for s in (1, 2, 2, 4)] + [("bench", "b", 1)]
        conn.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
    # a generated 1..4 and was acked up to 4: seq 3 is missing, seq 2 is stored twice;
    # b generated 1..2 and acked 1: seq 2 is missing.
    found = throughput.check_store(db, {"a": [4, 4], "b": [2, 1]})
    assert found["stored"] == 5
    assert found["lost"] == 2
    assert found["doubled"] == 1


def test_ingredients_store_every_event(tmp_path: Path) -> None:
    batches = throughput.sample_batches(3, 40, sensors=2)
    result = throughput.ingredients(batches, rounds=2, workdir=tmp_path)
    assert result["events"] == 3 * 40 * 2
    with sqlite3.connect(tmp_path / "ingredients.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 3 * 40 * 2


@pytest.mark.slow
async def test_mosquitto_reference_forwards_the_batches(tmp_path: Path) -> None:
    require_program("mosquitto")
    require_program("mosquitto_passwd")
    from cloud.home import init_home
    from tests.support import free_port

    home = init_home(tmp_path / "core", link_port=free_port(), rest_port=free_port())
    batches = throughput.sample_batches(2, 20, sensors=2)
    result = await throughput.mosquitto(home, batches, 0.5, tmp_path, events_per_batch=20, idle_s=1)
    assert result["events_per_s"] > 0
    assert result["latency_ms"]["p50"] > 0


def test_histogram_percentiles_are_within_two_percent() -> None:
    hist = LatencyHistogram()
    samples = [float(n) for n in range(1, 10_001)]  # 1 µs .. 10 ms
    for sample in samples:
        hist.add(sample)
    merged = LatencyHistogram.from_json(hist.to_json())
    merged.merge(LatencyHistogram())
    for fraction in (0.5, 0.99, 0.999):
        exact = samples[int(fraction * len(samples)) - 1] / 1000
        assert exact <= merged.percentile_ms(fraction) <= exact * 1.021
    assert merged.total == len(samples)
    assert LatencyHistogram().percentile_ms(0.5) == 0.0
