"""CPU cost of the link codec per event, next to cbor2's own cost for the same bytes.

``python -m bench.codec_cost`` encodes and decodes a 500-event batch shaped like the fleet's
(two readings per event) and prints CPU microseconds per event (best of five rounds, so a
busy machine inflates the figures less): ``protocol.codec.decode`` / ``encode`` against
plain ``cbor2.loads`` / canonical ``cbor2.dumps`` of the same value, i.e. what validation and
building the message values add on top of the C codec. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

import cbor2

from protocol import codec
from protocol.messages import Batch, MessageType
from simulators.fleet import FleetPlan, SimGateway

if TYPE_CHECKING:
    from collections.abc import Callable


def cpu_us_per_event(fn: Callable[[], object], events: int, rounds: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeat):
            fn()
        best = min(best, (time.process_time() - started) / repeat / events * 1e6)
    return round(best, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec_cost", description=__doc__)
    parser.add_argument("--events", type=int, default=500, help="events per batch (500)")
    parser.add_argument("--repeat", type=int, default=100, help="batches per round (100)")
    args = parser.parse_args(argv)
    plan = FleetPlan(url="", ca_file="", gateways=[])
    sample = SimGateway("gw-sample", "", plan, stats=None)  # type: ignore[arg-type]
    batch = Batch(tuple(sample._make(args.events, 1_780_000_000 * 10**9, 10**12)))
    data = codec.encode(batch)
    wire = [int(MessageType.BATCH), [codec.event_to_wire(e) for e in batch.events]]
    n, r = args.events, args.repeat
    result = {
        "bytes_per_event": round(len(data) / n, 1),
        "decode_us": cpu_us_per_event(lambda: codec.decode(data), n, 5, r),
        "cbor2_loads_us": cpu_us_per_event(lambda: cbor2.loads(data), n, 5, r),
        "encode_us": cpu_us_per_event(lambda: codec.encode(batch), n, 5, r),
        "cbor2_dumps_canonical_us": cpu_us_per_event(
            lambda: cbor2.dumps(wire, canonical=True), n, 5, r
        ),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
