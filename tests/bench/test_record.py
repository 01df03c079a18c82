"""bench.record: a run's result joins its JSON history and its row lands above the marker."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bench.record import record, row_head

if TYPE_CHECKING:
    from pathlib import Path

MARKER = "<!-- rows above -->"
RESULT = {
    "machine": {"date": "2026-11-26T12:00:00+00:00", "nproc": 2, "cpu_model": "Xeon"},
    "command": "python -m bench.x",
    "rate": 5,
}


def test_result_and_row_are_appended_in_order(tmp_path: Path) -> None:
    results = tmp_path / "results" / "x.json"
    doc = tmp_path / "performance.md"
    doc.write_text(f"| a | b |\n{MARKER}\ntail\n")
    for rate in (5, 6):
        result = {**RESULT, "rate": rate}
        record(results, result, MARKER, row_head(result) + f"{rate} |", doc)
    assert [r["rate"] for r in json.loads(results.read_text())] == [5, 6]
    assert doc.read_text() == (
        "| a | b |\n"
        "| 2026-11-26 | 2 x Xeon | `python -m bench.x` | 5 |\n"
        "| 2026-11-26 | 2 x Xeon | `python -m bench.x` | 6 |\n"
        f"{MARKER}\ntail\n"
    )


def test_a_doc_without_the_marker_is_left_alone(tmp_path: Path) -> None:
    results = tmp_path / "x.json"
    doc = tmp_path / "performance.md"
    doc.write_text("no table here\n")
    record(results, RESULT, MARKER, row_head(RESULT) + "5 |", doc)
    assert doc.read_text() == "no table here\n"
    assert json.loads(results.read_text()) == [RESULT]
