"""The asyncio-thread bridge (drivers.ble.bridge.AsyncioThread), on its real thread and loop.

The cancellation test is the contract bleak's cleanup relies on: a cancelled Trio caller gets
control back only after the asyncio task has finished, including a cleanup that awaits; but a
task that ignores its cancellation holds neither the caller nor the bridge's exit for longer
than the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
import trio

from drivers.ble.bridge import AsyncioThread, TaskAbandoned


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


async def test_a_task_that_ignores_cancellation_is_abandoned_after_the_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grace_s = 0.3
    running = trio.Event()
    cancels: list[str] = []

    async def stubborn() -> None:  # as a D-Bus call that swallows its cancellation
        bridge.to_trio(running.set)
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancels.append("ignored")

    with trio.fail_after(10):
        async with AsyncioThread("bridge-test", cancel_grace_s=grace_s) as bridge:
            with trio.CancelScope() as scope:

                async def cancel_when_running() -> None:
                    await running.wait()
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_when_running)
                    started = trio.current_time()
                    with pytest.raises(TaskAbandoned, match=r"within 0\.3 s"):
                        await bridge.run(stubborn)
                    waited = trio.current_time() - started
            exit_started = trio.current_time()
        exit_waited = trio.current_time() - exit_started  # the bridge still closes
    assert grace_s <= waited < grace_s + 5
    assert grace_s <= exit_waited < grace_s + 5
    assert cancels == ["ignored", "ignored"]  # by the caller's cancel, then by the exit
    # The caller reports an abandoned call, so the bridge adds no warning of its own for
    # it; only leaving, with nobody left to tell, is the bridge's to report.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        f"1 asyncio task(s) ignored cancellation for {grace_s:g} s; abandoned"
    ]


async def test_a_call_after_leaving_is_refused_without_waiting() -> None:
    async def answer() -> int:
        return 42

    with trio.fail_after(10):
        async with AsyncioThread("bridge-test") as bridge:
            assert await bridge.run(answer) == 42
        with pytest.raises(RuntimeError, match="closed"):
            await bridge.run(answer)
