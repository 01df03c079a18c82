"""The asyncio-thread bridge (drivers.ble.bridge.AsyncioThread), on its real thread and loop.

The cancellation test is the contract bleak's cleanup relies on: a cancelled Trio caller gets
control back only after the asyncio task has finished, including a cleanup that awaits.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from drivers.ble.bridge import AsyncioThread


async def test_result_and_exception_cross_unchanged() -> None:
    async def answer() -> tuple[int, str]:
        await asyncio.sleep(0)
        return 42, threading.current_thread().name

    async def fail() -> None:
        await asyncio.sleep(0)
        raise LookupError("from asyncio")

    with trio.fail_after(10):
        async with AsyncioThread("bridge-test") as bridge:
            assert await bridge.run(answer) == (42, "bridge-test")
            with pytest.raises(LookupError, match="from asyncio"):
                await bridge.run(fail)


async def test_cancelled_caller_returns_after_the_asyncio_cleanup() -> None:
    events: list[str] = []
    running = trio.Event()

    async def slow() -> None:
        bridge.to_trio(running.set)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0.05)  # a cleanup that itself waits, as closing a D-Bus call does
            events.append("cleaned up")

    with trio.fail_after(10):
        async with AsyncioThread("bridge-test") as bridge, trio.open_nursery() as nursery:

            async def caller() -> None:
                try:
                    await bridge.run(slow)
                finally:
                    events.append("caller resumed")

            nursery.start_soon(caller)
            await running.wait()
            nursery.cancel_scope.cancel()
    assert events == ["cancelled", "cleaned up", "caller resumed"]


async def test_leaving_cancels_tasks_left_behind() -> None:
    finished: list[str] = []

    async def leftover() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            finished.append("leftover cleaned up")

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(leftover())
        await asyncio.sleep(0)  # let it start, as bleak's D-Bus monitor does

    with trio.fail_after(10):
        async with AsyncioThread("bridge-test") as bridge:
            await bridge.run(spawn)
    assert finished == ["leftover cleaned up"]
