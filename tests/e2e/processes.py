"""Real processes for end-to-end tests: start, watch their output, signal and reap them.

Every process runs ``python -m assetbook ...`` (or a module) with its stdout and stderr
merged and read continuously by a task, so a waiter can block until a line matching a
pattern appears: the tests wait on what a process says, never on the clock.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

#: How long a process may take to say what a test waits for.
WAIT_S = 30.0


@dataclass
class Process:
    name: str
    process: trio.Process
    lines: list[str] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)
    _closed: bool = False

    async def wait_for(self, pattern: str, *, after: int = 0) -> re.Match[str]:
        """The first line at index ``after`` or later matching ``pattern`` (``WAIT_S`` max)."""
        regex = re.compile(pattern)
        with trio.fail_after(WAIT_S):
            index = after
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return match
                    index += 1
                if self._closed:
                    raise AssertionError(
                        f"{self.name} exited before printing {pattern!r}:\n" + self.output()
                    )
                changed = self._changed
                await changed.wait()

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def send_signal(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process and wait (``WAIT_S`` max) for it to exit; returns its status."""
        self.send_signal(signum)
        with trio.fail_after(WAIT_S):
            return await self.process.wait()

    async def _pump(self) -> None:
        assert self.process.stdout is not None
        pending = b""
        async for chunk in self.process.stdout:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in complete)
            self._wake()
        if pending:
            self.lines.append(pending.decode(errors="replace"))
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


@asynccontextmanager
async def spawn(
    name: str, args: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[Process]:
    """Run ``python -m <args>``; on exit from the block, kill it if it still runs."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=environment,
    )
    handle = Process(name, process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(handle._pump)
        try:
            yield handle
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
            nursery.cancel_scope.cancel()
