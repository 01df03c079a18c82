"""How fast a committed event reaches the link: bounded outbox transactions, a caught-up
reader answered from memory, and an uplink that does not hold back what has committed.

No timing is asserted: a worker-thread call is held on a gate, and the uplink runs on a
clock that only moves when the test moves it.
"""

from __future__ import annotations

import itertools
import ssl
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from drivers.base import Sample
from gateway.clock import Stamper
from gateway.outbox import (
    APPEND_CHUNK_EVENTS,
    LOSS_OUTBOX_FULL,
    AsyncOutbox,
    Outbox,
    open_outbox,
)
from gateway.uplink import Uplink, UplinkSettings
from protocol.events import ClockSource, Reading
from protocol.session import CoreSession, UplinkSession

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gateway.outbox import StoredEvent

BOOT_ID = bytes(range(16))
MAX_APPEND = 2_000  # the outbox writer's largest group (gateway.app.MAX_APPEND)


def make_stamper() -> Stamper:
    mono = itertools.count(1_000, 10)
    wall = itertools.count(1_700_000_000_000_000_000, 10)
    return Stamper(BOOT_ID, mono.__next__, wall.__next__, lambda: ClockSource.NTP)


def samples(n: int) -> list[Sample]:
    return [Sample("dev-1", (Reading("temperature", "Cel", 20.0 + i),)) for i in range(n)]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


class RecordingOutbox(Outbox):
    """An outbox that logs each call's kind and size, and can hold the next append."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, make_stamper())
        self.calls: list[tuple[str, int]] = []
        self.gate: threading.Event | None = None

    def append(self, samples: Sequence[Sample]) -> list[StoredEvent]:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.wait()
        self.calls.append(("append", len(samples)))
        return super().append(samples)

    def ack(self, upto_seq: int) -> int:
        self.calls.append(("ack", upto_seq))
        return super().ack(upto_seq)


@pytest.mark.parametrize(("chunk", "count"), [(3, 8), (APPEND_CHUNK_EVENTS, MAX_APPEND)])
async def test_an_append_commits_at_most_chunk_events_per_transaction(
    db_path: Path, chunk: int, count: int
) -> None:
    outbox = RecordingOutbox(db_path)
    box = AsyncOutbox(outbox, chunk_events=chunk)
    try:
        stored = await box.append(samples(count))
        sizes = [size for kind, size in outbox.calls if kind == "append"]
        assert max(sizes) <= chunk
        assert sum(sizes) == count
        # Still one run of seqs for the call, and all of it readable.
        assert [e.seq for e in stored] == list(range(1, count + 1))
        assert await box.read_encoded_after(0, count) == stored
    finally:
        await box.aclose()


async def test_an_ack_waits_for_one_chunk_not_for_the_whole_append(db_path: Path) -> None:
    outbox = RecordingOutbox(db_path)
    box = AsyncOutbox(outbox, chunk_events=3)
    gate = threading.Event()
    try:
        await box.append(samples(1))  # seq 1, so that there is something to ack
        outbox.gate = gate
        with trio.fail_after(10):  # a hang guard, not a timing assertion
            async with trio.open_nursery() as nursery:
                try:
                    nursery.start_soon(box.append, samples(8))
                    await trio.testing.wait_all_tasks_blocked()  # held in its first chunk
                    nursery.start_soon(box.ack, 1)
                    await trio.testing.wait_all_tasks_blocked()  # queued behind that chunk
                finally:
                    gate.set()
    finally:
        await box.aclose()
    assert outbox.calls[1:] == [("append", 3), ("ack", 1), ("append", 3), ("append", 2)]


async def test_a_caught_up_reader_does_not_wait_behind_an_append(db_path: Path) -> None:
    outbox = RecordingOutbox(db_path)
    box = AsyncOutbox(outbox)
    gate = threading.Event()
    try:
        stored = await box.append(samples(2))
        outbox.gate = gate
        # A hang guard: a reader that needed the connection would wait for the gate.
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                try:
                    nursery.start_soon(box.append, samples(1))
                    await trio.testing.wait_all_tasks_blocked()  # it holds the connection
                    assert await box.read_encoded_after(stored[-1].seq, 10) == []
                    await box.wait_for_events_after(stored[0].seq)
                finally:
                    gate.set()
    finally:
        await box.aclose()


def test_has_events_after_answers_from_memory_what_the_file_holds(db_path: Path) -> None:
    def agrees(box: Outbox) -> None:
        top = box.statistics().next_seq
        for seq in range(top + 1):
            assert box.has_events_after(seq) == bool(box.read_encoded_after(seq, 1)), seq

    with Outbox(db_path, make_stamper(), max_events=5) as box:
        agrees(box)
        box.append(samples(3))
        agrees(box)
        box.ack(2)
        agrees(box)
        box.append(samples(5))  # overflows: the oldest is dropped, the newest kept
        assert box.losses() == {LOSS_OUTBOX_FULL: 1}
        agrees(box)
        box.ack(8)
        agrees(box)
        box.renumber_above(20)  # nothing stored: only the next seq moves
        agrees(box)
        box.append(samples(2))
        box.renumber_above(30)
        agrees(box)
    with Outbox(db_path, make_stamper(), max_events=5) as box:  # reopened
        agrees(box)


class FakeLink:
    """Stands in for the websocket: keeps what the uplink sends."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.sent.append(data)


def open_session() -> tuple[UplinkSession, CoreSession]:
    session, core = UplinkSession("gw-1", "test/1", BOOT_ID), CoreSession("gw-1")
    core.receive(session.hello(1))
    session.receive(core.welcome("s-1", 0))
    return session, core


async def test_committed_events_go_at_once_and_gather_only_behind_an_ack(
    db_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    delay = 0.05
    settings = UplinkSettings(
        url="wss://core.invalid/link",
        token="t",
        ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        gateway_id="gw-1",
        boot_id=BOOT_ID,
        batch_max_delay_s=delay,
    )
    session, core = open_session()
    link = FakeLink()
    async with open_outbox(db_path, make_stamper()) as outbox, trio.open_nursery() as nursery:
        uplink = Uplink(settings, outbox)
        nursery.start_soon(uplink._send, link, session)  # type: ignore[arg-type]
        await outbox.append(samples(3))
        await trio.testing.wait_all_tasks_blocked()
        # Nothing was in flight: sent as soon as committed, with the clock standing still.
        assert (len(link.sent), session.last_sent_seq) == (1, 3)

        # A batch is in flight: what commits meanwhile waits for its ack, then goes whole.
        await outbox.append(samples(2))
        await outbox.append(samples(2))
        await trio.testing.wait_all_tasks_blocked()
        assert len(link.sent) == 1
        core.receive(link.sent[0])
        session.receive(core.ack(3))
        uplink._notify_acked()
        await trio.testing.wait_all_tasks_blocked()
        assert (len(link.sent), session.last_sent_seq) == (2, 7)

        # No ack comes: batch_max_delay_s bounds the wait.
        await outbox.append(samples(1))
        await trio.testing.wait_all_tasks_blocked()
        assert len(link.sent) == 2
        mock_clock.jump(delay)
        await trio.testing.wait_all_tasks_blocked()
        assert (len(link.sent), session.last_sent_seq) == (3, 8)
        nursery.cancel_scope.cancel()
