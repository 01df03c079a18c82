"""Smoke test of the core-path benchmark: both paths run and report every figure.

Correctness only, never speed.
"""

from __future__ import annotations

import json

import pytest

from bench import core_path


def test_both_paths_report_decode_store_and_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert core_path.main(["--batches", "2", "--size", "5", "--rounds", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["events_per_round"] == 10
    for path in ("event", "wire"):
        figures = result[path]
        assert set(figures) == {"decode_us", "store_us", "total_us"}
        assert figures["total_us"] >= figures["decode_us"] >= 0
