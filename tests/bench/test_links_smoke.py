"""Smoke test of the links benchmark: a few real links held against a real core.

It asserts correctness only — every link came up through TLS, its token and Hello/Welcome,
stayed open through the hold with its trickle of events, and had every event acknowledged —
never speed or memory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import links
from simulators.fleet import HoldStats


@pytest.mark.slow
async def test_every_link_is_held_and_acked(tmp_path: Path) -> None:
    args = links.build_parser().parse_args(
        ["--links", "20", "--processes", "2", "--hold", "2", "--trickle", "0.5", "--no-record"]
    )
    result = await links.run(args, tmp_path)
    assert result["errors"] == []
    assert result["held"] == 20
    assert result["closed_early"] == {}
    assert result["failed"] == {}
    assert result["unacked"] == 0
    # Each link sent at least its final batch, and the core acknowledged every event.
    assert result["events_sent"] >= 20 * 2
    assert result["events_acked"] == result["events_sent"]
    assert result["handshake_ms"]["p99"] > 0
    baseline = result["core_kib"]["baseline"]
    assert baseline["rss"] > 0
    assert baseline["uss"] > 0
    assert baseline["pss"] > 0


def test_hold_stats_count_every_outcome() -> None:
    stats = HoldStats(held=3, unacked=1, closed={"1011": 2}, failed={"TimeoutError": 1})
    assert stats.ended == 7


def test_row_names_the_figures() -> None:
    machine = {"date": "2026-11-26T10:00:00+00:00", "nproc": 2, "cpu_model": "cpu"}
    memory = {"rss": 2048, "pss": 1024, "uss": 1024}
    result = {
        "machine": machine,
        "command": "python -m bench.links --links 2",
        "links": 2,
        "held": 2,
        "core_kib": {
            "baseline": memory,
            "end": memory,
            "per_link": {"rss": 40.5, "uss": 38.0, "pss": 39.0},
        },
        "handshakes_per_s": 150.0,
        "handshakes_per_s_peak": 180,
        "handshake_ms": {"p50": 10.0, "p99": 20.0, "max": 21.0},
        "core_cpu_s_per_s_holding": 0.05,
        "events_acked": 4,
        "events_sent": 4,
        "fleet_peak_rss_mib": [60.0, 61.5],
    }
    row = links._row(result)
    assert row.startswith("| 2026-11-26 | 2 x cpu |")
    assert "| 2 / 2 |" in row
    assert "| 40.5 / 38.0 |" in row
    assert "| 150.0 (180) |" in row
    assert row.endswith("| 61.5 |")
