"""The thin Trio shell around :class:`gateway.filters.SampleFilter`: a driver's send channel.

:func:`filtered_channel` gives a driver a channel that offers each sample to the gateway's
filter, with the monotonic time it was sent, before passing it on to the outbox writer's
channel. Deciding here, in the driver's own task, is what gives the filter the sending driver
and the time the sample was produced (the writer sees samples in batches, after any wait for
the disk). A dropped sample goes no further, except as a :class:`~gateway.filters.Receipt`
when its driver waits to hear that it was stored.

This module owns no task and no resource: closing the driver's channel is still the
supervisor's business (``gateway.app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import trio

from gateway.filters import Receipt, needs_receipt

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.base import Sample
    from gateway.filters import SampleFilter


class _FilteredSend(trio.abc.SendChannel["Sample"]):
    def __init__(
        self,
        sample_filter: SampleFilter,
        driver: str,
        send: trio.MemorySendChannel[Sample],
        clock_ns: Callable[[], int],
    ) -> None:
        self._filter = sample_filter
        self._driver = driver
        self._send = send
        self._clock_ns = clock_ns

    async def send(self, value: Sample) -> None:
        if self._filter.offer(self._driver, value, self._clock_ns()) is None:
            await self._send.send(value)
        elif needs_receipt(value):
            await self._send.send(Receipt(value.device, (), dropped=value))
        else:
            await trio.lowlevel.checkpoint()  # a send is always a checkpoint (Trio's rule)

    async def aclose(self) -> None:
        await self._send.aclose()


def filtered_channel(
    sample_filter: SampleFilter,
    driver: str,
    send: trio.MemorySendChannel[Sample],
    clock_ns: Callable[[], int],
) -> trio.MemorySendChannel[Sample]:
    """``send`` as seen through ``sample_filter`` by the driver named ``driver``."""
    # Drivers are typed against MemorySendChannel, which Trio does not let anyone subclass;
    # the drivers only ever call send() on it (tests/gateway/test_filters.py checks).
    return cast(
        "trio.MemorySendChannel[Sample]", _FilteredSend(sample_filter, driver, send, clock_ns)
    )
