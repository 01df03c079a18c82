"""The decoder's inlined hot paths accept and refuse exactly what the general checks do.

Differential tests: every wire item below, just inside and just outside each limit and with
look-alike labels (``0.0`` and ``False`` hash and compare equal to ``0``), is decoded by
``event_from_wire`` / the records' fast path (``_check_records``) and by the reference built
from the general checks (``check_event_wire`` and ``_check_record``); the outcome must be the
same value or the same error with the same message.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocol import codec, limits
from protocol.errors import ProtocolError
from protocol.events import ClockSource, Event, Reading
from protocol.wire import reading_of

_LONG = "x" * (limits.MAX_TEXT_BYTES // 4 + 1)  # past the fast path, still a valid text
_TOO_LONG = "x" * (limits.MAX_TEXT_BYTES + 1)

RECORDS: list[Any] = [
    {0: "t", 1: "Cel", 2: 21.5},
    {0: "t", 1: "Cel", 2: 21},
    {0: "t", 1: "Cel", 2: limits.MAX_UINT},
    {0: "t", 1: "Cel", 2: -limits.MAX_UINT},
    {0: "t", 1: "Cel", 2: limits.MAX_UINT + 1},
    {0: "t", 1: "Cel", 2: -limits.MAX_UINT - 1},
    {0: "t", 1: "Cel", 2: float("nan")},
    {0: "t", 1: "Cel", 2: float("inf")},
    {0: "t", 1: "Cel", 2: True},
    {0: "t", 1: "Cel", 2: "21"},
    {0: "t", 1: "", 2: 1.0},
    {0: "", 1: "Cel", 2: 1.0},
    {0: _LONG, 1: _LONG, 2: 1.0},
    {0: _TOO_LONG, 1: "Cel", 2: 1.0},
    {0: "t", 1: _TOO_LONG, 2: 1.0},
    {0: b"t", 1: "Cel", 2: 1.0},
    {0: "t", 1: 7, 2: 1.0},
    {0.0: "t", 1: "Cel", 2: 1.0},
    {False: "t", 1: "Cel", 2: 1.0},
    {0: "t", True: "Cel", 2: 1.0},
    {0: "t", 1: "Cel", 2.0: 1.0},
    {0: "t", 1: "Cel", 3: "on"},
    {0: "t", 2: 1.0},
    {0: "t", 1: "Cel"},
    {0: "t", 1: "Cel", 2: 1.0, 3: "x"},
    [0, "t", 1.0],
]


def _reading_fast(record: object) -> Reading:
    codec._check_records([record])
    return reading_of(record)  # type: ignore[arg-type]  # checked: a SenML record map


def _reading_general(record: object) -> Reading:
    return reading_of(codec._check_record(record))


def _outcome(fn: Any, item: object) -> object:
    try:
        return fn(item)
    except ProtocolError as exc:
        return (type(exc), str(exc))


@pytest.mark.parametrize("record", RECORDS, ids=repr)
def test_reading_fast_path_matches_the_general_check(record: object) -> None:
    expected = _outcome(_reading_general, record)
    got = _outcome(_reading_fast, record)
    assert got == expected
    assert isinstance(got, Reading | tuple)


def _reference_event(item: object) -> Event:
    seq, device, boot_id, mono_ns, wall_ns, clock, records = codec._array(item, "event", 7)
    codec.check_event_wire(seq, device, boot_id, mono_ns, wall_ns, clock, records)
    readings = tuple(_reading_general(r) for r in records)
    return Event(seq, device, boot_id, mono_ns, wall_ns, ClockSource(clock), readings)


_GOOD: list[Any] = [7, "gps-1", bytes(16), 5, 1_780_000_000 * 10**9, 1, [RECORDS[0]]]
_VARIANTS: dict[int, list[object]] = {
    0: [0, limits.MAX_UINT, limits.MAX_UINT + 1, -1, True, 1.0],
    1: ["", _LONG, _TOO_LONG, b"gps", None],
    2: [bytes(15), bytes(17), "0" * 16],
    3: [0, limits.MAX_UINT, limits.MAX_UINT + 1, -1, False],
    4: [-limits.MAX_UINT, limits.MAX_UINT, limits.MAX_UINT + 1, -limits.MAX_UINT - 1, 2.0],
    5: [0, 2, 4, 255, True, 1.0, -1],
    6: [[], [RECORDS[0]] * limits.MAX_READINGS_PER_EVENT, [RECORDS[0]] * 65, (), [RECORDS[17]]],
}
EVENTS: list[object] = [
    _GOOD,
    _GOOD[:6],
    [*_GOOD, 0],
    tuple(_GOOD),
    {0: 1},
    *([*_GOOD[:i], value, *_GOOD[i + 1 :]] for i, values in _VARIANTS.items() for value in values),
]


@pytest.mark.parametrize("item", EVENTS, ids=lambda item: repr(item)[:60])
def test_event_fast_path_matches_the_general_check(item: object) -> None:
    assert _outcome(codec.event_from_wire, item) == _outcome(_reference_event, item)


def test_a_batch_refuses_a_sequence_that_does_not_increase() -> None:
    events = [[seq, *_GOOD[1:]] for seq in (3, 4, 4)]
    with pytest.raises(ProtocolError, match=r"sequence numbers must increase \(4 after 4\)"):
        codec._events_from_wire(events, "batch events")
    assert [e.seq for e in codec._events_from_wire(events[:2], "batch events")] == [3, 4]
