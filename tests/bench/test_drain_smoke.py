"""Smoke test of the drain benchmark: a small outbox filled while the core is down, drained
through the real uplink to a real core process.

Correctness only — every buffered reading stored exactly once, the outbox empty afterwards,
the figures present — never speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import drain


@pytest.mark.slow
async def test_drain_stores_every_buffered_reading_exactly_once(tmp_path: Path) -> None:
    args = drain.build_parser().parse_args(
        ["--events", "3000", "--append", "700", "--batch", "400", "--no-record"]
    )
    result = await drain.run(args, tmp_path)
    assert (result["stored"], result["lost"], result["doubled"]) == (3000, 0, 0)
    assert result["left_in_outbox"] == 0
    # The first batch has the configured size; the backlog then goes in batches up to the
    # core's limit (2000), so 3000 events take at least 2 (more after a resend).
    assert result["batches"] >= 2
    for key in ("fill_events_per_s", "drain_events_per_s", "fill_cpu_us_per_event"):
        assert result[key] > 0, key


def test_check_store_counts_gaps_and_doubles(tmp_path: Path) -> None:
    import sqlite3

    db_path = tmp_path / "events.sqlite"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE events (gateway TEXT, seq INTEGER)")
        db.executemany("INSERT INTO events VALUES ('gw', ?)", [(1,), (2,), (2,), (4,)])
    db.close()
    assert drain.check_store(db_path, 4) == {"stored": 4, "lost": 1, "doubled": 1}
    assert drain.check_store(db_path, 5)["lost"] == 5  # the last seq never arrived
