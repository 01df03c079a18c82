"""Events stored from their wire form give exactly the rows stored from ``Event`` values.

Property test: any valid run of events, sent as one to three batches, is decoded both ways
(:func:`protocol.codec.decode` and :func:`protocol.codec.decode_wire`) and stored through two
fresh stores, with ``store_batch`` (the joined events) and ``store_wire_batch`` (the joined
:class:`~protocol.wire.WireEvents`). Every column of every stored row, the readings blob byte
for byte, and every store result must be the same.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.storage import StoreResult, open_sqlite_store
from cloud.storage.codec import encode_readings, encode_records
from protocol import codec
from protocol.events import Event
from protocol.messages import Batch
from protocol.wire import WireEvents
from tests.protocol.protocol_support import event_runs

TENANT = "acme"
GATEWAY = "gw-1"


@st.composite
def sent_batches(draw: st.DrawFn) -> list[bytes]:
    """A run of events cut into consecutive batches, encoded as a gateway sends them."""
    events = draw(event_runs(max_size=12))
    cuts = (
        sorted(draw(st.sets(st.integers(1, len(events) - 1), max_size=2)))
        if len(events) > 1
        else []
    )
    bounds = [0, *cuts, len(events)]
    return [codec.encode(Batch(events[a:b])) for a, b in itertools.pairwise(bounds)]


def _rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT tenant_id, device_id, wall_ns, gateway_id, seq, mono_ns, boot_id, clock,"
            " received_ns, readings, typeof(readings) FROM events ORDER BY gateway_id, seq"
        ).fetchall()
        devices = conn.execute("SELECT id, tenant_id, name FROM devices ORDER BY id").fetchall()
    conn.close()
    return [*rows, *devices]


async def _store_events(path: Path, batches: list[bytes]) -> list[StoreResult]:
    events: list[Event] = []
    for data in batches:
        message = codec.decode(data)
        assert isinstance(message, Batch)
        events += message.events
    async with open_sqlite_store(path, synchronous="NORMAL") as store:
        # Twice: the second time every event is a duplicate.
        return [
            await store.store_batch(TENANT, GATEWAY, events, received_ns=42, validated=True)
            for _ in range(2)
        ]


async def _store_wire(path: Path, batches: list[bytes]) -> list[StoreResult]:
    parts = [codec.decode_wire(data) for data in batches]
    assert all(isinstance(part, WireEvents) for part in parts)
    events = WireEvents.join(parts)  # type: ignore[arg-type]  # checked just above
    async with open_sqlite_store(path, synchronous="NORMAL") as store:
        return [
            await store.store_wire_batch(TENANT, GATEWAY, events, received_ns=42) for _ in range(2)
        ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent_batches())
def test_wire_rows_equal_event_rows(batches: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        by_events, by_wire = Path(directory) / "events.db", Path(directory) / "wire.db"
        results = trio.run(_store_events, by_events, batches)
        assert trio.run(_store_wire, by_wire, batches) == results
        assert results[1].duplicates == results[0].stored
        rows = _rows(by_events)
        assert _rows(by_wire) == rows
        assert len(rows) > results[0].stored  # the events and their devices were compared


@settings(max_examples=200, deadline=None)
@given(event_runs(max_size=6))
def test_records_encode_to_the_readings_blob(events: tuple[Event, ...]) -> None:
    wire = codec.decode_wire(codec.encode(Batch(events)))
    assert isinstance(wire, WireEvents)
    for event, item in zip(events, wire, strict=True):
        assert encode_records(item[6]) == encode_readings(event.readings)
