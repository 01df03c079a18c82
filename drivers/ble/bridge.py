"""The asyncio ↔ Trio bridge for bleak: one asyncio event loop on a daemon thread.

bleak is asyncio-only. :class:`AsyncioThread` runs a private asyncio loop on its own thread
for as long as an ``async with`` block lasts; Trio code awaits coroutines on it with
:meth:`AsyncioThread.run` (a cancelled Trio caller cancels the asyncio task), and asyncio
callbacks hand values to Trio with :meth:`AsyncioThread.to_trio`, which never blocks the
asyncio loop. Why a thread rather than trio-asyncio: docs/decisions/ble-bridge.md.

A cancelled caller waits for the asyncio task's cleanup, but only for ``cancel_grace_s``:
a task that ignores its cancellation or hangs in it (a D-Bus call that never returns) is
then abandoned and the caller gets :class:`TaskAbandoned` instead of waiting forever. The
caller reports it (it knows what the call was for), so the bridge logs it at debug level
only, and an abandoned call is one warning in the log, not two. Leaving the ``async with``
block waits the same grace for leftover tasks, and logs those it abandons.

It knows nothing about Bluetooth; it does not limit how many coroutines run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import CancelledError
from typing import TYPE_CHECKING, Final, Self, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from types import TracebackType

T = TypeVar("T")

log = logging.getLogger(__name__)

#: How long a cancelled caller (and the bridge's exit) waits for asyncio tasks to finish.
CANCEL_GRACE_S: Final = 10.0


class TaskAbandoned(Exception):
    """A cancelled asyncio task did not finish within the grace period and was left running."""


class AsyncioThread:
    """An asyncio loop on a thread, owned by the Trio task that enters it."""

    def __init__(
        self, name: str = "asyncio-bridge", *, cancel_grace_s: float = CANCEL_GRACE_S
    ) -> None:
        self._name = name
        self._grace_s = cancel_grace_s
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
        # Tasks bleak left behind (its D-Bus monitor) are cancelled and awaited (for at most
        # the grace period) before the loop stops, so none is destroyed while pending.
        asyncio.run_coroutine_threadsafe(_cancel_all_then_stop(loop, self._grace_s), loop)
        # Shielded so a cancelled owner still waits for the loop to wind down.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(thread.join)

    async def run(self, make: Callable[[], Coroutine[object, object, T]]) -> T:
        """Run the coroutine ``make()`` on the asyncio loop and return its result.

        Exceptions propagate unchanged; cancelling the caller cancels the asyncio task and
        waits for it to finish, its own cleanup included, for at most the grace period.

        Raises:
            TaskAbandoned: the caller was cancelled and the task did not finish within the
                grace period (it is left running on the loop; the caller may go on).
        """
        loop = self._loop
        assert loop is not None
        coro = make()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        started: list[asyncio.Task[T]] = []

        def finished(_: object) -> None:  # on the asyncio thread
            # RunFinishedError: an abandoned task that ends after Trio has; nobody waits.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        def start() -> None:  # on the asyncio thread
            task = loop.create_task(coro)
            task.add_done_callback(finished)
            started.append(task)

        # Not asyncio.run_coroutine_threadsafe: its concurrent Future reports "done" the
        # moment it is cancelled, while the task is still cleaning up, so the caller would
        # go on (and the bridge's exit cut that cleanup short). The task's own done
        # callback fires only when it has really finished.
        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop is closed: the bridge has been left
            coro.close()  # never to run; closed so it is not reported as "never awaited"
            raise
        try:
            await done.wait()
        except trio.Cancelled:

            def cancel() -> None:  # on the asyncio thread
                # call_soon_threadsafe is FIFO, so start() has run by the time this does,
                # unless it failed; a loop that has stopped runs neither.
                if started:
                    started[0].cancel()

            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(cancel)
            # Shielded so the task's cleanup completes, but bounded: a task that ignores its
            # cancellation or hangs in it (a D-Bus call that never returns) would otherwise
            # hold the caller, and whatever it holds (a connection slot), for good.
            deadline = trio.current_time() + self._grace_s
            with trio.CancelScope(shield=True, deadline=deadline) as grace:
                await done.wait()
            if grace.cancelled_caught:
                # The task is abandoned: it stays on the loop until it ends or the bridge
                # closes; nothing here waits for it any more. The caller logs it.
                log.debug(
                    "%s: a cancelled asyncio task did not finish within %g s; abandoned",
                    self._name,
                    self._grace_s,
                )
                raise TaskAbandoned(
                    f"{self._name}: a cancelled asyncio task did not finish within"
                    f" {self._grace_s:g} s"
                ) from None
            raise
        task = started[0]  # done is set only by the task's own callback, so it exists
        if task.cancelled():  # cancelled on the asyncio side, e.g. by the bridge closing
            raise CancelledError(f"{self._name}: the asyncio task was cancelled")
        return task.result()

    def to_trio(self, fn: Callable[[], object]) -> None:
        """Schedule ``fn()`` on the Trio loop; callable from the asyncio thread, never blocks."""
        assert self._token is not None
        # RunFinishedError: Trio is gone, so nothing is waiting for this value any more.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn)


async def _cancel_all_then_stop(loop: asyncio.AbstractEventLoop, grace_s: float) -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in done:  # retrieved, so asyncio does not log "never retrieved"
            if not task.cancelled():
                task.exception()
        if pending:
            # Left pending when the loop closes: stopping beats waiting forever on exit.
            log.warning(
                "%d asyncio task(s) ignored cancellation for %g s; abandoned", len(pending), grace_s
            )
    loop.stop()
