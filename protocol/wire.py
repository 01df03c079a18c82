"""A batch's events in their checked wire form, for a receiver that mostly passes them on.

The core stores the events it receives without looking into them: building an
:class:`~protocol.events.Event` and its :class:`~protocol.events.Reading` values for each, only
to take them apart into table rows again, was about a fifth of the core's CPU per event.
:class:`WireEvents` keeps them as the decoder checked them instead: each event is the array
``[seq, device, boot_id, mono_ns, wall_ns, clock, records]`` of ``docs/protocol.md`` §event,
each record a SenML map with integer labels (RFC 8428 §6). :func:`event_of` builds the
``Event`` value from one when it is needed after all (a live subscriber, for instance).

Contract: only :mod:`protocol.codec` makes a :class:`WireEvents`, and only from items that
passed exactly the checks :func:`protocol.codec.event_from_wire` applies, so every field has
the type and range an ``Event`` field would have. Nothing here checks anything, and nothing
changes an item once it is held. This module does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from protocol.events import ClockSource, Event, Reading, trusted_event, trusted_reading

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from protocol.events import Value

# RFC 8428 §6: SenML's CBOR representation uses integer labels.
SENML_NAME: Final = 0
SENML_UNIT: Final = 1
SENML_VALUE: Final = 2
SENML_STRING: Final = 3
SENML_BOOL: Final = 4
SENML_DATA: Final = 8

#: One checked event array: ``[seq, device, boot_id, mono_ns, wall_ns, clock, records]``.
WireEvent = list[Any]
#: One checked SenML record: a name, an optional unit and exactly one value, by label.
WireRecord = dict[int, Any]


@dataclass(frozen=True, slots=True)
class WireEvents:
    """One or more batches' events as checked arrays, in strictly increasing ``seq`` order.

    Attributes:
        items: the event arrays (never empty); read them, never change them.
    """

    items: tuple[WireEvent, ...]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[WireEvent]:
        return iter(self.items)

    @property
    def first_seq(self) -> int:
        seq: int = self.items[0][0]
        return seq

    @property
    def last_seq(self) -> int:
        """The highest seq held (seqs increase)."""
        seq: int = self.items[-1][0]
        return seq

    def devices(self) -> set[str]:
        """The device ids the events name."""
        return {item[1] for item in self.items}

    def to_events(self) -> tuple[Event, ...]:
        """The ``Event`` values :func:`protocol.codec.decode` would have built."""
        return tuple([event_of(item) for item in self.items])

    @staticmethod
    def join(parts: Sequence[WireEvents]) -> WireEvents:
        """The events of ``parts``, in order, as one value.

        Raises:
            ValueError: ``parts`` is empty, or a part's first seq is not above the previous
                part's last (the core session never lets such batches through).
        """
        if len(parts) == 1:
            return parts[0]
        items: list[WireEvent] = []
        for part in parts:
            if items and part.first_seq <= items[-1][0]:
                raise ValueError(f"seq {part.first_seq} after {items[-1][0]}: not increasing")
            items.extend(part.items)
        if not items:
            raise ValueError("no events to join")
        return WireEvents(tuple(items))


def record_value(record: WireRecord) -> Value:
    """The value of a checked record: the entry under its one label past name and unit."""
    for label, value in record.items():
        if label > SENML_UNIT:
            return value  # type: ignore[no-any-return]
    raise KeyError("a checked record has a value")  # pragma: no cover - the codec ensures one


def reading_of(record: WireRecord) -> Reading:
    """The :class:`Reading` of a checked record (an absent unit is ``""``)."""
    value = record.get(SENML_VALUE)
    return trusted_reading(
        record[SENML_NAME],
        record.get(SENML_UNIT, ""),
        record_value(record) if value is None else value,
    )


def event_of(item: WireEvent) -> Event:
    """The :class:`Event` of a checked event array."""
    seq, device, boot_id, mono_ns, wall_ns, clock, records = item
    readings = tuple([reading_of(r) for r in records])
    return trusted_event(seq, device, boot_id, mono_ns, wall_ns, _CLOCKS[clock], readings)


_CLOCKS: Final = {int(c): c for c in ClockSource}
