"""Smoke test of the BLE bridge benchmark: adverts reach Trio through both variants.

It runs ``python -m bench.ble_bridge`` once, briefly (two advertisers, one second measured, no
stall check), against the mock BlueZ on a private D-Bus, and checks that changed adverts arrived
through the asyncio-thread bridge and through trio-asyncio, and what the cancellation check
found. It never asserts speed. The pure helpers get small checks without any process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_program

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
VARIANTS = ("thread", "trio-asyncio")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """Run the benchmark once for the module; return the JSON document and stdout."""
    require_program("dbus-daemon")
    output = tmp_path_factory.mktemp("ble_bridge") / "ble_bridge.json"
    command = [sys.executable, "-m", "bench.ble_bridge", "--runs", "1", "--advertisers", "2"]
    command += ["--period", "0.05", "--duration", "1", "--warmup", "0.2", "--no-stall-check"]
    command += ["--output", str(output)]
    # A sync module fixture, so a subprocess timeout plays the part of trio.fail_after.
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(output.read_text(encoding="utf-8")), done.stdout


@pytest.mark.slow
def test_adverts_arrived_through_both_variants(bench_run: tuple[dict[str, Any], str]) -> None:
    document, stdout = bench_run
    assert document["schema"] == "assetbook.bench.ble_bridge/1"
    assert {"bleak", "dbus-fast", "bluezoo", "trio-asyncio"} <= document["machine"][
        "versions"
    ].keys()
    for variant in VARIANTS:
        (run,) = document["runs"][variant]
        assert run["failures"] == [], (variant, run["failures"])
        assert run["adverts"] > 0, variant
        assert run["adverts_per_s"] == pytest.approx(run["adverts"] / run["seconds"], rel=0.01)
        assert 0 < run["changes_delivered"] <= 1
        # The simulator stamps each change with CLOCK_MONOTONIC, so latencies are positive.
        assert 0 < run["hop_p50_ms"] <= run["hop_p99_ms"]
        assert 0 < run["e2e_p50_ms"] <= run["e2e_p99_ms"]
        assert run["rss_kib"] > 0
    assert document["runs"]["thread"][0]["threads"] > document["runs"]["trio-asyncio"][0]["threads"]
    assert stdout.splitlines()[0] == "| metric | thread | trio-asyncio |"


@pytest.mark.slow
def test_cancellation_semantics_of_both_variants(bench_run: tuple[dict[str, Any], str]) -> None:
    document, _ = bench_run
    for variant in VARIANTS:
        check = document["cancellation"][variant]
        assert check["cancel_reaches_asyncio"], variant
        assert check["cleanup_done_on_return"], variant
        assert check["exception_type_kept"], variant
        assert check["leftover_task_cancelled"], variant


def test_stamp_round_trip_and_foreign_adverts_are_ignored() -> None:
    from bench.ble_bridge import TEST_COMPANY_ID, read_stamp, stamp_payload
    from drivers.ble.advert import Advert

    data = stamp_payload(3, 2**32 + 5, 123_456_789)
    mine = Advert("00:BE:0C:00:00:03", 0, ((TEST_COMPANY_ID, data),), (), (), None)
    assert read_stamp(mine) == (3, 5, 123_456_789)  # the sequence number wraps at 32 bits
    other = Advert("C0:FF:EE:00:00:01", 0, ((0x004C, data),), (), (), None)
    assert read_stamp(other) is None
