"""Crash safety: every batch whose store_batch returned survives a SIGKILL of the process.

The child (this file run as a script) stores batches from several concurrent gateways, so
group commits are in flight, and prints ``<gateway> <acked_seq>`` after each store_batch
returns. The parent kills it with SIGKILL mid-stream, reopens the file, and checks that every
event up to each printed mark is there. (SIGKILL exercises the process-crash half of the
durability promise; power loss is covered by ``synchronous=FULL``, which no test can pull
the plug on.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import trio

from cloud.storage import EventStore, open_sqlite_store
from protocol.events import ClockSource, Event, Reading

GATEWAYS = 4
BATCH_EVENTS = 50
ACKS_BEFORE_KILL = 40


def batch(first_seq: int) -> list[Event]:
    return [
        Event(seq, "dev", bytes(16), seq, seq, ClockSource.NTP, (Reading("n", "", seq),))
        for seq in range(first_seq, first_seq + BATCH_EVENTS)
    ]


async def child(path: str) -> None:
    async with open_sqlite_store(path) as store:

        async def gateway_loop(gateway: str) -> None:
            seq = 1
            while True:
                result = await store.store_batch("acme", gateway, batch(seq), received_ns=0)
                # Written only after the return: the parent may rely on everything printed.
                sys.stdout.write(f"{gateway} {result.acked_seq}\n")
                sys.stdout.flush()
                seq += BATCH_EVENTS

        async with trio.open_nursery() as nursery:
            for i in range(GATEWAYS):
                nursery.start_soon(gateway_loop, f"gw-{i}")


async def read_acks_then_kill(process: trio.Process) -> dict[str, int]:
    assert process.stdout is not None
    acked: dict[str, int] = {}
    buffer = b""
    lines = 0
    killed = False
    while chunk := await process.stdout.receive_some():
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            gateway, seq = line.decode().split()
            acked[gateway] = max(acked.get(gateway, 0), int(seq))
            lines += 1
        if lines >= ACKS_BEFORE_KILL and not killed:
            process.send_signal(signal.SIGKILL)
            killed = True
    # Lines still in the pipe after the kill were also printed after a return: they count.
    return acked


async def test_acknowledged_batches_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [sys.executable, __file__, str(path)], stdout=subprocess.PIPE
        )
        try:
            acked = await read_acks_then_kill(process)
        finally:
            process.kill()  # no-op once it is dead; reaps it if the test failed early
            await process.wait()
        assert process.returncode == -signal.SIGKILL
        assert sum(acked.values()) >= ACKS_BEFORE_KILL * BATCH_EVENTS

        async with open_sqlite_store(path) as store:
            for gateway, mark in acked.items():
                assert await store.acked_seq("acme", gateway) >= mark
                seqs = await stored_seqs(store, gateway)
                assert set(range(1, mark + 1)) <= seqs


async def stored_seqs(store: EventStore, gateway: str) -> set[int]:
    seqs: set[int] = set()
    cursor: str | None = None
    while True:
        page = await store.query_events("acme", gateway=gateway, limit=1000, cursor=cursor)
        seqs |= {s.event.seq for s in page.events}
        if page.next_cursor is None:
            return seqs
        cursor = page.next_cursor


if __name__ == "__main__":
    trio.run(child, sys.argv[1])
