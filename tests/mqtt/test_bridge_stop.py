"""The bridge's reconnect loop stops when its task is cancelled, even when the client it was
closing turns the cancellation into a connection error (as aiomqtt's disconnect can)."""

from __future__ import annotations

import asyncio
import random

import aiomqtt
import pytest

from cloud.mqtt.bridge import Bridge


class _Reconnected(Exception):
    """The loop connected again after it was told to stop."""


def test_a_cancellation_turned_into_a_client_error_still_stops_the_loop() -> None:
    attempts = 0

    async def once() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            raise _Reconnected  # not a connection error: it ends the loop, and the test
        try:
            await asyncio.Event().wait()  # connected until cancelled
        except asyncio.CancelledError:
            # What a client may do while it closes: its own error replaces the cancellation.
            raise aiomqtt.MqttError("disconnected during message iteration") from None

    async def main() -> None:
        bridge = Bridge.__new__(Bridge)  # only _forever and its jitter source are used
        bridge._rng = random.Random(1)
        task = asyncio.create_task(bridge._forever("mqtt", once))
        await asyncio.sleep(0)  # let it connect
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 30))
    assert attempts == 1
