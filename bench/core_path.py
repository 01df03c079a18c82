"""CPU cost per event of the core's ingest path in one process: decode, then store.

``python -m bench.core_path`` encodes ``--batches`` batches exactly as a fleet gateway sends
them (:func:`bench.throughput.sample_batches`) and, each round, puts them through the link's
two steps with no networking:

* **decode**: the decoder :class:`protocol.session.CoreSession` runs on each message;
* **store**: every decoded batch handed at once to a real :class:`SqliteEventStore`
  (``synchronous=FULL``) in a fresh temporary directory, as many links would, so group commit
  merges them; each batch is under its own gateway name, so nothing is a duplicate.

Two paths are measured, interleaved round by round: **event** decodes to ``Event`` values
(:func:`protocol.codec.decode`) and stores them with ``store_batch(..., validated=True)``;
**wire** keeps each batch in its validated wire form (:func:`protocol.codec.decode_wire`)
and stores it with ``store_wire_batch``. CPU time is ``time.process_time`` (every thread of
the process, so the store's writer thread counts); the figure per step is the best of
``--rounds`` rounds (the total is the best round's sum), in microseconds per event. It
measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from bench.throughput import sample_batches
from cloud.storage.sqlite import SqliteEventStore
from protocol import codec

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

TENANT = "bench"


async def _store_event_batches(
    store: SqliteEventStore, decoded: Sequence[Any], round_no: int
) -> None:
    async with trio.open_nursery() as nursery:
        for i, message in enumerate(decoded):
            nursery.start_soon(
                lambda g, m: store.store_batch(TENANT, g, m.events, 1, validated=True),
                f"gw-{round_no}-{i}",
                message,
            )


async def _store_wire_batches(
    store: SqliteEventStore, decoded: Sequence[Any], round_no: int
) -> None:
    async with trio.open_nursery() as nursery:
        for i, events in enumerate(decoded):
            nursery.start_soon(
                lambda g, e: store.store_wire_batch(TENANT, g, e, 1), f"gw-{round_no}-{i}", events
            )


#: Each path's decoder and its way of storing what the decoder gives.
PATHS: dict[str, tuple[Callable[[bytes], Any], Callable[..., Any]]] = {
    "event": (codec.decode, _store_event_batches),
    "wire": (codec.decode_wire, _store_wire_batches),
}


def _one_round(
    path: str, batches: list[bytes], round_no: int, workdir: Path
) -> tuple[float, float]:
    """CPU seconds of decoding and of storing ``batches`` once through ``path``."""
    decode, store_all = PATHS[path]

    async def run() -> tuple[float, float]:
        # Opening and closing the store (its threads, the schema) stay outside the timing.
        store = await SqliteEventStore.open(workdir / f"{path}-{round_no}.sqlite")
        try:
            started = time.process_time()
            decoded = [decode(data) for data in batches]
            decoded_at = time.process_time()
            await store_all(store, decoded, round_no)
            stored_at = time.process_time()
        finally:
            await store.aclose()
        return decoded_at - started, stored_at - decoded_at

    return trio.run(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_path", description=__doc__)
    parser.add_argument("--batches", type=int, default=16, help="batches per round (16)")
    parser.add_argument("--size", type=int, default=500, help="events per batch (500)")
    parser.add_argument("--sensors", type=int, default=4, help="devices per gateway (4)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per path; best kept (7)")
    args = parser.parse_args(argv)
    batches = sample_batches(args.batches, args.size, args.sensors)
    events = args.batches * args.size
    best = {path: [float("inf")] * 3 for path in PATHS}  # decode, store, total
    with tempfile.TemporaryDirectory(prefix="core-path-") as tmp:
        for round_no in range(args.rounds):
            for path in PATHS:
                decode_s, store_s = _one_round(path, batches, round_no, Path(tmp))
                best[path][0] = min(best[path][0], decode_s)
                best[path][1] = min(best[path][1], store_s)
                best[path][2] = min(best[path][2], decode_s + store_s)
    result: dict[str, Any] = {"events_per_round": events, "rounds": args.rounds}
    for path, seconds in best.items():
        decode_us, store_us, total_us = (round(s / events * 1e6, 2) for s in seconds)
        result[path] = {"decode_us": decode_us, "store_us": store_us, "total_us": total_us}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
