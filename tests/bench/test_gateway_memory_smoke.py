"""Smoke test of the gateway memory benchmark: a real gateway process reading a one-GPS site,
online with a real core, measured for a moment.

Correctness only — the driver produced samples, the link was up, the figures are plausible
— never size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import gateway_memory

SCENARIO = """
[site]
name = "smoke"

[[gps]]
device = "gps-1"
rate = 5.0
"""


def test_memory_of_this_process_is_read_from_proc() -> None:
    measured = gateway_memory.memory_kib(os.getpid())
    assert measured["VmHWM"] >= measured["VmRSS"] > 0
    assert 0 < measured["USS"] <= measured["VmRSS"]
    assert measured["threads"] >= 1


@pytest.mark.slow
async def test_gateway_with_a_gps_is_measured_online(tmp_path: Path) -> None:
    scenario = tmp_path / "site.toml"
    scenario.write_text(SCENARIO)
    args = gateway_memory.build_parser().parse_args(
        ["--scenario", str(scenario), "--settle", "0", "--measure", "1", "--no-record"]
    )
    result = await gateway_memory.run(args, tmp_path / "run")
    assert result["drivers"]["gps-1"] > 0
    assert result["uplink_state"] == "online"
    assert result["skipped"] == []
    floor = result["floor_python_kib"]["VmRSS"] / 1024
    assert floor < result["rss_mib_mean"] <= result["rss_mib_max"] <= result["peak_rss_mib"]
    assert 0 < result["uss_mib_mean"] <= result["rss_mib_max"]
