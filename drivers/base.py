"""The interface between drivers and the gateway.

A driver turns a device's output into :class:`Sample` values and sends them on a Trio
memory channel. The gateway stamps each sample with its own time and identity (boot id,
monotonic and wall clock) and writes it to the durable outbox before anything else happens
to it, so a driver never needs to care about delivery.

Drivers report what they see in a :class:`DriverHealth`, which the gateway exposes in its
health report: counters only grow, so an operator can tell a silent device from a noisy one.
This module does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import trio

    from protocol.events import ClockSource, Reading


@dataclass(frozen=True, slots=True)
class Sample:
    """What a driver produces: one device's readings at one moment.

    ``device_time_ns`` and ``device_clock`` are set only when the device itself carries a
    trustworthy time (a GPS fix); otherwise the gateway uses its own clock.
    """

    device: str
    readings: tuple[Reading, ...]
    device_time_ns: int | None = None
    device_clock: ClockSource | None = None

    def mark_stored(self) -> None:
        """Called by the gateway once the outbox transaction holding this sample committed.

        Nothing by default. A driver whose device keeps a reading until the gateway has it
        safely (the node protocol acknowledges only stored readings) overrides it.
        """


@dataclass(slots=True)
class DriverHealth:
    """Counters a driver keeps about its own input (never reset while the gateway runs)."""

    samples: int = 0  # samples produced
    frames: int = 0  # well-formed frames decoded
    bad_frames: int = 0  # frames refused: bad checksum, unparsable, truncated
    skipped_bytes: int = 0  # bytes discarded while resynchronising on noise
    restarts: int = 0  # times the transport was reopened after a failure
    last_error: str | None = None
    last_sample_mono_ns: int | None = None
    errors_by_kind: dict[str, int] = field(default_factory=dict)

    def count_error(self, kind: str, message: str) -> None:
        """Count one refused input of ``kind`` and remember its message."""
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        self.last_error = message


class Driver(Protocol):
    """A running driver. ``run`` loops until cancelled; it reopens its transport itself."""

    name: str
    health: DriverHealth

    async def run(
        self,
        send: trio.MemorySendChannel[Sample],
        *,
        task_status: trio.TaskStatus[None] = ...,
    ) -> None:
        """Produce samples forever; call ``task_status.started()`` once the device is open."""
        ...
