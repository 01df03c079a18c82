"""The asyncio ↔ Trio bridge for bleak: one asyncio event loop on a daemon thread.

bleak is asyncio-only. :class:`AsyncioThread` runs a private asyncio loop on its own thread
for as long as an ``async with`` block lasts; Trio code awaits coroutines on it with
:meth:`AsyncioThread.run` (a cancelled Trio caller cancels the asyncio task), and asyncio
callbacks hand values to Trio with :meth:`AsyncioThread.to_trio`, which never blocks the
asyncio loop. Why a thread rather than trio-asyncio: docs/decisions/ble-bridge.md.

It knows nothing about Bluetooth; it does not limit how many coroutines run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Self, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType

T = TypeVar("T")


class AsyncioThread:
    """An asyncio loop on a thread, owned by the Trio task that enters it."""

    def __init__(self, name: str = "asyncio-bridge") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    async def __aenter__(self) -> Self:
        self._token = trio.lowlevel.current_trio_token()
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        await trio.to_thread.run_sync(ready.wait)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop, thread = self._loop, self._thread
        assert loop is not None
        assert thread is not None
        # Tasks bleak left behind (its D-Bus monitor) are cancelled and awaited before the
        # loop stops, so none is destroyed while pending.
        asyncio.run_coroutine_threadsafe(_cancel_all_then_stop(loop), loop)
        # Shielded so a cancelled owner still waits for the loop to wind down.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join)

    async def run(self, make: Callable[[], Coroutine[object, object, T]]) -> T:
        """Run the coroutine ``make()`` on the asyncio loop and return its result.

        Exceptions propagate unchanged; cancelling the caller cancels the asyncio task and
        waits for it to finish, its own cleanup included.
        """
        loop = self._loop
        assert loop is not None
        coro = make()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        started: list[asyncio.Task[T]] = []

        def start() -> None:  # on the asyncio thread
            task = loop.create_task(coro)
            task.add_done_callback(lambda _: token.run_sync_soon(done.set))
            started.append(task)

        # Not asyncio.run_coroutine_threadsafe: its concurrent Future reports "done" the
        # moment it is cancelled, while the task is still cleaning up, so the caller would
        # go on (and the bridge's exit cut that cleanup short). The task's own done
        # callback fires only when it has really finished.
        loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except trio.Cancelled:
            # call_soon_threadsafe is FIFO, so start() has run by the time this does.
            loop.call_soon_threadsafe(lambda: started[0].cancel())
            with trio.CancelScope(shield=True):
                await done.wait()
            raise
        task = started[0]
        if task.cancelled():  # cancelled on the asyncio side, e.g. by the bridge closing
            raise CancelledError(f"{self._name}: the asyncio task was cancelled")
        return task.result()

    def to_trio(self, fn: Callable[[], object]) -> None:
        """Schedule ``fn()`` on the Trio loop; callable from the asyncio thread, never blocks."""
        assert self._token is not None
        # RunFinishedError: Trio is gone, so nothing is waiting for this value any more.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn)


async def _cancel_all_then_stop(loop: asyncio.AbstractEventLoop) -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    loop.stop()
