"""Property tests: arbitrary events and cursors through the store and its codecs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cbor2
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.storage import InvalidCursor, StoredEvent, open_sqlite_store
from cloud.storage.codec import decode_readings, encode_readings
from cloud.storage.cursor import CursorPosition, decode_cursor, encode_cursor, query_scope
from protocol.events import ClockSource, Event, Reading, Value

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
values: st.SearchStrategy[Value] = st.one_of(
    st.booleans(),
    st.integers(),  # any size: bignums must round-trip too
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=64),
)
readings = st.builds(Reading, name=st.text(max_size=20), unit=st.text(max_size=8), value=values)


@st.composite
def event_batches(draw: st.DrawFn) -> list[Event]:
    seqs = draw(st.lists(st.integers(0, 2**63 - 1), min_size=1, max_size=20, unique=True))
    return [
        Event(
            seq=seq,
            device=draw(st.text(min_size=1, max_size=12)),
            boot_id=draw(st.binary(min_size=16, max_size=16)),
            mono_ns=draw(INT64),
            wall_ns=draw(INT64),
            clock=draw(st.sampled_from(ClockSource)),
            readings=tuple(draw(st.lists(readings, max_size=5))),
        )
        for seq in seqs
    ]


def strict(event: Event) -> tuple[object, ...]:
    """Equality that also tells True from 1 from 1.0, and -0.0 from 0.0."""
    typed = tuple((r.name, r.unit, type(r.value), repr(r.value)) for r in event.readings)
    return (event.seq, event.device, event.boot_id, event.mono_ns, event.wall_ns,
            event.clock, typed)  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tenant=st.text(min_size=1, max_size=10),
    gateway=st.text(min_size=1, max_size=10),
    batch=event_batches(),
)
def test_any_batch_round_trips_exactly(tenant: str, gateway: str, batch: list[Event]) -> None:
    async def run(path: Path) -> None:
        async with open_sqlite_store(path, synchronous="NORMAL") as store:
            result = await store.store_batch(tenant, gateway, batch, received_ns=42)
            assert (result.stored, result.acked_seq) == (len(batch), max(e.seq for e in batch))
            found: list[StoredEvent] = []
            cursor: str | None = None
            while True:
                page = await store.query_events(tenant, limit=7, cursor=cursor)
                found += page.events
                if (cursor := page.next_cursor) is None:
                    break
        expected = sorted(batch, key=lambda e: (e.wall_ns, e.seq))
        assert [strict(s.event) for s in found] == [strict(e) for e in expected]
        assert {(s.tenant, s.gateway, s.received_ns) for s in found} == {(tenant, gateway, 42)}

    with tempfile.TemporaryDirectory() as directory:
        trio.run(run, Path(directory) / "events.db")


@given(st.lists(readings, max_size=10))
def test_readings_codec_round_trips(items: list[Reading]) -> None:
    original = Event(0, "d", bytes(16), 0, 0, ClockSource.NONE, tuple(items))
    back = Event(0, "d", bytes(16), 0, 0, ClockSource.NONE, decode_readings(encode_readings(items)))
    assert strict(back) == strict(original)


all_values: st.SearchStrategy[Value] = st.one_of(
    values,
    st.floats(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=300),
    st.binary(max_size=300),
)


@given(st.lists(st.builds(Reading, name=st.text(max_size=30), unit=st.text(max_size=8),
                          value=all_values), max_size=30))  # fmt: skip
def test_readings_encoder_writes_exactly_what_cbor2_writes(items: list[Reading]) -> None:
    # The fast encoder must keep the stored bytes identical to cbor2's (version-1 rows and
    # new rows are then the same format), NaN, infinities and bignums included.
    expected = cbor2.dumps([[r.name, r.unit, r.value] for r in items])
    assert encode_readings(items) == expected
    assert encode_readings(tuple(items)) == expected


KEY = b"k" * 32
SCOPE = query_scope("acme", None, None, None, None)


@given(wall_ns=INT64, gateway=st.text(max_size=40), seq=st.integers(0, 2**63 - 1))
def test_cursor_round_trips(wall_ns: int, gateway: str, seq: int) -> None:
    position = CursorPosition(wall_ns, gateway, seq)
    assert decode_cursor(KEY, SCOPE, encode_cursor(KEY, SCOPE, position)) == position


@given(st.text(max_size=200))
def test_arbitrary_text_is_never_accepted_as_a_cursor(text: str) -> None:
    try:
        decode_cursor(KEY, SCOPE, text)
    except InvalidCursor:
        return
    raise AssertionError(f"accepted forged cursor {text!r}")
