"""Tests for the durable outbox: numbering, acks, bounds, the loss ledger, crash safety and
the Trio wrapper."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import cbor2
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import Sample
from gateway.clock import Stamper
from gateway.errors import OutboxError, OutboxFull
from gateway.outbox import (
    LOSS_CORRUPT_EVENT,
    LOSS_INVALID_EVENT,
    LOSS_OUTBOX_FULL,
    Outbox,
    StoredEvent,
    decode_event_body,
    decode_stored_body,
    encode_event_body,
    encode_stored_body,
    open_outbox,
)
from protocol.events import ClockSource, Event, Reading

BOOT_ID = bytes(range(16))
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_stamper() -> Stamper:
    mono = itertools.count(1_000, 10)
    wall = itertools.count(1_700_000_000_000_000_000, 10)
    return Stamper(BOOT_ID, mono.__next__, wall.__next__, lambda: ClockSource.NTP)


def samples(n: int, device: str = "dev-1") -> list[Sample]:
    return [Sample(device, (Reading("temperature", "Cel", 20.0 + i),)) for i in range(n)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


def all_events(box: Outbox) -> list[Event]:
    return box.read_after(0, 10**9)


# -- synchronous core ---------------------------------------------------------------------


def test_append_assigns_consecutive_seqs_and_stamps(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        first = [s.event() for s in box.append(samples(3))]
        second = [s.event() for s in box.append(samples(2, device="dev-2"))]
    assert [e.seq for e in first + second] == [1, 2, 3, 4, 5]
    assert [e.device for e in second] == ["dev-2", "dev-2"]
    assert all(e.boot_id == BOOT_ID and e.clock is ClockSource.NTP for e in first)
    assert first[1].readings == samples(3)[1].readings


def test_read_after_returns_what_append_returned_in_order(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        appended = [s.event() for s in box.append(samples(10))]
        assert box.read_after(0, 100) == appended
        assert box.read_after(4, 3) == appended[4:7]
        assert box.read_after(10, 100) == []


def test_empty_append_stores_nothing_and_consumes_no_seq(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        assert box.append([]) == []
        assert box.append(samples(1))[0].seq == 1


def test_ack_removes_up_to_and_counts(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        box.append(samples(10))
        assert box.ack(4) == 4
        assert box.depth() == 6
        oldest = box.oldest()
        assert oldest is not None
        assert oldest.seq == 5
        assert [e.seq for e in all_events(box)] == list(range(5, 11))


def test_ack_backwards_or_repeated_is_ignored(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        box.append(samples(10))
        assert box.ack(6) == 6
        assert box.ack(6) == 0
        assert box.ack(3) == 0
        assert box.depth() == 4
        assert box.statistics().acked == 6


def test_ack_backwards_is_ignored_after_reopen(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        box.append(samples(5))
        box.ack(3)
    with Outbox(db_path, make_stamper()) as box:
        assert box.ack(2) == 0
        assert box.depth() == 2


def test_ack_beyond_last_issued_seq_is_refused(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        box.append(samples(3))
        with pytest.raises(OutboxError, match="beyond the last issued seq 3"):
            box.ack(4)
        assert box.depth() == 3


def test_seq_never_reused_after_acking_everything_and_reopening(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        box.append(samples(7))
        assert box.ack(7) == 7
        assert box.depth() == 0
        assert box.oldest() is None
    with Outbox(db_path, make_stamper()) as box:
        assert [e.seq for e in box.append(samples(2))] == [8, 9]


def test_full_outbox_drops_oldest_and_records_loss(db_path: Path) -> None:
    with Outbox(db_path, make_stamper(), max_events=5) as box:
        box.append(samples(4))
        box.append(samples(3))
        assert [e.seq for e in all_events(box)] == [3, 4, 5, 6, 7]
        assert box.losses() == {LOSS_OUTBOX_FULL: 2}
        box.append(samples(5))
        assert [e.seq for e in all_events(box)] == [8, 9, 10, 11, 12]
        stats = box.statistics()
    assert (stats.depth, stats.appended, stats.dropped, stats.next_seq) == (5, 12, 7, 13)
    with Outbox(db_path, make_stamper(), max_events=5) as box:
        assert box.losses() == {LOSS_OUTBOX_FULL: 7}


def test_batch_larger_than_outbox_is_refused_whole(db_path: Path) -> None:
    with Outbox(db_path, make_stamper(), max_events=3) as box:
        box.append(samples(2))
        with pytest.raises(OutboxFull, match="exceeds the outbox's max_events"):
            box.append(samples(4))
        assert [e.seq for e in all_events(box)] == [1, 2]
        assert box.append(samples(1))[0].seq == 3
        assert box.losses() == {}


def test_statistics_counts_and_size(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        empty = box.statistics()
        box.append(samples(50))
        box.ack(20)
        stats = box.statistics()
    assert empty.depth == 0
    assert empty.appended == 0
    assert (stats.depth, stats.appended, stats.acked, stats.dropped) == (30, 50, 20, 0)
    assert stats.bytes_on_disk > empty.bytes_on_disk > 0


def test_closed_outbox_refuses_calls(db_path: Path) -> None:
    box = Outbox(db_path, make_stamper())
    box.close()
    box.close()
    with pytest.raises(OutboxError, match="is closed"):
        box.append(samples(1))


def test_second_opener_is_refused_while_first_holds_the_file(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        box.append(samples(1))
        with pytest.raises(OutboxError, match="in use by another process"):
            Outbox(db_path, make_stamper())
    with Outbox(db_path, make_stamper()) as box:
        assert box.depth() == 1


def test_unknown_schema_version_is_refused(db_path: Path) -> None:
    Outbox(db_path, make_stamper()).close()
    import sqlite3

    db = sqlite3.connect(db_path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox(db_path, make_stamper())


def test_corrupt_row_raises_outbox_error() -> None:
    with pytest.raises(OutboxError, match="stored event 3 is corrupt"):
        decode_stored_body(3, b"\xff\x00")
    with pytest.raises(OutboxError, match="stored event 4 is corrupt"):
        decode_stored_body(4, encode_stored_body_with_bad_device())


def encode_stored_body_with_bad_device() -> bytes:
    import cbor2

    # The six fields after the seq, without their array head, as the outbox stores them.
    return cbor2.dumps([7, BOOT_ID, 1, 2, 1, [{0: "n", 2: 1}]], canonical=True)[1:]


values = st.one_of(
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.booleans(),
    st.binary(max_size=20),
)


@given(
    device=st.text(min_size=1, max_size=20),
    mono=st.integers(min_value=0, max_value=2**63 - 1),
    wall=st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    clock=st.sampled_from(ClockSource),
    readings=st.lists(
        st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=5), values),
        min_size=1,
        max_size=5,
    ),
)
def test_stored_body_round_trips(
    device: str,
    mono: int,
    wall: int,
    clock: ClockSource,
    readings: list[tuple[str, str, int | float | str | bool | bytes]],
) -> None:
    event = Event(42, device, BOOT_ID, mono, wall, clock, tuple(Reading(*r) for r in readings))
    assert_same_event(decode_stored_body(42, encode_stored_body(event)), event)


def assert_same_event(decoded: Event, event: Event) -> None:
    assert decoded == event
    # bool is an int subclass: equality alone would not notice True coming back as 1.
    assert [type(r.value) for r in decoded.readings] == [type(r.value) for r in event.readings]


def test_corrupt_version_1_row_raises_outbox_error() -> None:
    with pytest.raises(OutboxError, match="stored event 3 is corrupt"):
        decode_event_body(3, b"\xff\x00")
    with pytest.raises(OutboxError, match="stored event 4 is corrupt"):
        decode_event_body(4, encode_v1_body_with_bad_device())


def encode_v1_body_with_bad_device() -> bytes:
    import cbor2

    return cbor2.dumps([7, BOOT_ID, 1, 2, 1, []])


v1_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.booleans(),
    st.binary(max_size=20),
)


@given(
    device=st.text(min_size=1, max_size=20),
    mono=st.integers(min_value=0, max_value=2**63 - 1),
    wall=st.integers(min_value=0, max_value=2**63 - 1),
    clock=st.sampled_from(ClockSource),
    readings=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=5), v1_values), max_size=5),
)
def test_version_1_body_round_trips(
    device: str,
    mono: int,
    wall: int,
    clock: ClockSource,
    readings: list[tuple[str, str, int | float | str | bool | bytes]],
) -> None:
    event = Event(42, device, BOOT_ID, mono, wall, clock, tuple(Reading(*r) for r in readings))
    assert_same_event(decode_event_body(42, encode_event_body(event)), event)


def test_samples_the_link_refuses_are_counted_and_never_stored(db_path: Path) -> None:
    # Stored, a NaN or a nameless reading would be refused by the core at every resend and
    # hold the link up for good; the ledger makes the drop visible instead.
    bad = [
        Sample("dev-1", (Reading("temperature", "Cel", float("nan")),)),
        Sample("dev-1", (Reading("", "Cel", 1.0),)),
        Sample("dev-1", ()),
    ]
    with Outbox(db_path, make_stamper()) as box:
        stored = box.append([*samples(2), *bad, *samples(1)])
        assert [s.seq for s in stored] == [1, 2, 3]
        assert [e.seq for e in all_events(box)] == [1, 2, 3]
        assert box.losses() == {LOSS_INVALID_EVENT: 3}
        assert box.statistics().next_seq == 4


def write_version_1_file(path: Path, rows: list[tuple[int, bytes]]) -> None:
    """A version-1 outbox holding ``rows`` (consecutive seqs), seqs below them acked."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    db.execute(
        "CREATE TABLE losses (reason TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID"
    )
    first, last = rows[0][0], rows[-1][0]
    meta = {"next_seq": last + 1, "acked_upto": first - 1, "appended": last, "acked": first - 1}
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    db.executemany("INSERT INTO events VALUES (?, ?)", rows)
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()


def test_a_version_1_file_is_upgraded_in_place(db_path: Path) -> None:
    v1 = [
        (5, cbor2.dumps(["dev-1", BOOT_ID, 10, 20, 1, [["temperature", "Cel", 21.5]]])),
        (6, cbor2.dumps(["dev-1", BOOT_ID, 11, 21, 1, [["temperature", "Cel", float("inf")]]])),
        (7, cbor2.dumps(["dev-2", BOOT_ID, 12, 22, 0, [["on", "", True], ["raw", "", b"\x01"]]])),
    ]
    write_version_1_file(db_path, v1)
    with Outbox(db_path, make_stamper()) as box:
        events = all_events(box)
        # The refused event never left the gateway, nor did any after it: they close the gap.
        assert [e.seq for e in events] == [5, 6]
        assert events[0].readings == (Reading("temperature", "Cel", 21.5),)
        assert events[1].readings == (Reading("on", "", True), Reading("raw", "", b"\x01"))
        assert events[1].clock is ClockSource.NONE
        assert box.losses() == {LOSS_INVALID_EVENT: 1}
        assert box.depth() == 2
        assert box.append(samples(1))[0].seq == 7
        assert box._conn().execute("PRAGMA user_version").fetchone()[0] == 2


def test_corrupt_version_1_rows_are_counted_and_the_rest_upgraded(db_path: Path) -> None:
    def good(device: str, value: float) -> bytes:
        return cbor2.dumps([device, BOOT_ID, 10, 20, 1, [["temperature", "Cel", value]]])

    v1 = [
        (3, good("dev-1", 1.0)),
        (4, b"\xff not cbor"),
        (5, good("dev-2", 2.0)),
        (6, cbor2.dumps(["dev-1", "not bytes", 10, 20, 1, []])),  # CBOR, wrong field type
        (7, good("dev-3", float("nan"))),  # refused by the link protocol
        (8, good("dev-4", 4.0)),
    ]
    write_version_1_file(db_path, v1)
    with Outbox(db_path, make_stamper()) as box:
        events = all_events(box)
        assert [(e.seq, e.device) for e in events] == [(3, "dev-1"), (4, "dev-2"), (5, "dev-4")]
        assert box.losses() == {LOSS_CORRUPT_EVENT: 2, LOSS_INVALID_EVENT: 1}
        assert box.append(samples(1))[0].seq == 6


# -- crash safety ---------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import sys
    from gateway.clock import Stamper
    from gateway.outbox import Outbox
    from drivers.base import Sample
    from protocol.events import ClockSource, Reading

    stamper = Stamper(bytes(16), lambda: 1, lambda: 2, lambda: ClockSource.NONE)
    box = Outbox(sys.argv[1], stamper)
    batch = [Sample("d", (Reading("n", "count", i),)) for i in range(7)]
    while True:
        events = box.append(batch)
        print(events[-1].seq, flush=True)
    """
)


async def test_events_survive_sigkill_and_seqs_continue(db_path: Path) -> None:
    # Appends whose call returned must be on disk after the process dies mid-stream.
    reported: list[int] = []
    with trio.fail_after(20):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", _CHILD, str(db_path)],
            stdout=subprocess.PIPE,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert proc.stdout is not None
        buffer = b""
        while len(reported) < 30:
            chunk = await proc.stdout.receive_some()
            assert chunk, "child exited early"
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            reported.extend(int(line) for line in lines)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        await proc.stdout.aclose()
    with Outbox(db_path, make_stamper()) as box:
        stored = [e.seq for e in all_events(box)]
        highest = max(reported)
        # Everything reported is there, and nothing beyond it is half-written: seqs are one
        # unbroken run from 1.
        assert stored[:highest] == list(range(1, highest + 1))
        assert stored == list(range(1, len(stored) + 1))
        assert len(stored) % 7 == 0
        assert box.append(samples(1))[0].seq == stored[-1] + 1


# -- Trio wrapper -------------------------------------------------------------------------


async def test_async_wrapper_round_trip(db_path: Path) -> None:
    with trio.fail_after(5):
        async with open_outbox(db_path, make_stamper()) as box:
            events = [s.event() for s in await box.append(samples(3))]
            encoded = await box.read_encoded_after(0, 10)  # from the in-memory tail
            assert [stored.event() for stored in encoded] == events
            assert await box.ack(2) == 2
            assert await box.depth() == 1
            assert await box.oldest() == events[2]
            assert (await box.statistics()).acked == 2
            assert await box.losses() == {}
        with pytest.raises(OutboxError, match="is closed"):
            await box.depth()


async def test_the_tail_never_serves_what_a_full_outbox_dropped(db_path: Path) -> None:
    # max_events far below the memory tail's size, and a reader (the uplink) that falls
    # behind: overflow must empty the tail as well as the file, or the reader would be sent
    # events the ledger already counts as lost.
    read_upto, sent = 0, []
    with trio.fail_after(5):
        async with open_outbox(db_path, make_stamper(), max_events=3) as box:
            for size in (2, 2, 3, 1, 3, 1, 1, 2):
                await box.append(samples(size))
                oldest_kept = await box.resume_from()
                [got] = await box.read_encoded_after(read_upto, 1)
                assert got.seq >= oldest_kept
                read_upto = got.seq
                sent.append(got.seq)
            losses = await box.losses()
    # After a drop the reader resumes at the oldest event still stored.
    assert sent == [1, 2, 5, 6, 9, 10, 11, 13]
    assert losses == {LOSS_OUTBOX_FULL: 15 - 3}


async def test_concurrent_appends_get_unique_contiguous_seqs(db_path: Path) -> None:
    results: list[list[StoredEvent]] = []

    async def producer(device: str) -> None:
        for _ in range(5):
            results.append(await box.append(samples(4, device=device)))

    with trio.fail_after(10):
        async with open_outbox(db_path, make_stamper()) as box:
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(producer, f"dev-{i}")
                    nursery.start_soon(box.read_encoded_after, 0, 10)
            stored = await box.read_encoded_after(0, 1000)
    seqs = sorted(e.seq for batch in results for e in batch)
    assert seqs == list(range(1, 8 * 5 * 4 + 1))
    assert stored == sorted((e for batch in results for e in batch), key=lambda e: e.seq)
    # Each batch is one transaction: its seqs are consecutive.
    for batch in results:
        assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + 4))


async def test_wait_for_events_after_returns_at_once_when_events_exist(db_path: Path) -> None:
    with trio.fail_after(5):
        async with open_outbox(db_path, make_stamper()) as box:
            await box.append(samples(2))
            await box.wait_for_events_after(1)


async def test_wait_for_events_after_is_woken_only_by_a_later_append(db_path: Path) -> None:
    woken = trio.Event()

    async def waiter() -> None:
        await box.wait_for_events_after(5)
        woken.set()

    with trio.fail_after(5):
        async with open_outbox(db_path, make_stamper()) as box, trio.open_nursery() as nursery:
            await box.append(samples(3))
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            # seqs 4 and 5 are not above 5: the waiter re-checks and keeps waiting.
            await box.append(samples(2))
            await trio.testing.wait_all_tasks_blocked()
            await box.depth()  # queued behind the waiter's re-check (the limiter is FIFO)
            assert not woken.is_set()
            await box.append(samples(1))
            await woken.wait()


def test_durability_settings(db_path: Path) -> None:
    # Power-loss safety cannot be simulated here; guard the settings that provide it.
    with Outbox(db_path, make_stamper()) as box:
        db = box._conn()
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_renumber_above_moves_waiting_events_past_the_cores_seqs(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        appended = [s.event() for s in box.append(samples(3))]
        assert box.renumber_above(10) == 3
        moved = all_events(box)
        assert [e.seq for e in moved] == [11, 12, 13]
        assert [e.readings for e in moved] == [e.readings for e in appended]
        assert box.append(samples(1))[0].seq == 14
        assert box.ack(10) == 0  # the core's seqs are now below everything held


def test_renumber_above_is_a_no_op_in_the_normal_case(db_path: Path) -> None:
    with Outbox(db_path, make_stamper()) as box:
        box.append(samples(5))
        box.ack(2)
        assert box.renumber_above(4) == 0
        assert [e.seq for e in all_events(box)] == [3, 4, 5]
